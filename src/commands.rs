//! The subcommands: each takes a loaded config and returns the process exit code.

use std::io::Write;
use std::time::Instant;

use std::collections::HashMap;

use crate::config::{Config, SourceConfig, connection_string};
use crate::ddl;
use crate::demo;
use crate::display;
use crate::durable::{self, Disk, FileOps};
use crate::error::{ConfigError, Error, Result, exit_code};
use crate::extract::fetch::BufferPolicy;
use crate::extract::{self, RunSummary, text_check};
use crate::incremental;
use crate::lock::{self, RunLock};
use crate::manifest;
use crate::model::Dialect;
use crate::plan::{self, MeasuredRates, Plan};
use crate::retry::RetryPolicy;
use crate::shutdown;
use crate::sink::TableOutcome;
use crate::source::catalog::Discovery;
use crate::source::{self, Source, catalog, session};
use crate::state::{self, RunState, TableStatus};
use crate::status;
use crate::supervisor;

/// `ehi-sync check`: connect, report what is there, count the visible tables.
pub fn check(config: &Config, out: &mut dyn Write) -> Result<i32> {
    let source = Source::from_config(config);
    let connection = source.connect()?;
    let dialect = source::detect_dialect(&source, &connection)?;
    let buffers = BufferPolicy::for_run(config, dialect);
    text_check::run(&source, &connection, dialect, buffers)?;
    let discovery = catalog::discover(&source, &connection, dialect, &config.tables)?;
    let versioning = session::sqlserver_row_versioning(&source, &connection, dialect)?;
    let info = source::server_info(&source, connection)?;
    if let SourceConfig::SqlServer(sql) = &config.source {
        connection_string::check_driver_version(sql, &info.driver_version)?;
    }
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
    if let Some((snapshot, rcsi)) = &versioning {
        writeln!(
            out,
            "{:<11} snapshot isolation {snapshot}, read committed snapshot {}",
            "versioning",
            if *rcsi { "ON" } else { "OFF" }
        )
        .map_err(stdout_error)?;
    }
    writeln!(out, "{:<11} {}", "isolation", config.isolation.name()).map_err(stdout_error)?;
    writeln!(
        out,
        "{:<11} {} read back intact ({})",
        "text",
        text_check::PROBE,
        if buffers.wide_text { "utf16" } else { "utf8" }
    )
    .map_err(stdout_error)?;
    writeln!(
        out,
        "{:<11} {}",
        "secrets",
        config.secret_at_rest.describe()
    )
    .map_err(stdout_error)?;
    session::check_isolation(config.isolation, versioning.as_ref())?;
    writeln!(out, "check passed").map_err(stdout_error)?;
    Ok(exit_code::OK)
}

/// `ehi-sync plan`: discover, size and print the processing plan.
pub fn plan(config: &Config, json: bool, out: &mut dyn Write) -> Result<i32> {
    let previous = match state::load(&Disk, &config.state_path.clone()) {
        Ok(previous) => previous,
        Err(e) => {
            log::warn!("{e}; the plan assumes no earlier run");
            None
        }
    };
    let plan = make_plan(config, previous.as_ref())?;
    if json {
        let text = serde_json::to_string_pretty(&plan)
            .map_err(|e| Error::Internal(format!("the plan could not be rendered as JSON: {e}")))?;
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
        "generated {total} rows in {} ({}, scale {scale}) in {:.1} s",
        display::tables(counts.len()),
        dialect.name(),
        started.elapsed().as_secs_f64()
    )
    .map_err(stdout_error)?;
    Ok(exit_code::OK)
}

/// `ehi-sync ddl`: the loader's `CREATE TABLE` and load statements for every finished table
/// under `output_dir`, from the manifests alone: no connection, no lock (the manifests are
/// replaced atomically, so a run going on is no obstacle). The state file, when readable, tells
/// the source database (SQLite's declared types are only affinities).
pub fn ddl(config: &Config, target: ddl::Target, out: &mut dyn Write) -> Result<i32> {
    let source = match state::load(&Disk, &config.state_path) {
        Ok(state) => state.map(|s| s.source.dialect),
        Err(e) => {
            log::warn!("{e}; the column types assume a source other than SQLite");
            None
        }
    };
    let tables = ddl::find_tables(&config.output_dir, &config.tables)?;
    write!(out, "{}", ddl::render(target, source, &tables)?).map_err(stdout_error)?;
    Ok(exit_code::OK)
}

