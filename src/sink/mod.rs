//! The one writer thread: it owns every output file and the state file.
//!
//! Workers send encoded chunks through a tier's bounded channel; the writer appends them to the
//! table's current part file, starts a new part past `part_file_max_bytes`, and at the tier's
//! checkpoint interval makes the data durable (fsync) before it records it in the state file. A
//! finished table gets its `_manifest.json`, written last, and a validation record.

pub mod encode;
pub mod files;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::Receiver;
use sha2::{Digest, Sha256};

use crate::config::{Format, Tier};
use crate::extract::partition::PartitionSpec;
use crate::extract::select::KeyValue;
use crate::manifest::{self, FileEntry, Manifest, ManifestColumn, ValidationRecord};
use crate::plan::group_digits;
use crate::progress::Progress;
use crate::state::{CommittedFile, PartitionState, PartitionStatus, RunState, TableStatus};
use files::Compression;

/// What workers tell the writer.
pub enum Message {
    /// A table's exact count is taken and its partitions are known.
    TableStarted {
        table: usize,
        expected_rows: u64,
        partitions: Vec<PartitionSpec>,
    },
    Chunk(Chunk),
    PartitionDone {
        table: usize,
        partition: usize,
    },
    /// A table without a key must be read again from its first row: discard what it wrote.
    RestartTable {
        table: usize,
    },
    /// The table cannot be copied in this run; its files stay as checkpointed.
    TableFailed {
        table: usize,
        reason: String,
    },
    /// Every worker of the tier has finished: the writer moves on to the next tier's channel.
    TierDone,
}

/// Encoded (and possibly compressed) rows of one partition, in key order.
pub struct Chunk {
    pub table: usize,
    pub partition: usize,
    pub rows: u64,
    pub bytes: Vec<u8>,
    /// Key of the last row in `bytes`; `None` for tables without a key.
    pub last_key: Option<Vec<KeyValue>>,
}

/// What the writer knows of a table before any row arrives.
pub struct TableOutput {
    pub schema: String,
    pub name: String,
    pub tier: Tier,
    /// Folder under `output_dir`, unique without regard to case.
    pub folder: String,
    /// 1-based position in the run, for "Processing table 5/265".
    pub position: usize,
    pub checkpoint_interval: u64,
    /// The header every part file starts with, already compressed.
    pub header: Vec<u8>,
    pub columns: Vec<ManifestColumn>,
    pub primary_key: Vec<String>,
}

impl TableOutput {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

pub struct WriterSettings {
    pub output_dir: PathBuf,
    pub state_path: PathBuf,
    pub format: Format,
    pub compression: Compression,
    pub part_file_max_bytes: u64,
}

/// How one table ended.
#[derive(Debug, Clone)]
pub struct TableOutcome {
    pub table: String,
    pub tier: Tier,
    pub status: TableStatus,
    pub expected_rows: u64,
    pub rows: u64,
    pub seconds: f64,
    pub error: Option<String>,
}

/// A failure of the writer itself (disk full, permissions): it stops the run.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {what} '{path}': {source}")]
pub struct WriteError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

struct OpenPart {
    file: File,
    name: String,
    bytes: u64,
    rows: u64,
    hasher: Sha256,
}

struct OpenTable {
    folder: PathBuf,
    part: Option<OpenPart>,
    closed: Vec<FileEntry>,
    started: Instant,
    partitions_left: usize,
}

pub struct Writer {
    settings: WriterSettings,
    tables: Vec<TableOutput>,
    state: RunState,
    open: HashMap<usize, OpenTable>,
    progress: Progress,
    rows_since_checkpoint: u64,
    outcomes: Vec<TableOutcome>,
}

impl Writer {
    pub fn new(settings: WriterSettings, tables: Vec<TableOutput>, state: RunState) -> Writer {
        Writer {
            settings,
            tables,
            state,
            open: HashMap::new(),
            progress: Progress::new(),
            rows_since_checkpoint: 0,
            outcomes: Vec::new(),
        }
    }

