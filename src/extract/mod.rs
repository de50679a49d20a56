//! Extraction: the tiers run in order, each with its own pool of worker threads (each with one
//! connection) feeding the one writer thread through a bounded channel.

mod failure;
pub(crate) mod fetch;
mod piecewise;
mod scheduler;
pub(crate) mod text_check;
mod watchdog;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded, unbounded};
use fetch::BufferPolicy;
use parking_lot::{Mutex, RwLock};

use crate::config::{Config, TierSettings};
use crate::durable::{self, Disk, FreeSpaceCheck};
use crate::error::{Error, Result};
use crate::incremental;
use crate::incremental::sql::InvalidPosition;
use crate::manifest::{self, ManifestColumn};
use crate::model::{
    Compression, Dialect, Format, Load, LoadKind, ParquetType, ReadMode, SyncMode, Tier,
};
use crate::plan::partition::{Partition, ReadChoice};
use crate::plan::{Plan, TablePlan, TierPlan};
use crate::retry::RetryPolicy;
use crate::shutdown::StopFlag;
use crate::sink::encode::RowEncoder;
use crate::sink::protocol::Message;
use crate::sink::{
    TableOutcome, TableOutput, WriteError, Writer, WriterSettings, files, system_clock,
};
use crate::source::catalog::{Column, Table};
use crate::source::key::KeyType;
use crate::source::select::TableQuery;
use crate::source::types::{self, ValueKind};
use crate::source::{Source, session};
use crate::state::{RunState, SourceIdentity, Start, TableState, TableStatus, table_start};
use scheduler::{Scheduler, WorkItem};
use watchdog::{Watchdog, WatchdogEvent, WorkerSlot};
use worker::Worker;

/// Settings every worker reads with.
#[derive(Debug, Clone)]
pub(crate) struct ReadSettings {
    pub(crate) compression: Compression,
    /// Budget for one fetch buffer; a worker holds two (one filling, one encoding).
    pub(crate) buffers: BufferPolicy,
    pub(crate) retry: RetryPolicy,
    /// Run on every new worker connection (isolation level, lock timeout).
    pub(crate) session_setup: Vec<String>,
    pub(crate) stall_timeout: Duration,
    /// Checked before a table and each of its partitions start.
    pub(crate) free_space: Option<FreeSpaceCheck>,
    /// Where a row too large to hold in memory waits for the writer (the output folder, so it
    /// takes the space the row will take there).
    pub(crate) spool_dir: PathBuf,
}

/// What every worker of the run shares. Workers are plain threads that own an `Arc` of it, so
/// one the watchdog gave up on can never hold the run back.
pub(crate) struct Context {
    pub(crate) source: Source,
    pub(crate) jobs: Vec<TableJob>,
    pub(crate) read: ReadSettings,
    pub(crate) stop: &'static StopFlag,
}

