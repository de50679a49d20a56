//! The subcommands: each takes a loaded config and returns the process exit code.

use std::io::Write;

use crate::config::Config;
use crate::error::{Error, Result, exit_code};
use crate::plan::{self, MeasuredRates, Plan};
use crate::source::catalog::{self, Discovery};
use crate::source::{self, Dialect, Source};

/// `ehi-sync check`: connect, report what is there, count the visible tables.
pub fn check(config: &Config, out: &mut dyn Write) -> Result<i32> {
    let source = Source::from_config(config);
    let connection = source.connect()?;
    let dialect = source::detect_dialect(&source, &connection)?;
    let discovery = catalog::discover(&source, &connection, dialect, &config.tables)?;
    let info = source::server_info(&source, connection)?;
    let lines = [
        ("connection", source.redacted()),
        ("dbms", format!("{} {}", info.dbms_name, info.dbms_version)),
        ("driver", format!("{} {}", info.driver_name, info.driver_version)),
        ("dialect", info.dialect.name().to_owned()),
        ("database", info.database.clone()),
        (
            "tables",
            format!(
                "{} visible, {} selected by include/exclude",
                discovery.visible,
                discovery.tables.len()
            ),
        ),
    ];
    for (label, value) in lines {
        writeln!(out, "{label:<11} {value}").map_err(stdout_error)?;
    }
    writeln!(out, "check passed").map_err(stdout_error)?;
    Ok(exit_code::OK)
}

/// `ehi-sync plan`: discover, size and print the processing plan.
pub fn plan(config: &Config, json: bool, out: &mut dyn Write) -> Result<i32> {
    let plan = make_plan(config)?;
    if json {
        let text = serde_json::to_string_pretty(&plan).map_err(|e| {
            Error::Discovery(format!("the plan could not be rendered as JSON: {e}"))
        })?;
        writeln!(out, "{text}").map_err(stdout_error)?;
    } else {
        write!(out, "{}", plan.render()).map_err(stdout_error)?;
    }
    Ok(exit_code::OK)
}

/// Connects, discovers the selected tables and builds their plan.
pub fn make_plan(config: &Config) -> Result<Plan> {
    let source = Source::from_config(config);
    let connection = source.connect()?;
    let dialect = source::detect_dialect(&source, &connection)?;
    let Discovery { tables, .. } =
        catalog::discover(&source, &connection, dialect, &config.tables)?;
    let database = database_name(&source, &connection, dialect)?;
    let rates = MeasuredRates::from_output_dir(&config.output_dir);
    Ok(plan::build(config, dialect, &database, tables, rates))
}

fn database_name(
    source: &Source,
    connection: &odbc_api::Connection<'_>,
    dialect: Dialect,
) -> Result<String> {
    let name = connection
        .current_catalog()
        .map_err(|e| source.db_error("reading the current database", &e))?;
    Ok(match dialect {
        // sqliteodbc reports no catalog; the file is the database.
        Dialect::Sqlite if name.is_empty() => "main".to_owned(),
        _ => name,
    })
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::Io {
        context: "cannot write to",
        path: "standard output".into(),
        source,
    }
}
