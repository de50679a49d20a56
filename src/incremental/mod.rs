//! Incremental sync: after a table's first full load, later runs read only what changed.
//!
//! Each table gets a sync mode at plan time (SQL Server change tracking, a cursor column, or
//! full), and each run a load: full (first load, position lost, schema retyped, ...),
//! incremental from the committed position up to an upper bound captured when the table
//! starts, or skipped. The position moves only when the table's files are durable, in the
//! same state-file write that marks the table done, so a crash never advances it past rows
//! that were not written.

pub(crate) mod key_diff;
pub(crate) mod keys;
pub mod sql;

use std::collections::HashMap;

use crate::config::Config;
use crate::config::incremental::{DetectDeletes, TableIncremental};
use crate::durable::Disk;
use crate::manifest::{Manifest, ManifestColumn, read_manifest};
use crate::model::{
    ColumnChange, Compression, CursorKind, Dialect, Format, Load, LoadKind, OP_COLUMN, Position,
    SchemaChange, SyncMode,
};
use crate::plan::Plan;
use crate::source::catalog::Table;
use crate::source::types::ValueKind;
use crate::state::RunState;

impl SyncMode {
    pub(crate) fn describe(&self) -> String {
        match self {
            SyncMode::ChangeTracking => "change tracking".into(),
            SyncMode::Cursor { column, kind } => format!("cursor {column} ({})", kind.name()),
            SyncMode::Full { reload: true } => "full reload".into(),
            SyncMode::Full { reload: false } => "full once".into(),
        }
    }

    /// Two modes whose positions are interchangeable.
    fn same_position_space(&self, other: &SyncMode) -> bool {
        match (self, other) {
            (SyncMode::Full { .. }, SyncMode::Full { .. }) => true,
            _ => self == other,
        }
    }
}

impl Load {
    /// A plain full load (a state written before incremental sync existed has no load).
    pub(crate) fn full_default() -> Load {
        Load {
            kind: LoadKind::Full,
            mode: SyncMode::Full { reload: true },
            reason: "full load".into(),
            from: None,
            to: None,
            lookback_minutes: 0,
            key_scan: false,
            schema_changes: Vec::new(),
            operations: None,
            snapshot: false,
        }
    }

    /// The versions a change tracking read goes from and to.
    pub(crate) fn change_tracking_versions(&self) -> Result<(i64, i64), sql::InvalidPosition> {
        let version = |v: Option<&String>| {
            v.and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| sql::InvalidPosition {
                    column: "change tracking version".into(),
                    kind: "integer",
                })
        };
        Ok((version(self.from.as_ref())?, version(self.to.as_ref())?))
    }

    /// Makes an incremental load full when the changes it would read after `from` are gone:
    /// change tracking was cleaned up past it (`min_valid`, the table's
    /// `CHANGE_TRACKING_MIN_VALID_VERSION` read when the table starts). Returns whether it did.
    pub(crate) fn fall_back_if_cleaned_up(&mut self, min_valid: Option<i64>) -> bool {
        let from = self.from.as_deref().and_then(|v| v.parse::<i64>().ok());
        let (LoadKind::Incremental, Some(from), Some(min_valid)) = (self.kind, from, min_valid)
        else {
            return false;
        };
        if from >= min_valid {
            return false;
        }
        self.kind = LoadKind::Full;
        self.from = None;
        self.reason = format!(
            "change tracking was cleaned up past the saved version ({from} is older than the \
             minimum valid version {min_valid})"
        );
        true
    }

    /// An incremental change tracking read, which needs the op column and reports deletes.
    pub(crate) fn reads_changes(&self) -> bool {
        self.kind == LoadKind::Incremental && self.mode == SyncMode::ChangeTracking
    }
}

