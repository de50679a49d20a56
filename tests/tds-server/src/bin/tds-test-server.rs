//! Runs the TDS test server on its own (for scripts/bench.sh and manual tries): serves a SQLite
//! file, optionally building a fixture in it first. Exit codes: 0 after `--help`, 2 for bad
//! arguments, 1 when the database or the port cannot be opened; otherwise it serves until
//! killed.

use std::process::ExitCode;
use std::sync::Arc;

use tds_test_server::BackendFactory;
use tds_test_server::backend::{SqliteDatabase, fixtures};
use tds_test_server::wire::cli::{self, Args, Exit};

fn main() -> ExitCode {
    let Err(exit) = cli::run(std::env::args().skip(1), open);
    match &exit {
        Exit::Help => println!("{exit}"),
        _ => eprintln!("tds-test-server: {exit}"),
    }
    ExitCode::from(exit.code())
}

/// The database to serve: the fixture built (or found already built) in the file, or the file
/// as it is, which must exist (SQLite would otherwise create an empty one silently).
fn open(args: &Args) -> Result<Arc<dyn BackendFactory>, String> {
    let path = &args.sqlite;
    let database = match &args.fixture {
        Some(spec) => {
            eprintln!(
                "tds-test-server: building fixture {spec} in {} (reused when already built)",
                path.display()
            );
            fixtures::from_spec(spec, path, &args.database)
        }
        None if !path.is_file() => {
            return Err(format!(
                "{} does not exist: give an existing SQLite file, or build one with --fixture SPEC",
                path.display()
            ));
        }
        None => SqliteDatabase::open(path, &args.database),
    };
    let database = database.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Arc::new(database))
}
