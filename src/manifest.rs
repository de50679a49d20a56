//! What a loader reads: the per-table `_manifest.json` (written last, so its presence means the
//! table is complete) and the run's `_validation.ndjson` records.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{Format, Tier};
use crate::sink::files::{self, Compression};
use crate::source::catalog::Column;
use crate::source::types::ValueKind;

pub const MANIFEST_FILE: &str = "_manifest.json";
pub use crate::plan::VALIDATION_FILE;

/// The manifest of one finished table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub table: String,
    pub schema: String,
    pub name: String,
    pub run_id: String,
    pub sync_type: String,
    pub format: Format,
    pub compression: Compression,
    pub started_at: String,
    pub finished_at: String,
    pub row_count: u64,
    pub primary_key: Vec<String>,
    pub columns: Vec<ManifestColumn>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestColumn {
    pub name: String,
    pub source_type: String,
    pub value_kind: ValueKind,
    pub length: Option<i64>,
    pub precision: Option<i64>,
    pub scale: Option<i64>,
    pub nullable: bool,
    pub key_position: Option<usize>,
}

impl ManifestColumn {
    pub fn new(column: &Column, value_kind: ValueKind) -> ManifestColumn {
        ManifestColumn {
            name: column.name.clone(),
            source_type: column.source_type.clone(),
            value_kind,
            length: column.length,
            precision: column.precision,
            scale: column.scale,
            nullable: column.nullable,
            key_position: column.key_position,
        }
    }
}

/// One part file: its name in the table folder, size, rows and SHA-256 of its bytes on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub rows: u64,
    pub sha256: String,
}

/// `CDK_VALIDATION`: expected against extracted rows for one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub run_id: String,
    pub table: String,
    pub tier: Tier,
    pub expected_rows: u64,
    pub extracted_rows: u64,
    /// Extracted minus expected: non-zero when rows changed while the table was read.
    pub difference: i64,
    /// `ok`, `count_changed` (rows were inserted or deleted during the read) or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub rows_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Writes the manifest into the table folder, atomically.
pub fn write_manifest(folder: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    files::write_atomically(&folder.join(MANIFEST_FILE), &json)
}

/// Appends a validation record to `output_dir/_validation.ndjson` and makes it durable.
pub fn append_validation(output_dir: &Path, record: &ValidationRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(output_dir.join(VALIDATION_FILE))?;
    file.write_all(&line)?;
    file.sync_all()
}

/// Now as RFC 3339 UTC with milliseconds, the timestamp format of every record.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
