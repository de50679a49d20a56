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
//!
//! Its seams: [`protocol`] (what workers send), `part` (part files and their checksums),
//! `checkpoint` (when a checkpoint is due, its durable order, resume truncation), [`validation`]
//! (validation records and summary lines); the manifest is built by `crate::manifest`.

mod checkpoint;
pub(crate) mod encode;
pub(crate) mod files;
mod parquet;
mod part;
pub(crate) mod protocol;
#[cfg(test)]
mod tests;
pub(crate) mod validation;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::durable::{self, DurableFile, FileOps};
use crate::incremental::key_diff;
use crate::manifest::{
    self, FileEntry, FinishedLoad, LoadRecord, Manifest, ManifestColumn, TableDescription,
};
use crate::model::{
    Compression, Format, Load, LoadKind, OP_COLUMN, ParquetType, PartitionSpec, Position,
    SYNCED_AT_COLUMN, Tier,
};
use crate::progress::Progress;
use crate::state::{
    CommittedFile, PartitionState, PartitionStatus, RunState, TableState, TableStatus,
};
use checkpoint::CheckpointRule;
use parquet::ParquetPart;
use part::{Part, PartFile, remove_part_files};
use protocol::{Chunk, Message};

/// This run's key list is `_keys-<run id>.bin` in the table folder.
const KEY_LIST_PREFIX: &str = "_keys-";

/// What the writer knows of a table before any row arrives.
pub(crate) struct TableOutput {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) tier: Tier,
    /// Folder under `output_dir`, unique without regard to case.
    pub(crate) folder: String,
    /// 1-based position in the run, for "Processing table 5/265".
    pub(crate) position: usize,
    pub(crate) checkpoint_interval: u64,
    /// The header every part file starts with, already compressed.
    pub(crate) header: Vec<u8>,
    pub(crate) columns: Vec<ManifestColumn>,
    pub(crate) primary_key: Vec<String>,
}

impl TableOutput {
    pub(crate) fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

pub(crate) struct WriterSettings {
    /// Every file operation goes through it: the disk, or a power-cut test's file system.
    pub(crate) fs: Arc<dyn FileOps>,
    pub(crate) output_dir: PathBuf,
    /// `_ehi_op` and `_ehi_synced_at` are appended to every row.
    pub(crate) change_columns: bool,
    pub(crate) state_path: PathBuf,
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    pub(crate) part_file_max_bytes: u64,
    /// Parquet: the bytes of values a row group holds at most.
    pub(crate) row_group_bytes: usize,
    /// A checkpoint is due this long after the last one once something new was written;
    /// `None`: only at the row interval and the end of a table.
    pub(crate) checkpoint_every: Option<Duration>,
    /// When the time rule reads the time: [`Instant::now`] in a run, a test's own clock.
    pub(crate) clock: Clock,
}

/// A source of the current time.
pub(crate) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The process clock.
pub(crate) fn system_clock() -> Clock {
    Arc::new(Instant::now)
}

/// How one table ended.
#[derive(Debug, Clone)]
pub(crate) struct TableOutcome {
    pub(crate) table: String,
    pub(crate) tier: Tier,
    pub(crate) status: TableStatus,
    pub(crate) expected_rows: u64,
    /// `expected_rows` is the catalog's estimate.
    pub(crate) expected_estimated: bool,
    /// Rows written, delete rows included.
    pub(crate) rows: u64,
    /// The rows the count at the table's start covers (rows read, plus deletes when they come
    /// from change tracking, whose count includes them; a key scan's deletes are not counted)
    /// minus that count: 0 when the table was read as counted.
    pub(crate) difference: i64,
    pub(crate) error: Option<String>,
}

/// A failure of the writer itself (disk full, permissions): it stops the run.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {what} '{path}': {source}")]
pub(crate) struct WriteError {
    pub(crate) what: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: std::io::Error,
}

struct OpenTable {
    folder: PathBuf,
    part: Option<Part>,
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

pub(crate) struct Writer {
    settings: WriterSettings,
    tables: Vec<TableOutput>,
    state: RunState,
    open: HashMap<usize, OpenTable>,
    progress: Progress,
    checkpoints: CheckpointRule,
    outcomes: Vec<TableOutcome>,
    /// `_validation.ndjson`, opened at the first record, and its length.
    validation: Option<(Box<dyn DurableFile>, u64)>,
}

impl Writer {
    pub(crate) fn new(
        settings: WriterSettings,
        tables: Vec<TableOutput>,
        state: RunState,
    ) -> Writer {
        let checkpoints =
            CheckpointRule::new(settings.checkpoint_every, Arc::clone(&settings.clock));
        Writer {
            settings,
            tables,
            state,
            open: HashMap::new(),
            progress: Progress::new(),
            checkpoints,
            outcomes: Vec::new(),
            validation: None,
        }
    }

