//! Validation records: one line of `_validation.ndjson` per table and run, saying how the rows
//! written compare with the count taken at the table's start, and the summary line the log
//! shows for it. The file is cut back on resume to the length the state recorded, so a record
//! written after the last checkpoint is neither lost nor doubled.

use std::time::Instant;

use super::{TableOutcome, WriteError, Writer};
use crate::display::{group_digits, rows_per_second};
use crate::manifest::{self, ChangeCounts, ValidationRecord};
use crate::model::{Load, LoadKind, SyncMode};
use crate::state::TableState;

/// How the rows a table wrote compare with the count taken at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// The rows the count covers: rows read, and change tracking's deletes (its count includes
    /// them), but not a key scan's deletes.
    counted: u64,
    /// `counted` minus the count.
    difference: i64,
    /// The record's `status`.
    status: &'static str,
}

fn tally(state: &TableState, mode: &SyncMode, failed: bool) -> Tally {
    let expected = state.expected_rows.unwrap_or(0);
    let counted = match mode {
        SyncMode::ChangeTracking => state.rows,
        _ => state.rows - state.deleted.min(state.rows),
    };
    let difference =
        i64::try_from(counted).unwrap_or(i64::MAX) - i64::try_from(expected).unwrap_or(i64::MAX);
    // An estimate that differs says nothing about the copy: the catalog's count lags the
    // table (SQL Server's partition stats, PostgreSQL's reltuples after ANALYZE), so the
    // difference is reported and the table is not failed.
    let status = match (failed, difference, state.expected_estimated) {
        (true, _, _) => "failed",
        (false, 0, _) => "ok",
        (false, _, true) => "estimate_differs",
        (false, _, false) => "count_changed",
    };
    Tally {
        counted,
        difference,
        status,
    }
}

/// The log's line for a finished or failed table.
fn summary(
    name: &str,
    state: &TableState,
    load: &Load,
    tally: Tally,
    changes: ChangeCounts,
    seconds: f64,
    error: Option<&str>,
) -> String {
    let rate = rows_per_second(state.rows, seconds);
    let expected = state.expected_rows.unwrap_or(0);
    match (error, tally.status) {
        (Some(reason), _) => format!("{name} FAILED: {reason}"),
        (None, "ok") if load.kind == LoadKind::Incremental => format!(
            "{name} done (incremental): {} upserts, {} deletes in {seconds:.1}s",
            group_digits(changes.upserted),
            group_digits(changes.deleted),
        ),
        (None, "ok") => format!(
            "{name} done: {} rows in {seconds:.1}s ({} rows/s)",
            group_digits(state.rows),
            group_digits(rate.round() as u64)
        ),
        (None, "estimate_differs") => format!(
            "{name} done: {} rows in {seconds:.1}s; the catalog estimated {} (row_counts: \
             catalog, not an exact count)",
            group_digits(tally.counted),
            group_digits(expected)
        ),
        (None, _) => format!(
            "{name} done: {} rows read, but {} were counted when it started: rows changed while \
             it was read{}",
            group_digits(tally.counted),
            group_digits(expected),
            uncounted_deletes(state.rows - tally.counted)
        ),
    }
}

/// The delete rows a key scan wrote on top of the rows the count covers, for a summary line.
pub(crate) fn uncounted_deletes(deletes: u64) -> String {
    if deletes == 0 {
        String::new()
    } else {
        format!(
            " (and {} deleted keys written as delete rows)",
            group_digits(deletes)
        )
    }
}