    /// Reopens a table of an interrupted run: truncates its part files to their checkpointed
    /// lengths, removes part files written after the checkpoint, and rebuilds the checksums from
    /// disk. Returns the partitions still to read; a table whose partitions were all read is
    /// finished here.
    pub fn resume_table(&mut self, table: usize) -> Result<Vec<PartitionState>, WriteError> {
        let output = &self.tables[table];
        let folder = self.settings.output_dir.join(&output.folder);
        let state = &mut self.state.tables[table];
        let committed = state.files.clone();
        let keep: Vec<&str> = committed.iter().map(|f| f.name.as_str()).collect();
        remove_part_files(&folder, &keep)?;
        let mut closed = Vec::new();
        let mut part = None;
        for (i, file) in committed.iter().enumerate() {
            let path = folder.join(&file.name);
            let fail = |source| WriteError {
                what: "checkpointed data file",
                path: path.clone(),
                source,
            };
            let on_disk = std::fs::metadata(&path).map_err(fail)?.len();
            if on_disk < file.bytes {
                return Err(fail(std::io::Error::other(format!(
                    "it holds {on_disk} bytes but the checkpoint recorded {}; the output was \
                     changed outside ehi-sync: run with --restart",
                    file.bytes
                ))));
            }
            let mut opened = files::open_private_file(&path, Some(file.bytes)).map_err(fail)?;
            opened.sync_all().map_err(fail)?;
            let hasher = hash_file(&path).map_err(fail)?;
            if i + 1 == committed.len() {
                use std::io::Seek;
                opened.seek(std::io::SeekFrom::End(0)).map_err(fail)?;
                part = Some(OpenPart {
                    file: opened,
                    name: file.name.clone(),
                    bytes: file.bytes,
                    rows: file.rows,
                    hasher,
                });
            } else {
                closed.push(FileEntry {
                    name: file.name.clone(),
                    bytes: file.bytes,
                    rows: file.rows,
                    sha256: hex::encode(hasher.finalize()),
                });
            }
        }
        files::sync_dir(&folder).map_err(|source| WriteError {
            what: "folder",
            path: folder.clone(),
            source,
        })?;
        state.status = TableStatus::InProgress;
        state.error = None;
        state.rows = committed.iter().map(|f| f.rows).sum();
        let remaining: Vec<PartitionState> = state
            .partitions
            .iter()
            .filter(|p| p.status != PartitionStatus::Done)
            .cloned()
            .collect();
        let rows = state.rows;
        let expected = state.expected_rows.unwrap_or(0);
        self.progress.table_resumed(
            table,
            output.position,
            self.tables.len(),
            &output.full_name(),
            output.tier,
            expected,
            rows,
        );
        self.open.insert(
            table,
            OpenTable {
                folder,
                part,
                closed,
                started: Instant::now(),
                partitions_left: remaining.len(),
            },
        );
        if self.open.get(&table).is_some_and(|t| t.part.is_none()) {
            self.open_next_part(table)?;
        }
        if remaining.is_empty() {
            self.finish_table(table)?;
        }
        Ok(remaining)
    }

    /// Runs until every tier's channel is drained and closed. `tiers` delivers one receiver per
    /// tier, in order. Returns how each table ended.
    pub fn run(
        mut self,
        tiers: Receiver<Receiver<Message>>,
    ) -> Result<Vec<TableOutcome>, WriteError> {
        for tier in tiers {
            for message in tier {
                if let Message::TierDone = message {
                    break;
                }
                self.handle(message)?;
            }
        }
        self.state.finished = self
            .state
            .tables
            .iter()
            .all(|t| t.status == TableStatus::Done);
        self.checkpoint()?;
        Ok(self.outcomes)
    }