/// `ehi-sync sync`: take the output folder's lock, resume an unfinished run (or discard it with
/// `restart`), print the plan, copy every table, print the run summary. Exit code 4 when any
/// table failed (the others are complete), 7 when stopped by a signal.
pub fn sync(config: &Config, restart: bool, out: &mut dyn Write) -> Result<i32> {
    let output_dir = &config.output_dir;
    Disk.create_dir_all(output_dir)
        .map_err(|source| Error::Io {
            context: "cannot create the output folder",
            path: output_dir.clone(),
            source,
        })?;
    let lock = RunLock::acquire(output_dir, &manifest::now_rfc3339())?;
    // A restarted sync process takes over the lock its crashed predecessor held for the same
    // supervisor; the supervisor has logged that crash already.
    if let Some(holder) = lock
        .taken_over_from
        .as_ref()
        .filter(|h| h.pid != lock::run_pid())
    {
        log::warn!(
            "taking over the lock of an earlier run that did not end cleanly (pid {} on {}, \
             started {})",
            holder.pid,
            holder.host,
            holder.started_at
        );
    }
    let state_path = config.state_path.clone();
    let previous = if restart {
        discard_unfinished_run(&state_path, output_dir, out)?
    } else {
        state::load(&Disk, &state_path)?
    };
    // Discovery survives a dropped connection or a failover like the reads do.
    let plan = RetryPolicy::of(config).run("reading the catalog", || {
        make_plan(config, previous.as_ref())
    })?;
    let previous = previous.filter(|p| !p.finished || same_source(p, &plan, config));
    if let Some(previous) = previous.as_ref().filter(|p| !p.finished) {
        previous.check_source(&state_path, &plan.source_identity(config.compression))?;
    }
    write!(out, "{}", plan.render()).map_err(stdout_error)?;
    if let Some(previous) = previous.as_ref().filter(|p| !p.finished) {
        write!(out, "{}", render_resume(previous)).map_err(stdout_error)?;
    }
    writeln!(out).map_err(stdout_error)?;
    out.flush().map_err(stdout_error)?;
    shutdown::install().map_err(Error::Internal)?;
    let source = Source::from_config(config);
    let summary = extract::run(config, &source, &plan, previous, &shutdown::STOP)?;
    drop(lock);
    write!(out, "{}", render_summary(&summary, output_dir)).map_err(stdout_error)?;
    let failed = summary
        .outcomes
        .iter()
        .any(|o| o.status != TableStatus::Done);
    Ok(if summary.interrupted {
        exit_code::INTERRUPTED
    } else if failed {
        exit_code::PARTIAL_FAILURE
    } else {
        exit_code::OK
    })
}

/// `--restart`: says what it deletes, removes the partial output of the unfinished run and
/// returns the state it leaves: the run marked finished, with the positions earlier loads
/// committed (tables whose load was discarded are loaded again, incrementally where they can
/// be). A damaged state file is removed (every table is then loaded in full).
fn discard_unfinished_run(
    state_path: &std::path::Path,
    output_dir: &std::path::Path,
    out: &mut dyn Write,
) -> Result<Option<RunState>> {
    let previous = match state::load(&Disk, state_path) {
        Ok(Some(previous)) => previous,
        Ok(None) => return Ok(None),
        Err(e) => {
            writeln!(out, "Discarding the unreadable state file: {e}").map_err(stdout_error)?;
            remove_state_file(state_path)?;
            return Ok(None);
        }
    };
    if previous.finished {
        return Ok(Some(previous));
    }
    let mut previous = previous;
    writeln!(
        out,
        "Discarding unfinished run {} (started {}):",
        previous.run_id, previous.started_at
    )
    .map_err(stdout_error)?;
    let run_id = previous.run_id.clone();
    for table in previous
        .tables
        .iter_mut()
        .filter(|t| t.status != TableStatus::Done)
    {
        if !table.files.is_empty() {
            writeln!(
                out,
                "  removing the partial output of {} ({} files, {} rows) in {}",
                table.table,
                table.files.len(),
                display::group_digits(table.rows),
                table.folder
            )
            .map_err(stdout_error)?;
        }
        crate::sink::discard_table_output(&Disk, output_dir, table, &run_id).map_err(|e| {
            Error::Io {
                context: "cannot remove",
                path: e.path,
                source: e.source,
            }
        })?;
        table.status = TableStatus::Pending;
        table.rows = 0;
        table.files.clear();
        table.partitions.clear();
        table.load = None;
        table.key_list_writing = None;
        table.error = None;
    }
    previous.finished = true;
    previous
        .save(&Disk, state_path)
        .map_err(|source| Error::Io {
            context: "cannot write the state file",
            path: state_path.to_owned(),
            source,
        })?;
    Ok(Some(previous))
}

