//! The one writer thread: it owns every output file and the state file.
//!
//! Workers send encoded chunks through a tier's bounded channel; the writer appends them to the
//! table's current part file, starts a new part past `part_file_max_bytes`, and checkpoints:
//! makes the data durable (fsync) before it records it in the state file. A checkpoint is due at
//! the tier's `checkpoint_interval` rows, after the first batch a process writes, and
//! `checkpoint_seconds` after the last one once something new was written or a partition
//! finished (checked at each chunk and partition), so a crash loses about that much work at
//! most, even in a table smaller than the interval. A finished table gets its
//! `_manifest.json`, written last, and a validation record.

pub mod encode;
pub mod files;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use sha2::{Digest, Sha256};

use crate::display::group_digits;
use crate::incremental::key_diff;
use crate::manifest::{self, FileEntry, Manifest, ManifestColumn, ValidationRecord};
use crate::manifest::{ChangeCounts, LoadRecord};
use crate::model::KeyValue;
use crate::model::PartitionSpec;
use crate::model::{Format, Tier};
use crate::model::{Load, LoadKind, OP_COLUMN, Position, SYNCED_AT_COLUMN, SyncMode};
use crate::progress::Progress;
use crate::state::{
    CommittedFile, PartitionState, PartitionStatus, RunState, TableState, TableStatus,
};

/// This run's key list is `_keys-<run id>.bin` in the table folder.
const KEY_LIST_PREFIX: &str = "_keys-";
use crate::durable::{self, DurableFile, FileOps};
use crate::model::Compression;

/// What workers tell the writer.
pub enum Message {
    /// A table's count is taken and its partitions are known.
    TableStarted {
        table: usize,
        expected_rows: u64,
        /// `expected_rows` is the catalog's estimate (`row_counts: catalog`), not a count.
        expected_estimated: bool,
        partitions: Vec<PartitionSpec>,
        /// Full or incremental, with the upper bound captured for this load (boxed: it is
        /// large and rare next to chunks).
        load: Box<Load>,
    },
    /// A key scan starts (again) from the first key: its key list is written anew.
    KeyScanStarted {
        table: usize,
    },
    Chunk(Chunk),
    /// A chunk of one row too large to hold in memory (a long value): its compressed bytes are
    /// in the file (`Compression::spool`), not in `bytes`.
    SpooledChunk(Chunk, std::fs::File),
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
    /// How many of `rows` are delete rows.
    pub deletes: u64,
    /// A key scan's frame of the new key list, and how many of its keys are new.
    pub keys: Option<Vec<u8>>,
    pub new_keys: u64,
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
    /// Every file operation goes through it: the disk, or a power-cut test's file system.
    pub fs: Arc<dyn FileOps>,
    pub output_dir: PathBuf,
    /// `_ehi_op` and `_ehi_synced_at` are appended to every row.
    pub change_columns: bool,
    pub state_path: PathBuf,
    pub format: Format,
    pub compression: Compression,
    pub part_file_max_bytes: u64,
    /// A checkpoint is due this long after the last one once something new was written;
    /// `None`: only at the row interval and the end of a table.
    pub checkpoint_every: Option<Duration>,
    /// When the time rule reads the time: [`Instant::now`] in a run, a test's own clock.
    pub clock: Clock,
}

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The process clock.
pub fn system_clock() -> Clock {
    Arc::new(Instant::now)
}

/// How one table ended.
#[derive(Debug, Clone)]
pub struct TableOutcome {
    pub table: String,
    pub tier: Tier,
    pub status: TableStatus,
    pub expected_rows: u64,
    /// `expected_rows` is the catalog's estimate.
    pub expected_estimated: bool,
    /// Rows written, delete rows included.
    pub rows: u64,
    /// The rows the count at the table's start covers (rows read, plus deletes when they come
    /// from change tracking, whose count includes them; a key scan's deletes are not counted)
    /// minus that count: 0 when the table was read as counted.
    pub difference: i64,
    pub seconds: f64,
    pub error: Option<String>,
    /// Full, incremental or skipped in this run.
    pub load: LoadKind,
    pub changes: ChangeCounts,
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
    file: Box<dyn DurableFile>,
    name: String,
    bytes: u64,
    rows: u64,
    hasher: Sha256,
}

