//! The subcommands: each takes a loaded config and returns the process exit code.

use std::io::Write;
use std::time::Instant;

use crate::config::Config;
use crate::demo;
use crate::error::{Error, Result, exit_code};
use crate::extract::{self, RunSummary};
use crate::plan::{self, MeasuredRates, Plan};
use crate::sink::TableOutcome;
use crate::source::catalog::{self, Discovery};
use crate::source::{self, Dialect, Source};
use crate::state::TableStatus;

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
        (
            "driver",
            format!("{} {}", info.driver_name, info.driver_version),
        ),
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

/// `ehi-sync generate`: fills the configured PostgreSQL or SQLite database with the synthetic
/// EHR tables and prints the rows each table received.
pub fn generate(config: &Config, scale: u64, out: &mut dyn Write) -> Result<i32> {
    let source = Source::from_config(config);
    let connection = source.connect()?;
    let dialect = source::detect_dialect(&source, &connection)?;
    let started = Instant::now();
    let counts = demo::generate(&source, &connection, dialect, scale)?;
    for (table, rows) in &counts {
        writeln!(out, "{table:<16} {rows:>12} rows").map_err(stdout_error)?;
    }
    let total: u64 = counts.iter().map(|(_, rows)| rows).sum();
    writeln!(
        out,
        "generated {total} rows in {} tables ({}, scale {scale}) in {:.1} s",
        counts.len(),
        dialect.name(),
        started.elapsed().as_secs_f64()
    )
    .map_err(stdout_error)?;
    Ok(exit_code::OK)
}

/// `ehi-sync sync`: print the plan, copy every table, print the run summary. Exit code 4 when
/// any table failed (the others are complete).
pub fn sync(config: &Config, out: &mut dyn Write) -> Result<i32> {
    let plan = make_plan(config)?;
    write!(out, "{}", plan.render()).map_err(stdout_error)?;
    writeln!(out).map_err(stdout_error)?;
    out.flush().map_err(stdout_error)?;
    let source = Source::from_config(config);
    let summary = extract::run(config, &source, &plan)?;
    write!(out, "{}", render_summary(&summary, &config.output_dir)).map_err(stdout_error)?;
    let failed = summary
        .outcomes
        .iter()
        .any(|o| o.status != TableStatus::Done);
    Ok(if failed {
        exit_code::PARTIAL_FAILURE
    } else {
        exit_code::OK
    })
}

/// The closing report of a run: totals, and every failed or changed table by name.
fn render_summary(summary: &RunSummary, output_dir: &std::path::Path) -> String {
    let done: Vec<&TableOutcome> = summary
        .outcomes
        .iter()
        .filter(|o| o.status == TableStatus::Done)
        .collect();
    let failed: Vec<&TableOutcome> = summary
        .outcomes
        .iter()
        .filter(|o| o.status != TableStatus::Done)
        .collect();
    let rows: u64 = summary.outcomes.iter().map(|o| o.rows).sum();
    let rate = if summary.seconds > 0.0 {
        rows as f64 / summary.seconds
    } else {
        0.0
    };
    let mut text = format!(
        "Run {} finished in {}: {} tables done, {} failed, {} rows ({} rows/s)\n",
        summary.run_id,
        plan::duration(summary.seconds),
        done.len(),
        failed.len(),
        plan::group_digits(rows),
        plan::group_digits(rate.round() as u64)
    );
    for outcome in &done {
        if outcome.rows != outcome.expected_rows {
            text.push_str(&format!(
                "  changed while read: {} ({} rows written, {} counted at its start)\n",
                outcome.table,
                plan::group_digits(outcome.rows),
                plan::group_digits(outcome.expected_rows)
            ));
        }
    }
    for outcome in &failed {
        text.push_str(&format!(
            "  FAILED: {} ({}): {}\n",
            outcome.table,
            outcome.tier,
            outcome.error.as_deref().unwrap_or("not finished")
        ));
    }
    text.push_str(&format!(
        "Output: {} (validation records in {})\n",
        output_dir.display(),
        plan::VALIDATION_FILE
    ));
    text
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
