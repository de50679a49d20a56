//! Column types: what the values of a column in the files are ([`Holds`]), read from the
//! manifest, and the loader's type that holds every one of them exactly.
//!
//! Text lengths are never carried over: SQL Server counts `varchar(n)` in bytes of its code page
//! and `nvarchar(n)` in UTF-16 units, the loaders count characters, and an unbounded text type
//! costs nothing in any of them, so every text column is unbounded and every value fits.

use super::Target;
use crate::manifest::ManifestColumn;
use crate::model::{Dialect, ParquetType};
use crate::source::types::ValueKind;

/// Decimal digits an exact number may have in Snowflake's NUMBER and DuckDB's DECIMAL.
const MAX_DECIMAL_DIGITS: u32 = 38;

/// PostgreSQL's largest declared `numeric` precision.
const MAX_POSTGRES_DIGITS: u32 = 1000;

/// The values a column holds in the files, whatever the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holds {
    Integer,
    Float32,
    Float64,
    Boolean,
    /// Exact numbers; `None` where the source declares no precision (PostgreSQL's `numeric`).
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    Date,
    /// A wall-clock date and time, with `digits` fractional digits (`None`: not declared).
    Timestamp {
        digits: Option<u32>,
    },
    /// An instant; `offset`: each value carries its own UTC offset (SQL Server's
    /// `datetimeoffset`), which a loader's type may not keep.
    TimestampTz {
        digits: Option<u32>,
        offset: bool,
    },
    /// A time of day; `hour_24`: `24:00:00` occurs (PostgreSQL's `time`).
    Time {
        digits: Option<u32>,
        hour_24: bool,
    },
    Text,
    Binary,
}

/// A column's type in the loader, and what a loader must know about it (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LoaderType {
    pub(super) sql: String,
    pub(super) note: Option<String>,
}

impl Holds {
    /// What a column of `format`'s files holds. Parquet files hold `parquet_type` (the table
    /// must match the files exactly); CSV and NDJSON hold the value kind's text, read with the
    /// source type's precision and scale. `source` is the source database, when the state file
    /// tells it.
    pub(super) fn of(
        column: &ManifestColumn,
        parquet: bool,
        source: Option<Dialect>,
    ) -> (Holds, Option<String>) {
        if parquet && let Some(parquet_type) = column.parquet_type {
            return (
                Holds::of_parquet(parquet_type, column),
                column.parquet_note.clone(),
            );
        }
        let t = column.source_type.to_ascii_lowercase();
        let digits = column.scale.and_then(|s| u32::try_from(s).ok());
        let sqlite = source == Some(Dialect::Sqlite);
        let text = |why: &str| (Holds::Text, Some(why.to_owned()));
        let holds = match column.value_kind {
            ValueKind::Integer => Holds::Integer,
            ValueKind::Float if t == "real" || t == "float4" => Holds::Float32,
            ValueKind::Float => Holds::Float64,
            ValueKind::Boolean => Holds::Boolean,
            ValueKind::Decimal if sqlite => {
                return text("SQLite keeps any value in a DECIMAL column; loaded as text");
            }
            ValueKind::Decimal => Holds::Decimal {
                precision: column.precision.and_then(|p| u32::try_from(p).ok()),
                scale: digits,
            },
            ValueKind::Timestamp if sqlite => {
                return text("SQLite keeps dates as text of any form; loaded as text");
            }
            ValueKind::Timestamp => match t.as_str() {
                "date" => Holds::Date,
                "datetimeoffset" => Holds::TimestampTz {
                    digits,
                    offset: true,
                },
                "timestamp with time zone" | "timestamptz" => Holds::TimestampTz {
                    digits,
                    offset: false,
                },
                _ => Holds::Timestamp { digits },
            },
            // Dates and times some sources fetch as text (value kind `text`).
            ValueKind::Text if sqlite => Holds::Text,
            ValueKind::Text => match t.as_str() {
                "date" => Holds::Date,
                "time" => Holds::Time {
                    digits,
                    hour_24: false,
                },
                "time without time zone" => Holds::Time {
                    digits,
                    hour_24: true,
                },
                _ => Holds::Text,
            },
            ValueKind::Binary => Holds::Binary,
        };
        (holds, None)
    }

    fn of_parquet(parquet_type: ParquetType, column: &ManifestColumn) -> Holds {
        match parquet_type {
            ParquetType::Int64 => Holds::Integer,
            ParquetType::Float32 => Holds::Float32,
            ParquetType::Float64 => Holds::Float64,
            ParquetType::Boolean => Holds::Boolean,
            ParquetType::Decimal { precision, scale } => Holds::Decimal {
                precision: Some(u32::from(precision)),
                scale: u32::try_from(scale).ok(),
            },
            ParquetType::Date => Holds::Date,
            ParquetType::Timestamp => Holds::Timestamp { digits: Some(6) },
            ParquetType::TimestampUtc => Holds::TimestampTz {
                digits: Some(6),
                offset: false,
            },
            ParquetType::TimeNanos => Holds::Time {
                digits: column.scale.and_then(|s| u32::try_from(s).ok()),
                hour_24: false,
            },
            ParquetType::String => Holds::Text,
            ParquetType::Binary => Holds::Binary,
        }
    }