/// A table prepared for reading.
pub(crate) struct TableJob {
    pub(crate) table: Table,
    pub(crate) tier: Tier,
    pub(crate) settings: TierSettings,
    pub(crate) dialect: Dialect,
    pub(crate) kinds: Vec<ValueKind>,
    /// Positions of the key columns in the SELECT list, in key order.
    pub(crate) key_indices: Vec<usize>,
    /// The key columns' types, in key order.
    pub(crate) key_types: Vec<KeyType>,
    pub(crate) mode: ReadMode,
    /// This run's load; its upper bound is set when the table is prepared.
    pub(crate) load: RwLock<Load>,
    format: Format,
    /// Each column's type in the Parquet files and why it is text when it is (Parquet only).
    parquet_types: Vec<(ParquetType, Option<&'static str>)>,
    /// The run's start, written as `_ehi_synced_at`; `None` without change columns.
    synced_at: Option<String>,
    /// The key list of the table's last finished load, for a key scan to compare with.
    pub(crate) previous_key_list: Option<PathBuf>,
    /// Where this run's key scan keeps its buckets (see `incremental::key_diff`).
    pub(crate) key_scan_dir: PathBuf,
}

impl TableJob {
    fn new(
        dialect: Dialect,
        table: Table,
        tier: Tier,
        settings: TierSettings,
        format: Format,
        load: Load,
    ) -> TableJob {
        let kinds: Vec<ValueKind> = table
            .columns
            .iter()
            .map(|c| ValueKind::of(dialect, c))
            .collect();
        let parquet_types = match format {
            Format::Parquet => table
                .columns
                .iter()
                .zip(&kinds)
                .map(|(c, k)| types::parquet_type(dialect, c, *k))
                .collect(),
            Format::Csv | Format::Ndjson => Vec::new(),
        };
        let choice = ReadChoice::of(dialect, &table);
        let mut table = table;
        if choice.mode == ReadMode::Stream {
            if !table.primary_key.is_empty() {
                log::warn!("{}: read as {}", table.full_name(), choice.reason);
            }
            table.primary_key.clear();
        }
        let key_indices: Vec<usize> = table
            .primary_key
            .iter()
            .filter_map(|k| table.columns.iter().position(|c| &c.name == k))
            .collect();
        TableJob {
            table,
            tier,
            settings,
            dialect,
            kinds,
            key_indices,
            key_types: choice.key_types,
            mode: choice.mode,
            load: RwLock::new(load),
            format,
            parquet_types,
            synced_at: None,
            previous_key_list: None,
            key_scan_dir: PathBuf::new(),
        }
    }

    fn encoder(&self) -> RowEncoder {
        let encoder = RowEncoder::new(
            self.format,
            self.table
                .columns
                .iter()
                .zip(&self.kinds)
                .map(|(c, k)| (c.name.clone(), *k))
                .collect(),
        )
        .with_single_precision(
            self.table
                .columns
                .iter()
                .map(|c| ValueKind::is_single_precision(self.dialect, c))
                .collect(),
        )
        .with_parquet_types(self.parquet_types.iter().map(|(t, _)| *t).collect());
        match &self.synced_at {
            Some(at) => encoder.with_change_columns(at),
            None => encoder,
        }
    }

    /// The statements of this run's load: the whole table, its cursor range, or its changes.
    pub(crate) fn query(&self) -> Result<TableQuery, InvalidPosition> {
        let load = self.load.read();
        let whole = TableQuery::new(self.dialect, &self.table);
        if load.kind != LoadKind::Incremental {
            return Ok(whole);
        }
        match &load.mode {
            SyncMode::ChangeTracking => {
                let (from, to) = load.change_tracking_versions()?;
                Ok(incremental::sql::change_tracking_query(
                    &self.table,
                    from,
                    to,
                ))
            }
            SyncMode::Cursor { column, kind } => {
                let Some(column) = self.table.columns.iter().find(|c| &c.name == column) else {
                    return Err(InvalidPosition {
                        column: column.clone(),
                        kind: kind.name(),
                    });
                };
                let filter = incremental::sql::cursor_filter(
                    self.dialect,
                    column,
                    *kind,
                    load.from.as_deref(),
                    load.to.as_deref(),
                    load.lookback_minutes,
                )?;
                Ok(whole.filtered(Some(filter)))
            }
            SyncMode::Full { .. } => Ok(whole),
        }
    }

