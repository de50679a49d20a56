//! Shared types: the plain enums and structs that several stages of the data flow speak in.
//!
//! This module imports nothing from the crate, so every other module may use it without an
//! import circle (ARCHITECTURE.md, "Module map"). It holds types, their names and their serde
//! forms only; behaviour stays with the stage that owns it (for example the SELECT text of a
//! [`Dialect`] is in `source`, the comparison of [`KeyValue`]s in `source::key`).

mod key;

pub(crate) use key::{Date, KeyRange, KeyValue, Timestamp};

use serde::{Deserialize, Serialize};

/// The state file's name in `output_dir` unless `state_file` puts it elsewhere.
pub(crate) const STATE_FILE: &str = "_state.json";

/// The format of the part files (the `format` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    Csv,
    Ndjson,
    Parquet,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
        }
    }
}

/// The Parquet type a column is written as (`"format": "parquet"`), in the manifest's words:
/// `int64`, `decimal(19,4)`, `timestamp(us, UTC)`, ... Text and binary are Arrow's large
/// variants (64-bit offsets), so one value may exceed 2 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) enum ParquetType {
    Int64,
    Float32,
    Float64,
    Boolean,
    /// DECIMAL(precision, scale), precision 1 to 38.
    Decimal {
        precision: u8,
        scale: i8,
    },
    Date,
    /// Microseconds, no time zone: the wall-clock time the source holds.
    Timestamp,
    /// Microseconds since the epoch in UTC: an instant (a source timestamp with time zone).
    TimestampUtc,
    /// Nanoseconds since midnight.
    TimeNanos,
    String,
    Binary,
}

impl ParquetType {
    pub(crate) fn name(self) -> String {
        match self {
            ParquetType::Int64 => "int64".into(),
            ParquetType::Float32 => "float32".into(),
            ParquetType::Float64 => "float64".into(),
            ParquetType::Boolean => "boolean".into(),
            ParquetType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ParquetType::Date => "date".into(),
            ParquetType::Timestamp => "timestamp(us)".into(),
            ParquetType::TimestampUtc => "timestamp(us, UTC)".into(),
            ParquetType::TimeNanos => "time(ns)".into(),
            ParquetType::String => "string".into(),
            ParquetType::Binary => "binary".into(),
        }
    }
}

impl From<ParquetType> for String {
    fn from(t: ParquetType) -> String {
        t.name()
    }
}

impl TryFrom<String> for ParquetType {
    type Error = String;

    fn try_from(name: String) -> Result<ParquetType, String> {
        let simple = [
            ParquetType::Int64,
            ParquetType::Float32,
            ParquetType::Float64,
            ParquetType::Boolean,
            ParquetType::Date,
            ParquetType::Timestamp,
            ParquetType::TimestampUtc,
            ParquetType::TimeNanos,
            ParquetType::String,
            ParquetType::Binary,
        ];
        if let Some(t) = simple.into_iter().find(|t| t.name() == name) {
            return Ok(t);
        }
        let decimal = name
            .strip_prefix("decimal(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|inner| inner.split_once(','))
            .and_then(|(p, s)| Some((p.trim().parse().ok()?, s.trim().parse().ok()?)));
        match decimal {
            Some((precision, scale)) => Ok(ParquetType::Decimal { precision, scale }),
            None => Err(format!("unknown Parquet type '{name}'")),
        }
    }
}

/// Size class of a table; decides its processing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Tier {
    Small,
    Medium,
    Large,
}

impl Tier {
    pub(crate) const ALL: [Tier; 3] = [Tier::Small, Tier::Medium, Tier::Large];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Tier::Small => "small",
            Tier::Medium => "medium",
            Tier::Large => "large",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How reads see concurrent writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Isolation {
    /// The database default. On SQL Server with READ_COMMITTED_SNAPSHOT ON it is already
    /// row-versioned and does not block writers.
    ReadCommitted,
    /// A consistent, lock-free read from row versions (SQL Server, when the database has
    /// ALLOW_SNAPSHOT_ISOLATION ON; `check` tells). PostgreSQL: REPEATABLE READ, its snapshot.
    Snapshot,
    /// NOLOCK: may read rows twice or miss them during page splits. Never the default.
    ReadUncommitted,
}

impl Isolation {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::Snapshot => "snapshot",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// The ODBC driver a `mssql_*` config names, as far as its keywords differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlServerDriver {
    /// Microsoft ODBC Driver `major` for SQL Server ("ODBC Driver 18 for SQL Server").
    Microsoft {
        major: u32,
    },
    FreeTds,
}

impl SqlServerDriver {
    /// Reads the family and major version from the registered driver name; a name without a
    /// version (a renamed registration) is taken as the current Driver 18.
    pub(crate) fn from_name(name: &str) -> SqlServerDriver {
        let lower = name.to_ascii_lowercase();
        if lower.contains("freetds") || lower.contains("tdsodbc") {
            return SqlServerDriver::FreeTds;
        }
        let major = lower
            .split(|c: char| !c.is_ascii_digit())
            .find_map(|digits| digits.parse::<u32>().ok())
            .unwrap_or(18);
        SqlServerDriver::Microsoft { major }
    }
}

/// The SQL flavour of the source, detected from the DBMS name the driver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    SqlServer,
    Postgres,
    Sqlite,
}

