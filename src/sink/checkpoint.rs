//! Checkpoints and resume. A checkpoint makes every data file, key list and new folder entry
//! of the open tables durable before the state file that names them is replaced, so the state
//! never claims more than the disk holds; resume cuts a table's files back to what the last
//! checkpoint recorded and goes on appending from there.

use std::path::Path;
use std::time::{Duration, Instant};

use super::part::{PartFile, remove_part_files};
use super::{Carried, Clock, OpenTable, WriteError, Writer};
use crate::manifest::{self, FileEntry};
use crate::state::{CommittedFile, PartitionState, PartitionStatus, TableState, TableStatus};

/// When a checkpoint is due: at a table's row interval since the last one, or once something
/// new was written or finished and `every` has passed since the last checkpoint that recorded
/// this writer's work. Before there is one, the first thing written is checkpointed at once: a
/// sync process restarted after a crash keeps its first batch, so a driver that crashes early
/// in every attempt still shows the supervisor progress (and the run gets through) as long as
/// each attempt gets a batch through.
pub(super) struct CheckpointRule {
    every: Option<Duration>,
    clock: Clock,
    rows_since: u64,
    /// When a checkpoint last recorded something this writer wrote.
    last: Option<Instant>,
    /// Something was written or a partition finished since the last checkpoint.
    unrecorded: bool,
}

impl CheckpointRule {
    pub fn new(every: Option<Duration>, clock: Clock) -> CheckpointRule {
        CheckpointRule {
            every,
            clock,
            rows_since: 0,
            last: None,
            unrecorded: false,
        }
    }

    /// `rows` rows were written.
    pub fn wrote(&mut self, rows: u64) {
        self.rows_since += rows;
        self.unrecorded = true;
    }

    /// A partition finished: the state has news without a row written.
    pub fn progressed(&mut self) {
        self.unrecorded = true;
    }

    pub fn due(&self, row_interval: u64) -> bool {
        if self.rows_since >= row_interval {
            return true;
        }
        let Some(every) = self.every else {
            return false;
        };
        self.unrecorded
            && self
                .last
                .is_none_or(|last| (self.clock)().saturating_duration_since(last) >= every)
    }

    /// A checkpoint was written: the count and the clock start again.
    pub fn checkpointed(&mut self) {
        self.rows_since = 0;
        if self.unrecorded {
            self.last = Some((self.clock)());
            self.unrecorded = false;
        }
    }
}

impl OpenTable {
    /// Makes everything of the table the state is about to name durable (data files, key list,
    /// the folder's new entries) and records it in `state`. The caller writes the state after.
    fn make_durable(
        &mut self,
        fs: &dyn crate::sink::durable::FileOps,
        state: &mut TableState,
    ) -> Result<(), WriteError> {
        let mut committed: Vec<CommittedFile> = self
            .closed
            .iter()
            .map(|f| CommittedFile {
                name: f.name.clone(),
                bytes: f.bytes,
                rows: f.rows,
            })
            .collect();
        if let Some(part) = &mut self.part {
            part.sync(&self.folder)?;
            committed.push(part.committed());
        }
        state.files = committed;
        if let (Some((file, length)), Some(writing)) =
            (&mut self.key_file, state.key_list_writing.as_mut())
        {
            file.sync().map_err(|source| WriteError {
                what: "key list",
                path: self.folder.join(&writing.name),
                source,
            })?;
            writing.bytes = *length;
        }
        if self.new_entries {
            fs.sync_dir(&self.folder).map_err(|source| WriteError {
                what: "folder",
                path: self.folder.clone(),
                source,
            })?;
            self.new_entries = false;
        }
        Ok(())
    }
}

/// A table's checkpointed part files opened again at their recorded lengths: the earlier ones
/// as closed manifest entries, the last one to append to.
fn reopen_files(
    fs: &dyn crate::sink::durable::FileOps,
    folder: &Path,
    committed: &[CommittedFile],
    run_id: &str,
) -> Result<(Vec<FileEntry>, Option<PartFile>), WriteError> {
    let mut closed = Vec::new();
    let mut last = None;
    for (i, file) in committed.iter().enumerate() {
        let part = PartFile::reopen(fs, folder, file)?;
        if i + 1 == committed.len() {
            last = Some(part);
        } else {
            closed.push(part.entry(run_id));
        }
    }
    Ok((closed, last))
}

impl Writer {
    /// Durable order: fsync every open data file, then replace the state file atomically.
    pub(super) fn checkpoint(&mut self) -> Result<(), WriteError> {
        let fs = self.settings.fs.as_ref();
        for (&table, open) in &mut self.open {
            open.make_durable(fs, &mut self.state.tables[table])?;
        }
        self.state.last_checkpoint_at = Some(manifest::now_rfc3339());
        self.state
            .save(fs, &self.settings.state_path)
            .map_err(|source| WriteError {
                what: "state file",
                path: self.settings.state_path.clone(),
                source,
            })?;
        self.checkpoints.checkpointed();
        Ok(())
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
        let (closed, part) = reopen_files(fs, &folder, &committed, &run_id)?;
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
}
