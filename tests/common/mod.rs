//! Harness shared by the integration tests: throwaway PostgreSQL databases, SQLite files,
//! config files, and the `ehi-sync` binary. Tests run in parallel, each with its own database.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 with trust auth for `postgres`, and the psqlODBC and
//! sqliteodbc drivers registered (`scripts/setup.sh` arranges all of it).

// Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod output;
pub mod proxy;
pub mod running;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use odbc_api::{ConnectionOptions, Cursor, ResultSetMetadata};

/// psqlODBC keywords: `UseDeclareFetch=1;Fetch=N` streams through a server cursor (otherwise
/// the driver buffers the whole result set in memory); `CommLog=0;Debug=0` keep the driver
/// from logging traffic, row values included, to /tmp.
const PG_OPTIONS: &str = "UseDeclareFetch=1;Fetch=2000;CommLog=0;Debug=0;";

/// A PostgreSQL database that exists for one test and is dropped when it goes out of scope.
pub struct PgDatabase {
    name: String,
}

/// Creates a fresh database `<prefix>_<pid>_<counter>` on 127.0.0.1:5432.
pub fn pg_database(prefix: &str) -> PgDatabase {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{}_{}_{}",
        prefix.to_lowercase(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    // A leftover of a crashed run with a recycled pid would make CREATE fail.
    execute_on(&pg_connection_string("postgres"), &drop_database_sql(&name));
    execute_on(
        &pg_connection_string("postgres"),
        &format!("CREATE DATABASE \"{name}\""),
    );
    PgDatabase { name }
}

impl PgDatabase {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn connection_string(&self) -> String {
        pg_connection_string(&self.name)
    }

    /// A connection string to the `postgres` database, for sessions that act on a test's
    /// database from outside (terminating its backends).
    pub fn admin_connection_string() -> String {
        pg_connection_string("postgres")
    }

    /// Runs one statement in this database; panics with the driver's message on failure.
    pub fn execute(&self, sql: &str) {
        execute_on(&self.connection_string(), sql);
    }

    /// Runs a query in this database and returns every value as text, NULL as `None`.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        query_on(&self.connection_string(), sql)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE ends sessions a failed test left open. Errors are ignored: panicking in drop
        // during a failing test's unwind would abort the test binary.
        if let Ok(connection) = try_connect(&pg_connection_string("postgres")) {
            let _ = connection.execute(&drop_database_sql(&self.name), (), None);
        }
    }
}

fn pg_connection_string(database: &str) -> String {
    format!(
        "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=5432;Database={database};\
         Uid=postgres;Pwd=;{PG_OPTIONS}"
    )
}

fn drop_database_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
}

/// The connection string of a SQLite database file `ehr.db` in `dir` (created on first use).
/// `StepAPI=1` makes sqliteodbc stream rows with sqlite3_step; without it the driver reads the
/// whole result into memory before returning the first row. `SyncPragma=OFF` drops the fsync
/// per autocommitted statement (row-by-row inserts ~9x faster), harmless for a throwaway file.
pub fn sqlite_database(dir: &Path) -> String {
    format!(
        "Driver={{SQLite3}};Database={};StepAPI=1;SyncPragma=OFF;",
        dir.join("ehr.db").display()
    )
}

/// Runs one statement through ODBC on any connection string; panics on failure.
pub fn execute_on(connection_string: &str, sql: &str) {
    let connection = try_connect(connection_string)
        .unwrap_or_else(|e| panic!("cannot connect for '{sql}': {e}"));
    connection
        .execute(&intact_text(&connection, sql), (), None)
        .unwrap_or_else(|e| panic!("'{sql}' failed: {e}"));
}

/// Runs a query through ODBC and returns every value as text (fetched as UTF-16, of any
/// length), NULL as `None`. Row by row: for the small result sets tests check.
pub fn query_on(connection_string: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let connection = try_connect(connection_string)
        .unwrap_or_else(|e| panic!("cannot connect for '{sql}': {e}"));
    let sql = intact_text(&connection, sql);
    query_rows(&connection, &sql).unwrap_or_else(|e| panic!("'{sql}' failed: {e}"))
}