/// How a partition's rows are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReadMode {
    /// One statement over a range of an integer leading key (or, for a change tracking read,
    /// over every key), resumed after its last key.
    Range,
    /// Sequential keyset chunks of `partition_size` rows (`TOP (n) ... WHERE key > last`), for
    /// keys that cannot be split arithmetically.
    Keyset,
    /// No primary key: one unordered stream, restarted from the first row on failure.
    Stream,
    /// Every key in order, compared with the previous run's key list to find deleted rows.
    /// Read after the table's other partitions; restarted from the first key on failure.
    KeyScan,
}

/// One partition of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionSpec {
    pub(crate) id: usize,
    pub(crate) mode: ReadMode,
    pub(crate) range: KeyRange,
}

/// The columns appended to every row when `change_columns` is on.
pub(crate) const OP_COLUMN: &str = "_ehi_op";

pub(crate) const SYNCED_AT_COLUMN: &str = "_ehi_synced_at";

/// How a table is kept up to date from run to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub(crate) enum SyncMode {
    /// SQL Server Change Tracking is enabled on the table.
    ChangeTracking,
    /// A column that grows with every insert and update.
    Cursor { column: String, kind: CursorKind },
    /// Neither: reloaded whole each run (`reload`), or skipped after its first load.
    Full { reload: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CursorKind {
    /// SQL Server `rowversion`: read up to `MIN_ACTIVE_ROWVERSION()`, so rows of transactions
    /// still open are not skipped.
    Rowversion,
    /// A date/time column: the lookback window re-reads the last minutes before the position.
    Timestamp,
    Integer,
}

impl CursorKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CursorKind::Rowversion => "rowversion",
            CursorKind::Timestamp => "timestamp",
            CursorKind::Integer => "integer",
        }
    }
}

/// What a table's output is complete up to; committed with the table's last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    pub(crate) mode: SyncMode,
    /// Change tracking version or cursor value; `None` for full mode, or an empty table.
    pub(crate) value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LoadKind {
    Full,
    Incremental,
    Skip,
}

impl LoadKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LoadKind::Full => "full",
            LoadKind::Incremental => "incremental",
            LoadKind::Skip => "skip",
        }
    }
}

/// What one run reads of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Load {
    pub(crate) kind: LoadKind,
    pub(crate) mode: SyncMode,
    /// Why this kind of load, in words for the plan and the manifest.
    pub(crate) reason: String,
    /// The committed position an incremental load reads after.
    pub(crate) from: Option<String>,
    /// The upper bound, captured when the table starts; the next position.
    pub(crate) to: Option<String>,
    pub(crate) lookback_minutes: u32,
    /// Stream the keys after the rows and compare them with the previous key list.
    pub(crate) key_scan: bool,
    pub(crate) schema_changes: Vec<SchemaChange>,
    /// Change tracking's own count of inserts, updates and deletes in the range.
    pub(crate) operations: Option<OperationCounts>,
    /// Read the changes in SNAPSHOT isolation (change tracking, where the database allows it),
    /// so the change table and the rows joined to it are one consistent version.
    #[serde(default)]
    pub(crate) snapshot: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperationCounts {
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) deletes: u64,
}

/// A column that differs from the previous load's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SchemaChange {
    pub(crate) column: String,
    pub(crate) change: ColumnChange,
    /// The source type before (dropped, retyped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) before: Option<String>,
    /// The source type now (added, retyped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ColumnChange {
    Added,
    Dropped,
    Retyped,
}

/// Compression of part files. Each chunk is compressed on its own as a complete gzip member or
/// zstd frame: concatenated members/frames are a valid file, so workers compress in parallel
/// and a file truncated at a chunk boundary stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    pub(crate) fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

/// One fetched value, borrowed from the fetch buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Null,
    Int(i64),
    Float(f64),
    /// Text in the client encoding (UTF-8 here); validated before it is written.
    Text(&'a [u8]),
    /// UTF-16 text (the wide ODBC functions, used on Windows).
    WideText(&'a [u16]),
    Bytes(&'a [u8]),
}

/// Who holds (or last held) the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub(crate) pid: u32,
    pub(crate) host: String,
    pub(crate) started_at: String,
}
