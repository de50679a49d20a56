//! A tier worker: one OS thread with one blocking connection, taking prepare items and
//! partitions from the tier's queue.
//!
//! A partition is read with one streaming statement in key order, fetched in bulk on a helper
//! thread (odbc-api's `ConcurrentBlockCursor`) while this thread encodes the previous batch.
//! Each encoded batch goes to the writer with the last key in it, so the partition can be
//! reopened right after it: after a value that outgrew its buffer, after a keyset chunk, after a
//! deadlock, lock timeout or dropped connection (retried with backoff on a new connection), and
//! (with the state file) after a crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use odbc_api::parameter::InputParameter;
use odbc_api::{ConcurrentBlockCursor, Connection, Cursor};

use super::failure::TableFailure;
use super::fetch::{BatchError, FetchLayout, encode_batch, encode_delete, key_of_row, views};
use super::piecewise::{RowError, RowReader};
use super::scheduler::{Scheduler, WorkItem};
use super::watchdog::{InHand, StatementHandle, WorkerSlot};
use super::{Context, TableJob};
use crate::config::RowCounts;
use crate::error::{DbError, Error};
use crate::incremental::key_diff::KeyKind;
use crate::incremental::{key_diff, keys, sql};
use crate::model::{
    KeyRange, KeyValue, Load, LoadKind, OperationCounts, PartitionSpec, ReadMode, SyncMode, Tier,
};
use crate::plan::partition;
use crate::plan::partition::Partition;
use crate::sink::protocol::{Chunk, Message};
use crate::source::catalog::parse_count;
use crate::source::errors::classify;
use crate::source::key::{Advance, KeyMismatch};
use crate::source::select::Select;
use crate::source::types::ValueKind;
use crate::source::{errors, key, session, statement, text_rows};

/// The largest piece of a key list sent to the writer at once.
const KEY_LIST_PIECE_BYTES: usize = 4 * 1024 * 1024;

/// The step of a table's preparation that takes the exact row count (named in messages).
const COUNT_STEP: &str = "taking the exact row count";

/// The row count a table's validation is checked against.
struct ExpectedRows {
    rows: u64,
    /// From the catalog: a difference from the rows read does not fail the table.
    estimated: bool,
}

/// Why a worker stopped working on an item.
#[derive(Debug)]
pub(crate) enum WorkerError {
    /// The table cannot be copied in this run.
    Table(TableFailure),
    /// A database error, classified for the retry decision.
    Db { context: String, error: DbError },
    /// The writer is gone (it failed and stopped the run).
    WriterGone,
    /// A graceful stop was asked for; the partition stays resumable from its last chunk.
    Stopped,
    /// The watchdog gave this worker up; its work went back to the queue.
    Abandoned,
}

impl WorkerError {
    fn from_error(error: Error) -> WorkerError {
        match error {
            Error::Connect { source, .. } => WorkerError::Db {
                context: "connecting".into(),
                error: source.without_values(),
            },
            Error::Database { context, source } => WorkerError::Db {
                context,
                error: source.without_values(),
            },
            other => WorkerError::Table(TableFailure::Run(other)),
        }
    }
}

pub(crate) struct Worker {
    pub(crate) context: Arc<Context>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) writer: Sender<Message>,
    pub(crate) slot: Arc<WorkerSlot>,
    pub(crate) connection: Option<Arc<Connection<'static>>>,
}

/// How a statement ended.
enum StreamEnd {
    Complete {
        rows: u64,
    },
    /// A value did not fit its buffer; nothing of that batch was sent.
    Truncated {
        column: usize,
        needed: Option<usize>,
    },
    /// A piecewise read sent its rows; the statement is reopened after the last key, in bulk.
    Paused,
}

/// How a statement's rows are fetched.
#[derive(Debug, Clone, Copy)]
enum Fetch {
    /// Column-wise into bound buffers, many rows per fetch.
    Bulk,
    /// One row per fetch with `SQLGetData`, long values in pieces; at most `rows` rows before
    /// going back to bulk (`None`: to the end, for reads without a key to reopen after).
    Piecewise { rows: Option<u64> },
}

impl Worker {
    /// Works until the queue is empty or stopped, or the watchdog gives this worker up.
    pub(crate) fn run(&mut self) {
        while let Some(item) = self.scheduler.next() {
            if self.context.stop.is_set() {
                self.scheduler.stop();
                return;
            }
            let (table, in_hand) = match item {
                WorkItem::Prepare(table) => (table, InHand::Prepare(table)),
                WorkItem::Partition(p) => (p.table, InHand::Partition(p)),
            };
            {
                let mut slot = self.slot.state.lock();
                slot.in_hand = Some(in_hand.clone());
                slot.table_name = self.context.jobs[table].table.full_name();
            }
            let failure = match self.work_with_retries(in_hand) {
                Ok(()) => None,
                Err(WorkerError::WriterGone) => {
                    self.scheduler.stop();
                    return;
                }
                Err(WorkerError::Stopped) => {
                    // Workers waiting for a key scan to be released must not wait for it.
                    self.scheduler.stop();
                    return;
                }
                Err(WorkerError::Abandoned) => return,
                Err(WorkerError::Db { context, error }) => {
                    Some(TableFailure::Database { context, error })
                }
                Err(WorkerError::Table(reason)) => Some(reason),
            };
            if let Some(reason) = failure {
                let fatal = reason.fatal_for_run();
                self.connection = None;
                if self.fail_table(table, reason).is_err() {
                    return;
                }
                if fatal {
                    log::error!("the login was refused; no further table is started");
                    self.scheduler.stop();
                    return;
                }
            }
            let mut slot = self.slot.state.lock();
            if slot.abandoned {
                return;
            }
            slot.in_hand = None;
        }
    }