fn remove_state_file(state_path: &std::path::Path) -> Result<()> {
    durable::remove_if_exists(&Disk, state_path).map_err(|source| Error::Io {
        context: "cannot remove the state file",
        path: state_path.to_owned(),
        source,
    })
}

/// A finished run's positions are only worth carrying over on the same database and format.
fn same_source(previous: &RunState, plan: &Plan, config: &Config) -> bool {
    let same = previous.source == plan.source_identity(config.compression);
    if !same {
        log::warn!(
            "the last run's state belongs to another database or output format; every table is \
             loaded in full"
        );
    }
    same
}

/// `ehi-sync status`: what the state file says, and whether a run holds the lock. Reads only;
/// safe while a run is going on.
pub fn status(config: &Config, json: bool, out: &mut dyn Write) -> Result<i32> {
    let state_path = config.state_path.clone();
    let Some(state) = state::load(&Disk, &state_path)? else {
        writeln!(
            out,
            "No run has written a state file yet ({} does not exist).",
            state_path.display()
        )
        .map_err(stdout_error)?;
        if let Some(restarts) = supervisor::restarts_of(&state_path, None) {
            write!(out, "{}", status::render_restarts(&restarts)).map_err(stdout_error)?;
        }
        return Ok(exit_code::OK);
    };
    let holder = lock::active_run(&config.output_dir);
    let run = match (&holder, state.finished) {
        (Some(_), _) => "running",
        (None, true) => "finished",
        (None, false) => "stopped before the end (the next sync resumes it)",
    };
    let mut report = status::Report::new(&state, run, holder);
    report.restarts = supervisor::restarts_of(&state_path, Some(&state.run_id));
    let text = if json {
        serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Internal(format!("the status could not be rendered: {e}")))?
            + "\n"
    } else {
        report.render()
    };
    write!(out, "{text}").map_err(stdout_error)?;
    Ok(exit_code::OK)
}