    fn handle(&mut self, message: Message) -> Result<(), WriteError> {
        match message {
            Message::TableStarted {
                table,
                expected_rows,
                partitions,
            } => self.start_table(table, expected_rows, partitions),
            Message::Chunk(chunk) => self.write_chunk(chunk),
            Message::PartitionDone { table, partition } => {
                let Some(open) = self.open.get_mut(&table) else {
                    return Ok(());
                };
                if let Some(p) = self.state.tables[table].partitions.get_mut(partition) {
                    p.status = PartitionStatus::Done;
                }
                open.partitions_left = open.partitions_left.saturating_sub(1);
                if open.partitions_left == 0 {
                    self.finish_table(table)?;
                }
                Ok(())
            }
            Message::RestartTable { table } => self.restart_table(table),
            Message::TableFailed { table, reason } => self.fail_table(table, reason),
            Message::TierDone => Ok(()),
        }
    }

    fn start_table(
        &mut self,
        table: usize,
        expected_rows: u64,
        partitions: Vec<PartitionSpec>,
    ) -> Result<(), WriteError> {
        let output = &self.tables[table];
        let folder = self.settings.output_dir.join(&output.folder);
        files::create_private_dir(&folder).map_err(|source| WriteError {
            what: "folder",
            path: folder.clone(),
            source,
        })?;
        remove_previous_output(&folder)?;
        self.progress.table_started(
            table,
            output.position,
            self.tables.len(),
            &output.full_name(),
            output.tier,
            expected_rows,
        );
        let state = &mut self.state.tables[table];
        state.status = TableStatus::InProgress;
        state.expected_rows = Some(expected_rows);
        state.rows = 0;
        state.files.clear();
        state.started_at = Some(manifest::now_rfc3339());
        state.partitions = partitions
            .iter()
            .map(|spec| PartitionState {
                spec: spec.clone(),
                status: PartitionStatus::Pending,
                last_key: None,
            })
            .collect();
        self.open.insert(
            table,
            OpenTable {
                folder,
                part: None,
                closed: Vec::new(),
                started: Instant::now(),
                partitions_left: partitions.len(),
            },
        );
        self.open_next_part(table)
    }

