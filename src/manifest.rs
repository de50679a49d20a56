//! What a loader reads: the per-table `_manifest.json` (written last, so its presence means the
//! table is complete) and the run's `_validation.ndjson` records.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable::{self, FileOps};
use crate::model::{
    Compression, Format, Load, LoadKind, OP_COLUMN, ParquetType, SYNCED_AT_COLUMN, SchemaChange,
    SyncMode, Tier,
};
use crate::source::catalog::Column;
use crate::source::types::ValueKind;
use crate::state::TableState;

pub(crate) const MANIFEST_FILE: &str = "_manifest.json";
/// The file whose records a finished run leaves behind (one JSON object per table).
pub(crate) const VALIDATION_FILE: &str = "_validation.ndjson";

/// The manifest of a table folder, rewritten by every load that finishes. It lists every file
/// a loader must apply, in order: the last full load's files, then each incremental load's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) table: String,
    pub(crate) schema: String,
    pub(crate) name: String,
    /// The run that wrote this manifest.
    pub(crate) run_id: String,
    /// `full` (a loader replaces the table with `files`) or `incremental` (a loader applies the
    /// files of `run_id` to what it holds).
    pub(crate) sync_type: String,
    #[serde(default = "full_mode")]
    pub(crate) sync_mode: SyncMode,
    /// Why this load was full or incremental.
    #[serde(default)]
    pub(crate) reason: String,
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    /// Rows written by this run's load.
    pub(crate) row_count: u64,
    /// The position this load read after (incremental loads).
    #[serde(default)]
    pub(crate) position_from: Option<String>,
    /// The position the table's files are complete up to.
    #[serde(default)]
    pub(crate) position_to: Option<String>,
    #[serde(default)]
    pub(crate) changes: ChangeCounts,
    pub(crate) primary_key: Vec<String>,
    pub(crate) columns: Vec<ManifestColumn>,
    /// Appended to every row after `columns` (`_ehi_op`, `_ehi_synced_at`), or none.
    #[serde(default)]
    pub(crate) change_columns: Vec<String>,
    /// Columns added, dropped or retyped since the previous load.
    #[serde(default)]
    pub(crate) schema_changes: Vec<SchemaChange>,
    /// The loads whose files are listed, oldest first: the last full load, then incremental
    /// ones.
    #[serde(default)]
    pub(crate) loads: Vec<LoadRecord>,
    pub(crate) files: Vec<FileEntry>,
}

fn full_mode() -> SyncMode {
    SyncMode::Full { reload: true }
}

/// What one load changed. `inserted` and `updated` are known with change tracking (its own
/// count) and with a key scan (keys new since the previous list); a cursor alone cannot tell an
/// insert from an update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChangeCounts {
    pub(crate) upserted: u64,
    pub(crate) deleted: u64,
    pub(crate) inserted: Option<u64>,
    pub(crate) updated: Option<u64>,
}

/// One load of a table, as the manifest's history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoadRecord {
    pub(crate) run_id: String,
    pub(crate) sync_type: String,
    pub(crate) position_from: Option<String>,
    pub(crate) position_to: Option<String>,
    pub(crate) changes: ChangeCounts,
    pub(crate) schema_changes: Vec<SchemaChange>,
    /// Column names of this load's files, in order (change columns excluded).
    pub(crate) columns: Vec<String>,
    pub(crate) finished_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestColumn {
    pub(crate) name: String,
    pub(crate) source_type: String,
    pub(crate) value_kind: ValueKind,
    pub(crate) length: Option<i64>,
    pub(crate) precision: Option<i64>,
    pub(crate) scale: Option<i64>,
    pub(crate) nullable: bool,
    pub(crate) key_position: Option<usize>,
    /// The column's type in Parquet files (`"format": "parquet"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parquet_type: Option<ParquetType>,
    /// Why the column is Parquet text although its source type is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parquet_note: Option<String>,
}