impl Writer {
    /// Records in the state, once per run before its first validation record, how long
    /// `_validation.ndjson` is: a record written after the last checkpoint is then dropped on
    /// resume, not doubled (a resumed table writes its record again).
    pub(super) fn record_validation_start(&mut self) -> Result<(), WriteError> {
        if self.state.validation_bytes.is_some() {
            return Ok(());
        }
        let path = self.settings.output_dir.join(manifest::VALIDATION_FILE);
        let length = match self.settings.fs.len(&path) {
            Ok(length) => length,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(WriteError {
                    what: "validation record",
                    path,
                    source,
                });
            }
        };
        self.state.validation_bytes = Some(length);
        self.checkpoint()
    }

    /// Appends a validation record and makes it durable; the next checkpoint records the
    /// file's new length. The first record of a run cuts the file back to the length the
    /// state recorded, dropping a record written after the last checkpoint.
    fn append_validation(&mut self, record: &ValidationRecord) -> Result<(), WriteError> {
        let fs = self.settings.fs.as_ref();
        let path = self.settings.output_dir.join(manifest::VALIDATION_FILE);
        let fail = |source| WriteError {
            what: "validation record",
            path: path.clone(),
            source,
        };
        let line = manifest::validation_line(record).map_err(fail)?;
        if self.validation.is_none() {
            let length = self.state.validation_bytes.unwrap_or(0);
            let file = match fs.len(&path) {
                Ok(on_disk) if on_disk > length => fs.open_truncated(&path, length),
                Ok(_) => fs.open_append(&path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs
                    .open_append(&path)
                    .and_then(|file| fs.sync_dir(&self.settings.output_dir).map(|()| file)),
                Err(e) => Err(e),
            }
            .map_err(fail)?;
            self.validation = Some((file, length));
        }
        let Some((file, length)) = self.validation.as_mut() else {
            return Ok(());
        };
        file.write_all(&line).map_err(fail)?;
        file.sync().map_err(fail)?;
        *length += line.len() as u64;
        self.state.validation_bytes = Some(*length);
        Ok(())
    }

    /// Ends a table's part in the run: its summary line, its outcome and its validation record.
    pub(super) fn record_outcome(
        &mut self,
        table: usize,
        started: Instant,
        error: Option<String>,
    ) -> Result<(), WriteError> {
        let output = &self.tables[table];
        let state = &self.state.tables[table];
        let seconds = started.elapsed().as_secs_f64();
        let expected = state.expected_rows.unwrap_or(0);
        let load = state.load.clone().unwrap_or_else(Load::full_default);
        let changes = manifest::change_counts(state, &load);
        let tally = tally(state, &load.mode, error.is_some());
        let record = ValidationRecord {
            run_id: self.state.run_id.clone(),
            table: output.full_name(),
            tier: output.tier,
            expected_rows: expected,
            expected_rows_estimated: state.expected_estimated,
            extracted_rows: tally.counted,
            difference: tally.difference,
            status: tally.status.to_owned(),
            started_at: state.started_at.clone().unwrap_or_default(),
            finished_at: manifest::now_rfc3339(),
            duration_seconds: seconds,
            rows_per_second: rows_per_second(state.rows, seconds),
            error: error.clone(),
            sync_type: load.kind.name().to_owned(),
            changes,
            schema_changes: load.schema_changes.clone(),
        };
        let line = summary(
            &output.full_name(),
            state,
            &load,
            tally,
            changes,
            seconds,
            error.as_deref(),
        );
        self.progress.table_finished(table, &line);
        self.outcomes.push(TableOutcome {
            table: output.full_name(),
            tier: output.tier,
            status: state.status,
            expected_rows: expected,
            expected_estimated: state.expected_estimated,
            rows: state.rows,
            difference: tally.difference,
            error,
        });
        self.append_validation(&record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tier;

    fn table(rows: u64, deleted: u64, expected: u64, estimated: bool) -> TableState {
        let mut state = TableState::fresh("dbo.t".into(), Tier::Small, "t".into());
        state.rows = rows;
        state.deleted = deleted;
        state.expected_rows = Some(expected);
        state.expected_estimated = estimated;
        state
    }

    const FULL: SyncMode = SyncMode::Full { reload: true };

    #[test]
    fn the_rows_read_are_judged_against_the_count_taken_at_the_start() {
        let judged = |state: &TableState, mode: &SyncMode, failed| {
            let t = tally(state, mode, failed);
            (t.counted, t.difference, t.status)
        };
        assert_eq!(
            judged(&table(10, 0, 10, false), &FULL, false),
            (10, 0, "ok")
        );
        assert_eq!(
            judged(&table(12, 0, 10, false), &FULL, false),
            (12, 2, "count_changed")
        );
        assert_eq!(
            judged(&table(8, 0, 10, true), &FULL, false),
            (8, -2, "estimate_differs")
        );
        assert_eq!(
            judged(&table(3, 0, 10, false), &FULL, true),
            (3, -7, "failed")
        );
        // A key scan's delete rows are not in the count; change tracking's are.
        assert_eq!(
            judged(&table(13, 3, 10, false), &FULL, false),
            (10, 0, "ok")
        );
        assert_eq!(
            judged(&table(13, 3, 13, false), &SyncMode::ChangeTracking, false),
            (13, 0, "ok")
        );
    }

    #[test]
    fn the_summary_line_says_how_the_table_ended() {
        let full = Load::full_default();
        let line = |state: &TableState, load: &Load, error: Option<&str>| {
            let tally = tally(state, &load.mode, error.is_some());
            let changes = manifest::change_counts(state, load);
            summary("dbo.t", state, load, tally, changes, 2.0, error)
        };
        assert_eq!(
            line(&table(12_000, 0, 12_000, false), &full, None),
            "dbo.t done: 12,000 rows in 2.0s (6,000 rows/s)"
        );
        assert_eq!(
            line(&table(3, 0, 10, false), &full, Some("gave up")),
            "dbo.t FAILED: gave up"
        );
        assert_eq!(
            line(&table(8, 0, 10, true), &full, None),
            "dbo.t done: 8 rows in 2.0s; the catalog estimated 10 (row_counts: catalog, not an \
             exact count)"
        );
        assert_eq!(
            line(&table(14, 3, 10, false), &full, None),
            "dbo.t done: 11 rows read, but 10 were counted when it started: rows changed while \
             it was read (and 3 deleted keys written as delete rows)"
        );
        let incremental = Load {
            kind: LoadKind::Incremental,
            key_scan: true,
            ..Load::full_default()
        };
        assert_eq!(
            line(&table(13, 3, 10, false), &incremental, None),
            "dbo.t done (incremental): 10 upserts, 3 deletes in 2.0s"
        );
    }
}