    /// Runs until every tier's channel is drained and closed. `tiers` delivers one receiver per
    /// tier, in order. Returns how each table ended.
    pub(crate) fn run(
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
                self.checkpoints.progressed();
                if open.partitions_left == 0 {
                    self.finish_table(table)
                } else if self.checkpoints.due(u64::MAX) {
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
                part.rows() > 0 && part.bytes() >= self.settings.part_file_max_bytes
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
        let mut spooled = spooled;
        part.append(&open.folder, &chunk.bytes, spooled.as_mut(), chunk.rows)?;
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
        self.checkpoints.wrote(chunk.rows);
        if self
            .checkpoints
            .due(self.tables[chunk.table].checkpoint_interval)
        {
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
        let file = PartFile::create(
            self.settings.fs.as_ref(),
            &open.folder,
            name,
            &output.header,
        )?;
        open.part = Some(match self.settings.format {
            Format::Csv | Format::Ndjson => Part::Encoded(file),
            Format::Parquet => {
                let path = open.folder.join(&file.name);
                let mut columns: Vec<(String, ParquetType)> = output
                    .columns
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            c.parquet_type.unwrap_or(ParquetType::String),
                        )
                    })
                    .collect();
                if self.settings.change_columns {
                    columns.extend(
                        [OP_COLUMN, SYNCED_AT_COLUMN].map(|n| (n.to_owned(), ParquetType::String)),
                    );
                }
                let part = ParquetPart::create(
                    file,
                    &columns,
                    self.settings.compression,
                    self.settings.row_group_bytes,
                )
                .map_err(|source| WriteError {
                    what: "data file",
                    path,
                    source,
                })?;
                Part::Parquet(Box::new(part))
            }
        });
        open.new_entries = true;
        Ok(())
    }

    /// Makes the current part durable and records it as closed.
    fn close_part(&mut self, table: usize) -> Result<(), WriteError> {
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        if let Some(part) = open.part.take() {
            open.closed
                .push(part.close(&open.folder, &self.state.run_id)?);
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
        let manifest = Manifest::after_load(
            &TableDescription {
                schema: &output.schema,
                name: &output.name,
                primary_key: &output.primary_key,
                columns: &output.columns,
                format: self.settings.format,
                compression: self.settings.compression,
                change_columns: self.settings.change_columns,
            },
            FinishedLoad {
                run_id: &self.state.run_id,
                load: &load,
                started_at: state.started_at.clone().unwrap_or_default(),
                finished_at: finished_at.clone(),
                rows: state.rows,
                changes: manifest::change_counts(state, &load),
            },
            &open.history,
            &open.carried,
            &open.closed,
        );
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
}

/// Removes what an unfinished load of `table` wrote in run `run_id`: every part file for a
/// full load (and its manifest); for an incremental load only this run's files, so the
/// earlier loads and the manifest listing them stay.
pub(crate) fn discard_table_output(
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