    fn write_chunk(&mut self, chunk: Chunk) -> Result<(), WriteError> {
        let needs_new_part = match self.open.get(&chunk.table) {
            None => return Ok(()), // the table failed; its stragglers are dropped
            Some(open) => open.part.as_ref().is_none_or(|part| {
                part.rows > 0 && part.bytes >= self.settings.part_file_max_bytes
            }),
        };
        if needs_new_part {
            self.close_part(chunk.table)?;
            self.open_next_part(chunk.table)?;
        }
        let Some(open) = self.open.get_mut(&chunk.table) else {
            return Ok(());
        };
        let Some(part) = open.part.as_mut() else {
            return Ok(());
        };
        part.file
            .write_all(&chunk.bytes)
            .map_err(|source| WriteError {
                what: "data file",
                path: open.folder.join(&part.name),
                source,
            })?;
        part.hasher.update(&chunk.bytes);
        part.bytes += chunk.bytes.len() as u64;
        part.rows += chunk.rows;
        let state = &mut self.state.tables[chunk.table];
        state.rows += chunk.rows;
        if let Some(p) = state.partitions.get_mut(chunk.partition) {
            p.status = PartitionStatus::InProgress;
            if chunk.last_key.is_some() {
                p.last_key = chunk.last_key;
            }
        }
        let rows = state.rows;
        self.progress.rows(chunk.table, rows);
        self.rows_since_checkpoint += chunk.rows;
        if self.rows_since_checkpoint >= self.tables[chunk.table].checkpoint_interval {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn open_next_part(&mut self, table: usize) -> Result<(), WriteError> {
        let output = &self.tables[table];
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        let sequence = u32::try_from(open.closed.len() + 1).unwrap_or(u32::MAX);
        let name = files::part_file_name(
            &output.name,
            sequence,
            self.settings.format,
            self.settings.compression,
        );
        let path = open.folder.join(&name);
        let fail = |source| WriteError {
            what: "data file",
            path: path.clone(),
            source,
        };
        let mut file = files::open_private_file(&path, None).map_err(fail)?;
        file.write_all(&output.header).map_err(fail)?;
        let mut hasher = Sha256::new();
        hasher.update(&output.header);
        open.part = Some(OpenPart {
            file,
            name,
            bytes: output.header.len() as u64,
            rows: 0,
            hasher,
        });
        Ok(())
    }

    /// Makes the current part durable and records it as closed.
    fn close_part(&mut self, table: usize) -> Result<(), WriteError> {
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        if let Some(part) = open.part.take() {
            let path = open.folder.join(&part.name);
            part.file.sync_all().map_err(|source| WriteError {
                what: "data file",
                path,
                source,
            })?;
            open.closed.push(FileEntry {
                name: part.name,
                bytes: part.bytes,
                rows: part.rows,
                sha256: hex::encode(part.hasher.finalize()),
            });
        }
        Ok(())
    }

    /// Durable order: fsync every open data file, then replace the state file atomically.
    fn checkpoint(&mut self) -> Result<(), WriteError> {
        for (&table, open) in &mut self.open {
            let mut committed: Vec<CommittedFile> = open
                .closed
                .iter()
                .map(|f| CommittedFile {
                    name: f.name.clone(),
                    bytes: f.bytes,
                    rows: f.rows,
                })
                .collect();
            if let Some(part) = &open.part {
                part.file.sync_data().map_err(|source| WriteError {
                    what: "data file",
                    path: open.folder.join(&part.name),
                    source,
                })?;
                committed.push(CommittedFile {
                    name: part.name.clone(),
                    bytes: part.bytes,
                    rows: part.rows,
                });
            }
            self.state.tables[table].files = committed;
        }
        self.state.last_checkpoint_at = Some(manifest::now_rfc3339());
        self.state
            .save(&self.settings.state_path)
            .map_err(|source| WriteError {
                what: "state file",
                path: self.settings.state_path.clone(),
                source,
            })?;
        self.rows_since_checkpoint = 0;
        Ok(())
    }

    fn finish_table(&mut self, table: usize) -> Result<(), WriteError> {
        self.close_part(table)?;
        let Some(open) = self.open.get(&table) else {
            return Ok(());
        };
        let folder = open.folder.clone();
        let started = open.started;
        let files = open.closed.clone();
        files::sync_dir(&folder).map_err(|source| WriteError {
            what: "folder",
            path: folder.clone(),
            source,
        })?;
        let output = &self.tables[table];
        let state = &self.state.tables[table];
        let finished_at = manifest::now_rfc3339();
        let manifest = Manifest {
            table: output.full_name(),
            schema: output.schema.clone(),
            name: output.name.clone(),
            run_id: self.state.run_id.clone(),
            sync_type: "full".to_owned(),
            format: self.settings.format,
            compression: self.settings.compression,
            started_at: state.started_at.clone().unwrap_or_default(),
            finished_at: finished_at.clone(),
            row_count: state.rows,
            primary_key: output.primary_key.clone(),
            columns: output.columns.clone(),
            files,
        };
        manifest::write_manifest(&folder, &manifest).map_err(|source| WriteError {
            what: "manifest",
            path: folder.join(manifest::MANIFEST_FILE),
            source,
        })?;
        let state = &mut self.state.tables[table];
        state.status = TableStatus::Done;
        state.finished_at = Some(finished_at);
        self.checkpoint()?;
        self.open.remove(&table);
        self.record_outcome(table, started, None)
    }

    fn restart_table(&mut self, table: usize) -> Result<(), WriteError> {
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        open.part = None;
        open.closed.clear();
        let folder = open.folder.clone();
        remove_previous_output(&folder)?;
        let state = &mut self.state.tables[table];
        state.rows = 0;
        state.files.clear();
        for p in &mut state.partitions {
            p.status = PartitionStatus::Pending;
            p.last_key = None;
        }
        self.progress.rows(table, 0);
        self.open_next_part(table)
    }

    fn fail_table(&mut self, table: usize, reason: String) -> Result<(), WriteError> {
        if self.state.tables[table].status == TableStatus::Failed {
            return Ok(());
        }
        let started = self
            .open
            .get(&table)
            .map_or_else(Instant::now, |open| open.started);
        let state = &mut self.state.tables[table];
        state.status = TableStatus::Failed;
        state.error = Some(reason.clone());
        // Keeps what was written durable and recorded: a later run resumes from it.
        self.checkpoint()?;
        self.open.remove(&table);
        self.record_outcome(table, started, Some(reason))
    }

    fn record_outcome(
        &mut self,
        table: usize,
        started: Instant,
        error: Option<String>,
    ) -> Result<(), WriteError> {
        let output = &self.tables[table];
        let state = &self.state.tables[table];
        let seconds = started.elapsed().as_secs_f64();
        let expected = state.expected_rows.unwrap_or(0);
        let difference = i64::try_from(state.rows).unwrap_or(i64::MAX)
            - i64::try_from(expected).unwrap_or(i64::MAX);
        let status = match (&error, difference) {
            (Some(_), _) => "failed",
            (None, 0) => "ok",
            (None, _) => "count_changed",
        };
        let rate = if seconds > 0.0 {
            state.rows as f64 / seconds
        } else {
            0.0
        };
        let record = ValidationRecord {
            run_id: self.state.run_id.clone(),
            table: output.full_name(),
            tier: output.tier,
            expected_rows: expected,
            extracted_rows: state.rows,
            difference,
            status: status.to_owned(),
            started_at: state.started_at.clone().unwrap_or_default(),
            finished_at: manifest::now_rfc3339(),
            duration_seconds: seconds,
            rows_per_second: rate,
            error: error.clone(),
        };
        manifest::append_validation(&self.settings.output_dir, &record).map_err(|source| {
            WriteError {
                what: "validation record",
                path: self.settings.output_dir.join(manifest::VALIDATION_FILE),
                source,
            }
        })?;
        let summary = match (&error, status) {
            (Some(reason), _) => format!("{} FAILED: {reason}", output.full_name()),
            (None, "ok") => format!(
                "{} done: {} rows in {:.1}s ({} rows/s)",
                output.full_name(),
                group_digits(state.rows),
                seconds,
                group_digits(rate.round() as u64)
            ),
            (None, _) => format!(
                "{} done: {} rows, but {} were counted when it started: rows changed while it \
                 was read",
                output.full_name(),
                group_digits(state.rows),
                group_digits(expected)
            ),
        };
        self.progress.table_finished(table, &summary);
        self.outcomes.push(TableOutcome {
            table: output.full_name(),
            tier: output.tier,
            status: state.status,
            expected_rows: expected,
            rows: state.rows,
            seconds,
            error,
        });
        Ok(())
    }
}

/// Removes a table folder's manifest and part files before the table is written anew.
fn remove_previous_output(folder: &Path) -> Result<(), WriteError> {
    remove_part_files(folder, &[])
}

/// Removes the manifest (first, so no loader trusts it any longer) and every part file not in
/// `keep`.
pub fn remove_part_files(folder: &Path, keep: &[&str]) -> Result<(), WriteError> {
    let fail = |path: &Path, source| WriteError {
        what: "previous output",
        path: path.to_owned(),
        source,
    };
    let manifest_path = folder.join(manifest::MANIFEST_FILE);
    match std::fs::remove_file(&manifest_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(&manifest_path, e)),
    }
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(folder, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| fail(folder, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_part = files::is_part_file_name(&name)
            && entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_part && !keep.contains(&name.as_str()) {
            std::fs::remove_file(entry.path()).map_err(|e| fail(&entry.path(), e))?;
        }
    }
    files::sync_dir(folder).map_err(|e| fail(folder, e))
}

/// SHA-256 state of a file's bytes, to go on appending to it.
fn hash_file(path: &Path) -> std::io::Result<Sha256> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buffer[..n]);
    }
}