impl ManifestColumn {
    pub(crate) fn new(column: &Column, value_kind: ValueKind) -> ManifestColumn {
        ManifestColumn {
            name: column.name.clone(),
            source_type: column.source_type.clone(),
            value_kind,
            length: column.length,
            precision: column.precision,
            scale: column.scale,
            nullable: column.nullable,
            key_position: column.key_position,
            parquet_type: None,
            parquet_note: None,
        }
    }

    /// Written to Parquet as `parquet_type`, with the reason when that is text.
    pub(crate) fn with_parquet(
        self,
        parquet_type: ParquetType,
        note: Option<&str>,
    ) -> ManifestColumn {
        ManifestColumn {
            parquet_type: Some(parquet_type),
            parquet_note: note.map(str::to_owned),
            ..self
        }
    }
}

/// One part file: its name in the table folder, size, rows and SHA-256 of its bytes on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    pub(crate) name: String,
    /// The run that wrote it.
    #[serde(default)]
    pub(crate) run_id: String,
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
    pub(crate) sha256: String,
}

/// `CDK_VALIDATION`: expected against extracted rows for one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ValidationRecord {
    pub(crate) run_id: String,
    pub(crate) table: String,
    pub(crate) tier: Tier,
    pub(crate) expected_rows: u64,
    /// `expected_rows` is the catalog's row count (`row_counts: catalog`), an estimate.
    #[serde(default)]
    pub(crate) expected_rows_estimated: bool,
    /// The rows the expected count covers: rows read, and change tracking's deletes (its count
    /// includes them). A key scan's delete rows are only in `changes.deleted`.
    pub(crate) extracted_rows: u64,
    /// Extracted minus expected: non-zero when rows changed while the table was read, or when
    /// the catalog's estimate was off.
    pub(crate) difference: i64,
    /// `ok`, `count_changed` (rows were inserted or deleted during the read),
    /// `estimate_differs` (the catalog's estimate was not the rows read: reported, not a
    /// failure) or `failed`.
    pub(crate) status: String,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    pub(crate) duration_seconds: f64,
    pub(crate) rows_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// `full`, `incremental` or `skip`.
    #[serde(default)]
    pub(crate) sync_type: String,
    #[serde(default)]
    pub(crate) changes: ChangeCounts,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) schema_changes: Vec<SchemaChange>,
}

/// What describes a table's output whatever the load: its name, columns and file format.
pub(crate) struct TableDescription<'a> {
    pub(crate) schema: &'a str,
    pub(crate) name: &'a str,
    pub(crate) primary_key: &'a [String],
    pub(crate) columns: &'a [ManifestColumn],
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    /// `_ehi_op` and `_ehi_synced_at` follow the columns in every row.
    pub(crate) change_columns: bool,
}

/// A load that finished: what it read, when, and what it wrote.
pub(crate) struct FinishedLoad<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) load: &'a Load,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    /// Rows written, delete rows included.
    pub(crate) rows: u64,
    pub(crate) changes: ChangeCounts,
}

impl Manifest {
    /// The manifest after `finished`: the loads before it (`history`, oldest first) and then
    /// it, the files of the earlier loads (`carried`, for an incremental load) and then its own
    /// (`written`), in the order a loader applies them.
    pub(crate) fn after_load(
        table: &TableDescription<'_>,
        finished: FinishedLoad<'_>,
        history: &[LoadRecord],
        carried: &[FileEntry],
        written: &[FileEntry],
    ) -> Manifest {
        let load = finished.load;
        let record = LoadRecord {
            run_id: finished.run_id.to_owned(),
            sync_type: load.kind.name().to_owned(),
            position_from: load.from.clone(),
            position_to: load.to.clone(),
            changes: finished.changes,
            schema_changes: load.schema_changes.clone(),
            columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            finished_at: finished.finished_at.clone(),
        };
        Manifest {
            table: format!("{}.{}", table.schema, table.name),
            schema: table.schema.to_owned(),
            name: table.name.to_owned(),
            run_id: finished.run_id.to_owned(),
            sync_type: load.kind.name().to_owned(),
            sync_mode: load.mode.clone(),
            reason: load.reason.clone(),
            format: table.format,
            compression: table.compression,
            started_at: finished.started_at,
            finished_at: finished.finished_at,
            row_count: finished.rows,
            position_from: load.from.clone(),
            position_to: load.to.clone(),
            changes: finished.changes,
            primary_key: table.primary_key.to_vec(),
            columns: table.columns.to_vec(),
            change_columns: if table.change_columns {
                vec![OP_COLUMN.to_owned(), SYNCED_AT_COLUMN.to_owned()]
            } else {
                Vec::new()
            },
            schema_changes: load.schema_changes.clone(),
            loads: history.iter().cloned().chain([record]).collect(),
            files: carried.iter().chain(written).cloned().collect(),
        }
    }
}

