//! The checkpoint file `_state.json`: what is durably written, per table and partition.
//!
//! Only the writer thread writes it, and only after the data files it describes are fsynced
//! (ARCHITECTURE.md, "Durability"). A crash therefore leaves a state that never claims more
//! than the disk holds; resume truncates files back to the lengths recorded here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable::{self, FileOps};
use crate::error::StateError;
use crate::model::Compression;
use crate::model::Dialect;
use crate::model::KeyValue;
use crate::model::LoadKind;
use crate::model::PartitionSpec;
use crate::model::ReadMode;
use crate::model::{Format, Tier};
use crate::model::{Load, Position};

pub const STATE_FILE: &str = "_state.json";
/// Bumped when the layout changes; a state of another version is refused, never guessed at.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub version: u32,
    pub run_id: String,
    pub started_at: String,
    pub last_checkpoint_at: Option<String>,
    pub finished: bool,
    pub source: SourceIdentity,
    /// In plan order.
    pub tables: Vec<TableState>,
    /// Length of `_validation.ndjson` this run's records have reached. A resumed run cuts the
    /// file back to it, so a record written before a crash is neither lost nor doubled.
    #[serde(default)]
    pub validation_bytes: Option<u64>,
}

/// What the output belongs to; a resume against another database or format is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    pub dialect: Dialect,
    pub database: String,
    pub format: Format,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Pending,
    InProgress,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableState {
    /// `schema.table`.
    pub table: String,
    pub tier: Tier,
    /// Folder under `output_dir`.
    pub folder: String,
    pub status: TableStatus,
    pub expected_rows: Option<u64>,
    /// `expected_rows` is the catalog's estimate (`row_counts: catalog`), not a count.
    #[serde(default)]
    pub expected_estimated: bool,
    /// Rows durably written.
    pub rows: u64,
    pub files: Vec<CommittedFile>,
    pub partitions: Vec<PartitionState>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What this run reads of the table (full or incremental, with its range).
    #[serde(default)]
    pub load: Option<Load>,
    /// What the table's files are complete up to. Carried from run to run; moved only in the
    /// checkpoint that marks the table done.
    #[serde(default)]
    pub position: Option<Position>,
    /// The key list of the last finished load (a file in the table folder), for `key_scan`.
    #[serde(default)]
    pub key_list: Option<String>,
    /// This run's key list and its durable length.
    #[serde(default)]
    pub key_list_writing: Option<CommittedFile>,
    /// Delete rows durably written by this run's load.
    #[serde(default)]
    pub deleted: u64,
    /// Keys of this run's key scan that the previous list did not hold.
    #[serde(default)]
    pub new_keys: u64,
}

impl TableState {
    /// This run reads the table incrementally: earlier loads' files and manifest stay.
    pub fn incremental_load(&self) -> bool {
        self.load
            .as_ref()
            .is_some_and(|l| l.kind == crate::model::LoadKind::Incremental)
    }

    /// A table not yet started in this run, keeping what earlier runs committed.
    pub fn fresh(table: String, tier: Tier, folder: String) -> TableState {
        TableState {
            table,
            tier,
            folder,
            status: TableStatus::Pending,
            expected_rows: None,
            expected_estimated: false,
            rows: 0,
            files: Vec::new(),
            partitions: Vec::new(),
            started_at: None,
            finished_at: None,
            error: None,
            load: None,
            position: None,
            key_list: None,
            key_list_writing: None,
            deleted: 0,
            new_keys: 0,
        }
    }
}

/// A part file and how much of it is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    pub name: String,
    pub bytes: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionStatus {
    Pending,
    InProgress,
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionState {
    pub spec: PartitionSpec,
    pub status: PartitionStatus,
    /// The last key durably written; the partition resumes after it.
    pub last_key: Option<Vec<KeyValue>>,
}

impl SourceIdentity {
    fn describe(&self) -> String {
        format!(
            "{} database '{}', {} files, {} compression",
            self.dialect.name(),
            self.database,
            self.format.name(),
            self.compression.name()
        )
    }
}

/// Reads the state file; `Ok(None)` when there is none. A state that cannot be trusted is an
/// error, never silently replaced.
pub fn load(fs: &dyn FileOps, path: &Path) -> Result<Option<RunState>, StateError> {
    let bytes = match durable::read_if_exists(fs, path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.to_owned(),
            problem: format!("not valid JSON: {e}"),
        })?;
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(version) if version == u64::from(STATE_VERSION) => {}
        Some(found) => {
            return Err(StateError::Version {
                reads: STATE_VERSION,
                path: path.to_owned(),
                found,
            });
        }
        None => {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                problem: "no version number".into(),
            });
        }
    }
    let state: RunState = serde_json::from_value(value).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    Ok(Some(state))
}

impl RunState {
    /// Refuses to resume a run of another database or output format.
    pub fn check_source(&self, path: &Path, ours: &SourceIdentity) -> Result<(), StateError> {
        if &self.source == ours {
            Ok(())
        } else {
            Err(StateError::OtherSource {
                path: path.to_owned(),
                theirs: self.source.describe(),
                ours: ours.describe(),
            })
        }
    }

    /// The state of table `name` (`schema.table`).
    pub fn table(&self, name: &str) -> Option<&TableState> {
        self.tables.iter().find(|t| t.table == name)
    }

    /// Writes the state atomically: temporary file, fsync, rename, fsync of the folder.
    pub fn save(&self, fs: &dyn FileOps, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        durable::write_atomically(fs, path, &json)
    }
}

/// What a run does with each table of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Count, split and read it from the start.
    Fresh,
    /// Carry on from the checkpoint of an interrupted run.
    Resume,
    /// Finished by the interrupted run.
    Done,
    /// Loaded by an earlier run and not read again (`full_reload: false`).
    Skip,
}

/// How a table starts in this run, from what the state file holds of it (`carried`): finished
/// or resumed after its checkpoint when the run is unfinished, else read from the start as
/// `fresh`, keeping what earlier loads committed (position, key list).
pub(crate) fn table_start(
    carried: Option<TableState>,
    mut fresh: TableState,
    unfinished: bool,
    load: LoadKind,
    mode: ReadMode,
) -> (TableState, Start) {
    match carried {
        Some(t) if unfinished && t.status == TableStatus::Done => (t, Start::Done),
        Some(t)
            if unfinished
                && matches!(t.status, TableStatus::InProgress | TableStatus::Failed)
                && !t.partitions.is_empty()
                && mode != ReadMode::Stream =>
        {
            (t, Start::Resume)
        }
        Some(t) if load == LoadKind::Skip => (t, Start::Skip),
        // Not started, or without a key to resume after: read it again from the start.
        Some(t) => {
            fresh.position = t.position;
            fresh.key_list = t.key_list;
            (fresh, Start::Fresh)
        }
        None => (fresh, Start::Fresh),
    }
}
