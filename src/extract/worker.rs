//! A tier worker: one OS thread with one blocking connection, taking prepare items and
//! partitions from the tier's queue.
//!
//! A partition is read with one streaming statement in key order, fetched in bulk on a helper
//! thread (odbc-api's `ConcurrentBlockCursor`) while this thread encodes the previous batch.
//! Each encoded batch goes to the writer with the last key in it, so the partition can be
//! reopened right after it: after a value that outgrew its buffer, after a keyset chunk, and
//! (with the state file) after a crash.

use std::sync::Arc;

use crossbeam_channel::Sender;
use odbc_api::{ConcurrentBlockCursor, Connection, ConnectionTransitions, Cursor};

use super::fetch::{FetchLayout, encode_batch, key_of_row, views};
use super::partition::{self, Partition, PartitionSpec, ReadMode};
use super::scheduler::{Scheduler, WorkItem};
use super::{ReadSettings, TableJob};
use crate::shutdown::StopFlag;
use crate::sink::{Chunk, Message};
use crate::source::catalog::parse_count;
use crate::source::{Source, query_text};

/// Why a table cannot be finished by this worker.
#[derive(Debug)]
pub enum WorkerError {
    /// The table cannot be copied in this run; the message names the problem, never a value.
    Table(String),
    /// The writer is gone (it failed and stopped the run).
    WriterGone,
    /// A graceful stop was asked for; the partition stays resumable from its last chunk.
    Stopped,
}

pub struct Worker<'a> {
    pub source: &'a Source,
    pub jobs: &'a [TableJob],
    pub scheduler: &'a Scheduler,
    pub writer: Sender<Message>,
    pub settings: &'a ReadSettings,
    pub stop: &'a StopFlag,
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