/// What one load changed, from the writer's tallies of the table.
pub(crate) fn change_counts(state: &TableState, load: &Load) -> ChangeCounts {
    let upserted = state.rows - state.deleted.min(state.rows);
    let (inserted, updated) = match (load.kind, &load.operations) {
        (LoadKind::Incremental, Some(ops)) => (Some(ops.inserts), Some(ops.updates)),
        (LoadKind::Incremental, None) if load.key_scan => (
            Some(state.new_keys.min(upserted)),
            Some(upserted - state.new_keys.min(upserted)),
        ),
        (LoadKind::Incremental, None) => (None, None),
        _ => (Some(upserted), Some(0)),
    };
    ChangeCounts {
        upserted,
        deleted: state.deleted,
        inserted,
        updated,
    }
}

/// Reads a table folder's manifest; `Ok(None)` when there is none.
pub(crate) fn read_manifest(fs: &dyn FileOps, folder: &Path) -> std::io::Result<Option<Manifest>> {
    match durable::read_if_exists(fs, &folder.join(MANIFEST_FILE))? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        None => Ok(None),
    }
}

/// Writes the manifest into the table folder, atomically.
pub(crate) fn write_manifest(
    fs: &dyn FileOps,
    folder: &Path,
    manifest: &Manifest,
) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    durable::write_atomically(fs, &folder.join(MANIFEST_FILE), &json)
}

