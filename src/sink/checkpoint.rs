//! Checkpoints and resume. A checkpoint makes every data file, key list and new folder entry
//! of the open tables durable before the state file that names them is replaced, so the state
//! never claims more than the disk holds; resume cuts a table's files back to what the last
//! checkpoint recorded and goes on appending from there.

use std::path::Path;
use std::time::{Duration, Instant};

use super::durable::FileOps;
use super::part::{Part, PartFile, remove_part_files};
use super::{Carried, Clock, OpenTable, WriteError, Writer};
use crate::manifest::{self, FileEntry};
use crate::model::Format;
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
    pub(crate) fn new(every: Option<Duration>, clock: Clock) -> CheckpointRule {
        CheckpointRule {
            every,
            clock,
            rows_since: 0,
            last: None,
            unrecorded: false,
        }
    }

    /// `rows` rows were written.
    pub(crate) fn wrote(&mut self, rows: u64) {
        self.rows_since += rows;
        self.unrecorded = true;
    }

    /// A partition finished: the state has news without a row written.
    pub(crate) fn progressed(&mut self) {
        self.unrecorded = true;
    }

    pub(crate) fn due(&self, row_interval: u64) -> bool {
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
    pub(crate) fn checkpointed(&mut self) {
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
        fs: &dyn FileOps,
        state: &mut TableState,
        run_id: &str,
    ) -> Result<(), WriteError> {
        if self.part.as_ref().is_some_and(Part::worth_closing)
            && let Some(part) = self.part.take()
        {
            self.closed.push(part.close(&self.folder, run_id)?);
        }
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
/// as closed manifest entries, the last one to append to (CSV, NDJSON; a Parquet part is
/// complete at its recorded length and closed as it is).
fn reopen_files(
    fs: &dyn FileOps,
    folder: &Path,
    committed: &[CommittedFile],
    run_id: &str,
    format: Format,
) -> Result<(Vec<FileEntry>, Option<Part>), WriteError> {
    let mut closed = Vec::new();
    let mut last = None;
    for (i, file) in committed.iter().enumerate() {
        let part = PartFile::reopen(fs, folder, file)?;
        if i + 1 == committed.len() && format != Format::Parquet {
            last = Some(Part::Encoded(part));
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
            open.make_durable(fs, &mut self.state.tables[table], &self.state.run_id)?;
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
    pub(crate) fn resume_table(&mut self, table: usize) -> Result<Vec<PartitionState>, WriteError> {
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
        let (closed, part) = reopen_files(fs, &folder, &committed, &run_id, self.settings.format)?;
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::durable::power_cut::PowerCutFs;
    use crate::model::Tier;

    /// A clock that stands still until the test moves it on by whole seconds.
    fn manual_clock() -> (Clock, Arc<AtomicU64>) {
        let start = Instant::now();
        let seconds = Arc::new(AtomicU64::new(0));
        let read = Arc::clone(&seconds);
        let clock: Clock =
            Arc::new(move || start + Duration::from_secs(read.load(Ordering::SeqCst)));
        (clock, seconds)
    }

    #[test]
    fn without_the_time_rule_only_the_row_interval_makes_a_checkpoint_due() {
        let (clock, _) = manual_clock();
        let mut rule = CheckpointRule::new(None, clock);
        assert!(!rule.due(10));
        rule.wrote(9);
        assert!(!rule.due(10));
        rule.wrote(1);
        assert!(rule.due(10));
        rule.checkpointed();
        assert!(!rule.due(10), "the count starts again");
        rule.progressed();
        assert!(
            !rule.due(10),
            "a finished partition waits for the next checkpoint"
        );
        assert!(rule.due(0));
    }

    #[test]
    fn the_time_rule_checkpoints_the_first_news_at_once_then_every_period() {
        let (clock, seconds) = manual_clock();
        let mut rule = CheckpointRule::new(Some(Duration::from_secs(5)), clock);
        assert!(!rule.due(u64::MAX), "nothing to record");
        rule.wrote(1);
        assert!(
            rule.due(u64::MAX),
            "a process's first write is checkpointed at once"
        );
        rule.checkpointed();
        rule.wrote(1);
        seconds.store(4, Ordering::SeqCst);
        assert!(!rule.due(u64::MAX), "4 s after the last checkpoint");
        seconds.store(5, Ordering::SeqCst);
        assert!(rule.due(u64::MAX), "5 s after the last checkpoint");
        rule.checkpointed();
        seconds.store(60, Ordering::SeqCst);
        assert!(!rule.due(u64::MAX), "nothing new since, however long ago");
        // A checkpoint that recorded nothing of this writer's (the validation start) does not
        // move the mark: news 55 s after the last real one is due at once.
        rule.checkpointed();
        rule.progressed();
        assert!(rule.due(u64::MAX));
    }

    fn folder_on(fs: &PowerCutFs) -> PathBuf {
        let folder = PathBuf::from("/out/t");
        fs.create_dir_all(&folder).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.sync_dir(Path::new("/out")).unwrap();
        folder
    }

    /// A durable file of `bytes` in `folder`.
    fn durable_file(fs: &PowerCutFs, folder: &Path, name: &str, bytes: &[u8]) {
        let mut file = fs.create(&folder.join(name)).unwrap();
        file.write_all(bytes).unwrap();
        file.sync().unwrap();
        fs.sync_dir(folder).unwrap();
    }

    fn committed(name: &str, bytes: u64, rows: u64) -> CommittedFile {
        CommittedFile {
            name: name.into(),
            bytes,
            rows,
        }
    }

    #[test]
    fn resume_cuts_each_file_back_to_its_checkpoint_durably_and_hashes_what_stays() {
        let fs = PowerCutFs::new();
        let folder = folder_on(&fs);
        // Both files hold a row written after the checkpoint.
        durable_file(&fs, &folder, "t-00001.csv", b"h\n1\n2\n3\n");
        durable_file(&fs, &folder, "t-00002.csv", b"h\n4\n5\n");
        let files = [
            committed("t-00001.csv", 6, 2),
            committed("t-00002.csv", 4, 1),
        ];
        let (closed, last) = reopen_files(&fs, &folder, &files, "run-1", Format::Csv).unwrap();
        assert_eq!(
            closed,
            [FileEntry {
                name: "t-00001.csv".into(),
                run_id: "run-1".into(),
                bytes: 6,
                rows: 2,
                sha256: hex::encode(Sha256::digest(b"h\n1\n2\n")),
            }]
        );
        let mut last = last.expect("the last file stays open");
        assert_eq!(last.committed(), committed("t-00002.csv", 4, 1));
        // Appending goes on after the kept bytes, and so does the checksum.
        last.append(&folder, b"5'\n", None, 1).unwrap();
        assert_eq!(
            last.close(&folder, "run-1").unwrap().sha256,
            hex::encode(Sha256::digest(b"h\n4\n5'\n"))
        );
        // The cut is on the disk: a power cut does not bring the dropped rows back.
        fs.cut_power_now();
        fs.reboot();
        assert_eq!(fs.read(&folder.join("t-00001.csv")).unwrap(), b"h\n1\n2\n");
        assert_eq!(fs.read(&folder.join("t-00002.csv")).unwrap(), b"h\n4\n5'\n");
    }

    #[test]
    fn resume_refuses_a_file_shorter_than_its_checkpoint_or_missing() {
        let fs = PowerCutFs::new();
        let folder = folder_on(&fs);
        durable_file(&fs, &folder, "t-00001.csv", b"h\n1\n");
        let short = reopen_files(
            &fs,
            &folder,
            &[committed("t-00001.csv", 100, 9)],
            "r",
            Format::Csv,
        )
        .err()
        .expect("refused");
        assert_eq!(short.what, "checkpointed data file");
        assert!(
            short
                .to_string()
                .contains("it holds 4 bytes but the checkpoint recorded 100"),
            "{short}"
        );
        assert_eq!(fs.read(&folder.join("t-00001.csv")).unwrap(), b"h\n1\n");
        let missing = reopen_files(
            &fs,
            &folder,
            &[committed("t-00009.csv", 2, 0)],
            "r",
            Format::Csv,
        );
        assert!(missing.is_err());
        let (closed, last) = reopen_files(&fs, &folder, &[], "r", Format::Csv).unwrap();
        assert!(closed.is_empty() && last.is_none());
    }

    #[test]
    fn a_checkpoint_makes_durable_every_file_and_entry_the_state_names() {
        let fs = PowerCutFs::new();
        let folder = folder_on(&fs);
        let mut open = OpenTable::new(folder.clone(), 1, Carried::default());
        let mut first = PartFile::create(&fs, &folder, "t-00001.csv".into(), b"h\n").unwrap();
        first.append(&folder, b"1\n").unwrap();
        first.rows = 1;
        first.sync(&folder).unwrap();
        open.closed.push(first.entry("run-1"));
        let mut second = PartFile::create(&fs, &folder, "t-00002.csv".into(), b"h\n").unwrap();
        second.append(&folder, b"2\n3\n").unwrap();
        second.rows = 2;
        open.part = Some(Part::Encoded(second));
        let mut keys = fs.create(&folder.join("_keys-run-1.bin")).unwrap();
        keys.write_all(b"k1k2k3").unwrap();
        open.key_file = Some((keys, 6));
        open.new_entries = true;
        let mut state = TableState::fresh("dbo.t".into(), Tier::Small, "t".into());
        state.key_list_writing = Some(committed("_keys-run-1.bin", 0, 0));

        open.make_durable(&fs, &mut state, "run-1").unwrap();

        assert_eq!(
            state.files,
            [
                committed("t-00001.csv", 4, 1),
                committed("t-00002.csv", 6, 2)
            ]
        );
        assert_eq!(state.key_list_writing.as_ref().map(|k| k.bytes), Some(6));
        assert!(!open.new_entries);
        // What the state will name survives a power cut right after: entries and bytes.
        fs.cut_power_now();
        fs.reboot();
        for file in state.files.iter().chain(&state.key_list_writing) {
            let on_disk = fs.read(&folder.join(&file.name)).unwrap_or_default();
            assert_eq!(on_disk.len() as u64, file.bytes, "{}", file.name);
        }
    }
}
