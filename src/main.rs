//! Command line of ehi-sync. Everything but argument parsing and exit codes lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ehi_sync::commands;
use ehi_sync::config::Config;
use ehi_sync::error::Error;

/// Copies every table of a SQL Server (Epic Caboodle / Clarity) database through ODBC into CSV or
/// NDJSON files. Exit codes: 0 ok, 1 internal error, 2 configuration error, 3 connection error,
/// 4 partial failure, 5 catalog could not be read.
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
}

fn main() -> ExitCode {
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

fn run(cli: Cli) -> Result<i32, Error> {
    let config_path = match &cli.command {
        Command::Check { config } | Command::Plan { config, .. } => config,
    };
    let config = Config::load(config_path).inspect_err(|_| init_logging(false))?;
    init_logging(config.debug);
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Check { .. } => commands::check(&config, &mut stdout),
        Command::Plan { json, .. } => commands::plan(&config, json, &mut stdout),
    }
}

/// Logs go to standard error so standard output stays machine-readable (`plan --json`).
/// `RUST_LOG` overrides the level.
fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_target(false)
        .init();
}