/// A validation record as one line of `_validation.ndjson`.
pub(crate) fn validation_line(record: &ValidationRecord) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// Now as RFC 3339 UTC with milliseconds, the timestamp format of every record.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OperationCounts;

    fn column(name: &str) -> ManifestColumn {
        ManifestColumn {
            name: name.into(),
            source_type: "int".into(),
            value_kind: ValueKind::Integer,
            length: None,
            precision: None,
            scale: None,
            nullable: false,
            key_position: None,
            parquet_type: None,
            parquet_note: None,
        }
    }

    fn file(name: &str, run_id: &str) -> FileEntry {
        FileEntry {
            name: name.into(),
            run_id: run_id.into(),
            bytes: 10,
            rows: 2,
            sha256: "00".into(),
        }
    }

    fn state(rows: u64, deleted: u64, new_keys: u64) -> TableState {
        let mut state = TableState::fresh("dbo.t".into(), Tier::Small, "t".into());
        state.rows = rows;
        state.deleted = deleted;
        state.new_keys = new_keys;
        state
    }

    #[test]
    fn a_manifest_lists_the_earlier_loads_and_files_before_this_load_s() {
        let columns = [column("id"), column("v")];
        let table = TableDescription {
            schema: "dbo",
            name: "t",
            primary_key: &["id".to_owned()],
            columns: &columns,
            format: Format::Csv,
            compression: Compression::None,
            change_columns: true,
        };
        let load = Load {
            kind: LoadKind::Incremental,
            mode: SyncMode::ChangeTracking,
            reason: "changes since version 7".into(),
            from: Some("7".into()),
            to: Some("9".into()),
            ..Load::full_default()
        };
        let changes = ChangeCounts {
            upserted: 4,
            deleted: 1,
            inserted: Some(3),
            updated: Some(1),
        };
        let earlier = Manifest::after_load(
            &table,
            FinishedLoad {
                run_id: "run-1",
                load: &Load::full_default(),
                started_at: "t0".into(),
                finished_at: "t1".into(),
                rows: 2,
                changes: ChangeCounts::default(),
            },
            &[],
            &[],
            &[file("t-00001.csv", "run-1")],
        );
        let manifest = Manifest::after_load(
            &table,
            FinishedLoad {
                run_id: "run-2",
                load: &load,
                started_at: "t2".into(),
                finished_at: "t3".into(),
                rows: 5,
                changes,
            },
            &earlier.loads,
            &earlier.files,
            &[file("t-run-2-00001.csv", "run-2")],
        );
        assert_eq!(
            (manifest.table.as_str(), manifest.run_id.as_str()),
            ("dbo.t", "run-2")
        );
        assert_eq!(manifest.sync_type, "incremental");
        assert_eq!(manifest.sync_mode, SyncMode::ChangeTracking);
        assert_eq!(manifest.reason, "changes since version 7");
        assert_eq!(
            (manifest.started_at.as_str(), manifest.finished_at.as_str()),
            ("t2", "t3")
        );
        assert_eq!(manifest.row_count, 5);
        assert_eq!(
            (manifest.position_from, manifest.position_to),
            (Some("7".into()), Some("9".into()))
        );
        assert_eq!(manifest.changes, changes);
        assert_eq!(manifest.change_columns, [OP_COLUMN, SYNCED_AT_COLUMN]);
        assert_eq!(
            manifest.files,
            [
                file("t-00001.csv", "run-1"),
                file("t-run-2-00001.csv", "run-2")
            ]
        );
        let loads: Vec<(&str, &str, &str)> = manifest
            .loads
            .iter()
            .map(|l| {
                (
                    l.run_id.as_str(),
                    l.sync_type.as_str(),
                    l.finished_at.as_str(),
                )
            })
            .collect();
        assert_eq!(
            loads,
            [("run-1", "full", "t1"), ("run-2", "incremental", "t3")]
        );
        assert_eq!(manifest.loads[1].columns, ["id", "v"]);
        assert_eq!(manifest.loads[1].changes, changes);
        assert!(earlier.change_columns.len() == 2 && earlier.loads.len() == 1);
        let plain = TableDescription {
            change_columns: false,
            ..table
        };
        let first = Manifest::after_load(
            &plain,
            FinishedLoad {
                run_id: "run-1",
                load: &Load::full_default(),
                started_at: String::new(),
                finished_at: String::new(),
                rows: 0,
                changes: ChangeCounts::default(),
            },
            &[],
            &[],
            &[],
        );
        assert!(first.change_columns.is_empty());
    }

    #[test]
    fn a_load_s_changes_say_inserts_and_updates_only_where_they_are_known() {
        let counts = |state: &TableState, load: &Load| {
            let c = change_counts(state, load);
            (c.upserted, c.deleted, c.inserted, c.updated)
        };
        // A full load inserts every row it writes.
        assert_eq!(
            counts(&state(10, 0, 0), &Load::full_default()),
            (10, 0, Some(10), Some(0))
        );
        let incremental = Load {
            kind: LoadKind::Incremental,
            ..Load::full_default()
        };
        // A cursor alone cannot tell an insert from an update.
        assert_eq!(counts(&state(10, 0, 0), &incremental), (10, 0, None, None));
        // A key scan knows the new keys (never more than the upserts); delete rows are apart.
        let key_scan = Load {
            key_scan: true,
            ..incremental.clone()
        };
        assert_eq!(
            counts(&state(12, 2, 4), &key_scan),
            (10, 2, Some(4), Some(6))
        );
        assert_eq!(counts(&state(3, 0, 9), &key_scan), (3, 0, Some(3), Some(0)));
        // Change tracking counts its own operations.
        let change_tracking = Load {
            operations: Some(OperationCounts {
                inserts: 5,
                updates: 2,
                deletes: 1,
            }),
            ..incremental
        };
        assert_eq!(
            counts(&state(8, 1, 0), &change_tracking),
            (7, 1, Some(5), Some(2))
        );
    }
}