/// Statement text in the form the driver receives intact, decided per statement as ehi-sync
/// decides per run. A driver without wide functions (sqliteodbc) gets the text from unixODBC
/// one byte per UTF-16 unit while the process's locale is "C", and converted properly once a
/// library switched the locale (psqlODBC calls `setlocale`, so it depends on which test of the
/// binary connected to PostgreSQL first): there the UTF-8 bytes, passed as characters of the
/// same numbers, arrive exactly.
fn intact_text(connection: &odbc_api::Connection<'_>, sql: &str) -> String {
    const PROBE: &str = "é€😀";
    if sql.is_ascii() {
        return sql.to_owned();
    }
    let as_bytes = |text: &str| -> String { text.bytes().map(char::from).collect() };
    // A mangled probe may not even parse: that is a "no" too.
    let echoes = |probe: &str| {
        query_rows(connection, &format!("SELECT '{probe}'")).is_ok_and(|rows| {
            rows.first().and_then(|row| row.first()) == Some(&Some(PROBE.to_owned()))
        })
    };
    if !echoes(PROBE) && echoes(&as_bytes(PROBE)) {
        as_bytes(sql)
    } else {
        sql.to_owned()
    }
}

fn query_rows(
    connection: &odbc_api::Connection<'_>,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, odbc_api::Error> {
    let mut cursor = connection
        .execute(sql, (), None)?
        .unwrap_or_else(|| panic!("'{sql}' returned no result set"));
    let columns = cursor.num_result_cols().expect("column count");
    let columns = u16::try_from(columns).expect("fewer than 65536 columns");
    let mut rows = Vec::new();
    let mut buffer = Vec::new();
    while let Some(mut row) = cursor.next_row().expect("fetch") {
        let values = (1..=columns)
            .map(|column| {
                let not_null = row
                    .get_wide_text(column, &mut buffer)
                    .unwrap_or_else(|e| panic!("'{sql}' column {column}: {e}"));
                not_null.then(|| String::from_utf16(&buffer).expect("valid UTF-16"))
            })
            .collect();
        rows.push(values);
    }
    Ok(rows)
}

/// A connection for tests that hold locks or transactions themselves.
pub fn connect(connection_string: &str) -> odbc_api::Connection<'static> {
    try_connect(connection_string).unwrap_or_else(|e| panic!("cannot connect: {e}"))
}

fn try_connect(connection_string: &str) -> Result<odbc_api::Connection<'static>, odbc_api::Error> {
    odbc_api::environment()?
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
}

/// Writes `json` as `config.json` in `dir` and returns its path.
pub fn write_config(dir: &Path, json: serde_json::Value) -> PathBuf {
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&json).expect("config serializes");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Merges `extra`'s top-level keys into `config` (a `null` removes the key).
pub fn with(mut config: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let (Some(target), serde_json::Value::Object(extra)) = (config.as_object_mut(), extra) else {
        panic!("configs are JSON objects");
    };
    for (key, value) in extra {
        if value.is_null() {
            target.remove(&key);
        } else {
            target.insert(key, value);
        }
    }
    config
}

/// A config for the generated tables (`generate` at a scale of a few thousand) with tiers so
/// small that a run takes seconds in a debug build and checkpoints every few dozen rows: kills
/// and faults land mid-run and mid-checkpoint.
pub fn small_steps_config(
    connection_string: &str,
    output: &Path,
    format: &str,
) -> serde_json::Value {
    serde_json::json!({
        "connection_string": connection_string,
        "output_dir": output,
        "format": format,
        "small_table_threshold": 1000,
        "large_table_threshold": 40000,
        "part_file_max_bytes": 200000,
        "fetch_buffer_bytes": 65536,
        "tiers": {
            "small": {"batch_size": 25, "partition_size": 100, "checkpoint_interval": 50},
            "medium": {"batch_size": 50, "partition_size": 1000, "checkpoint_interval": 200},
            "large": {"batch_size": 100, "partition_size": 4000, "checkpoint_interval": 300}
        }
    })
}

/// The state file `out/_state.json` as JSON.
pub fn read_state(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("_state.json")).expect("state file"))
        .expect("state JSON")
}

/// Runs the `ehi-sync` binary built for this test run.
pub fn ehi_sync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehi-sync"))
        .args(args)
        .output()
        .expect("run ehi-sync")
}

/// `ehi-sync generate --config <config> --scale <scale>`; panics with its output on failure.
pub fn generate(config: &Path, scale: u64) {
    let config = config.to_str().expect("UTF-8 path");
    let output = ehi_sync(&[
        "generate",
        "--config",
        config,
        "--scale",
        &scale.to_string(),
    ]);
    assert!(
        output.status.success(),
        "generate failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
