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
use odbc_api::handles::{AsStatementRef, Statement};
use odbc_api::{ConcurrentBlockCursor, Connection, ConnectionTransitions, Cursor};

use super::fetch::{FetchLayout, encode_batch, key_of_row, views};
use super::partition::{self, Partition, PartitionSpec, ReadMode};
use super::scheduler::{Scheduler, WorkItem};
use super::select::KeyValue;
use super::watchdog::{InHand, StatementHandle, WorkerSlot};
use super::{Context, TableJob};
use crate::error::{DbError, Error};
use crate::retry::backoff;
use crate::sink::{Chunk, Message};
use crate::source::catalog::parse_count;
use crate::source::errors::classify;
use crate::source::query_text;

/// Why a worker stopped working on an item.
#[derive(Debug)]
pub enum WorkerError {
    /// The table cannot be copied in this run; the message names the problem, never a value.
    Table(String),
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
            other => WorkerError::Table(other.to_string()),
        }
    }
}

pub struct Worker {
    pub context: Arc<Context>,
    pub scheduler: Arc<Scheduler>,
    pub writer: Sender<Message>,
    pub slot: Arc<WorkerSlot>,
    pub connection: Option<Arc<Connection<'static>>>,
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
}

impl Worker {
    /// Works until the queue is empty or stopped, or the watchdog gives this worker up.
    pub fn run(&mut self) {
        while let Some(item) = self.scheduler.next() {
            if self.context.stop.is_set() {
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
            let result = self.work_with_retries(in_hand);
            match result {
                Ok(()) => {}
                Err(WorkerError::WriterGone) => {
                    self.scheduler.stop();
                    return;
                }
                Err(WorkerError::Stopped | WorkerError::Abandoned) => return,
                Err(failure @ (WorkerError::Table(_) | WorkerError::Db { .. })) => {
                    let fatal = matches!(
                        &failure,
                        WorkerError::Db { error, .. } if classify(error).fatal_for_run()
                    );
                    let reason = match failure {
                        WorkerError::Db { context, error } => {
                            format!("{context}: {error} [{}]", classify(&error).name())
                        }
                        WorkerError::Table(reason) => reason,
                        _ => String::new(),
                    };
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
        let result = self.retry(&mut in_hand);
        if result.is_err() && matches!(in_hand, InHand::Prepare(_)) {
            // This table's partitions never come: workers waiting for them go on. (A no-op
            // once the watchdog gave this worker up; it requeued the table itself.)
            let _ = self.prepared(Vec::new());
        }
        result
    }

    fn retry(&mut self, in_hand: &mut InHand) -> Result<(), WorkerError> {
        let mut failures = 0u32;
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
            if failures > self.context.read.max_retries {
                return Err(WorkerError::Table(format!(
                    "gave up after {} retries: {context}: {error} [{}]",
                    self.context.read.max_retries,
                    class.name()
                )));
            }
            let delay = backoff(self.context.read.retry_base, failures);
            log::warn!(
                "{name}: {} (SQLSTATE {}, native error {}) while {context}; retry {failures} of \
                 {} in {:.1}s on a new connection",
                class.name(),
                error.state,
                error.native,
                self.context.read.max_retries,
                delay.as_secs_f64()
            );
            self.connection = None;
            self.sleep(delay)?;
        }
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

    fn fail_table(&self, table: usize, reason: String) -> Result<(), WorkerError> {
        if self.scheduler.is_failed(table) {
            return Ok(());
        }
        self.scheduler.fail_table(table);
        self.send(Message::TableFailed { table, reason })
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
        for statement in &self.context.read.session_setup {
            connection
                .execute(statement, (), None)
                .map_err(|e| WorkerError::Db {
                    context: "setting up the session".into(),
                    error: DbError::from_odbc(&e, self.context.source.secret()).without_values(),
                })?;
        }
        // The Arc never leaves this thread; it lets a statement run on odbc-api's fetch thread
        // keep the connection alive (odbc-api's `StatementParent` for `Arc<Connection>`).
        #[allow(clippy::arc_with_non_send_sync)]
        let connection = Arc::new(connection);
        self.connection = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Takes the exact count and key bounds, splits the table into partitions and queues them.
    fn prepare(&mut self, table: usize) -> Result<(), WorkerError> {
        self.statement_started(None);
        let counted = self.count_and_split(table);
        self.statement_finished();
        let (expected_rows, specs) = counted?;
        self.send(Message::TableStarted {
            table,
            expected_rows,
            partitions: specs.clone(),
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

    fn count_and_split(&mut self, table: usize) -> Result<(u64, Vec<PartitionSpec>), WorkerError> {
        let context = Arc::clone(&self.context);
        let job = &context.jobs[table];
        let connection = self.connection()?;
        let single_row = |what: &str, sql: &str| -> Result<Vec<Option<String>>, WorkerError> {
            let rows = query_text(&context.source, &connection, what, sql)
                .map_err(WorkerError::from_error)?;
            Ok(rows.into_iter().next().unwrap_or_default())
        };
        let count = single_row("taking the exact row count", &job.query.count())?;
        let expected_rows = count
            .first()
            .and_then(|c| c.as_deref())
            .and_then(parse_count)
            .unwrap_or(0);
        let specs = match (job.mode, job.query.key_bounds()) {
            (ReadMode::Range, Some(sql)) => {
                let bounds = single_row("reading the key bounds", &sql)?;
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
                        expected_rows.div_ceil(job.settings.partition_size),
                    ),
                    // An empty table: one partition that reads nothing.
                    _ => partition::whole_table(ReadMode::Range),
                }
            }
            (mode, _) => partition::whole_table(mode),
        };
        Ok((expected_rows, specs))
    }

    /// Reads one partition to its end and tells the writer it is done. `partition.after`
    /// follows the last key sent, so a retry resumes right after it.
    fn read_partition(&mut self, partition: &mut Partition) -> Result<(), WorkerError> {
        let context = Arc::clone(&self.context);
        let job = &context.jobs[partition.table];
        if partition.spec.mode == ReadMode::Stream {
            // No key to resume after: whatever an earlier attempt wrote is discarded.
            self.send(Message::RestartTable {
                table: partition.table,
            })?;
        }
        let mut layout = FetchLayout::new(
            &job.table.columns,
            &job.kinds,
            job.settings.batch_size,
            context.read.buffers,
        );
        let chunk_limit =
            (partition.spec.mode == ReadMode::Keyset).then_some(job.settings.partition_size);
        loop {
            if self.scheduler.is_failed(partition.table) {
                return Ok(());
            }
            self.check_deadline(partition.table, job)?;
            let sql = job.query.select(
                partition.spec.range,
                partition.after.as_deref(),
                chunk_limit,
            );
            match self.stream(partition, job, &sql, &layout)? {
                StreamEnd::Complete { rows } => {
                    let more_chunks = chunk_limit.is_some_and(|limit| rows >= limit);
                    if !more_chunks {
                        break;
                    }
                }
                StreamEnd::Truncated { column, needed } => {
                    layout.grow(column, needed).map_err(|_| {
                        WorkerError::Table(format!(
                            "a value in column '{}' is larger than max_value_bytes ({} bytes); \
                             raise max_value_bytes in the config to copy it",
                            job.table.columns[column].name, context.read.buffers.max_value_bytes
                        ))
                    })?;
                    log::debug!(
                        "{}: column '{}' needs a larger buffer; reading on from the last key \
                         sent",
                        job.table.full_name(),
                        job.table.columns[column].name
                    );
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
        })
    }

    /// Fails the table once it has run longer than its tier's timeout.
    fn check_deadline(&self, table: usize, job: &TableJob) -> Result<(), WorkerError> {
        let limit = Duration::from_secs(job.settings.timeout_seconds);
        match self.scheduler.table_elapsed(table) {
            Some(elapsed) if elapsed > limit => Err(WorkerError::Table(format!(
                "the table ran longer than its tier's timeout of {}s; raise tiers.{}.\
                 timeout_seconds to give it more time",
                job.settings.timeout_seconds, job.tier
            ))),
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

    /// Runs one statement and sends its rows to the writer, batch by batch.
    fn stream(
        &mut self,
        partition: &mut Partition,
        job: &TableJob,
        sql: &str,
        layout: &FetchLayout,
    ) -> Result<StreamEnd, WorkerError> {
        let name = job.table.full_name();
        let secret = self.context.source.secret().map(str::to_owned);
        let db_error = |e: &odbc_api::Error| WorkerError::Db {
            context: format!("reading {name}"),
            error: DbError::from_odbc(e, secret.as_deref()).without_values(),
        };
        // Connecting and executing are watched too (no handle to cancel yet).
        self.statement_started(None);
        let timeout = usize::try_from(job.settings.timeout_seconds).ok();
        let opened = self.connection().and_then(|connection| {
            connection
                .into_cursor(sql, (), timeout)
                .map_err(|failed| db_error(&failed.error))
        });
        let mut cursor = match opened {
            Ok(Some(cursor)) => cursor,
            other => {
                self.statement_finished();
                return other.map(|_| StreamEnd::Complete { rows: 0 });
            }
        };
        self.statement_started(Some(StatementHandle::new(cursor.as_stmt_ref().as_sys())));
        let outcome = self.fetch_all(partition, job, cursor, layout, &db_error);
        self.statement_finished();
        outcome
    }

    fn fetch_all(
        &self,
        partition: &mut Partition,
        job: &TableJob,
        cursor: odbc_api::OwnedCursor<Arc<Connection<'static>>>,
        layout: &FetchLayout,
        db_error: &dyn Fn(&odbc_api::Error) -> WorkerError,
    ) -> Result<StreamEnd, WorkerError> {
        let name = job.table.full_name();
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
            // Hand the other buffer to the fetch thread before encoding this batch.
            if let Some(buffer) = spare.take() {
                fetcher.fill(buffer);
            }
            let rows = batch.num_rows();
            let columns = views(&batch);
            let mut bytes = Vec::with_capacity(capacity_hint);
            if let Err(e) = encode_batch(&columns, rows, &mut encoder, &mut bytes) {
                break Err(WorkerError::Table(format!("{name}: {e}")));
            }
            capacity_hint = bytes.len() + bytes.len() / 8;
            let last_key = match job.mode {
                ReadMode::Stream => None,
                _ => match key_of_row(
                    &columns,
                    &job.kinds,
                    &job.key_indices,
                    rows.saturating_sub(1),
                ) {
                    Some(key) => Some(key),
                    None => {
                        break Err(WorkerError::Table(format!(
                            "{name}: a primary key value could not be read as a resume point"
                        )));
                    }
                },
            };
            drop(columns);
            let bytes = match self.context.read.compression.compress(bytes) {
                Ok(bytes) => bytes,
                Err(e) => {
                    break Err(WorkerError::Table(format!(
                        "{name}: compression failed: {e}"
                    )));
                }
            };
            if let Err(e) = self.send_chunk(partition, rows as u64, bytes, last_key) {
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

    /// Sends one chunk and records its last key as the partition's resume point, both at once
    /// with respect to the watchdog.
    fn send_chunk(
        &self,
        partition: &mut Partition,
        rows: u64,
        bytes: Vec<u8>,
        last_key: Option<Vec<KeyValue>>,
    ) -> Result<(), WorkerError> {
        let mut slot = self.slot.state.lock();
        if slot.abandoned {
            return Err(WorkerError::Abandoned);
        }
        let chunk = Chunk {
            table: partition.table,
            partition: partition.spec.id,
            rows,
            bytes,
            last_key: last_key.clone(),
        };
        self.writer
            .send(Message::Chunk(chunk))
            .map_err(|_| WorkerError::WriterGone)?;
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

/// Changes whenever the work in hand moved on (a chunk was sent).
fn progress_marker(in_hand: &InHand) -> Option<Vec<KeyValue>> {
    match in_hand {
        InHand::Prepare(_) => None,
        InHand::Partition(p) => p.after.clone(),
    }
}
