//! Command line of ehi-sync. Everything but argument parsing and exit codes lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ehi_sync::config::Config;
use ehi_sync::error::Error;
use ehi_sync::{commands, shutdown, supervisor};

/// Copies every table of a SQL Server (Epic Caboodle / Clarity) database through ODBC into CSV,
/// NDJSON or Parquet files. Exit codes: 0 ok, 1 internal error, 2 configuration error,
/// 3 connection error, 4 partial failure, 5 catalog could not be read, 6 another run holds the
/// output folder, 7 stopped by a signal (resumable), 8 state file unusable, 9 the sync process
/// crashed again and again without progress (resumable).
#[derive(Parser)]
#[command(name = "ehi-sync", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, connect, and show the database, driver and visible tables.
    Check {
        /// The JSON config file (see config.example.json).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Discover and size every selected table and print the processing plan.
    Plan {
        /// The JSON config file (see config.example.json).
        #[arg(long, short)]
        config: PathBuf,
        /// Print the plan as JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Copy every selected table into CSV, NDJSON or Parquet files under output_dir, resuming an
    /// unfinished run from its last checkpoint.
    Sync {
        /// The JSON config file (see config.example.json).
        #[arg(long, short)]
        config: PathBuf,
        /// Discard an unfinished run (after saying what is deleted) and start over.
        #[arg(long)]
        restart: bool,
        /// Run the sync in this process, without the supervisor that restarts it after a crash
        /// (for debugging).
        #[arg(long)]
        no_supervisor: bool,
        /// Internal: this process is the sync the supervisor with this pid started.
        #[arg(long = "supervised-by", hide = true, value_name = "PID")]
        supervised_by: Option<u32>,
    },
    /// Show the progress of the current or last run from its state file, without taking the
    /// lock (safe while a run is going on).
    Status {
        /// The JSON config file (see config.example.json).
        #[arg(long, short)]
        config: PathBuf,
        /// Print the status as JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Print the CREATE TABLE and load statements of every table a sync has finished, for a
    /// loader in the chosen SQL dialect. Reads the manifests under output_dir; never connects
    /// to the database.
    Ddl {
        /// The JSON config file (see config.example.json): output_dir and include/exclude.
        #[arg(long, short)]
        config: PathBuf,
        /// The database the tables are loaded into.
        #[arg(long, value_enum)]
        dialect: ehi_sync::ddl::Target,
    },
    /// Fill a PostgreSQL or SQLite database with synthetic EHR tables for demos and tests.
    /// Drops and recreates the demo tables; never use it on a database you care about.
    Generate {
        /// The JSON config file whose connection string names the database to fill.
        #[arg(long, short)]
        config: PathBuf,
        /// Patients to generate; the other tables scale with it (flowsheet values: 20 per patient).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        scale: u64,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            log::error!("{error}");
            error.exit_code()
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Workers allocate the fetch buffers and encoded chunks the writer thread frees; glibc gives
/// each thread an arena of its own and keeps what was freed in it, which on the 210-column
/// wide table held about 30 MiB of a CSV run's peak RSS (117 MiB, 87 MiB with two arenas) and
/// 36 MiB of a Parquet run's. Two arenas: allocation is per batch, not per value, so the
/// threads hardly contend for them.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn run(cli: Cli) -> Result<i32, Error> {
    let config_path = match &cli.command {
        Command::Check { config }
        | Command::Plan { config, .. }
        | Command::Sync { config, .. }
        | Command::Status { config, .. }
        | Command::Ddl { config, .. }
        | Command::Generate { config, .. } => config,
    };
    let config = Config::load(config_path).inspect_err(|_| init_logging(false))?;
    init_logging(config.debug);
    let supervise = matches!(
        cli.command,
        Command::Sync {
            no_supervisor: false,
            supervised_by: None,
            ..
        }
    );
    if supervise {
        // The child prints the config's warnings.
        return supervisor::run(&config);
    }
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Check { .. } => commands::check(&config, &mut stdout),
        Command::Plan { json, .. } => commands::plan(&config, json, &mut stdout),
        Command::Sync {
            restart,
            supervised_by,
            ..
        } => {
            if let Some(pid) = supervised_by {
                ehi_sync::lock::set_supervised_by(pid);
                shutdown::follow_supervisor().map_err(Error::Internal)?;
            }
            commands::sync(&config, restart, &mut stdout)
        }
        Command::Status { json, .. } => commands::status(&config, json, &mut stdout),
        Command::Ddl { dialect, .. } => commands::ddl(&config, dialect, &mut stdout),
        Command::Generate { scale, .. } => commands::generate(&config, scale, &mut stdout),
    }
}

/// Logs go to standard error so standard output stays machine-readable (`plan --json`).
/// `RUST_LOG` overrides the level. odbc-api's own warnings (drivers answering "does not support
/// the requested version" when ODBC 3.80 is asked for) are noise to an operator.
fn init_logging(debug: bool) {
    let default = if debug {
        "debug,odbc_api=info"
    } else {
        "info,odbc_api=error"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_target(false)
        .init();
}