impl Worker<'_> {
    /// Works until the queue is empty or stopped.
    pub fn run(&mut self) {
        while let Some(item) = self.scheduler.next() {
            if self.stop.is_set() {
                return;
            }
            let table = match &item {
                WorkItem::Prepare(table) => *table,
                WorkItem::Partition(p) => p.table,
            };
            let result = match item {
                WorkItem::Prepare(table) => match self.prepare(table) {
                    Ok(partitions) => {
                        self.scheduler.prepared(partitions);
                        Ok(())
                    }
                    Err(e) => {
                        self.scheduler.prepared(Vec::new());
                        Err(e)
                    }
                },
                WorkItem::Partition(partition) => self.read_partition(&partition),
            };
            match result {
                Ok(()) => {}
                Err(WorkerError::WriterGone) => {
                    self.scheduler.stop();
                    return;
                }
                Err(WorkerError::Stopped) => return,
                Err(WorkerError::Table(reason)) => {
                    // The connection may be unusable after an error; the next item reconnects.
                    self.connection = None;
                    if !self.scheduler.is_failed(table) {
                        self.scheduler.fail_table(table);
                        let message = Message::TableFailed { table, reason };
                        if self.writer.send(message).is_err() {
                            self.scheduler.stop();
                            return;
                        }
                    }
                }
            }
        }
    }

    fn connection(&mut self) -> Result<Arc<Connection<'static>>, WorkerError> {
        if let Some(connection) = &self.connection {
            return Ok(Arc::clone(connection));
        }
        // The Arc never leaves this thread; it lets a statement run on odbc-api's fetch thread
        // keep the connection alive (odbc-api's `StatementParent` for `Arc<Connection>`).
        #[allow(clippy::arc_with_non_send_sync)]
        let connection = Arc::new(
            self.source
                .connect()
                .map_err(|e| WorkerError::Table(e.to_string()))?,
        );
        self.connection = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Takes the exact count and key bounds and splits the table into partitions.
    fn prepare(&mut self, table: usize) -> Result<Vec<Partition>, WorkerError> {
        let job = &self.jobs[table];
        let connection = self.connection()?;
        let single_value = |what: &str, sql: &str| -> Result<Vec<Option<String>>, WorkerError> {
            let rows = query_text(self.source, &connection, what, sql)
                .map_err(|e| WorkerError::Table(e.to_string()))?;
            Ok(rows.into_iter().next().unwrap_or_default())
        };
        let count = single_value("the exact row count", &job.query.count())?;
        let expected_rows = count
            .first()
            .and_then(|c| c.as_deref())
            .and_then(parse_count)
            .unwrap_or(0);
        let specs: Vec<PartitionSpec> = match (job.mode, job.query.key_bounds()) {
            (ReadMode::Range, Some(sql)) => {
                let bounds = single_value("the key bounds", &sql)?;
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
        self.send(Message::TableStarted {
            table,
            expected_rows,
            partitions: specs.clone(),
        })?;
        Ok(specs
            .into_iter()
            .map(|spec| Partition {
                table,
                spec,
                after: None,
            })
            .collect())
    }

    /// Reads one partition to its end and tells the writer it is done.
    fn read_partition(&mut self, partition: &Partition) -> Result<(), WorkerError> {
        let job = &self.jobs[partition.table];
        let mut layout = FetchLayout::new(
            &job.table.columns,
            &job.kinds,
            job.settings.batch_size,
            self.settings.fetch_buffer_bytes,
            self.settings.max_value_bytes,
        );
        let chunk_limit =
            (partition.spec.mode == ReadMode::Keyset).then_some(job.settings.partition_size);
        let mut after = partition.after.clone();
        loop {
            if self.scheduler.is_failed(partition.table) {
                return Ok(());
            }
            let sql = job
                .query
                .select(partition.spec.range, after.as_deref(), chunk_limit);
            match self.stream(partition, &sql, &layout, &mut after)? {
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
                            job.table.columns[column].name, self.settings.max_value_bytes
                        ))
                    })?;
                    log::debug!(
                        "{}: column '{}' needs a larger buffer; reading on from the last key sent",
                        job.table.full_name(),
                        job.table.columns[column].name
                    );
                    if partition.spec.mode == ReadMode::Stream {
                        // No key to resume after: start the table again.
                        self.send(Message::RestartTable {
                            table: partition.table,
                        })?;
                        after = None;
                    }
                }
            }
        }
        self.send(Message::PartitionDone {
            table: partition.table,
            partition: partition.spec.id,
        })
    }

    /// Runs one statement and sends its rows to the writer, batch by batch.
    fn stream(
        &mut self,
        partition: &Partition,
        sql: &str,
        layout: &FetchLayout,
        after: &mut Option<Vec<super::select::KeyValue>>,
    ) -> Result<StreamEnd, WorkerError> {
        let job = &self.jobs[partition.table];
        let name = job.table.full_name();
        let db_error = |e: odbc_api::Error| {
            WorkerError::Table(
                self.source
                    .db_error(format!("reading {name}"), &e)
                    .to_string(),
            )
        };
        let connection = self.connection()?;
        let timeout = usize::try_from(job.settings.timeout_seconds).ok();
        let cursor = match connection.into_cursor(sql, (), timeout) {
            Ok(Some(cursor)) => cursor,
            Ok(None) => return Ok(StreamEnd::Complete { rows: 0 }),
            Err(failed) => return Err(db_error(failed.error)),
        };
        let first = layout.allocate().map_err(db_error)?;
        let second = layout.allocate().map_err(db_error)?;
        let block = cursor.bind_buffer(first).map_err(db_error)?;
        let mut fetcher = ConcurrentBlockCursor::from_block_cursor(block);
        let mut spare = Some(second);
        let mut encoder = job.encoder();
        let mut rows_sent = 0u64;
        let mut capacity_hint = 0usize;
        let outcome = loop {
            let batch = match fetcher.fetch() {
                Ok(Some(batch)) => batch,
                Ok(None) => break Ok(StreamEnd::Complete { rows: rows_sent }),
                // The fetch thread has ended; there is no cursor left to close.
                Err(odbc_api::Error::TooLargeValueForBuffer {
                    indicator,
                    buffer_index,
                }) => {
                    return Ok(StreamEnd::Truncated {
                        column: buffer_index,
                        needed: indicator,
                    });
                }
                Err(e) => return Err(db_error(e)),
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
                _ => match key_of_row(&columns, &job.key_indices, rows.saturating_sub(1)) {
                    Some(key) => Some(key),
                    None => {
                        break Err(WorkerError::Table(format!(
                            "{name}: a primary key value could not be read as a resume point"
                        )));
                    }
                },
            };
            drop(columns);
            let bytes = match self.settings.compression.compress(bytes) {
                Ok(bytes) => bytes,
                Err(e) => {
                    break Err(WorkerError::Table(format!(
                        "{name}: compression failed: {e}"
                    )));
                }
            };
            let chunk = Chunk {
                table: partition.table,
                partition: partition.spec.id,
                rows: rows as u64,
                bytes,
                last_key: last_key.clone(),
            };
            if self.writer.send(Message::Chunk(chunk)).is_err() {
                break Err(WorkerError::WriterGone);
            }
            if last_key.is_some() {
                *after = last_key;
            }
            rows_sent += rows as u64;
            spare = Some(batch);
            if self.stop.is_set() {
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

    fn send(&self, message: Message) -> Result<(), WorkerError> {
        self.writer
            .send(message)
            .map_err(|_| WorkerError::WriterGone)
    }
}