    /// The columns a read fetches: the table's, and the op of a change tracking read.
    pub(crate) fn fetch_columns(&self) -> (Vec<Column>, Vec<ValueKind>, bool) {
        let mut columns = self.table.columns.clone();
        let mut kinds = self.kinds.clone();
        let op_column = self.load.read().reads_changes();
        if op_column {
            columns.push(Column {
                name: crate::model::OP_COLUMN.into(),
                source_type: "int".into(),
                length: None,
                precision: None,
                scale: None,
                nullable: false,
                key_position: None,
                collation: None,
            });
            kinds.push(ValueKind::Integer);
        }
        (columns, kinds, op_column)
    }
}

/// The result of `sync`.
pub(crate) struct RunSummary {
    pub(crate) run_id: String,
    pub(crate) outcomes: Vec<TableOutcome>,
    pub(crate) seconds: f64,
    /// Stopped by a signal before every table was read; the state file holds the resume point.
    pub(crate) interrupted: bool,
}

/// Copies every table of the plan into `config.output_dir`, which the caller has created, each
/// tier with the settings the plan carries. With `previous`, the state of an unfinished run,
/// finished tables are skipped and interrupted ones resumed from their last checkpoint. `stop`
/// ends the run gracefully between batches.
pub(crate) fn run(
    config: &Config,
    source: &Source,
    plan: &Plan,
    previous: Option<RunState>,
    stop: &'static StopFlag,
) -> Result<RunSummary> {
    let started = Instant::now();
    let output_dir = config.output_dir.clone();
    let read = ReadSettings {
        // Parquet compresses inside its files: the cell stream travels as it is.
        compression: match config.format {
            Format::Parquet => Compression::None,
            Format::Csv | Format::Ndjson => config.compression,
        },
        buffers: BufferPolicy::for_run(config, plan.dialect),
        retry: RetryPolicy::of(config),
        session_setup: session::setup_statements(
            plan.dialect,
            config.isolation,
            config.lock_timeout,
        ),
        stall_timeout: config.stall_timeout,
        spool_dir: output_dir.clone(),
        free_space: config.min_free_bytes.map(|min_bytes| FreeSpaceCheck {
            dir: output_dir.clone(),
            min_bytes,
        }),
    };
    let planned: Vec<(&TierPlan, &TablePlan)> = plan.tables().collect();
    let names: Vec<String> = planned.iter().map(|(_, t)| t.full_name()).collect();
    let mut folders = files::unique_folder_names(&names);
    // A table keeps its folder from run to run: its manifest and key list are there.
    if let Some(previous) = &previous {
        for (name, folder) in names.iter().zip(folders.iter_mut()) {
            if let Some(table) = previous.table(name) {
                folder.clone_from(&table.folder);
            }
        }
    }
    let mut jobs: Vec<TableJob> = planned
        .iter()
        .map(|(tier, table)| {
            TableJob::new(
                plan.dialect,
                table.table.clone(),
                tier.tier,
                tier.settings,
                config.format,
                table.load.clone(),
            )
        })
        .collect();
    let (state, starts) = initial_state(config, plan, &jobs, &folders, previous);
    for (((job, table), folder), start) in jobs
        .iter_mut()
        .zip(&state.tables)
        .zip(&folders)
        .zip(&starts)
    {
        if let (Some(load), Start::Resume) = (&table.load, start) {
            // A resumed table goes on with the load it started.
            *job.load.write() = load.clone();
        }
        job.synced_at = config
            .incremental
            .change_columns
            .then(|| state.started_at.clone());
        job.previous_key_list = table
            .key_list
            .as_ref()
            .map(|name| output_dir.join(folder).join(name));
        job.key_scan_dir = incremental::key_diff::work_dir(&output_dir.join(folder), &state.run_id);
    }
    let outputs = table_outputs(&jobs, &folders, read.compression)?;
    let run_id = state.run_id.clone();
    let mut outcomes: Vec<TableOutcome> = starts
        .iter()
        .enumerate()
        .filter_map(|(t, &start)| finished_earlier(&state.tables[t], start))
        .collect();
    let mut writer = Writer::new(
        WriterSettings {
            fs: Arc::new(Disk),
            output_dir: output_dir.clone(),
            change_columns: config.incremental.change_columns,
            state_path: config.state_path.clone(),
            format: config.format,
            compression: config.compression,
            part_file_max_bytes: config.part_file_max_bytes,
            row_group_bytes: config.row_group_bytes,
            checkpoint_every: config.checkpoint_every,
            clock: system_clock(),
        },
        outputs,
        state,
    );
    let mut work: Vec<Vec<WorkItem>> = Vec::with_capacity(jobs.len());
    for (t, start) in starts.iter().enumerate() {
        work.push(match start {
            Start::Fresh => vec![WorkItem::Prepare(t)],
            Start::Done | Start::Skip => Vec::new(),
            Start::Resume => writer
                .resume_table(t)
                .map_err(writer_error)?
                .into_iter()
                .map(|p| {
                    WorkItem::Partition(Partition {
                        table: t,
                        after: p.last_key,
                        spec: p.spec,
                    })
                })
                .collect(),
        });
    }

    let context = Arc::new(Context {
        source: source.clone(),
        jobs,
        read,
        stop,
    });
    // A rendezvous: the writer takes a tier's receiver only once it is done with the last
    // tier. A receiver left queued for a writer that had failed would keep that tier's
    // workers blocked on a full channel for ever.
    let (tiers_tx, tiers_rx) = bounded::<crossbeam_channel::Receiver<Message>>(0);
    let written = std::thread::scope(|scope| {
        let writer_thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn_scoped(scope, move || writer.run(tiers_rx))
            .map_err(|e| Error::Io {
                context: "cannot start the writer thread",
                path: PathBuf::new(),
                source: e,
            })?;
        for TierPlan { tier, settings, .. } in &plan.tiers {
            let tier = *tier;
            let tables: Vec<usize> = (0..context.jobs.len())
                .filter(|&i| context.jobs[i].tier == tier)
                .collect();
            let items: Vec<WorkItem> = tables
                .iter()
                .flat_map(|&t| std::mem::take(&mut work[t]))
                .collect();
            if items.is_empty() || stop.is_set() {
                continue;
            }
            let (tx, rx) = bounded::<Message>(settings.queue_chunks());
            if tiers_tx.send(rx).is_err() {
                break; // the writer stopped; its error is reported below
            }
            let workers = settings
                .threads
                .get()
                .min(tables.len().max(partition_hint(&context.jobs, &tables)));
            log::info!(
                "{} tier: {} table{} with {} worker{}",
                tier,
                tables.len(),
                if tables.len() == 1 { "" } else { "s" },
                workers,
                if workers == 1 { "" } else { "s" }
            );
            run_tier(&context, Arc::new(Scheduler::new(items)), workers, &tx);
            // Ends the tier for the writer even if an abandoned worker still holds a sender.
            if tx.send(Message::TierDone).is_err() {
                break;
            }
        }
        drop(tiers_tx);
        match writer_thread.join() {
            Ok(result) => result.map_err(writer_error),
            Err(_) => Err(Error::Internal(
                "the writer thread stopped unexpectedly".into(),
            )),
        }
    })?;
    outcomes.extend(written);
    // Tables the run never finished (stopped, or the login was refused mid-run).
    for job in &context.jobs {
        let name = job.table.full_name();
        if !outcomes.iter().any(|o| o.table == name) {
            outcomes.push(TableOutcome {
                table: name,
                tier: job.tier,
                status: TableStatus::Pending,
                expected_rows: 0,
                expected_estimated: false,
                rows: 0,
                difference: 0,
                error: None,
            });
        }
    }
    Ok(RunSummary {
        run_id,
        outcomes,
        seconds: started.elapsed().as_secs_f64(),
        interrupted: stop.is_set(),
    })
}

fn writer_error(e: WriteError) -> Error {
    Error::Io {
        context: "the writer failed on",
        source: durable::with_out_of_space_fix(e.source, &e.path),
        path: e.path,
    }
}

/// What the writer needs to know of each table before rows arrive.
fn table_outputs(
    jobs: &[TableJob],
    folders: &[String],
    compression: Compression,
) -> Result<Vec<TableOutput>> {
    jobs.iter()
        .zip(folders)
        .enumerate()
        .map(|(i, (job, folder))| {
            let header = compression
                .compress(job.encoder().header())
                .map_err(|source| Error::Io {
                    context: "cannot compress a header for",
                    path: folder.into(),
                    source,
                })?;
            Ok(TableOutput {
                schema: job.table.schema.clone(),
                name: job.table.name.clone(),
                tier: job.tier,
                folder: folder.clone(),
                position: i + 1,
                checkpoint_interval: job.settings.checkpoint_interval,
                header,
                columns: job
                    .table
                    .columns
                    .iter()
                    .zip(&job.kinds)
                    .enumerate()
                    .map(|(i, (c, k))| {
                        let column = ManifestColumn::new(c, *k);
                        match job.parquet_types.get(i) {
                            Some((t, note)) => column.with_parquet(*t, *note),
                            None => column,
                        }
                    })
                    .collect(),
                primary_key: job.table.primary_key.clone(),
            })
        })
        .collect()
}

/// The state the run starts from, in plan order, and what to do with each table. An unfinished
/// run is resumed; a finished one hands on what it committed (positions, key lists). Tables
/// of `previous` that the plan no longer selects are kept at the end, untouched.
fn initial_state(
    config: &Config,
    plan: &Plan,
    jobs: &[TableJob],
    folders: &[String],
    previous: Option<RunState>,
) -> (RunState, Vec<Start>) {
    let source = SourceIdentity {
        dialect: plan.dialect,
        database: plan.database.clone(),
        format: config.format,
        compression: config.compression,
    };
    let (unfinished, mut state) = match previous {
        Some(previous) if !previous.finished => (
            true,
            RunState {
                finished: false,
                ..previous
            },
        ),
        other => (
            false,
            RunState {
                version: crate::state::STATE_VERSION,
                run_id: new_run_id(),
                started_at: manifest::now_rfc3339(),
                last_checkpoint_at: None,
                finished: false,
                source,
                tables: other.map(|p| p.tables).unwrap_or_default(),
                validation_bytes: None,
            },
        ),
    };
    let mut earlier = std::mem::take(&mut state.tables);
    let mut starts = Vec::with_capacity(jobs.len());
    for (job, folder) in jobs.iter().zip(folders) {
        let name = job.table.full_name();
        let carried = earlier
            .iter()
            .position(|t| t.table == name)
            .map(|i| earlier.remove(i));
        let load = job.load.read().kind;
        let fresh = TableState::fresh(name, job.tier, folder.clone());
        let (mut table, start) = table_start(carried, fresh, unfinished, load, job.mode);
        table.tier = job.tier;
        state.tables.push(table);
        starts.push(start);
    }
    state.tables.append(&mut earlier);
    (state, starts)
}

/// The outcome of a table this run does not read: done by the interrupted run it resumes, or
/// skipped (`full_reload: false`); `None` for a table it reads.
fn finished_earlier(table: &TableState, start: Start) -> Option<TableOutcome> {
    if matches!(start, Start::Fresh | Start::Resume) {
        return None;
    }
    Some(TableOutcome {
        table: table.table.clone(),
        tier: table.tier,
        status: TableStatus::Done,
        expected_rows: table.expected_rows.unwrap_or(table.rows),
        expected_estimated: table.expected_estimated,
        rows: table.rows,
        difference: 0,
        error: None,
    })
}

/// Runs one tier's workers and its watchdog until the tier's queue is empty (or the run stops).
/// A worker the watchdog gave up on is replaced by a new one with a new connection.
fn run_tier(
    context: &Arc<Context>,
    scheduler: Arc<Scheduler>,
    workers: usize,
    tx: &Sender<Message>,
) {
    let (events_tx, events_rx) = unbounded::<TierEvent>();
    let slots = Arc::new(Mutex::new(Vec::new()));
    let spawn = |n: usize| {
        let slot = WorkerSlot::new();
        slots.lock().push(Arc::clone(&slot));
        let (context, scheduler, writer) =
            (Arc::clone(context), Arc::clone(&scheduler), tx.clone());
        let events = events_tx.clone();
        // The worker, and the connection it opens, live on their own thread only.
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || {
                let mut worker = Worker {
                    context,
                    scheduler,
                    writer,
                    slot,
                    connection: None,
                };
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()));
                if ran.is_err() {
                    worker.fail_work_in_hand();
                }
                let abandoned = worker.slot.state.lock().abandoned;
                let _ = events.send(TierEvent::WorkerEnded { abandoned });
            });
        if let Err(e) = spawned {
            log::error!("cannot start a worker thread: {e}");
            let _ = events_tx.send(TierEvent::WorkerEnded { abandoned: false });
        }
    };
    for n in 0..workers {
        spawn(n);
    }
    let (watchdog_done, done) = bounded::<()>(0);
    let (watchdog_tx, watchdog_rx) = unbounded::<WatchdogEvent>();
    let watchdog = Watchdog {
        slots: Arc::clone(&slots),
        scheduler: Arc::clone(&scheduler),
        stall_timeout: context.read.stall_timeout,
        done,
        events: watchdog_tx,
    };
    let watchdog_thread = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || watchdog.run());
    let mut running = workers;
    let mut spawned = workers;
    while running > 0 {
        crossbeam_channel::select! {
            recv(events_rx) -> event => match event {
                // Already counted when it was abandoned.
                Ok(TierEvent::WorkerEnded { abandoned: true }) => {}
                _ => running -= 1,
            },
            recv(watchdog_rx) -> event => {
                if let Ok(WatchdogEvent::Abandoned) = event {
                    // The abandoned thread counts no more; a fresh worker takes its work.
                    running -= 1;
                    if !context.stop.is_set() {
                        spawn(spawned);
                        spawned += 1;
                        running += 1;
                    }
                }
            },
        }
    }
    drop(watchdog_done);
    if let Ok(thread) = watchdog_thread {
        let _ = thread.join();
    }
}