/// The part of the plan print-out that says what an unfinished run left and what is resumed.
fn render_resume(previous: &RunState) -> String {
    let count = |status| {
        previous
            .tables
            .iter()
            .filter(|t| t.status == status)
            .count()
    };
    let kept: u64 = previous
        .tables
        .iter()
        .filter(|t| t.status != TableStatus::Pending)
        .map(|t| t.rows)
        .sum();
    let mut text = format!(
        "\nResuming run {} (started {}, last checkpoint {}): {} done, {} in progress, \
         {} failed, {} not started; {} rows kept\n",
        previous.run_id,
        previous.started_at,
        previous.last_checkpoint_at.as_deref().unwrap_or("never"),
        display::tables(count(TableStatus::Done)),
        count(TableStatus::InProgress),
        count(TableStatus::Failed),
        count(TableStatus::Pending),
        display::group_digits(kept)
    );
    for table in previous
        .tables
        .iter()
        .filter(|t| matches!(t.status, TableStatus::InProgress | TableStatus::Failed))
    {
        let left = table
            .partitions
            .iter()
            .filter(|p| p.status != state::PartitionStatus::Done)
            .count();
        text.push_str(&format!(
            "  {}: {} rows kept, {} of {} partitions to read\n",
            table.table,
            display::group_digits(table.rows),
            left,
            table.partitions.len()
        ));
    }
    text
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
        .filter(|o| o.status == TableStatus::Failed)
        .collect();
    let unfinished = summary
        .outcomes
        .iter()
        .filter(|o| matches!(o.status, TableStatus::Pending | TableStatus::InProgress))
        .count();
    let rows: u64 = summary.outcomes.iter().map(|o| o.rows).sum();
    let rate = display::rows_per_second(rows, summary.seconds);
    let mut text = format!(
        "Run {} {} in {}: {} done, {} failed, {} rows ({} rows/s)\n",
        summary.run_id,
        if summary.interrupted {
            "stopped"
        } else {
            "finished"
        },
        display::duration(summary.seconds),
        display::tables(done.len()),
        failed.len(),
        display::group_digits(rows),
        display::group_digits(rate.round() as u64)
    );
    if unfinished > 0 {
        text.push_str(&format!(
            "  {} not finished: the next sync resumes them\n",
            display::tables(unfinished)
        ));
    }
    for outcome in &done {
        if outcome.difference != 0 && !outcome.expected_estimated {
            let read = i64::try_from(outcome.expected_rows)
                .unwrap_or(i64::MAX)
                .saturating_add(outcome.difference);
            let read = u64::try_from(read).unwrap_or(0);
            text.push_str(&format!(
                "  changed while read: {} ({} rows read, {} counted at its start){}\n",
                outcome.table,
                display::group_digits(read),
                display::group_digits(outcome.expected_rows),
                crate::sink::validation::uncounted_deletes(outcome.rows.saturating_sub(read))
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
        manifest::VALIDATION_FILE
    ));
    text
}

/// Connects, discovers the selected tables and builds their plan, with each table's load
/// decided from what `previous` (the last run's state) committed.
pub(crate) fn make_plan(config: &Config, previous: Option<&RunState>) -> Result<Plan> {
    let source = Source::from_config(config);
    let connection = source.connect()?;
    let dialect = source::detect_dialect(&source, &connection)?;
    text_check::run(
        &source,
        &connection,
        dialect,
        BufferPolicy::for_run(config, dialect),
    )?;
    let Discovery { tables, .. } =
        catalog::discover(&source, &connection, dialect, &config.tables)?;
    let versioning = session::sqlserver_row_versioning(&source, &connection, dialect)?;
    session::check_isolation(config.isolation, versioning.as_ref())?;
    let database = source::current_database(&source, &connection, dialect)?;
    let rates = MeasuredRates::from_output_dir(&config.output_dir);
    let change_tracking = change_tracking_tables(&source, &connection, dialect);
    if let SourceConfig::SqlServer(sql) = &config.source
        && connection_string::required_driver_version(sql).is_some()
    {
        let info = source::server_info(&source, source.connect()?)?;
        connection_string::check_driver_version(sql, &info.driver_version)?;
    }
    let mut plan = plan::build(config, dialect, &database, tables, rates);
    let previous =
        previous.filter(|p| !p.finished || p.source == plan.source_identity(config.compression));
    let snapshot_allowed = versioning.as_ref().is_some_and(|(state, _)| state == "ON");
    incremental::plan_loads(
        &mut plan,
        config,
        previous,
        &change_tracking,
        snapshot_allowed,
    )
    .map_err(|e| Error::Config(ConfigError::Other(e.to_string())))?;
    Ok(plan)
}

/// SQL Server tables with change tracking enabled (`schema.table`) and their minimum valid
/// versions. Without the permission to see them, every table falls back to a cursor or full.
fn change_tracking_tables(
    source: &Source,
    connection: &odbc_api::Connection<'_>,
    dialect: Dialect,
) -> HashMap<String, Option<i64>> {
    if dialect != Dialect::SqlServer {
        return HashMap::new();
    }
    match source::query_text(
        source,
        connection,
        "reading the change tracking tables",
        incremental::sql::CHANGE_TRACKING_TABLES,
    ) {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|row| {
                let mut row = row.into_iter();
                let schema = row.next().flatten()?;
                let table = row.next().flatten()?;
                let min_valid = row.next().flatten().and_then(|v| v.trim().parse().ok());
                Some((format!("{schema}.{table}"), min_valid))
            })
            .collect(),
        Err(e) => {
            log::warn!("{e}; change tracking is not used in this run");
            HashMap::new()
        }
    }
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::Io {
        context: "cannot write to",
        path: "standard output".into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tier;

    fn outcome(rows: u64, expected_rows: u64, difference: i64) -> TableOutcome {
        TableOutcome {
            table: "dbo.PAT_ENC".into(),
            tier: Tier::Small,
            status: TableStatus::Done,
            expected_rows,
            expected_estimated: false,
            rows,
            difference,
            error: None,
        }
    }

    fn summary(outcomes: Vec<TableOutcome>) -> String {
        let summary = RunSummary {
            run_id: "r1".into(),
            outcomes,
            seconds: 2.0,
            interrupted: false,
        };
        render_summary(&summary, std::path::Path::new("/out"))
    }

    #[test]
    fn key_scan_deletes_are_not_a_changed_count() {
        // 4 rows read as counted, 3 delete rows from the key scan: the table was read exactly.
        let text = summary(vec![outcome(7, 4, 0)]);
        assert!(!text.contains("changed while read"), "{text}");
        assert!(text.contains(": 1 table done, 0 failed, 7 rows"), "{text}");
    }

    #[test]
    fn a_changed_count_says_rows_read_and_deletes_apart() {
        let text = summary(vec![outcome(8, 4, 1), outcome(2, 2, 0)]);
        assert!(
            text.contains(
                "changed while read: dbo.PAT_ENC (5 rows read, 4 counted at its start) \
                 (and 3 deleted keys written as delete rows)"
            ),
            "{text}"
        );
        assert!(text.contains(": 2 tables done"), "{text}");
    }
}