struct OpenTable {
    folder: PathBuf,
    part: Option<OpenPart>,
    /// This run's closed part files.
    closed: Vec<FileEntry>,
    started: Instant,
    partitions_left: usize,
    /// Files of earlier loads that stay (an incremental load adds to them), and their loads.
    carried: Vec<FileEntry>,
    history: Vec<LoadRecord>,
    /// This run's key list being written, and its length.
    key_file: Option<(Box<dyn DurableFile>, u64)>,
    /// A file was created in the folder since it was last synced: the next checkpoint syncs
    /// the folder before the state file names the file.
    new_entries: bool,
}

impl OpenTable {
    fn new(folder: PathBuf, partitions_left: usize, carried: Carried) -> OpenTable {
        OpenTable {
            folder,
            part: None,
            closed: Vec::new(),
            started: Instant::now(),
            partitions_left,
            carried: carried.files,
            history: carried.loads,
            key_file: None,
            new_entries: false,
        }
    }

    fn carried_names(&self) -> Vec<&str> {
        self.carried.iter().map(|f| f.name.as_str()).collect()
    }
}

/// What an incremental load keeps of the table folder: the files and loads its manifest lists,
/// less anything of the current run (a crash may have come after the manifest was written).
#[derive(Default)]
struct Carried {
    files: Vec<FileEntry>,
    loads: Vec<LoadRecord>,
}

impl Carried {
    fn read(fs: &dyn FileOps, folder: &Path, run_id: &str) -> Result<Carried, WriteError> {
        let manifest = manifest::read_manifest(fs, folder).map_err(|source| WriteError {
            what: "previous manifest",
            path: folder.join(manifest::MANIFEST_FILE),
            source,
        })?;
        let Some(manifest) = manifest else {
            return Err(WriteError {
                what: "previous manifest",
                path: folder.join(manifest::MANIFEST_FILE),
                source: std::io::Error::other(
                    "it is missing, so an incremental load has nothing to add to; run \
                     `ehi-sync sync --restart` to reload the table",
                ),
            });
        };
        Ok(Carried {
            files: manifest
                .files
                .into_iter()
                .filter(|f| f.run_id != run_id)
                .collect(),
            loads: manifest
                .loads
                .into_iter()
                .filter(|l| l.run_id != run_id)
                .collect(),
        })
    }
}