/// A worker thread ended (its queue ran dry, the run stopped, or it was abandoned and has
/// since come back).
enum TierEvent {
    WorkerEnded { abandoned: bool },
}

/// Worker count is capped by the tier's threads; a tier of one table still uses every thread,
/// since the table's partitions are shared.
fn partition_hint(jobs: &[TableJob], tables: &[usize]) -> usize {
    tables
        .iter()
        .map(|&t| match jobs[t].mode {
            ReadMode::Range => usize::MAX,
            ReadMode::Keyset | ReadMode::Stream | ReadMode::KeyScan => 1,
        })
        .max()
        .unwrap_or(1)
}

/// A run id that sorts by time and is safe in file names: `20261125T143301Z-1a2b`.
fn new_run_id() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}-{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyRange, PartitionSpec, Position};
    use crate::state::{PartitionState, PartitionStatus};

    /// What the state file holds of a table an earlier run counted into `partitions`.
    fn carried(status: TableStatus, partitions: usize) -> TableState {
        let mut table = TableState::fresh("dbo.t".into(), Tier::Small, "dbo.t".into());
        table.status = status;
        table.rows = 7;
        table.partitions = (0..partitions)
            .map(|id| PartitionState {
                spec: PartitionSpec {
                    id,
                    mode: ReadMode::Keyset,
                    range: KeyRange::ALL,
                },
                status: PartitionStatus::Pending,
                last_key: None,
            })
            .collect();
        table.position = Some(Position {
            mode: SyncMode::ChangeTracking,
            value: Some("7".into()),
        });
        table.key_list = Some("_keys-run-0.bin".into());
        table
    }

    fn fresh() -> TableState {
        TableState::fresh("dbo.t".into(), Tier::Large, "dbo.t-2".into())
    }

    fn start_of(
        carried: Option<TableState>,
        unfinished: bool,
        load: LoadKind,
        mode: ReadMode,
    ) -> (Start, TableState) {
        let (state, start) = table_start(carried, fresh(), unfinished, load, mode);
        (start, state)
    }

    #[test]
    fn an_unfinished_run_keeps_its_finished_tables_and_resumes_the_others_after_their_checkpoint() {
        use TableStatus::*;
        let (start, state) = start_of(
            Some(carried(Done, 2)),
            true,
            LoadKind::Full,
            ReadMode::Keyset,
        );
        assert_eq!((start, state.rows), (Start::Done, 7));
        for status in [InProgress, Failed] {
            let (start, state) = start_of(
                Some(carried(status, 2)),
                true,
                LoadKind::Full,
                ReadMode::Range,
            );
            assert_eq!(
                (start, state.rows, state.folder.as_str()),
                (Start::Resume, 7, "dbo.t")
            );
        }
        // Without a key to resume after, or before its partitions were known: from the start.
        let (start, _) = start_of(
            Some(carried(InProgress, 1)),
            true,
            LoadKind::Full,
            ReadMode::Stream,
        );
        assert_eq!(start, Start::Fresh);
        let (start, _) = start_of(
            Some(carried(InProgress, 0)),
            true,
            LoadKind::Full,
            ReadMode::Keyset,
        );
        assert_eq!(start, Start::Fresh);
        let (start, state) = start_of(
            Some(carried(Pending, 2)),
            true,
            LoadKind::Full,
            ReadMode::Keyset,
        );
        assert_eq!((start, state.rows), (Start::Fresh, 0));
    }

    #[test]
    fn a_new_run_reads_every_table_again_keeping_what_earlier_loads_committed() {
        let (start, state) = start_of(
            Some(carried(TableStatus::Done, 2)),
            false,
            LoadKind::Incremental,
            ReadMode::Keyset,
        );
        assert_eq!(start, Start::Fresh);
        assert_eq!(
            (state.rows, state.folder.as_str(), state.partitions.len()),
            (0, "dbo.t-2", 0)
        );
        assert_eq!(state.position, carried(TableStatus::Done, 0).position);
        assert_eq!(state.key_list.as_deref(), Some("_keys-run-0.bin"));
        let (start, state) = start_of(
            Some(carried(TableStatus::Done, 2)),
            false,
            LoadKind::Skip,
            ReadMode::Keyset,
        );
        assert_eq!((start, state.rows), (Start::Skip, 7));
        let (start, state) = start_of(None, true, LoadKind::Full, ReadMode::Keyset);
        assert_eq!((start, state.folder.as_str()), (Start::Fresh, "dbo.t-2"));
    }

    #[test]
    fn tables_the_run_does_not_read_count_as_done_with_what_they_hold() {
        let mut done = carried(TableStatus::Done, 2);
        let outcome = finished_earlier(&done, Start::Done).expect("an outcome");
        assert_eq!(
            (outcome.status, outcome.rows, outcome.expected_rows),
            (TableStatus::Done, 7, 7)
        );
        done.expected_rows = Some(9);
        let outcome = finished_earlier(&done, Start::Done).expect("an outcome");
        assert_eq!((outcome.rows, outcome.expected_rows), (7, 9));
        let skipped = finished_earlier(&done, Start::Skip).expect("an outcome");
        assert_eq!((skipped.status, skipped.rows), (TableStatus::Done, 7));
        assert!(finished_earlier(&done, Start::Fresh).is_none());
        assert!(finished_earlier(&done, Start::Resume).is_none());
    }

    #[test]
    fn run_ids_sort_by_time_and_are_safe_in_file_names() {
        let id = new_run_id();
        let (time, pid) = id.split_once('-').expect("time-pid");
        assert_eq!(time.len(), "20261125T143301Z".len(), "{id}");
        assert!(time.ends_with('Z') && time.as_bytes()[8] == b'T', "{id}");
        assert!(time[..8].bytes().all(|b| b.is_ascii_digit()), "{id}");
        assert_eq!(pid, format!("{:x}", std::process::id()));
        assert_eq!(crate::durable::safe_name(&id), id);
    }
}
