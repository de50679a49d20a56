//! What workers tell the writer: a table's start, its chunks in key order, the end of each
//! partition, a restart or a failure, and the end of a tier.

use crate::model::{KeyValue, Load, PartitionSpec};

/// What workers tell the writer.
pub(crate) enum Message {
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
pub(crate) struct Chunk {
    pub(crate) table: usize,
    pub(crate) partition: usize,
    pub(crate) rows: u64,
    pub(crate) bytes: Vec<u8>,
    /// Key of the last row in `bytes`; `None` for tables without a key.
    pub(crate) last_key: Option<Vec<KeyValue>>,
    /// How many of `rows` are delete rows.
    pub(crate) deletes: u64,
    /// A key scan's frame of the new key list, and how many of its keys are new.
    pub(crate) keys: Option<Vec<u8>>,
    pub(crate) new_keys: u64,
}