pub struct Writer {
    settings: WriterSettings,
    tables: Vec<TableOutput>,
    state: RunState,
    open: HashMap<usize, OpenTable>,
    progress: Progress,
    rows_since_checkpoint: u64,
    /// When a checkpoint last recorded something this writer wrote.
    last_checkpoint: Option<Instant>,
    /// Something was written or a partition finished since the last checkpoint.
    unrecorded: bool,
    outcomes: Vec<TableOutcome>,
    /// `_validation.ndjson`, opened at the first record, and its length.
    validation: Option<(Box<dyn DurableFile>, u64)>,
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
            last_checkpoint: None,
            unrecorded: false,
            outcomes: Vec::new(),
            validation: None,
        }
    }

    /// Reopens a table of an interrupted run: truncates its part files to their checkpointed
    /// lengths, removes part files written after the checkpoint, and rebuilds the checksums from
    /// disk. Returns the partitions still to read; a table whose partitions were all read is
    /// finished here.
    pub fn resume_table(&mut self, table: usize) -> Result<Vec<PartitionState>, WriteError> {
        self.record_validation_start()?;
        let output = &self.tables[table];
        let folder = self.settings.output_dir.join(&output.folder);
        let run_id = self.state.run_id.clone();
        let state = &mut self.state.tables[table];
        let incremental = state.incremental_load();
        let fs = self.settings.fs.as_ref();
        let carried = if incremental {
            Carried::read(fs, &folder, &run_id)?
        } else {
            Carried::default()
        };
        let committed = state.files.clone();
        let keep: Vec<&str> = committed
            .iter()
            .map(|f| f.name.as_str())
            .chain(carried.files.iter().map(|f| f.name.as_str()))
            .collect();
        remove_part_files(fs, &folder, &keep, incremental)?;
        let mut closed = Vec::new();
        let mut part = None;
        for (i, file) in committed.iter().enumerate() {
            let path = folder.join(&file.name);
            let fail = |source| WriteError {
                what: "checkpointed data file",
                path: path.clone(),
                source,
            };
            let on_disk = fs.len(&path).map_err(fail)?;
            if on_disk < file.bytes {
                return Err(fail(std::io::Error::other(format!(
                    "it holds {on_disk} bytes but the checkpoint recorded {}; the output was \
                     changed outside ehi-sync: run with --restart",
                    file.bytes
                ))));
            }
            let mut opened = fs.open_truncated(&path, file.bytes).map_err(fail)?;
            opened.sync().map_err(fail)?;
            let hasher = hash_file(fs, &path).map_err(fail)?;
            if i + 1 == committed.len() {
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
                    run_id: run_id.clone(),
                    bytes: file.bytes,
                    rows: file.rows,
                    sha256: hex::encode(hasher.finalize()),
                });
            }
        }
        fs.sync_dir(&folder).map_err(|source| WriteError {
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
        let mut open = OpenTable::new(folder, remaining.len(), carried);
        open.part = part;
        open.closed = closed;
        self.open.insert(table, open);
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
        self.record_validation_start()?;
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
                expected_estimated,
                partitions,
                load,
            } => self.start_table(table, expected_rows, expected_estimated, partitions, *load),
            Message::KeyScanStarted { table } => self.start_key_list(table),
            Message::Chunk(chunk) => self.write_chunk(chunk, None),
            Message::SpooledChunk(chunk, file) => self.write_chunk(chunk, Some(file)),
            Message::PartitionDone { table, partition } => {
                let Some(open) = self.open.get_mut(&table) else {
                    return Ok(());
                };
                if let Some(p) = self.state.tables[table].partitions.get_mut(partition) {
                    p.status = PartitionStatus::Done;
                }
                open.partitions_left = open.partitions_left.saturating_sub(1);
                self.unrecorded = true;
                if open.partitions_left == 0 {
                    self.finish_table(table)
                } else if self.checkpoint_due(u64::MAX) {
                    self.checkpoint()
                } else {
                    Ok(())
                }
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
        expected_estimated: bool,
        partitions: Vec<PartitionSpec>,
        load: Load,
    ) -> Result<(), WriteError> {
        let output = &self.tables[table];
        let folder = self.settings.output_dir.join(&output.folder);
        let fs = self.settings.fs.as_ref();
        // The folder's entry in `output_dir` is durable before any state names its files (the
        // state file may live elsewhere).
        fs.create_dir_all(&folder)
            .and_then(|()| fs.sync_dir(&self.settings.output_dir))
            .map_err(|source| WriteError {
                what: "folder",
                path: folder.clone(),
                source,
            })?;
        let incremental = load.kind == LoadKind::Incremental;
        let carried = if incremental {
            match Carried::read(fs, &folder, &self.state.run_id) {
                Ok(carried) => carried,
                Err(e) => return self.fail_table(table, e.to_string()),
            }
        } else {
            Carried::default()
        };
        // An incremental load keeps the earlier files and the manifest that lists them (it
        // stays true until the new one replaces it); a full load starts from an empty folder.
        let keep: Vec<&str> = carried.files.iter().map(|f| f.name.as_str()).collect();
        remove_part_files(fs, &folder, &keep, incremental)?;
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
        state.expected_estimated = expected_estimated;
        state.rows = 0;
        state.files.clear();
        state.deleted = 0;
        state.new_keys = 0;
        state.key_list_writing = None;
        state.started_at = Some(manifest::now_rfc3339());
        if !incremental {
            // The files the position described are gone.
            state.position = None;
        }
        state.load = Some(load);
        state.partitions = partitions
            .iter()
            .map(|spec| PartitionState {
                spec: spec.clone(),
                status: PartitionStatus::Pending,
                last_key: None,
            })
            .collect();
        self.open
            .insert(table, OpenTable::new(folder, partitions.len(), carried));
        self.open_next_part(table)
    }

    /// Creates (or truncates) this run's key list of `table`: a key scan always starts from
    /// the first key.
    fn start_key_list(&mut self, table: usize) -> Result<(), WriteError> {
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        let name = format!(
            "{}{}.bin",
            KEY_LIST_PREFIX,
            durable::safe_name(&self.state.run_id)
        );
        let path = open.folder.join(&name);
        let file = self
            .settings
            .fs
            .create(&path)
            .map_err(|source| WriteError {
                what: "key list",
                path,
                source,
            })?;
        open.key_file = Some((file, 0));
        open.new_entries = true;
        let state = &mut self.state.tables[table];
        state.key_list_writing = Some(CommittedFile {
            name,
            bytes: 0,
            rows: 0,
        });
        state.new_keys = 0;
        Ok(())
    }

    /// Appends a chunk to its table's part file: `bytes`, then what `spooled` holds.
    fn write_chunk(
        &mut self,
        chunk: Chunk,
        spooled: Option<std::fs::File>,
    ) -> Result<(), WriteError> {
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
        if let Some(mut file) = spooled {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let read =
                    std::io::Read::read(&mut file, &mut buffer).map_err(|source| WriteError {
                        what: "temporary file of a long value",
                        path: open.folder.clone(),
                        source,
                    })?;
                if read == 0 {
                    break;
                }
                part.file
                    .write_all(&buffer[..read])
                    .map_err(|source| WriteError {
                        what: "data file",
                        path: open.folder.join(&part.name),
                        source,
                    })?;
                part.hasher.update(&buffer[..read]);
                part.bytes += read as u64;
            }
        }
        part.rows += chunk.rows;
        if let (Some(keys), Some((file, length))) = (&chunk.keys, open.key_file.as_mut()) {
            file.write_all(keys).map_err(|source| WriteError {
                what: "key list",
                path: open.folder.join(KEY_LIST_PREFIX),
                source,
            })?;
            *length += keys.len() as u64;
        }
        let state = &mut self.state.tables[chunk.table];
        state.rows += chunk.rows;
        state.deleted += chunk.deletes;
        state.new_keys += chunk.new_keys;
        if let Some(p) = state.partitions.get_mut(chunk.partition) {
            p.status = PartitionStatus::InProgress;
            if chunk.last_key.is_some() {
                p.last_key = chunk.last_key;
            }
        }
        let rows = state.rows;
        self.progress.rows(chunk.table, rows);
        self.rows_since_checkpoint += chunk.rows;
        self.unrecorded = true;
        if self.checkpoint_due(self.tables[chunk.table].checkpoint_interval) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// A checkpoint is due at `row_interval` rows since the last one, or once something new
    /// was written or finished and `checkpoint_every` has passed since the last checkpoint that
    /// recorded this writer's work. Before there is one, the first thing written is
    /// checkpointed at once: a sync process restarted after a crash keeps its first batch, so
    /// a driver that crashes early in every attempt still shows the supervisor progress (and
    /// the run gets through) as long as each attempt gets a batch through.
    fn checkpoint_due(&self, row_interval: u64) -> bool {
        if self.rows_since_checkpoint >= row_interval {
            return true;
        }
        let Some(every) = self.settings.checkpoint_every else {
            return false;
        };
        self.unrecorded
            && self
                .last_checkpoint
                .is_none_or(|last| (self.settings.clock)().saturating_duration_since(last) >= every)
    }

    fn open_next_part(&mut self, table: usize) -> Result<(), WriteError> {
        let output = &self.tables[table];
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        let sequence = u32::try_from(open.closed.len() + 1).unwrap_or(u32::MAX);
        let run_id = self.state.tables[table]
            .incremental_load()
            .then_some(self.state.run_id.as_str());
        let name = files::part_file_name(
            &output.name,
            run_id,
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
        let mut file = self.settings.fs.create(&path).map_err(fail)?;
        file.write_all(&output.header).map_err(fail)?;
        let mut hasher = Sha256::new();
        hasher.update(&output.header);
        open.new_entries = true;
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
        if let Some(mut part) = open.part.take() {
            let path = open.folder.join(&part.name);
            part.file.sync().map_err(|source| WriteError {
                what: "data file",
                path,
                source,
            })?;
            open.closed.push(FileEntry {
                name: part.name,
                run_id: self.state.run_id.clone(),
                bytes: part.bytes,
                rows: part.rows,
                sha256: hex::encode(part.hasher.finalize()),
            });
        }
        Ok(())
    }

    /// Durable order: fsync every open data file, then replace the state file atomically.
    fn checkpoint(&mut self) -> Result<(), WriteError> {
        let fs = self.settings.fs.as_ref();
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
            if let Some(part) = &mut open.part {
                part.file.sync().map_err(|source| WriteError {
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
            let state = &mut self.state.tables[table];
            state.files = committed;
            if let (Some((file, length)), Some(writing)) =
                (&mut open.key_file, state.key_list_writing.as_mut())
            {
                file.sync().map_err(|source| WriteError {
                    what: "key list",
                    path: open.folder.join(&writing.name),
                    source,
                })?;
                writing.bytes = *length;
            }
            if open.new_entries {
                fs.sync_dir(&open.folder).map_err(|source| WriteError {
                    what: "folder",
                    path: open.folder.clone(),
                    source,
                })?;
                open.new_entries = false;
            }
        }
        self.state.last_checkpoint_at = Some(manifest::now_rfc3339());
        self.state
            .save(fs, &self.settings.state_path)
            .map_err(|source| WriteError {
                what: "state file",
                path: self.settings.state_path.clone(),
                source,
            })?;
        self.rows_since_checkpoint = 0;
        if self.unrecorded {
            self.last_checkpoint = Some((self.settings.clock)());
            self.unrecorded = false;
        }
        Ok(())
    }

    fn finish_table(&mut self, table: usize) -> Result<(), WriteError> {
        self.close_part(table)?;
        let Some(open) = self.open.get(&table) else {
            return Ok(());
        };
        let folder = open.folder.clone();
        let started = open.started;
        let fs = self.settings.fs.as_ref();
        fs.sync_dir(&folder).map_err(|source| WriteError {
            what: "folder",
            path: folder.clone(),
            source,
        })?;
        let output = &self.tables[table];
        let state = &self.state.tables[table];
        let load = state.load.clone().unwrap_or_else(Load::full_default);
        let finished_at = manifest::now_rfc3339();
        let changes = change_counts(state, &load);
        let record = LoadRecord {
            run_id: self.state.run_id.clone(),
            sync_type: load.kind.name().to_owned(),
            position_from: load.from.clone(),
            position_to: load.to.clone(),
            changes,
            schema_changes: load.schema_changes.clone(),
            columns: output.columns.iter().map(|c| c.name.clone()).collect(),
            finished_at: finished_at.clone(),
        };
        let mut loads = open.history.clone();
        loads.push(record);
        let manifest = Manifest {
            table: output.full_name(),
            schema: output.schema.clone(),
            name: output.name.clone(),
            run_id: self.state.run_id.clone(),
            sync_type: load.kind.name().to_owned(),
            sync_mode: load.mode.clone(),
            reason: load.reason.clone(),
            format: self.settings.format,
            compression: self.settings.compression,
            started_at: state.started_at.clone().unwrap_or_default(),
            finished_at: finished_at.clone(),
            row_count: state.rows,
            position_from: load.from.clone(),
            position_to: load.to.clone(),
            changes,
            primary_key: output.primary_key.clone(),
            columns: output.columns.clone(),
            change_columns: if self.settings.change_columns {
                vec![OP_COLUMN.to_owned(), SYNCED_AT_COLUMN.to_owned()]
            } else {
                Vec::new()
            },
            schema_changes: load.schema_changes.clone(),
            loads,
            files: open.carried.iter().chain(&open.closed).cloned().collect(),
        };
        if let Some((file, _)) = self.open.get_mut(&table).and_then(|o| o.key_file.as_mut()) {
            file.sync().map_err(|source| WriteError {
                what: "key list",
                path: folder.clone(),
                source,
            })?;
        }
        manifest::write_manifest(fs, &folder, &manifest).map_err(|source| WriteError {
            what: "manifest",
            path: folder.join(manifest::MANIFEST_FILE),
            source,
        })?;
        let state = &mut self.state.tables[table];
        state.status = TableStatus::Done;
        state.finished_at = Some(finished_at);
        // The position moves in the same state write that marks the table done: never past
        // rows that are not on disk.
        state.position = Some(Position {
            mode: load.mode.clone(),
            value: load.to.clone().or_else(|| load.from.clone()),
        });
        let old_key_list = std::mem::replace(
            &mut state.key_list,
            state.key_list_writing.take().map(|f| f.name),
        );
        let new_key_list = state.key_list.clone();
        // The validation record goes into the same checkpoint that marks the table done.
        self.record_outcome(table, started, None)?;
        self.checkpoint()?;
        if let Some(old) = old_key_list.filter(|old| Some(old) != new_key_list.as_ref()) {
            // Superseded: the state no longer names it.
            if let Err(e) = self.settings.fs.remove_file(&folder.join(&old)) {
                log::warn!("cannot remove the superseded key list {old}: {e}");
            }
        }
        // The key scan's buckets served their purpose once the table is done.
        let work = key_diff::work_dir(&folder, &self.state.run_id);
        if let Err(e) = durable::remove_dir_if_exists(&work) {
            log::warn!(
                "cannot remove the key scan's work folder {}: {e}",
                work.display()
            );
        }
        self.open.remove(&table);
        Ok(())
    }

    fn restart_table(&mut self, table: usize) -> Result<(), WriteError> {
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        open.part = None;
        open.closed.clear();
        let folder = open.folder.clone();
        let incremental = self.state.tables[table].incremental_load();
        let keep: Vec<String> = open.carried_names().into_iter().map(String::from).collect();
        let state = &mut self.state.tables[table];
        state.rows = 0;
        for p in &mut state.partitions {
            p.status = PartitionStatus::Pending;
            p.last_key = None;
        }
        // The state stops naming the files before they are removed: it never names a file
        // that is not there.
        self.checkpoint()?;
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        remove_part_files(self.settings.fs.as_ref(), &folder, &keep, incremental)?;
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
        self.record_outcome(table, started, Some(reason))?;
        // Keeps what was written durable and recorded: a later run resumes from it.
        self.checkpoint()?;
        self.open.remove(&table);
        Ok(())
    }

    /// Records in the state, once per run before its first validation record, how long
    /// `_validation.ndjson` is: a record written after the last checkpoint is then dropped on
    /// resume, not doubled (a resumed table writes its record again).
    fn record_validation_start(&mut self) -> Result<(), WriteError> {
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
        let load = state.load.clone().unwrap_or_else(Load::full_default);
        let changes = change_counts(state, &load);
        // The count taken at the start covers the rows read, not a key scan's deletes.
        let counted = match load.mode {
            SyncMode::ChangeTracking => state.rows,
            _ => state.rows - state.deleted.min(state.rows),
        };
        let difference = i64::try_from(counted).unwrap_or(i64::MAX)
            - i64::try_from(expected).unwrap_or(i64::MAX);
        // An estimate that differs says nothing about the copy: the catalog's count lags the
        // table (SQL Server's partition stats, PostgreSQL's reltuples after ANALYZE), so the
        // difference is reported and the table is not failed.
        let status = match (&error, difference, state.expected_estimated) {
            (Some(_), _, _) => "failed",
            (None, 0, _) => "ok",
            (None, _, true) => "estimate_differs",
            (None, _, false) => "count_changed",
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
            expected_rows_estimated: state.expected_estimated,
            extracted_rows: counted,
            difference,
            status: status.to_owned(),
            started_at: state.started_at.clone().unwrap_or_default(),
            finished_at: manifest::now_rfc3339(),
            duration_seconds: seconds,
            rows_per_second: rate,
            error: error.clone(),
            sync_type: load.kind.name().to_owned(),
            changes,
            schema_changes: load.schema_changes.clone(),
        };
        let summary = match (&error, status) {
            (Some(reason), _) => format!("{} FAILED: {reason}", output.full_name()),
            (None, "ok") if load.kind == LoadKind::Incremental => format!(
                "{} done (incremental): {} upserts, {} deletes in {:.1}s",
                output.full_name(),
                group_digits(changes.upserted),
                group_digits(changes.deleted),
                seconds
            ),
            (None, "ok") => format!(
                "{} done: {} rows in {:.1}s ({} rows/s)",
                output.full_name(),
                group_digits(state.rows),
                seconds,
                group_digits(rate.round() as u64)
            ),
            (None, "estimate_differs") => format!(
                "{} done: {} rows in {:.1}s; the catalog estimated {} (row_counts: catalog, not \
                 an exact count)",
                output.full_name(),
                group_digits(counted),
                seconds,
                group_digits(expected)
            ),
            (None, _) => format!(
                "{} done: {} rows read, but {} were counted when it started: rows changed while \
                 it was read{}",
                output.full_name(),
                group_digits(counted),
                group_digits(expected),
                uncounted_deletes(state.rows - counted)
            ),
        };
        self.progress.table_finished(table, &summary);
        self.outcomes.push(TableOutcome {
            table: output.full_name(),
            tier: output.tier,
            status: state.status,
            expected_rows: expected,
            expected_estimated: state.expected_estimated,
            rows: state.rows,
            difference,
            seconds,
            error,
            load: load.kind,
            changes,
        });
        self.append_validation(&record)
    }
}

/// The delete rows a key scan wrote on top of the rows the count covers, for a summary line.
pub fn uncounted_deletes(deletes: u64) -> String {
    if deletes == 0 {
        String::new()
    } else {
        format!(
            " (and {} deleted keys written as delete rows)",
            group_digits(deletes)
        )
    }
}

/// Removes what an unfinished load of `table` wrote in run `run_id`: every part file for a
/// full load (and its manifest); for an incremental load only this run's files, so the
/// earlier loads and the manifest listing them stay.
pub fn discard_table_output(
    fs: &dyn FileOps,
    output_dir: &Path,
    table: &TableState,
    run_id: &str,
) -> Result<(), WriteError> {
    let folder = output_dir.join(&table.folder);
    if fs
        .list_files(&folder)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(());
    }
    if table.incremental_load() {
        let carried = Carried::read(fs, &folder, run_id)?;
        let keep: Vec<&str> = carried.files.iter().map(|f| f.name.as_str()).collect();
        remove_part_files(fs, &folder, &keep, true)?;
    } else if table.load.is_some() || !table.files.is_empty() {
        remove_part_files(fs, &folder, &[], false)?;
    }
    if let Some(list) = &table.key_list_writing {
        let path = folder.join(&list.name);
        durable::remove_if_exists(fs, &path).map_err(|source| WriteError {
            what: "key list",
            path,
            source,
        })?;
    }
    let work = key_diff::work_dir(&folder, run_id);
    durable::remove_dir_if_exists(&work).map_err(|source| WriteError {
        what: "key scan work folder",
        path: work.clone(),
        source,
    })?;
    Ok(())
}

/// What one load changed, from the writer's tallies.
fn change_counts(state: &TableState, load: &Load) -> ChangeCounts {
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

/// Removes every part file not in `keep` and, unless `keep_manifest`, the manifest (first, so
/// no loader trusts it any longer).
pub fn remove_part_files(
    fs: &dyn FileOps,
    folder: &Path,
    keep: &[&str],
    keep_manifest: bool,
) -> Result<(), WriteError> {
    let fail = |path: &Path, source| WriteError {
        what: "previous output",
        path: path.to_owned(),
        source,
    };
    let manifest_path = folder.join(manifest::MANIFEST_FILE);
    if !keep_manifest {
        durable::remove_if_exists(fs, &manifest_path).map_err(|e| fail(&manifest_path, e))?;
    }
    let names = match fs.list_files(folder) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(folder, e)),
    };
    for name in names {
        if files::is_part_file_name(&name) && !keep.contains(&name.as_str()) {
            let path = folder.join(&name);
            fs.remove_file(&path).map_err(|e| fail(&path, e))?;
        }
    }
    fs.sync_dir(folder).map_err(|e| fail(folder, e))
}

/// SHA-256 state of a file's bytes, to go on appending to it.
fn hash_file(fs: &dyn FileOps, path: &Path) -> std::io::Result<Sha256> {
    let mut file = fs.open_read(path)?;
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