impl SchemaChange {
    pub(crate) fn describe(&self) -> String {
        match self.change {
            ColumnChange::Added => format!(
                "added {} ({})",
                self.column,
                self.after.as_deref().unwrap_or("?")
            ),
            ColumnChange::Dropped => format!("dropped {}", self.column),
            ColumnChange::Retyped => format!(
                "retyped {} ({} -> {})",
                self.column,
                self.before.as_deref().unwrap_or("?"),
                self.after.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// How the output of a table must look for new files to sit beside the previous ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputShape {
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    pub(crate) change_columns: bool,
}

/// What earlier runs left for a table.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Previous<'a> {
    pub(crate) position: Option<&'a Position>,
    /// The key list of the last finished load, if it scanned keys.
    pub(crate) key_list: Option<&'a str>,
    pub(crate) manifest: Option<&'a Manifest>,
    /// `CHANGE_TRACKING_MIN_VALID_VERSION` when change tracking is enabled on the table
    /// (`Some(None)` when the server reported no value).
    pub(crate) change_tracking: Option<Option<i64>>,
}

/// A configuration that cannot work for a table; stops the plan (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SyncConfigError(pub(crate) String);

/// Decides the mode and this run's load of `table`.
pub(crate) fn decide(
    dialect: Dialect,
    table: &Table,
    settings: &TableIncremental,
    shape: OutputShape,
    previous: Previous<'_>,
) -> Result<Load, SyncConfigError> {
    let name = table.full_name();
    let kinds: Vec<ValueKind> = table
        .columns
        .iter()
        .map(|c| ValueKind::of(dialect, c))
        .collect();
    let has_key = usable_key(dialect, table);
    let mode = sync_mode(dialect, table, &kinds, settings, previous, has_key)?;
    if !shape.change_columns && mode == SyncMode::ChangeTracking {
        return Err(SyncConfigError(format!(
            "{name} has change tracking, whose deletes need the {OP_COLUMN} column; set \
             incremental.change_columns to true"
        )));
    }
    // Change tracking reports deletes itself; a table without a cursor is read whole.
    let key_scan = settings.detect_deletes == DetectDeletes::KeyScan
        && has_key
        && matches!(mode, SyncMode::Cursor { .. });
    if settings.detect_deletes == DetectDeletes::KeyScan && key_scan && !shape.change_columns {
        return Err(SyncConfigError(format!(
            "{name}: detect_deletes \"key_scan\" writes delete rows, which need the {OP_COLUMN} \
             column; set incremental.change_columns to true or detect_deletes to \"none\""
        )));
    }
    let schema_changes = previous
        .manifest
        .map(|m| schema_changes(&m.columns, table, &kinds))
        .unwrap_or_default();
    let load = |kind, reason: String, from: Option<String>| Load {
        kind,
        mode: mode.clone(),
        reason,
        from,
        to: None,
        lookback_minutes: settings.lookback_minutes,
        key_scan,
        schema_changes: schema_changes.clone(),
        operations: None,
        snapshot: false,
    };
    let full = |reason: String| Ok(load(LoadKind::Full, reason, None));
    let (Some(position), Some(manifest)) = (previous.position, previous.manifest) else {
        return full(match previous.position {
            None => "first load".into(),
            Some(_) => "the previous load's manifest is missing".into(),
        });
    };
    if !position.mode.same_position_space(&mode) {
        return full(format!(
            "the sync mode changed from {} to {}",
            position.mode.describe(),
            mode.describe()
        ));
    }
    if manifest.format != shape.format
        || manifest.compression != shape.compression
        || manifest.change_columns.is_empty() == shape.change_columns
    {
        return full("the output format, compression or change_columns changed".into());
    }
    let retyped: Vec<&SchemaChange> = schema_changes
        .iter()
        .filter(|c| c.change == ColumnChange::Retyped)
        .collect();
    if !retyped.is_empty() && mode != (SyncMode::Full { reload: false }) {
        return full(format!(
            "column types changed: {}",
            retyped
                .iter()
                .map(|c| c.describe())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match &mode {
        SyncMode::Full { reload: true } => full("no change tracking and no cursor column".into()),
        SyncMode::Full { reload: false } => Ok(load(
            LoadKind::Skip,
            "loaded before; incremental.full_reload is false".into(),
            None,
        )),
        SyncMode::ChangeTracking => {
            let saved = position
                .value
                .as_deref()
                .and_then(|v| v.parse::<i64>().ok());
            let min_valid = previous.change_tracking.flatten();
            match (saved, min_valid) {
                (None, _) => full("no change tracking version was saved".into()),
                (Some(saved), Some(min)) if saved < min => full(format!(
                    "change tracking was cleaned up past the saved version ({saved} is older \
                     than the minimum valid version {min})"
                )),
                (Some(saved), _) => Ok(load(
                    LoadKind::Incremental,
                    "changes since the last run".into(),
                    Some(saved.to_string()),
                )),
            }
        }
        SyncMode::Cursor { .. } => {
            if key_scan && previous.key_list.is_none() {
                return full(
                    "detect_deletes is \"key_scan\" but the previous load saved no key list".into(),
                );
            }
            Ok(load(
                LoadKind::Incremental,
                "changes since the last run".into(),
                position.value.clone(),
            ))
        }
    }
}

/// Whether the table's primary key can be a resume point and a keyset bound: every key column
/// has a key type (see `source::key::KeyType`).
pub(crate) fn usable_key(dialect: Dialect, table: &Table) -> bool {
    crate::plan::partition::ReadChoice::of(dialect, table).mode != crate::model::ReadMode::Stream
}

fn sync_mode(
    dialect: Dialect,
    table: &Table,
    kinds: &[ValueKind],
    settings: &TableIncremental,
    previous: Previous<'_>,
    has_key: bool,
) -> Result<SyncMode, SyncConfigError> {
    if previous.change_tracking.is_some() && has_key {
        return Ok(SyncMode::ChangeTracking);
    }
    let find = |name: &str| {
        table
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    };
    let cursor_kind = |i: usize| match (dialect, table.columns[i].source_type.as_str(), kinds[i]) {
        (Dialect::SqlServer, t, _)
            if t.eq_ignore_ascii_case("timestamp") || t.eq_ignore_ascii_case("rowversion") =>
        {
            Some(CursorKind::Rowversion)
        }
        (_, _, ValueKind::Timestamp) => Some(CursorKind::Timestamp),
        (_, _, ValueKind::Integer) => Some(CursorKind::Integer),
        _ => None,
    };
    let cursor = |i: usize, kind| SyncMode::Cursor {
        column: table.columns[i].name.clone(),
        kind,
    };
    if let Some(configured) = &settings.cursor_column {
        let name = table.full_name();
        let Some(i) = find(configured) else {
            return Err(SyncConfigError(format!(
                "incremental.tables.{name}.cursor_column names '{configured}', which {name} \
                 does not have; name one of its columns or remove the setting"
            )));
        };
        return match cursor_kind(i) {
            Some(kind) => Ok(cursor(i, kind)),
            None => Err(SyncConfigError(format!(
                "incremental.tables.{name}.cursor_column '{configured}' has type {}; a cursor \
                 must be a date/time, an integer or a rowversion column",
                table.columns[i].source_type
            ))),
        };
    }
    if let Some(i) =
        (0..table.columns.len()).find(|&i| matches!(cursor_kind(i), Some(CursorKind::Rowversion)))
    {
        return Ok(cursor(i, CursorKind::Rowversion));
    }
    for configured in &settings.cursor_columns {
        if let Some(i) = find(configured) {
            match cursor_kind(i) {
                Some(kind) => return Ok(cursor(i, kind)),
                None => log::warn!(
                    "{}: cursor column '{}' has type {}, which cannot be a cursor; trying the \
                     next one",
                    table.full_name(),
                    table.columns[i].name,
                    table.columns[i].source_type
                ),
            }
        }
    }
    Ok(SyncMode::Full {
        reload: settings.full_reload,
    })
}

/// Columns added, dropped or retyped since the previous load.
pub(crate) fn schema_changes(
    before: &[ManifestColumn],
    table: &Table,
    kinds: &[ValueKind],
) -> Vec<SchemaChange> {
    let mut changes = Vec::new();
    for old in before {
        match table.columns.iter().position(|c| c.name == old.name) {
            None => changes.push(SchemaChange {
                column: old.name.clone(),
                change: ColumnChange::Dropped,
                before: Some(old.source_type.clone()),
                after: None,
            }),
            Some(i) => {
                let now = &table.columns[i];
                let same = now.source_type.eq_ignore_ascii_case(&old.source_type)
                    && kinds[i] == old.value_kind
                    && now.precision == old.precision
                    && now.scale == old.scale;
                if !same {
                    changes.push(SchemaChange {
                        column: old.name.clone(),
                        change: ColumnChange::Retyped,
                        before: Some(type_text(&old.source_type, old.precision, old.scale)),
                        after: Some(type_text(&now.source_type, now.precision, now.scale)),
                    });
                }
            }
        }
    }
    for column in &table.columns {
        if !before.iter().any(|old| old.name == column.name) {
            changes.push(SchemaChange {
                column: column.name.clone(),
                change: ColumnChange::Added,
                before: None,
                after: Some(column.source_type.clone()),
            });
        }
    }
    changes
}

fn type_text(source_type: &str, precision: Option<i64>, scale: Option<i64>) -> String {
    match (precision, scale) {
        (Some(p), Some(s)) if s > 0 => format!("{source_type}({p},{s})"),
        _ => source_type.to_owned(),
    }
}

/// Decides every table's load for the plan, from what `previous` (the last run's state)
/// committed and the manifests in the output folder. `change_tracking` maps `schema.table` (as
/// discovered) to its minimum valid version, for the tables with change tracking enabled;
/// `snapshot_allowed` says whether the database allows SNAPSHOT isolation for their reads.
pub(crate) fn plan_loads(
    plan: &mut Plan,
    config: &Config,
    previous: Option<&RunState>,
    change_tracking: &HashMap<String, Option<i64>>,
    snapshot_allowed: bool,
) -> Result<(), SyncConfigError> {
    let shape = OutputShape {
        format: config.format,
        compression: config.compression,
        change_columns: config.incremental.change_columns,
    };
    let names: Vec<(String, String)> = plan
        .tables()
        .map(|(_, t)| (t.schema.clone(), t.name.clone()))
        .collect();
    for name in config.incremental.unmatched_overrides(&names) {
        plan.warnings.push(format!(
            "incremental.tables.{name} names no table of this run (check the name, or the \
             include/exclude patterns)"
        ));
    }
    let dialect = plan.dialect;
    let mut warnings = Vec::new();
    for tier in &mut plan.tiers {
        for table in &mut tier.tables {
            let name = table.full_name();
            let earlier = previous.and_then(|p| p.table(&name));
            let manifest = match earlier {
                Some(t) => match read_manifest(&Disk, &config.output_dir.join(&t.folder)) {
                    Ok(manifest) => manifest,
                    Err(e) => {
                        warnings.push(format!(
                            "{name}: the previous manifest cannot be read ({e}); the table is \
                             reloaded in full"
                        ));
                        None
                    }
                },
                None => None,
            };
            let settings = config.incremental.for_table(&table.schema, &table.name);
            let previous = Previous {
                position: earlier.and_then(|t| t.position.as_ref()),
                key_list: earlier.and_then(|t| t.key_list.as_deref()),
                manifest: manifest.as_ref(),
                change_tracking: change_tracking.get(&name).copied(),
            };
            table.load = decide(dialect, &table.table, &settings, shape, previous)?;
            table.load.snapshot = snapshot_allowed && table.load.mode == SyncMode::ChangeTracking;
            if settings.detect_deletes == DetectDeletes::KeyScan
                && !table.load.key_scan
                && matches!(table.load.mode, SyncMode::Cursor { .. })
            {
                warnings.push(format!(
                    "{name}: detect_deletes \"key_scan\" needs a primary key; deletes in this \
                     table are not detected"
                ));
            }
        }
    }
    plan.warnings.append(&mut warnings);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CursorKind, Load, LoadKind, Position, SyncMode};
    use crate::source::catalog::Column;

    fn patient() -> Table {
        Table {
            schema: "dbo".into(),
            name: "PATIENT".into(),
            columns: vec![
                Column::for_test("PAT_ID", "varchar", Some(1)),
                Column::for_test("UPDATE_DATE", "datetime", None),
                Column::for_test("RV", "timestamp", None),
                Column::for_test("NAME", "nvarchar", None),
            ],
            primary_key: vec!["PAT_ID".into()],
            rows: 10,
            rows_exact: true,
        }
    }

    fn settings() -> TableIncremental {
        TableIncremental {
            cursor_columns: vec!["_LastUpdatedInstant".into(), "UPDATE_DATE".into()],
            cursor_column: None,
            lookback_minutes: 15,
            detect_deletes: DetectDeletes::None,
            full_reload: true,
        }
    }

    const SHAPE: OutputShape = OutputShape {
        format: Format::Csv,
        compression: Compression::None,
        change_columns: true,
    };

    fn manifest_of(table: &Table) -> Manifest {
        let columns: Vec<serde_json::Value> = table
            .columns
            .iter()
            .map(|c| {
                serde_json::to_value(ManifestColumn::new(c, ValueKind::of(Dialect::SqlServer, c)))
                    .unwrap()
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "table": "dbo.PATIENT", "schema": "dbo", "name": "PATIENT", "run_id": "r1",
            "sync_type": "full", "format": "csv", "compression": "none",
            "started_at": "", "finished_at": "", "row_count": 0, "primary_key": ["PAT_ID"],
            "columns": columns, "change_columns": ["_ehi_op", "_ehi_synced_at"], "files": []
        }))
        .unwrap()
    }

    fn decide_with(
        table: &Table,
        settings: &TableIncremental,
        position: Option<Position>,
        change_tracking: Option<Option<i64>>,
    ) -> Result<Load, SyncConfigError> {
        let manifest = manifest_of(&patient());
        decide(
            Dialect::SqlServer,
            table,
            settings,
            SHAPE,
            Previous {
                position: position.as_ref(),
                key_list: Some("_keys-r1.bin"),
                manifest: Some(&manifest),
                change_tracking,
            },
        )
    }

    fn at(mode: SyncMode, value: &str) -> Option<Position> {
        Some(Position {
            mode,
            value: Some(value.into()),
        })
    }

    #[test]
    fn first_load_is_full_and_rowversion_wins_over_the_cursor_list() {
        let load = decide_with(&patient(), &settings(), None, None).unwrap();
        assert_eq!(load.kind, LoadKind::Full);
        assert_eq!(load.reason, "first load");
        assert_eq!(
            load.mode,
            SyncMode::Cursor {
                column: "RV".into(),
                kind: CursorKind::Rowversion
            }
        );
    }

    #[test]
    fn cursor_column_from_the_list_and_incremental_from_the_position() {
        let mut table = patient();
        table.columns.remove(2);
        let mode = SyncMode::Cursor {
            column: "UPDATE_DATE".into(),
            kind: CursorKind::Timestamp,
        };
        let load = decide_with(
            &table,
            &settings(),
            at(mode.clone(), "2026-11-24 01:00:00.000"),
            None,
        )
        .unwrap();
        assert_eq!(load.kind, LoadKind::Incremental);
        assert_eq!(load.mode, mode);
        assert_eq!(load.from.as_deref(), Some("2026-11-24 01:00:00.000"));
        assert_eq!(load.lookback_minutes, 15);
        assert_eq!(load.schema_changes.len(), 1, "RV was dropped");
    }

    #[test]
    fn change_tracking_falls_back_to_full_when_the_history_was_cleaned_up() {
        let saved = at(SyncMode::ChangeTracking, "41");
        let load = decide_with(&patient(), &settings(), saved.clone(), Some(Some(57))).unwrap();
        assert_eq!(load.kind, LoadKind::Full);
        assert_eq!(
            load.reason,
            "change tracking was cleaned up past the saved version (41 is older than the \
             minimum valid version 57)"
        );
        let load = decide_with(&patient(), &settings(), saved, Some(Some(41))).unwrap();
        assert_eq!(load.kind, LoadKind::Incremental);
        assert_eq!(load.from.as_deref(), Some("41"));
        assert!(!load.key_scan, "change tracking reports deletes itself");
    }

    #[test]
    fn a_changed_mode_or_retyped_column_reloads() {
        let cursor = SyncMode::Cursor {
            column: "RV".into(),
            kind: CursorKind::Rowversion,
        };
        let load = decide_with(
            &patient(),
            &settings(),
            at(cursor.clone(), "0x01"),
            Some(None),
        )
        .unwrap();
        assert_eq!(load.kind, LoadKind::Full);
        assert!(
            load.reason.starts_with("the sync mode changed"),
            "{}",
            load.reason
        );
        let mut retyped = patient();
        retyped.columns[3].source_type = "varchar".into();
        let load = decide_with(&retyped, &settings(), at(cursor, "0x01"), None).unwrap();
        assert_eq!(load.kind, LoadKind::Full);
        assert_eq!(
            load.reason,
            "column types changed: retyped NAME (nvarchar -> varchar)"
        );
    }

    #[test]
    fn full_once_is_skipped_and_a_missing_cursor_column_is_an_error() {
        let mut table = patient();
        table.columns.truncate(1);
        table
            .columns
            .push(Column::for_test("NAME", "nvarchar", None));
        let mut once = settings();
        once.full_reload = false;
        let load = decide_with(
            &table,
            &once,
            at(SyncMode::Full { reload: false }, "x"),
            None,
        )
        .unwrap();
        assert_eq!(load.kind, LoadKind::Skip);
        let mut explicit = settings();
        explicit.cursor_column = Some("CHANGED_AT".into());
        let error = decide_with(&table, &explicit, None, None).unwrap_err();
        assert_eq!(
            error.0,
            "incremental.tables.dbo.PATIENT.cursor_column names 'CHANGED_AT', which \
             dbo.PATIENT does not have; name one of its columns or remove the setting"
        );
    }

    #[test]
    fn key_scan_needs_the_previous_key_list() {
        let mut scan = settings();
        scan.detect_deletes = DetectDeletes::KeyScan;
        let mode = SyncMode::Cursor {
            column: "RV".into(),
            kind: CursorKind::Rowversion,
        };
        let manifest = manifest_of(&patient());
        let position = at(mode, "0x01");
        let load = decide(
            Dialect::SqlServer,
            &patient(),
            &scan,
            SHAPE,
            Previous {
                position: position.as_ref(),
                key_list: None,
                manifest: Some(&manifest),
                change_tracking: None,
            },
        )
        .unwrap();
        assert_eq!(load.kind, LoadKind::Full);
        assert!(load.key_scan);
        assert!(load.reason.contains("no key list"), "{}", load.reason);
    }

    #[test]
    fn a_change_tracking_load_falls_back_to_full_only_when_its_changes_were_cleaned_up() {
        let incremental = |from: &str| Load {
            kind: LoadKind::Incremental,
            mode: SyncMode::ChangeTracking,
            from: Some(from.into()),
            ..Load::full_default()
        };
        let mut load = incremental("10");
        assert!(
            !load.fall_back_if_cleaned_up(Some(10)),
            "version 10 is still valid"
        );
        assert!(!load.fall_back_if_cleaned_up(None), "no minimum known");
        assert_eq!(load, incremental("10"));
        assert!(load.fall_back_if_cleaned_up(Some(11)));
        assert_eq!(load.kind, LoadKind::Full);
        assert_eq!(load.from, None);
        assert_eq!(
            load.reason,
            "change tracking was cleaned up past the saved version (10 is older than the \
             minimum valid version 11)"
        );
        let mut full = Load::full_default();
        assert!(
            !full.fall_back_if_cleaned_up(Some(11)),
            "a full load has nothing to lose"
        );
        assert_eq!(full, Load::full_default());
    }
}
