//! The checkpoint file `_state.json`: what is durably written, per table and partition.
//!
//! Only the writer thread writes it, and only after the data files it describes are fsynced
//! (ARCHITECTURE.md, "Durability"). A crash therefore leaves a state that never claims more
//! than the disk holds; resume truncates files back to the lengths recorded here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable::{self, FileOps};
use crate::error::StateError;
use crate::model::{
    Compression, Dialect, Format, KeyValue, Load, LoadKind, PartitionSpec, Position, ReadMode, Tier,
};

/// Bumped when the layout changes; a state of another version is refused, never guessed at.
pub(crate) const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub(crate) version: u32,
    pub(crate) run_id: String,
    pub(crate) started_at: String,
    pub(crate) last_checkpoint_at: Option<String>,
    pub(crate) finished: bool,
    pub(crate) source: SourceIdentity,
    /// In plan order.
    pub(crate) tables: Vec<TableState>,
    /// Length of `_validation.ndjson` this run's records have reached. A resumed run cuts the
    /// file back to it, so a record written before a crash is neither lost nor doubled.
    #[serde(default)]
    pub(crate) validation_bytes: Option<u64>,
}

/// What the output belongs to; a resume against another database or format is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceIdentity {
    pub(crate) dialect: Dialect,
    pub(crate) database: String,
    pub(crate) format: Format,
    pub(crate) compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TableStatus {
    Pending,
    InProgress,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableState {
    /// `schema.table`.
    pub(crate) table: String,
    pub(crate) tier: Tier,
    /// Folder under `output_dir`.
    pub(crate) folder: String,
    pub(crate) status: TableStatus,
    pub(crate) expected_rows: Option<u64>,
    /// `expected_rows` is the catalog's estimate (`row_counts: catalog`), not a count.
    #[serde(default)]
    pub(crate) expected_estimated: bool,
    /// Rows durably written.
    pub(crate) rows: u64,
    pub(crate) files: Vec<CommittedFile>,
    pub(crate) partitions: Vec<PartitionState>,
    pub(crate) started_at: Option<String>,
    pub(crate) finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// What this run reads of the table (full or incremental, with its range).
    #[serde(default)]
    pub(crate) load: Option<Load>,
    /// What the table's files are complete up to. Carried from run to run; moved only in the
    /// checkpoint that marks the table done.
    #[serde(default)]
    pub(crate) position: Option<Position>,
    /// The key list of the last finished load (a file in the table folder), for `key_scan`.
    #[serde(default)]
    pub(crate) key_list: Option<String>,
    /// This run's key list and its durable length.
    #[serde(default)]
    pub(crate) key_list_writing: Option<CommittedFile>,
    /// Delete rows durably written by this run's load.
    #[serde(default)]
    pub(crate) deleted: u64,
    /// Keys of this run's key scan that the previous list did not hold.
    #[serde(default)]
    pub(crate) new_keys: u64,
}

impl TableState {
    /// This run reads the table incrementally: earlier loads' files and manifest stay.
    pub(crate) fn incremental_load(&self) -> bool {
        self.load
            .as_ref()
            .is_some_and(|l| l.kind == crate::model::LoadKind::Incremental)
    }

    /// A table not yet started in this run, keeping what earlier runs committed.
    pub(crate) fn fresh(table: String, tier: Tier, folder: String) -> TableState {
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
pub(crate) struct CommittedFile {
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PartitionStatus {
    Pending,
    InProgress,
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartitionState {
    pub(crate) spec: PartitionSpec,
    pub(crate) status: PartitionStatus,
    /// The last key durably written; the partition resumes after it.
    pub(crate) last_key: Option<Vec<KeyValue>>,
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
pub(crate) fn load(fs: &dyn FileOps, path: &Path) -> Result<Option<RunState>, StateError> {
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
    pub(crate) fn check_source(
        &self,
        path: &Path,
        ours: &SourceIdentity,
    ) -> Result<(), StateError> {
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
    pub(crate) fn table(&self, name: &str) -> Option<&TableState> {
        self.tables.iter().find(|t| t.table == name)
    }

    /// Writes the state atomically: temporary file, fsync, rename, fsync of the folder.
    pub(crate) fn save(&self, fs: &dyn FileOps, path: &Path) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::power_cut::PowerCutFs;
    use crate::model::{KeyRange, ReadMode, SyncMode};

    const PATH: &str = "/out/_state.json";

    fn identity() -> SourceIdentity {
        SourceIdentity {
            dialect: Dialect::Postgres,
            database: "clarity".into(),
            format: Format::Csv,
            compression: Compression::None,
        }
    }

    /// A run in the middle of a table, with every kind of field filled in.
    fn run_state(run_id: &str) -> RunState {
        let mut table = TableState::fresh("dbo.t".into(), Tier::Small, "dbo.t".into());
        table.status = TableStatus::InProgress;
        table.expected_rows = Some(41);
        table.rows = 20;
        table.files = vec![CommittedFile {
            name: "t-00001.csv".into(),
            bytes: 300,
            rows: 20,
        }];
        table.partitions = vec![PartitionState {
            spec: PartitionSpec {
                id: 0,
                mode: ReadMode::Keyset,
                range: KeyRange::ALL,
            },
            status: PartitionStatus::InProgress,
            last_key: Some(vec![KeyValue::Int(20), KeyValue::Text("MRN-ü".into())]),
        }];
        table.load = Some(Load::full_default());
        table.position = Some(Position {
            mode: SyncMode::ChangeTracking,
            value: Some("7".into()),
        });
        RunState {
            version: STATE_VERSION,
            run_id: run_id.into(),
            started_at: "2026-12-06T12:00:00.000Z".into(),
            last_checkpoint_at: None,
            finished: false,
            source: identity(),
            tables: vec![table],
            validation_bytes: Some(123),
        }
    }

    fn disk() -> PowerCutFs {
        let fs = PowerCutFs::new();
        fs.create_dir_all(Path::new("/out")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs
    }

    fn json(state: &RunState) -> serde_json::Value {
        serde_json::to_value(state).unwrap()
    }

    #[test]
    fn a_saved_state_reads_back_as_it_was_and_none_is_none() {
        let fs = disk();
        let path = Path::new(PATH);
        assert!(load(&fs, path).unwrap().is_none());
        let state = run_state("run-1");
        state.save(&fs, path).unwrap();
        let back = load(&fs, path).unwrap().expect("a state");
        assert_eq!(json(&back), json(&state));
        assert_eq!(back.table("dbo.t").map(|t| t.rows), Some(20));
        assert!(back.table("dbo.other").is_none());
    }

    #[test]
    fn a_state_of_another_version_or_damaged_is_refused_not_guessed_at() {
        let fs = disk();
        let path = Path::new(PATH);
        let write = |value: &serde_json::Value| {
            crate::durable::write_atomically(&fs, path, value.to_string().as_bytes()).unwrap()
        };
        let mut other = json(&run_state("run-1"));
        other["version"] = (STATE_VERSION + 1).into();
        write(&other);
        assert!(matches!(
            load(&fs, path),
            Err(StateError::Version { found, .. }) if found == u64::from(STATE_VERSION) + 1
        ));
        let mut unversioned = json(&run_state("run-1"));
        unversioned.as_object_mut().unwrap().remove("version");
        write(&unversioned);
        let error = load(&fs, path).expect_err("refused");
        assert!(error.to_string().contains("no version number"), "{error}");
        let mut wrong = json(&run_state("run-1"));
        wrong["tables"] = "none".into();
        write(&wrong);
        assert!(matches!(load(&fs, path), Err(StateError::Corrupt { .. })));
        crate::durable::write_atomically(&fs, path, b"{\"version\": 1,").unwrap();
        let error = load(&fs, path).expect_err("refused");
        assert!(error.to_string().contains("not valid JSON"), "{error}");
    }

    #[test]
    fn a_run_of_another_source_or_format_is_not_resumed() {
        let state = run_state("run-1");
        let path = Path::new(PATH);
        assert!(state.check_source(path, &identity()).is_ok());
        let ndjson = SourceIdentity {
            format: Format::Ndjson,
            ..identity()
        };
        let error = state.check_source(path, &ndjson).expect_err("refused");
        assert!(matches!(error, StateError::OtherSource { .. }));
        assert!(
            error.to_string().contains("csv files") && error.to_string().contains("ndjson files"),
            "{error}"
        );
    }

    #[test]
    fn a_power_cut_at_any_step_of_a_save_leaves_the_old_state_or_the_new_one_whole() {
        let old = run_state("run-1");
        let mut new = run_state("run-1");
        new.tables[0].rows = 40;
        new.tables[0].files[0].bytes = 600;
        let path = Path::new(PATH);
        let setup = || {
            let fs = disk();
            old.save(&fs, path).unwrap();
            fs
        };
        let clean = setup();
        let before = clean.steps().len();
        new.save(&clean, path).unwrap();
        let steps = clean.steps().len() - before;
        assert!(
            steps >= 4,
            "create, write, fsync, rename, folder fsync: {steps}"
        );
        for n in before + 1..=before + steps {
            let fs = setup();
            fs.cut_power_at(n);
            assert!(new.save(&fs, path).is_err(), "step {n}");
            fs.reboot();
            let survived = load(&fs, path)
                .unwrap_or_else(|e| panic!("cut at step {n}: {e}"))
                .expect("a state file");
            assert!(
                json(&survived) == json(&old) || json(&survived) == json(&new),
                "cut at step {n}: a mix of the two"
            );
        }
        // Past the folder's fsync the new state stands.
        let fs = setup();
        new.save(&fs, path).unwrap();
        fs.cut_power_now();
        fs.reboot();
        assert_eq!(json(&load(&fs, path).unwrap().unwrap()), json(&new));
    }
}