    /// Does one item, retrying retryable database errors with exponential backoff and full
    /// jitter on a new connection. Failures in a row without progress count against
    /// `max_retries`; a retry that moved on resets the count.
    fn work_with_retries(&mut self, mut in_hand: InHand) -> Result<(), WorkerError> {
        let table = match &in_hand {
            InHand::Prepare(table) => *table,
            InHand::Partition(partition) => partition.table,
        };
        // A panic (a bug, here or in a driver binding) fails the table like any other error
        // instead of ending the thread: its tier would wait for it for ever.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(debug_assertions)]
            panic_for_tests(&self.context.jobs[table].table.full_name());
            self.retry(&mut in_hand)
        }));
        let result = attempt.unwrap_or_else(|_| Err(WorkerError::Table(self.after_panic(table))));
        if result.is_err() && matches!(in_hand, InHand::Prepare(_)) {
            // This table's partitions never come: workers waiting for them go on. (A no-op
            // once the watchdog gave this worker up; it requeued the table itself.)
            let _ = self.prepared(Vec::new());
        }
        result
    }

    /// After a panic outside a read (which [`Worker::work_with_retries`] catches itself): the
    /// table of the work in hand fails, so its tier neither waits for it nor reports it done.
    pub(crate) fn fail_work_in_hand(&mut self) {
        let in_hand = self.slot.state.lock().in_hand.take();
        let table = match in_hand {
            Some(InHand::Prepare(table)) => {
                let _ = self.prepared(Vec::new());
                table
            }
            Some(InHand::Partition(partition)) => partition.table,
            None => return,
        };
        let failure = self.after_panic(table);
        let _ = self.fail_table(table, failure);
    }

    /// Forgets whatever the panicked read left: its connection and statement may be in any
    /// state, so the next item starts on a new connection.
    fn after_panic(&mut self, table: usize) -> TableFailure {
        self.connection = None;
        let mut slot = self.slot.state.lock();
        slot.statement = None;
        slot.busy = false;
        TableFailure::Panicked {
            table: self.context.jobs[table].table.full_name(),
        }
    }

    fn retry(&mut self, in_hand: &mut InHand) -> Result<(), WorkerError> {
        // A preparation the watchdog abandoned counts as failed: requeued without a limit, each
        // round would leave another count running on the server.
        let mut failures = match in_hand {
            InHand::Prepare(table) => self.scheduler.prepare_abandons(*table),
            InHand::Partition(_) => 0,
        };
        let policy = self.context.read.retry;
        if policy.exhausted(failures)
            && let InHand::Prepare(table) = in_hand
        {
            return Err(WorkerError::Table(TableFailure::PreparationStalled {
                retries: policy.max_retries,
                exact_count_of: self.exact_count_of(*table, COUNT_STEP),
            }));
        }
        loop {
            let progress_before = progress_marker(in_hand);
            let result = match in_hand {
                InHand::Prepare(table) => self.prepare(*table),
                InHand::Partition(partition) => self.read_partition(partition),
            };
            let (context, error) = match result {
                Err(WorkerError::Db { context, error }) if classify(&error).retryable() => {
                    (context, error)
                }
                other => return other,
            };
            if progress_marker(in_hand) != progress_before {
                failures = 0;
            }
            failures += 1;
            let table = match in_hand {
                InHand::Prepare(t) => *t,
                InHand::Partition(p) => p.table,
            };
            let name = self.context.jobs[table].table.full_name();
            let class = classify(&error);
            let Some(delay) = policy.delay(failures) else {
                return Err(WorkerError::Table(TableFailure::RetriesExhausted {
                    retries: policy.max_retries,
                    exact_count_of: self.exact_count_of(table, &context),
                    context,
                    error,
                }));
            };
            log::warn!(
                "{name}: {} [{}] (SQLSTATE {}, native error {}) while {context}; retry \
                 {failures} of {} in {:.1}s on a new connection",
                errors::reason(&error),
                class.name(),
                error.state,
                error.native,
                policy.max_retries,
                delay.as_secs_f64()
            );
            self.connection = None;
            self.sleep(delay)?;
        }
    }

    /// The table's tier when `step` is its exact row count, which `row_counts: catalog` would
    /// spare (the failure then says so).
    fn exact_count_of(&self, table: usize, step: &str) -> Option<Tier> {
        let job = &self.context.jobs[table];
        (step == COUNT_STEP && job.settings.row_counts != RowCounts::Catalog).then_some(job.tier)
    }

    /// Waits, waking up for a graceful stop.
    fn sleep(&self, delay: Duration) -> Result<(), WorkerError> {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.context.stop.is_set() {
                return Err(WorkerError::Stopped);
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
        Ok(())
    }

    /// Runs `f` unless the watchdog gave this worker up; the slot stays locked meanwhile so
    /// the watchdog cannot give it up halfway.
    fn guarded<T>(&self, f: impl FnOnce() -> T) -> Result<T, WorkerError> {
        let slot = self.slot.state.lock();
        if slot.abandoned {
            return Err(WorkerError::Abandoned);
        }
        let result = f();
        drop(slot);
        Ok(result)
    }

    fn send(&self, message: Message) -> Result<(), WorkerError> {
        self.guarded(|| self.writer.send(message))?
            .map_err(|_| WorkerError::WriterGone)
    }

    fn prepared(&self, partitions: Vec<Partition>) -> Result<(), WorkerError> {
        self.guarded(|| self.scheduler.prepared(partitions))
    }

    fn fail_table(&self, table: usize, reason: TableFailure) -> Result<(), WorkerError> {
        if self.scheduler.is_failed(table) {
            return Ok(());
        }
        self.scheduler.fail_table(table);
        self.send(Message::TableFailed {
            table,
            reason: reason.to_string(),
        })
    }

    /// The connection, opened (with the session settings) when there is none.
    fn connection(&mut self) -> Result<Arc<Connection<'static>>, WorkerError> {
        if let Some(connection) = &self.connection {
            return Ok(Arc::clone(connection));
        }
        let connection = self
            .context
            .source
            .connect()
            .map_err(WorkerError::from_error)?;
        self.execute_all(
            &connection,
            &self.context.read.session_setup,
            "setting up the session",
        )?;
        self.check_text_parameters(&connection)?;
        // The Arc never leaves this thread; it lets a statement run on odbc-api's fetch thread
        // keep the connection alive (odbc-api's `StatementParent` for `Arc<Connection>`).
        #[allow(clippy::arc_with_non_send_sync)]
        let connection = Arc::new(connection);
        self.connection = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Takes the count and key bounds, splits the table into partitions and queues them.
    fn prepare(&mut self, table: usize) -> Result<(), WorkerError> {
        self.check_free_space(table, "not started")?;
        let counted = self.count_and_split(table);
        let (expected, specs, load) = counted?;
        self.send(Message::TableStarted {
            table,
            expected_rows: expected.rows,
            expected_estimated: expected.estimated,
            partitions: specs.clone(),
            load: Box::new(load),
        })?;
        self.prepared(
            specs
                .into_iter()
                .map(|spec| Partition {
                    table,
                    spec,
                    after: None,
                })
                .collect(),
        )
    }

    /// Captures the load's upper bound, counts the rows to read and splits them into partitions
    /// (plus the key scan, last, when deletes are detected by keys). Every statement is watched
    /// (a stalled one is cancelled and the preparation retried) and has the tier's statement
    /// timeout, so neither a count nor a bound can hold a worker, or leave a scan running on the
    /// server, without limit.
    fn count_and_split(
        &mut self,
        table: usize,
    ) -> Result<(ExpectedRows, Vec<PartitionSpec>, Load), WorkerError> {
        let context = Arc::clone(&self.context);
        let job = &context.jobs[table];
        let timeout = job.settings.timeout_seconds;
        let mut load = job.load.read().clone();
        if let Some(sql) = sql::upper_bound(job.dialect, &job.table, &load.mode) {
            let bound = self.single_row("capturing the upper bound of the load", &sql, timeout)?;
            let value = |i: usize| bound.get(i).cloned().flatten().map(|v| v.trim().to_owned());
            load.to = value(0);
            if load.mode == SyncMode::ChangeTracking {
                let Some(current) = value(0).and_then(|v| v.parse::<i64>().ok()) else {
                    return Err(WorkerError::Table(TableFailure::ChangeTrackingDisabled));
                };
                let min_valid = value(1).and_then(|v| v.parse::<i64>().ok());
                if load.fall_back_if_cleaned_up(min_valid) {
                    log::warn!(
                        "{}: change tracking was cleaned up past the saved version; reloading \
                         the table in full",
                        job.table.full_name()
                    );
                }
                load.to = Some(current.to_string());
            }
        }
        *job.load.write() = load.clone();
        let query = job
            .query()
            .map_err(|e| WorkerError::Table(TableFailure::InvalidPosition(e)))?;
        let change_tracking = load.reads_changes();
        let expected_rows = if change_tracking {
            let (from, to) = load
                .change_tracking_versions()
                .map_err(|e| WorkerError::Table(TableFailure::InvalidPosition(e)))?;
            let mut operations = OperationCounts::default();
            for row in self.watched_rows(
                "counting the changes",
                &sql::change_tracking_counts(&job.table, from, to),
                timeout,
            )? {
                let count = row
                    .get(1)
                    .and_then(|c| c.as_deref())
                    .and_then(parse_count)
                    .unwrap_or(0);
                match row.first().and_then(|o| o.as_deref()).map(str::trim) {
                    Some("I") => operations.inserts += count,
                    Some("U") => operations.updates += count,
                    _ => operations.deletes += count,
                }
            }
            load.operations = Some(operations);
            *job.load.write() = load.clone();
            ExpectedRows {
                rows: operations.inserts + operations.updates + operations.deletes,
                estimated: false,
            }
        } else {
            self.expected_rows(job, &load, &query)?
        };
        let mut specs = match (job.mode, query.key_bounds()) {
            _ if change_tracking => partition::change_tracking_read(),
            (ReadMode::Range, Some(sql)) => {
                let bounds = self.single_row("reading the key bounds", &sql, timeout)?;
                let parse = |i: usize| {
                    bounds
                        .get(i)
                        .and_then(|v| v.as_deref())
                        .and_then(|v| v.trim().parse::<i64>().ok())
                };
                match (parse(0), parse(1)) {
                    (Some(min), Some(max)) => partition::split_integer_range(
                        min,
                        max,
                        expected_rows
                            .rows
                            .div_ceil(job.settings.partition_size.get()),
                    ),
                    // An empty table: one partition that reads nothing.
                    _ => partition::whole_table(ReadMode::Range),
                }
            }
            (mode, _) => partition::whole_table(mode),
        };
        if load.key_scan {
            specs.push(PartitionSpec {
                id: specs.len(),
                mode: ReadMode::KeyScan,
                range: KeyRange::ALL,
            });
        }
        Ok((expected_rows, specs, load))
    }

    /// The expected row count of a load that reads rows (not changes): `COUNT_BIG(*)` of what
    /// it reads, or for a full load with `row_counts: catalog`, the catalog's count from sizing
    /// (no statement at all). An incremental cursor load always counts its range exactly: the
    /// catalog knows nothing of it.
    fn expected_rows(
        &mut self,
        job: &TableJob,
        load: &Load,
        query: &crate::source::select::TableQuery,
    ) -> Result<ExpectedRows, WorkerError> {
        if job.settings.row_counts == RowCounts::Catalog && load.kind != LoadKind::Incremental {
            return Ok(ExpectedRows {
                rows: job.table.rows,
                estimated: !job.table.rows_exact,
            });
        }
        let count = self.single_row(COUNT_STEP, &query.count(), job.settings.timeout_seconds)?;
        Ok(ExpectedRows {
            rows: count
                .first()
                .and_then(|c| c.as_deref())
                .and_then(parse_count)
                .unwrap_or(0),
            estimated: false,
        })
    }

    /// Runs a small statement of a table's preparation, watched like a partition read, and
    /// returns its rows as text.
    fn watched_rows(
        &mut self,
        what: &str,
        sql: &str,
        timeout_seconds: u64,
    ) -> Result<Vec<Vec<Option<String>>>, WorkerError> {
        let secret = self.context.source.secret().map(str::to_owned);
        let db_error = |e: &odbc_api::Error| WorkerError::Db {
            context: what.to_owned(),
            error: DbError::from_odbc(e, secret.as_deref()).without_values(),
        };
        let Some(cursor) = self.open_watched(sql, &[], timeout_seconds, &db_error)? else {
            return Ok(Vec::new());
        };
        let source = &self.context.source;
        let rows = text_rows(cursor, what, &|e| source.db_error(what, &e))
            .map_err(WorkerError::from_error);
        self.statement_finished();
        rows
    }

    fn single_row(
        &mut self,
        what: &str,
        sql: &str,
        timeout_seconds: u64,
    ) -> Result<Vec<Option<String>>, WorkerError> {
        Ok(self
            .watched_rows(what, sql, timeout_seconds)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Reads one partition to its end and tells the writer it is done. `partition.after`
    /// follows the last key sent, so a retry resumes right after it.
    /// `min_free_bytes`: the table stops, resumable, before it fills the disk.
    fn check_free_space(&self, table: usize, when: &'static str) -> Result<(), WorkerError> {
        let Some(check) = &self.context.read.free_space else {
            return Ok(());
        };
        match check.shortage(&crate::durable::Disk) {
            Some(shortage) => Err(WorkerError::Table(TableFailure::LowDiskSpace {
                table: self.context.jobs[table].table.full_name(),
                when,
                shortage,
            })),
            None => Ok(()),
        }
    }

    fn read_partition(&mut self, partition: &mut Partition) -> Result<(), WorkerError> {
        self.check_free_space(partition.table, "stopped before its next partition")?;
        let context = Arc::clone(&self.context);
        let job = &context.jobs[partition.table];
        if partition.spec.mode == ReadMode::KeyScan {
            return self.key_scan(partition);
        }
        let snapshot = {
            let load = job.load.read();
            load.snapshot && load.reads_changes()
        };
        if !snapshot {
            return self.read_rows(partition);
        }
        self.run_on_connection(&[session::SQLSERVER_SNAPSHOT_STATEMENT.to_owned()])?;
        let read = self.read_rows(partition);
        // Back to the isolation every other table is read with; a connection that cannot be
        // set back is dropped (the next item opens a new one).
        if self.connection.is_some() {
            let setup = self.context.read.session_setup.clone();
            if self.run_on_connection(&setup).is_err() {
                self.connection = None;
            }
        }
        read
    }

    /// Runs settings statements on the worker's connection.
    fn run_on_connection(&mut self, statements: &[String]) -> Result<(), WorkerError> {
        let connection = self.connection()?;
        self.execute_all(&connection, statements, "setting the isolation level")
    }

    /// Binds a text parameter and compares what the server selects back: a key bound mangled
    /// would make a keyset read skip or repeat rows.
    fn check_text_parameters(&self, connection: &Connection<'static>) -> Result<(), WorkerError> {
        let Some(dialect) = self.context.jobs.first().map(|j| j.dialect) else {
            return Ok(());
        };
        let sql = self.context.source.sql(key::parameter_probe_sql(dialect));
        let failed = |e: odbc_api::Error| WorkerError::Db {
            context: "checking that text parameters reach the server intact".into(),
            error: DbError::from_odbc(&e, self.context.source.secret()).without_values(),
        };
        let probe = [key::parameter_probe()];
        let mut returned = None;
        if let Some(mut cursor) = connection.execute(&sql, &probe[..], None).map_err(failed)?
            && let Some(mut row) = cursor.next_row().map_err(failed)?
        {
            let mut buffer = Vec::new();
            if row.get_wide_text(1, &mut buffer).map_err(failed)? {
                returned = Some(String::from_utf16_lossy(&buffer));
            }
        }
        if returned.as_deref() == Some(key::PARAMETER_PROBE) {
            return Ok(());
        }
        Err(WorkerError::Table(TableFailure::TextParameterChanged))
    }

    /// Runs statements that return no rows (session settings), in order.
    fn execute_all(
        &self,
        connection: &Connection<'static>,
        statements: &[String],
        context: &str,
    ) -> Result<(), WorkerError> {
        for sql in statements {
            statement::run(connection, &self.context.source.sql(sql)).map_err(|e| {
                WorkerError::Db {
                    context: context.into(),
                    error: DbError::from_odbc(&e, self.context.source.secret()).without_values(),
                }
            })?;
        }
        Ok(())
    }

    /// Reads the rows of a partition: one streaming statement, or keyset chunks.
    fn read_rows(&mut self, partition: &mut Partition) -> Result<(), WorkerError> {
        let context = Arc::clone(&self.context);
        let job = &context.jobs[partition.table];
        let query = job
            .query()
            .map_err(|e| WorkerError::Table(TableFailure::InvalidPosition(e)))?;
        let (columns, kinds, _) = job.fetch_columns();
        if partition.spec.mode == ReadMode::Stream {
            // No key to resume after: whatever an earlier attempt wrote is discarded.
            self.send(Message::RestartTable {
                table: partition.table,
            })?;
        }
        let mut layout =
            FetchLayout::new(&columns, &kinds, job.settings.fetch, context.read.buffers);
        let chunk_limit =
            partition::rows_per_statement(partition.spec.mode, job.settings.partition_size.get());
        let key_columns = query.key_columns();
        if let Some(after) = partition.after.take() {
            // A resume point from the state file: typed by the key columns (older states
            // saved some types as text).
            let conformed = after
                .into_iter()
                .zip(key_columns)
                .map(|(value, (name, key_type))| {
                    key_type.conform(value).ok_or_else(|| KeyMismatch {
                        column: name.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| WorkerError::Table(TableFailure::ResumePoint(e)))?;
            partition.after = Some(conformed);
        }
        let mut advance = Advance::new(
            key_columns.iter().map(|(_, t)| t.clone()).collect(),
            key_columns.iter().map(|(n, _)| n.clone()).collect(),
            partition.after.clone(),
            match (partition.spec.range.lower_exclusive, key_columns.first()) {
                (Some(lower), Some((_, key_type))) => Some(key_type.bound(lower)),
                _ => None,
            },
        );
        let mut fetch = Fetch::Bulk;
        loop {
            if self.scheduler.is_failed(partition.table) {
                return Ok(());
            }
            self.check_deadline(partition.table, job)?;
            let select = query.select(
                partition.spec.range,
                partition.after.as_deref(),
                chunk_limit,
            );
            advance.next_statement();
            match self.stream(partition, job, &select, &layout, fetch, &mut advance)? {
                StreamEnd::Complete { rows } => {
                    let more_chunks = chunk_limit.is_some_and(|limit| rows >= limit);
                    if !more_chunks {
                        break;
                    }
                }
                StreamEnd::Paused => fetch = Fetch::Bulk,
                StreamEnd::Truncated { column, needed } => {
                    let column_name = column_name(job, column).unwrap_or_default();
                    if layout.grow(column, needed).is_ok() {
                        log::debug!(
                            "{}: column '{column_name}' needs a larger buffer (the driver \
                             reported {needed:?} bytes); reading on from the last key sent",
                            job.table.full_name(),
                        );
                    } else {
                        // Rows of one bulk batch, then bulk again: a table with a few long
                        // values among many short ones stays fast.
                        let rows = match partition.spec.mode {
                            ReadMode::Stream => None,
                            _ => Some(layout.rows_per_fetch() as u64),
                        };
                        fetch = Fetch::Piecewise { rows };
                        log::debug!(
                            "{}: a value in column '{column_name}' is larger than a bulk \
                             buffer; reading on from the last key sent in pieces",
                            job.table.full_name(),
                        );
                    }
                    if partition.spec.mode == ReadMode::Stream {
                        self.send(Message::RestartTable {
                            table: partition.table,
                        })?;
                    }
                }
            }
        }
        self.send(Message::PartitionDone {
            table: partition.table,
            partition: partition.spec.id,
        })?;
        self.scheduler.partition_finished(partition.table);
        Ok(())
    }

    /// Finds the rows deleted since the previous key scan: scans every key of the table into
    /// hash buckets on disk, then compares them bucket by bucket with the previous run's key
    /// list (`incremental::key_diff`), sending the new key list and a delete row for every key
    /// that vanished. No delete is sent before the scan is complete and durable, so a retried
    /// scan has nothing to take back; a resumed run compares the same finished scan again and
    /// sends only the deletes after `partition.after`, the last one written, in the
    /// comparison's own order.
    fn key_scan(&mut self, partition: &mut Partition) -> Result<(), WorkerError> {
        let context = Arc::clone(&self.context);
        let job = &context.jobs[partition.table];
        let name = job.table.full_name();
        let key_error = |e: keys::KeyListError| match e {
            keys::KeyListError::Interrupted => WorkerError::Stopped,
            error => WorkerError::Table(TableFailure::KeyList {
                table: name.clone(),
                error,
            }),
        };
        let kinds: Vec<KeyKind> = job
            .key_indices
            .iter()
            .map(|&i| KeyKind::of(job.kinds[i], &job.table.columns[i].source_type))
            .collect();
        let previous = match (&job.previous_key_list, job.load.read().kind) {
            (Some(path), LoadKind::Incremental) => Some(path.clone()),
            _ => None,
        };
        let scanned = match key_diff::ScannedKeys::open(&job.key_scan_dir) {
            Some(scanned) => {
                log::info!(
                    "{name}: comparing the key scan this run finished earlier ({} keys) again",
                    scanned.keys()
                );
                scanned
            }
            // Deletes were written from a scan that is gone (removed, or kept by an older
            // ehi-sync in another order): a new scan's deletes cannot be told apart from them.
            None if partition.after.is_some() => {
                return Err(WorkerError::Table(TableFailure::KeyScanGone {
                    table: name,
                }));
            }
            None => {
                let scanned = self.scan_keys(job, &kinds, previous.as_deref())?;
                log::info!(
                    "{name}: {} keys scanned; comparing them with the previous key list",
                    scanned.keys()
                );
                scanned
            }
        };
        let previous = previous
            .map(|path| keys::KeyListReader::open(&path))
            .transpose()
            .map_err(key_error)?;
        let mut diff = key_diff::KeyDiff::new(
            context.stop,
            &job.key_scan_dir,
            &scanned,
            previous,
            &kinds,
            key_diff::MEMORY_BYTES,
        )
        .map_err(key_error)?;
        // The new key list starts over, header first.
        self.send(Message::KeyScanStarted {
            table: partition.table,
        })?;
        self.send_keys(partition, keys::KEY_LIST_HEADER.to_vec(), 0)?;
        let after = partition
            .after
            .as_deref()
            .map(|key| key_diff::position(key, &kinds));
        let mut encoder = job.encoder();
        while let Some(leaf) = diff.next_leaf().map_err(key_error)? {
            let mut new_keys = leaf.new_keys;
            for piece in frame_pieces(&leaf.key_list, KEY_LIST_PIECE_BYTES) {
                self.send_keys(partition, piece.to_vec(), std::mem::take(&mut new_keys))?;
            }
            // Deletes at or before `after` were written by an earlier attempt.
            let deleted: Vec<Vec<KeyValue>> = leaf
                .deleted
                .into_iter()
                .filter(|(position, _)| after.as_ref().is_none_or(|a| position > a))
                .map(|(_, key)| key)
                .collect();
            for batch in deleted.chunks(job.settings.fetch.rows.get()) {
                let mut bytes = Vec::new();
                for key in batch {
                    encode_delete(&mut encoder, &job.key_indices, key, &mut bytes).map_err(
                        |e| {
                            WorkerError::Table(TableFailure::Batch {
                                table: name.clone(),
                                error: BatchError::Encode(e),
                            })
                        },
                    )?;
                }
                let bytes = context.read.compression.compress(bytes).map_err(|error| {
                    WorkerError::Table(TableFailure::Compression {
                        table: name.clone(),
                        error,
                    })
                })?;
                let chunk = Chunk {
                    table: partition.table,
                    partition: partition.spec.id,
                    rows: batch.len() as u64,
                    bytes,
                    last_key: batch.last().cloned(),
                    deletes: batch.len() as u64,
                    keys: None,
                    new_keys: 0,
                };
                self.send_chunk(partition, chunk)?;
            }
            if self.context.stop.is_set() {
                return Err(WorkerError::Stopped);
            }
        }
        self.send(Message::PartitionDone {
            table: partition.table,
            partition: partition.spec.id,
        })
    }

    /// Streams every key of the table into this run's buckets and marks the scan complete.
    fn scan_keys(
        &mut self,
        job: &TableJob,
        kinds: &[KeyKind],
        previous: Option<&std::path::Path>,
    ) -> Result<key_diff::ScannedKeys, WorkerError> {
        let context = Arc::clone(&self.context);
        let name = job.table.full_name();
        let key_error = |error: keys::KeyListError| {
            WorkerError::Table(TableFailure::KeyList {
                table: name.clone(),
                error,
            })
        };
        // The previous list holds a few bytes per key: its size bounds its key count.
        let previous_bytes = previous
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        let mut buckets = key_diff::ScanBuckets::create(
            &job.key_scan_dir,
            kinds,
            job.table.rows.max(previous_bytes),
            key_diff::MEMORY_BYTES,
        )
        .map_err(key_error)?;
        let key_columns: Vec<_> = job
            .key_indices
            .iter()
            .map(|&i| job.table.columns[i].clone())
            .collect();
        let key_kinds: Vec<ValueKind> = job.key_indices.iter().map(|&i| job.kinds[i]).collect();
        let positions: Vec<usize> = (0..key_kinds.len()).collect();
        let layout = FetchLayout::new(
            &key_columns,
            &key_kinds,
            job.settings.fetch,
            context.read.buffers,
        );
        let sql = sql::key_scan(job.dialect, &job.table);
        let secret = self.context.source.secret().map(str::to_owned);
        let db_error = |e: &odbc_api::Error| WorkerError::Db {
            context: format!("scanning the keys of {name}"),
            error: DbError::from_odbc(e, secret.as_deref()).without_values(),
        };
        if let Some(cursor) =
            self.open_watched(&sql, &[], job.settings.timeout_seconds, &db_error)?
        {
            let scanned = (|| {
                let buffer = layout.allocate().map_err(|e| db_error(&e))?;
                let mut block = cursor.bind_buffer(buffer).map_err(|e| db_error(&e))?;
                while let Some(batch) = block
                    .fetch_with_truncation_check(true)
                    .map_err(|e| db_error(&e))?
                {
                    if let Some(missing) = batch.undelivered() {
                        let key_name = |i: usize| column_name(job, *job.key_indices.get(i)?);
                        return Err(WorkerError::Table(TableFailure::Undelivered(
                            missing.describe(&name, &key_name),
                        )));
                    }
                    let columns = views(batch);
                    for row in 0..batch.num_rows() {
                        let key = key_of_row(&columns, &positions, &job.key_types, row)
                            .map(comparable_key)
                            .ok_or_else(|| {
                                WorkerError::Table(TableFailure::KeyUnreadable {
                                    table: name.clone(),
                                })
                            })?;
                        buckets.add(key).map_err(key_error)?;
                    }
                    self.made_progress()?;
                    if self.context.stop.is_set() {
                        return Err(WorkerError::Stopped);
                    }
                }
                Ok(())
            })();
            self.statement_finished();
            scanned?;
        }
        self.guarded(|| buckets.finish())?.map_err(key_error)
    }

    /// Sends a piece of the new key list (whole frames) with the count of its new keys.
    fn send_keys(
        &self,
        partition: &mut Partition,
        keys: Vec<u8>,
        new_keys: u64,
    ) -> Result<(), WorkerError> {
        let chunk = Chunk {
            table: partition.table,
            partition: partition.spec.id,
            rows: 0,
            bytes: Vec::new(),
            last_key: None,
            deletes: 0,
            keys: Some(keys),
            new_keys,
        };
        self.send_chunk(partition, chunk)
    }

    /// Tells the watchdog that a statement delivers rows, though nothing went to the writer.
    fn made_progress(&self) -> Result<(), WorkerError> {
        let mut slot = self.slot.state.lock();
        if slot.abandoned {
            return Err(WorkerError::Abandoned);
        }
        slot.last_progress = Instant::now();
        Ok(())
    }

    /// Fails the table once it has run longer than its tier's timeout.
    fn check_deadline(&self, table: usize, job: &TableJob) -> Result<(), WorkerError> {
        let limit = Duration::from_secs(job.settings.timeout_seconds);
        match self.scheduler.table_elapsed(table) {
            Some(elapsed) if elapsed > limit => Err(WorkerError::Table(TableFailure::TimedOut {
                seconds: job.settings.timeout_seconds,
                tier: job.tier,
            })),
            _ => Ok(()),
        }
    }

    /// Registers the statement in hand for the watchdog (`None` for short catalog queries,
    /// which only the stall clock watches).
    fn statement_started(&self, handle: Option<StatementHandle>) {
        let mut slot = self.slot.state.lock();
        slot.busy = true;
        slot.statement = handle;
        slot.last_progress = Instant::now();
        slot.cancelled_at = None;
    }

    fn statement_finished(&self) {
        let mut slot = self.slot.state.lock();
        slot.busy = false;
        slot.statement = None;
    }

    /// Runs one statement and sends its rows to the writer, batch by batch, each row checked
    /// to come after the last key sent.
    fn stream(
        &mut self,
        partition: &mut Partition,
        job: &TableJob,
        select: &Select,
        layout: &FetchLayout,
        fetch: Fetch,
        advance: &mut Advance,
    ) -> Result<StreamEnd, WorkerError> {
        let name = job.table.full_name();
        let params = select.parameters().map_err(|error| {
            WorkerError::Table(TableFailure::KeyParameter {
                table: name.clone(),
                error,
            })
        })?;
        let secret = self.context.source.secret().map(str::to_owned);
        let db_error = |e: &odbc_api::Error| WorkerError::Db {
            context: format!("reading {name}"),
            error: DbError::from_odbc(e, secret.as_deref()).without_values(),
        };
        let Some(cursor) = self.open_watched(
            &select.sql,
            &params,
            job.settings.timeout_seconds,
            &db_error,
        )?
        else {
            return Ok(StreamEnd::Complete { rows: 0 });
        };
        let outcome = match fetch {
            Fetch::Bulk => self.fetch_all(partition, job, cursor, layout, advance, &db_error),
            Fetch::Piecewise { rows } => {
                self.fetch_piecewise(partition, job, cursor, layout, rows, advance, &db_error)
            }
        };
        self.statement_finished();
        outcome
    }

    /// Executes `sql` on the worker's connection with the table's statement timeout, watched by
    /// the watchdog from the start: while connecting (only the stall clock, there is no handle
    /// yet), then with the statement handle registered before the statement executes, so a
    /// statement that blocks in execution (a count, a lock wait) is cancelled, not only
    /// abandoned. `None` when the statement returned no result set; otherwise the caller ends
    /// the watch with `statement_finished` once it is done with the cursor.
    fn open_watched(
        &mut self,
        sql: &str,
        params: &[Box<dyn InputParameter>],
        timeout_seconds: u64,
        db_error: &dyn Fn(&odbc_api::Error) -> WorkerError,
    ) -> Result<Option<odbc_api::OwnedCursor<Arc<Connection<'static>>>>, WorkerError> {
        self.statement_started(None);
        let opened = self.connection().and_then(|connection| {
            let watched = Arc::clone(&connection);
            statement::open_cursor(
                connection,
                &self.context.source.sql(sql),
                params,
                Some(usize::try_from(timeout_seconds).unwrap_or(usize::MAX)),
                |handle| self.statement_started(Some(StatementHandle::new(handle, watched))),
            )
            .map_err(|e| db_error(&e))
        });
        if !matches!(opened, Ok(Some(_))) {
            self.statement_finished();
        }
        opened
    }

    fn fetch_all(
        &self,
        partition: &mut Partition,
        job: &TableJob,
        cursor: odbc_api::OwnedCursor<Arc<Connection<'static>>>,
        layout: &FetchLayout,
        advance: &mut Advance,
        db_error: &dyn Fn(&odbc_api::Error) -> WorkerError,
    ) -> Result<StreamEnd, WorkerError> {
        let name = job.table.full_name();
        // A change tracking read selects each row's op after the table's columns.
        let op_column = job.load.read().reads_changes();
        let first = layout.allocate().map_err(|e| db_error(&e))?;
        let second = layout.allocate().map_err(|e| db_error(&e))?;
        let block = cursor.bind_buffer(first).map_err(|e| db_error(&e))?;
        let mut fetcher = ConcurrentBlockCursor::from_block_cursor(block);
        let mut spare = Some(second);
        let mut encoder = job.encoder();
        let mut rows_sent = 0u64;
        let mut capacity_hint = 0usize;
        let outcome = loop {
            let batch = match fetcher.fetch() {
                Ok(Some(batch)) => batch,
                Ok(None) => break Ok(StreamEnd::Complete { rows: rows_sent }),
                // The fetch thread has ended and closed the statement.
                Err(odbc_api::Error::TooLargeValueForBuffer {
                    indicator,
                    buffer_index,
                }) => {
                    return Ok(StreamEnd::Truncated {
                        column: buffer_index,
                        needed: indicator,
                    });
                }
                Err(e) => return Err(db_error(&e)),
            };
            // Read again after the last key sent, with the buffer grown (see `truncated`).
            if let Some(cut) = batch.truncated() {
                break Ok(StreamEnd::Truncated {
                    column: cut.buffer_index,
                    needed: cut.indicator,
                });
            }
            if let Some(missing) = batch.undelivered() {
                break Err(WorkerError::Table(TableFailure::Undelivered(
                    missing.describe(&name, &|i| column_name(job, i)),
                )));
            }
            // Hand the other buffer to the fetch thread before encoding this batch.
            if let Some(buffer) = spare.take() {
                fetcher.fill(buffer);
            }
            let rows = batch.num_rows();
            let columns = views(&batch);
            let mut bytes = Vec::with_capacity(capacity_hint);
            let deletes = match encode_batch(&columns, rows, &mut encoder, op_column, &mut bytes) {
                Ok(deletes) => deletes,
                Err(error) => {
                    break Err(WorkerError::Table(TableFailure::Batch {
                        table: name,
                        error,
                    }));
                }
            };
            capacity_hint = bytes.len() + bytes.len() / 8;
            let last_key = match job.mode {
                ReadMode::Stream | ReadMode::KeyScan => None,
                _ => match checked_keys(&columns, job, advance, rows) {
                    Ok(last) => last,
                    Err(failure) => break Err(WorkerError::Table(failure)),
                },
            };
            drop(columns);
            let bytes = match self.context.read.compression.compress(bytes) {
                Ok(bytes) => bytes,
                Err(error) => {
                    break Err(WorkerError::Table(TableFailure::Compression {
                        table: name,
                        error,
                    }));
                }
            };
            let chunk = Chunk {
                table: partition.table,
                partition: partition.spec.id,
                rows: rows as u64,
                bytes,
                last_key,
                deletes,
                keys: None,
                new_keys: 0,
            };
            if let Err(e) = self.send_chunk(partition, chunk) {
                break Err(e);
            }
            rows_sent += rows as u64;
            spare = Some(batch);
            if self.context.stop.is_set() {
                break Err(WorkerError::Stopped);
            }
            if self.scheduler.is_failed(partition.table) {
                break Ok(StreamEnd::Complete { rows: rows_sent });
            }
        };
        // Join the fetch thread and close the statement before the connection is used again.
        if let Ok(cursor) = fetcher.into_cursor() {
            drop(cursor);
        }
        outcome
    }

    /// Reads rows one at a time with `SQLGetData`, long values in pieces (`super::piecewise`),
    /// and sends them in chunks of at most `PIECEWISE_CHUNK_BYTES` or a bulk batch's rows.
    #[allow(clippy::too_many_arguments)]
    fn fetch_piecewise(
        &self,
        partition: &mut Partition,
        job: &TableJob,
        mut cursor: odbc_api::OwnedCursor<Arc<Connection<'static>>>,
        layout: &FetchLayout,
        limit: Option<u64>,
        advance: &mut Advance,
        db_error: &dyn Fn(&odbc_api::Error) -> WorkerError,
    ) -> Result<StreamEnd, WorkerError> {
        use odbc_api::handles::AsStatementRef;
        let name = job.table.full_name();
        let op_column = job.load.read().reads_changes();
        let (_, kinds, _) = job.fetch_columns();
        let keys: Vec<bool> = (0..kinds.len())
            .map(|i| job.key_indices.contains(&i))
            .collect();
        let max_value_bytes = self.context.read.buffers.max_value_bytes;
        // Long text from SQL Server in pieces as UTF-16: Driver 18 converting a `varchar(max)`
        // to UTF-8 piece by piece returns a last piece cut short, followed by garbage, under a
        // length that claims it whole. psqlODBC and sqliteodbc hold UTF-8 and cut it exactly.
        let wide_pieces = job.dialect == crate::model::Dialect::SqlServer;
        let mut reader = RowReader::new(layout, &kinds, &keys, max_value_bytes, wide_pieces);
        let mut encoder = job.encoder();
        let keyed = !matches!(job.mode, ReadMode::Stream | ReadMode::KeyScan);
        let batch_rows = layout.rows_per_fetch() as u64;
        let mut pending = PendingRows::default();
        let mut rows_read = 0u64;
        let compression = self.context.read.compression;
        let table_error = |e: RowError| match e {
            RowError::Db(e) => db_error(&e),
            RowError::Undelivered { column, diagnostic } => {
                WorkerError::Table(TableFailure::PieceMissing {
                    table: name.clone(),
                    column: column_name(job, column).unwrap_or_default(),
                    diagnostic,
                })
            }
            RowError::Encode(e) => WorkerError::Table(TableFailure::Batch {
                table: name.clone(),
                error: BatchError::Encode(e),
            }),
            RowError::Spill(error) => WorkerError::Table(TableFailure::Spill {
                table: name.clone(),
                dir: self.context.read.spool_dir.clone(),
                error,
            }),
            RowError::TooLarge { column } => WorkerError::Table(TableFailure::ValueTooLarge {
                column: column_name(job, column).unwrap_or_default(),
                max_value_bytes,
            }),
            RowError::UnknownOperation => WorkerError::Table(TableFailure::Batch {
                table: name.clone(),
                error: BatchError::UnknownOperation,
            }),
        };
        loop {
            if limit.is_some_and(|limit| rows_read >= limit) {
                self.send_pending(partition, &mut pending)?;
                return Ok(StreamEnd::Paused);
            }
            if cursor.next_row().map_err(|e| db_error(&e))?.is_none() {
                self.send_pending(partition, &mut pending)?;
                return Ok(StreamEnd::Complete { rows: rows_read });
            }
            let mut statement = cursor.as_stmt_ref();
            let mut spool = None;
            let mut spill = |bytes: &[u8]| {
                let spool = match &mut spool {
                    Some(spool) => spool,
                    None => spool.insert(compression.spool(&self.context.read.spool_dir)?),
                };
                spool.write_all(bytes)
            };
            let row = reader
                .encode_row(
                    &mut statement,
                    &mut encoder,
                    &job.key_indices,
                    &job.key_types,
                    op_column,
                    &mut pending.bytes,
                    &mut spill,
                )
                .map_err(table_error)?;
            if keyed {
                let key = row.key.ok_or_else(|| {
                    WorkerError::Table(TableFailure::ResumeKeyUnreadable {
                        table: name.clone(),
                    })
                })?;
                advance.check(key).map_err(|error| {
                    WorkerError::Table(TableFailure::NotAdvancing {
                        table: name.clone(),
                        error,
                    })
                })?;
                pending.last_key = advance.last().cloned();
            }
            pending.rows += 1;
            if row.op == crate::sink::encode::RowOp::Delete {
                pending.deletes += 1;
            }
            rows_read += 1;
            if let Some(spool) = spool {
                // The rows before this one and its start are in the spool: the rest follows,
                // and the chunk goes to the writer whole, from the file.
                let spooled = (|| {
                    let mut spool = spool;
                    spool.write_all(&pending.bytes)?;
                    spool.finish()
                })()
                .map_err(|e| table_error(RowError::Spill(e)))?;
                let taken = std::mem::take(&mut pending);
                let chunk = Chunk {
                    table: partition.table,
                    partition: partition.spec.id,
                    rows: taken.rows,
                    bytes: Vec::new(),
                    last_key: taken.last_key,
                    deletes: taken.deletes,
                    keys: None,
                    new_keys: 0,
                };
                self.send_chunk_with(partition, chunk, Some(spooled))?;
            }
            if pending.bytes.len() >= PIECEWISE_CHUNK_BYTES || pending.rows >= batch_rows {
                self.send_pending(partition, &mut pending)?;
                if self.context.stop.is_set() {
                    return Err(WorkerError::Stopped);
                }
                if self.scheduler.is_failed(partition.table) {
                    return Ok(StreamEnd::Complete { rows: rows_read });
                }
            }
        }
    }

    /// Compresses and sends the rows read so far, if any.
    fn send_pending(
        &self,
        partition: &mut Partition,
        pending: &mut PendingRows,
    ) -> Result<(), WorkerError> {
        if pending.rows == 0 {
            return Ok(());
        }
        let taken = std::mem::take(pending);
        let bytes = self
            .context
            .read
            .compression
            .compress(taken.bytes)
            .map_err(|error| {
                WorkerError::Table(TableFailure::Compression {
                    table: self.context.jobs[partition.table].table.full_name(),
                    error,
                })
            })?;
        let chunk = Chunk {
            table: partition.table,
            partition: partition.spec.id,
            rows: taken.rows,
            bytes,
            last_key: taken.last_key,
            deletes: taken.deletes,
            keys: None,
            new_keys: 0,
        };
        self.send_chunk(partition, chunk)
    }

    /// Sends one chunk and records its last key as the partition's resume point, both at once
    /// with respect to the watchdog.
    fn send_chunk(&self, partition: &mut Partition, chunk: Chunk) -> Result<(), WorkerError> {
        self.send_chunk_with(partition, chunk, None)
    }

    /// `send_chunk` of a chunk whose bytes are in `spooled` (`Compression::spool`) when given.
    fn send_chunk_with(
        &self,
        partition: &mut Partition,
        chunk: Chunk,
        spooled: Option<std::fs::File>,
    ) -> Result<(), WorkerError> {
        let mut slot = self.slot.state.lock();
        if slot.abandoned {
            return Err(WorkerError::Abandoned);
        }
        let last_key = chunk.last_key.clone();
        #[cfg(debug_assertions)]
        let rows = chunk.rows;
        let message = match spooled {
            Some(file) => Message::SpooledChunk(chunk, file),
            None => Message::Chunk(chunk),
        };
        self.writer
            .send(message)
            .map_err(|_| WorkerError::WriterGone)?;
        #[cfg(debug_assertions)]
        crash_for_tests(rows);
        if last_key.is_some() {
            partition.after = last_key;
        }
        slot.last_progress = Instant::now();
        if let Some(InHand::Partition(in_hand)) = &mut slot.in_hand {
            in_hand.after.clone_from(&partition.after);
        }
        Ok(())
    }
}

/// Encoded rows of a piecewise read not yet sent.
#[derive(Default)]
struct PendingRows {
    bytes: Vec<u8>,
    rows: u64,
    deletes: u64,
    last_key: Option<Vec<KeyValue>>,
}

/// A piecewise read sends its rows once they hold this many encoded bytes.
const PIECEWISE_CHUNK_BYTES: usize = 1 << 20;

/// The name of fetched column `index` of `job`'s reads, for messages.
fn column_name(job: &TableJob, index: usize) -> Option<String> {
    job.table.columns.get(index).map(|c| c.name.clone())
}

/// A key as the key lists hold it, integers and text: whole-number decimals (`NUMERIC(18,0)`
/// keys are common) as integers, so they order by value and not by their digits; other values
/// as their text form.
fn comparable_key(key: Vec<KeyValue>) -> Vec<KeyValue> {
    key.into_iter()
        .map(|value| match value {
            KeyValue::Int(v) => KeyValue::Int(v),
            KeyValue::Text(text) => KeyValue::Text(text),
            KeyValue::Decimal(text) => match text.trim().parse::<i64>() {
                Ok(v) => KeyValue::Int(v),
                Err(_) => KeyValue::Text(text),
            },
            other => KeyValue::Text(other.to_text()),
        })
        .collect()
}

/// Checks every row's key of a batch against the read's advance and returns the last one,
/// the partition's next resume point.
fn checked_keys(
    columns: &[super::fetch::ColumnView<'_>],
    job: &TableJob,
    advance: &mut Advance,
    rows: usize,
) -> Result<Option<Vec<KeyValue>>, TableFailure> {
    for row in 0..rows {
        let key = key_of_row(columns, &job.key_indices, &job.key_types, row).ok_or_else(|| {
            TableFailure::ResumeKeyUnreadable {
                table: job.table.full_name(),
            }
        })?;
        advance
            .check(key)
            .map_err(|error| TableFailure::NotAdvancing {
                table: job.table.full_name(),
                error,
            })?;
    }
    Ok(advance.last().filter(|_| rows > 0).cloned())
}

/// Splits a key list into pieces of whole frames, each closed once it reaches `piece_bytes`, so
/// chunks to the writer stay about that size (a damaged length ends the split: the writer gets
/// the rest as it is, and the next run's reader reports it).
fn frame_pieces(list: &[u8], piece_bytes: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut start, mut end) = (0, 0);
    while end + 4 <= list.len() {
        let len = u32::from_le_bytes([list[end], list[end + 1], list[end + 2], list[end + 3]]);
        let next = end + 4 + len as usize;
        if next > list.len() {
            break;
        }
        end = next;
        if end - start >= piece_bytes {
            pieces.push(&list[start..end]);
            start = end;
        }
    }
    if start < list.len() {
        pieces.push(&list[start..]);
    }
    pieces
}

/// Changes whenever the work in hand moved on (a chunk was sent).
fn progress_marker(in_hand: &InHand) -> Option<Vec<KeyValue>> {
    match in_hand {
        InHand::Prepare(_) => None,
        InHand::Partition(p) => p.after.clone(),
    }
}

/// Test hook (debug builds only): with `EHI_SYNC_TEST_PANIC_IN_TABLE=schema.table` a worker
/// panics whenever it starts work on that table, so the tests can show what a bug does.
#[cfg(debug_assertions)]
fn panic_for_tests(table: &str) {
    if std::env::var("EHI_SYNC_TEST_PANIC_IN_TABLE").is_ok_and(|t| t == table) {
        panic!("test hook: a worker panics in {table}");
    }
}

/// Test hook (debug builds only): with `EHI_SYNC_TEST_CRASH_AFTER_ROWS=N` a sync process
/// crashes for real once its workers have sent N rows — SIGSEGV, or `abort()` with
/// `EHI_SYNC_TEST_CRASH_WITH=abort` — so the tests can show what a driver crash does.
#[cfg(debug_assertions)]
fn crash_for_tests(rows: u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static SENT: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("EHI_SYNC_TEST_CRASH_AFTER_ROWS")
            .ok()
            .and_then(|n| n.trim().parse().ok())
    });
    let Some(limit) = *limit else {
        return;
    };
    if SENT.fetch_add(rows, Ordering::SeqCst) + rows < limit {
        return;
    }
    if std::env::var("EHI_SYNC_TEST_CRASH_WITH").as_deref() == Ok("abort") {
        std::process::abort();
    }
    #[cfg(unix)]
    // SAFETY: restores the default action (Rust's own handler would return from a raised
    // SIGSEGV) and raises it: the process ends as a driver's invalid access would end it.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyValue;

    #[test]
    fn key_lists_are_sent_in_pieces_of_whole_frames() {
        let frames: Vec<Vec<u8>> = (0..10i64)
            .map(|i| {
                let keys: Vec<Vec<KeyValue>> = (0..=i).map(|k| vec![KeyValue::Int(k)]).collect();
                keys::encode_frame(&keys).unwrap()
            })
            .collect();
        let list = frames.concat();
        for piece_bytes in [1, 30, 100, list.len(), list.len() * 2] {
            let pieces = frame_pieces(&list, piece_bytes);
            assert_eq!(pieces.concat(), list);
            for piece in &pieces[..pieces.len() - 1] {
                assert!(piece.len() >= piece_bytes);
            }
            // Every piece decodes on its own: it holds whole frames.
            let keys: usize = pieces
                .iter()
                .map(|p| {
                    keys::KeyListReader::from_reader(std::io::Cursor::new(p.to_vec()), "p").count()
                })
                .sum();
            assert_eq!(keys, 55);
        }
        assert_eq!(frame_pieces(&list, 1).len(), 10);
        assert!(frame_pieces(&[], 1).is_empty());
    }
}