    /// The type in `target` that holds every value, and what it does not keep.
    pub(super) fn in_target(self, target: Target) -> LoaderType {
        let plain = |sql: &str| LoaderType {
            sql: sql.to_owned(),
            note: None,
        };
        let noted = |sql: &str, note: String| LoaderType {
            sql: sql.to_owned(),
            note: Some(note),
        };
        // Snowflake's date and time types keep nanoseconds; PostgreSQL's and DuckDB's keep
        // microseconds.
        let beyond_micros = |digits: Option<u32>| {
            digits.filter(|d| *d > 6).map(|d| {
                format!(
                    "{d} fractional digits in the files; {} keeps 6 (microseconds)",
                    target.name()
                )
            })
        };
        let with_note = |sql: &str, note: Option<String>| LoaderType {
            sql: sql.to_owned(),
            note,
        };
        let offset_lost = |offset: bool, digits: Option<u32>| {
            let offset = offset.then(|| {
                format!(
                    "{} keeps the instant, not each value's UTC offset",
                    target.name()
                )
            });
            match (offset, beyond_micros(digits)) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            }
        };
        let fractional = |digits: Option<u32>| digits.unwrap_or(9).min(9);
        match target {
            Target::Snowflake => match self {
                Holds::Integer => plain("BIGINT"),
                // FLOAT is a double and holds every single-precision value exactly.
                Holds::Float32 | Holds::Float64 => plain("FLOAT"),
                Holds::Boolean => plain("BOOLEAN"),
                Holds::Decimal {
                    precision: Some(p @ 1..=MAX_DECIMAL_DIGITS),
                    scale: Some(s),
                } if s <= p => plain(&format!("NUMBER({p},{s})")),
                Holds::Decimal { .. } => noted(
                    "VARCHAR",
                    "exact numbers without a declared precision of at most 38 digits, more \
                     than Snowflake's NUMBER holds; loaded as text"
                        .into(),
                ),
                Holds::Date => plain("DATE"),
                Holds::Timestamp { digits } => {
                    plain(&format!("TIMESTAMP_NTZ({})", fractional(digits)))
                }
                Holds::TimestampTz { digits, .. } => {
                    plain(&format!("TIMESTAMP_TZ({})", fractional(digits)))
                }
                Holds::Time { hour_24: true, .. } => noted(
                    "VARCHAR",
                    "PostgreSQL's time allows 24:00:00, which Snowflake's TIME cannot hold; \
                     loaded as text"
                        .into(),
                ),
                Holds::Time { digits, .. } => plain(&format!("TIME({})", fractional(digits))),
                Holds::Text => plain("VARCHAR"),
                Holds::Binary => plain("BINARY"),
            },
            Target::Postgres => match self {
                Holds::Integer => plain("bigint"),
                Holds::Float32 => plain("real"),
                Holds::Float64 => plain("double precision"),
                Holds::Boolean => plain("boolean"),
                Holds::Decimal {
                    precision: Some(p @ 1..=MAX_POSTGRES_DIGITS),
                    scale: Some(s),
                } if s <= p => plain(&format!("numeric({p},{s})")),
                // Unconstrained numeric holds any number of digits exactly.
                Holds::Decimal { .. } => plain("numeric"),
                Holds::Date => plain("date"),
                Holds::Timestamp { digits } => with_note("timestamp", beyond_micros(digits)),
                Holds::TimestampTz { digits, offset } => {
                    with_note("timestamptz", offset_lost(offset, digits))
                }
                Holds::Time { digits, .. } => with_note("time", beyond_micros(digits)),
                Holds::Text => plain("text"),
                Holds::Binary => plain("bytea"),
            },
            Target::Duckdb => match self {
                Holds::Integer => plain("BIGINT"),
                Holds::Float32 => plain("REAL"),
                Holds::Float64 => plain("DOUBLE"),
                Holds::Boolean => plain("BOOLEAN"),
                Holds::Decimal {
                    precision: Some(p @ 1..=MAX_DECIMAL_DIGITS),
                    scale: Some(s),
                } if s <= p => plain(&format!("DECIMAL({p},{s})")),
                Holds::Decimal { .. } => noted(
                    "VARCHAR",
                    "exact numbers without a declared precision of at most 38 digits, more \
                     than DuckDB's DECIMAL holds; loaded as text"
                        .into(),
                ),
                Holds::Date => plain("DATE"),
                Holds::Timestamp { digits } => with_note("TIMESTAMP", beyond_micros(digits)),
                Holds::TimestampTz { digits, offset } => {
                    with_note("TIMESTAMPTZ", offset_lost(offset, digits))
                }
                // DuckDB's TIME allows 24:00:00.
                Holds::Time { digits, .. } => with_note("TIME", beyond_micros(digits)),
                Holds::Text => plain("VARCHAR"),
                Holds::Binary => plain("BLOB"),
            },
        }
    }
}
