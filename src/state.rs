//! The checkpoint file `_state.json`: what is durably written, per table and partition.
//!
//! Only the writer thread writes it, and only after the data files it describes are fsynced
//! (DESIGN.md "One writer"). A crash therefore leaves a state that never claims more than the
//! disk holds; resume truncates files back to the lengths recorded here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{Format, Tier};
use crate::extract::partition::PartitionSpec;
use crate::extract::select::KeyValue;
use crate::sink::files::{self, Compression};
use crate::source::Dialect;

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
    /// Rows durably written.
    pub rows: u64,
    pub files: Vec<CommittedFile>,
    pub partitions: Vec<PartitionState>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

impl RunState {
    /// Writes the state atomically: temporary file, fsync, rename, fsync of the folder.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        files::write_atomically(path, &json)
    }
}
