//! Primary key values: how each key column is compared, bound as a typed ODBC parameter, and
//! checked to advance.
//!
//! A key value is read from the last row sent and bound into the next statement as a parameter
//! of the key column's own SQL type (`SQL_VARCHAR` for `varchar`, `SQL_WVARCHAR` for `nvarchar`,
//! `SQL_BIGINT`, `SQL_NUMERIC(p,s)`, `SQL_TYPE_TIMESTAMP` with the column's fraction digits,
//! `SQL_GUID`, ...). So SQL Server compares the column in its own type and collation (a
//! `varchar` column against an `nvarchar` value would be converted, compared by other rules and
//! not seeked), reads no date string through the login's DATEFORMAT, and compiles one plan per
//! statement shape instead of one per literal. Text is bound as UTF-16 (`SQL_C_WCHAR`) data, so
//! it reaches the server intact whatever the client code page.

use std::cmp::Ordering;
use std::num::NonZeroUsize;

use odbc_api::parameter::{InputParameter, VarBinaryBox, VarCharBox, VarWCharBox, WithDataType};
use odbc_api::sys::SqlDataType;
use odbc_api::{DataType, sys};

use crate::model::{Cell, Date, Dialect, KeyValue, Timestamp};
use crate::source::catalog::Column;
use crate::source::types::ValueKind;

/// SQL Server's four integer types, bound with their own SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntegerType {
    BigInt,
    Integer,
    SmallInt,
    TinyInt,
}

/// How uniqueidentifier values sort on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuidOrder {
    /// SQL Server: the bytes as stored (the first three groups little-endian), compared from
    /// the last group to the first as Microsoft's "Comparing GUID and uniqueidentifier Values"
    /// describes: bytes 10–15 first, then 8–9, 6–7, 4–5 and 0–3.
    SqlServer,
    /// PostgreSQL `uuid`: the 16 bytes in written order.
    Bytes,
}

/// A key column's type: how its values are read, compared and bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyType {
    Integer(IntegerType),
    Decimal {
        precision: usize,
        scale: i16,
    },
    Double,
    Real,
    /// `column_size` and `fraction_digits`: the parameter's precision, 16/0 smalldatetime,
    /// 23/3 datetime, 19/0 or 20+n/n datetime2(n) ("Conversions from C to SQL" for date and
    /// time types). Driver 18 declares every such parameter `datetime2` whatever its size, and
    /// SQL Server 2016 and later convert a `datetime` compared with a `datetime2` exactly
    /// (1/300 s: `.997` is `.9966667`), so the column would neither equal nor stay below its
    /// own printed value: `server_type` is then the column's type, and the marker converts the
    /// bound back to it (`CAST(? AS DATETIME)`).
    Timestamp {
        column_size: usize,
        fraction_digits: i16,
        server_type: Option<&'static str>,
    },
    Date,
    Guid(GuidOrder),
    /// `unicode`: `nchar`/`nvarchar` (bound `SQL_WVARCHAR`) or `char`/`varchar` (`SQL_VARCHAR`,
    /// compared in the column's code page and collation). `length` in the column's units.
    Text {
        unicode: bool,
        length: Option<usize>,
    },
    Binary {
        length: Option<usize>,
    },
    /// A type ODBC has no parameter type for (time, datetimeoffset, bit, PostgreSQL's others):
    /// the text is bound and converted by the server, `CAST(? AS <sql_type>)`.
    Converted {
        sql_type: String,
    },
}

/// The declared length of text converted by the server (`CAST(? AS datetimeoffset(7))`): longer
/// than any such SQL Server value's text.
const CONVERTED_TEXT_LENGTH: NonZeroUsize = NonZeroUsize::new(64).expect("non-zero");

/// A key value that does not fit its column's type (a resume point of another schema).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the resume point of key column '{column}' is not a valid value of its type; run `ehi-sync \
     sync --restart` to read the table again from the start"
)]
pub(crate) struct KeyMismatch {
    pub(crate) column: String,
}

impl KeyType {
    /// The key type of `column`; `None` for a type that cannot be a resume point.
    pub(crate) fn of(dialect: Dialect, column: &Column) -> Option<KeyType> {
        let kind = ValueKind::of(dialect, column);
        let t = column.source_type.to_ascii_lowercase();
        let length = column
            .length
            .and_then(|l| usize::try_from(l).ok())
            .filter(|l| *l > 0);
        let scale = |default: i16| {
            column
                .scale
                .and_then(|s| i16::try_from(s).ok())
                .unwrap_or(default)
        };
        let decimal = || KeyType::Decimal {
            precision: column
                .precision
                .and_then(|p| usize::try_from(p).ok())
                .filter(|p| *p > 0)
                .unwrap_or(38),
            scale: scale(0),
        };
        Some(match dialect {
            Dialect::SqlServer => match t.as_str() {
                "bigint" => KeyType::Integer(IntegerType::BigInt),
                "int" => KeyType::Integer(IntegerType::Integer),
                "smallint" => KeyType::Integer(IntegerType::SmallInt),
                "tinyint" => KeyType::Integer(IntegerType::TinyInt),
                "decimal" | "numeric" => decimal(),
                "money" => KeyType::Decimal {
                    precision: 19,
                    scale: 4,
                },
                "smallmoney" => KeyType::Decimal {
                    precision: 10,
                    scale: 4,
                },
                "float" => KeyType::Double,
                "real" => KeyType::Real,
                "datetime" => KeyType::Timestamp {
                    column_size: 23,
                    fraction_digits: 3,
                    server_type: Some("DATETIME"),
                },
                // Whole minutes convert to datetime2 exactly.
                "smalldatetime" => KeyType::Timestamp {
                    column_size: 16,
                    fraction_digits: 0,
                    server_type: None,
                },
                "datetime2" => {
                    let digits = scale(7);
                    KeyType::Timestamp {
                        column_size: if digits > 0 {
                            20 + usize::try_from(digits).unwrap_or(7)
                        } else {
                            19
                        },
                        fraction_digits: digits,
                        server_type: None,
                    }
                }
                "date" => KeyType::Date,
                "uniqueidentifier" => KeyType::Guid(GuidOrder::SqlServer),
                "char" | "varchar" => KeyType::Text {
                    unicode: false,
                    length,
                },
                "nchar" | "nvarchar" => KeyType::Text {
                    unicode: true,
                    length,
                },
                // nvarchar(128); sys.columns reports its length in bytes.
                "sysname" => KeyType::Text {
                    unicode: true,
                    length: Some(128),
                },
                "binary" | "varbinary" | "timestamp" | "rowversion" => KeyType::Binary { length },
                "time" | "datetimeoffset" => KeyType::Converted {
                    sql_type: format!("{t}({})", scale(7)),
                },
                "bit" => KeyType::Converted {
                    sql_type: "BIT".into(),
                },
                _ => return None,
            },
            Dialect::Postgres => match t.as_str() {
                "bigint" | "int8" => KeyType::Integer(IntegerType::BigInt),
                "integer" | "int4" => KeyType::Integer(IntegerType::Integer),
                "smallint" | "int2" => KeyType::Integer(IntegerType::SmallInt),
                // An unconstrained numeric has no scale to bind with: converted from its text.
                "numeric" | "decimal" if column.scale.is_none() => KeyType::Converted {
                    sql_type: "numeric".into(),
                },
                "numeric" | "decimal" => decimal(),
                "double precision" | "float8" => KeyType::Double,
                "real" | "float4" => KeyType::Real,
                "timestamp without time zone" | "timestamp" => {
                    let digits = scale(6);
                    KeyType::Timestamp {
                        column_size: 20 + usize::try_from(digits).unwrap_or(6),
                        fraction_digits: digits,
                        server_type: None,
                    }
                }
                "date" => KeyType::Date,
                "uuid" => KeyType::Guid(GuidOrder::Bytes),
                "character varying" | "varchar" | "character" | "bpchar" | "text" => {
                    KeyType::Text {
                        unicode: true,
                        length,
                    }
                }
                "bytea" => KeyType::Binary { length: None },
                other => KeyType::Converted {
                    sql_type: other.to_owned(),
                },
            },
            // SQLite compares by storage class and the column's affinity: integers and reals
            // are bound as numbers, blobs as bytes, anything else as the text it was read as.
            Dialect::Sqlite => match kind {
                ValueKind::Integer => KeyType::Integer(IntegerType::BigInt),
                ValueKind::Float => KeyType::Double,
                ValueKind::Binary => KeyType::Binary { length: None },
                _ => KeyType::Text {
                    unicode: true,
                    length: None,
                },
            },
        })
    }

    /// Whether a range of this leading key can be split arithmetically: integers, and exact
    /// numerics without a fraction that fit an `i64` (`numeric(18,0)` ids).
    pub(crate) fn splits_as_integer(&self) -> bool {
        match self {
            KeyType::Integer(_) => true,
            KeyType::Decimal { precision, scale } => *scale == 0 && *precision <= 18,
            _ => false,
        }
    }

    /// A range bound of an integer-split key, in the key's own type.
    pub(crate) fn bound(&self, value: i64) -> KeyValue {
        match self {
            KeyType::Decimal { .. } => KeyValue::Decimal(value.to_string()),
            _ => KeyValue::Int(value),
        }
    }

    /// The parameter marker as it appears in a statement.
    pub(crate) fn marker(&self, dialect: Dialect) -> String {
        match (self, dialect) {
            (KeyType::Converted { sql_type }, _) => format!("CAST(? AS {sql_type})"),
            (
                KeyType::Timestamp {
                    server_type: Some(server_type),
                    ..
                },
                _,
            ) => format!("CAST(? AS {server_type})"),
            (KeyType::Guid(_), Dialect::Postgres) => "CAST(? AS uuid)".to_owned(),
            _ => "?".to_owned(),
        }
    }

    /// The key value of a fetched cell; `None` for NULL or a value not of this type.
    pub(crate) fn value_of(&self, cell: Cell<'_>) -> Option<KeyValue> {
        let text = match cell {
            Cell::Null => return None,
            Cell::Int(v) => {
                return match self {
                    KeyType::Integer(_) => Some(KeyValue::Int(v)),
                    KeyType::Decimal { .. } => Some(KeyValue::Decimal(v.to_string())),
                    _ => None,
                };
            }
            Cell::Float(v) => {
                return matches!(self, KeyType::Double | KeyType::Real)
                    .then_some(KeyValue::Float(v.to_bits()));
            }
            Cell::Bytes(bytes) => {
                return matches!(self, KeyType::Binary { .. })
                    .then(|| KeyValue::Binary(bytes.to_vec()));
            }
            Cell::Text(bytes) => std::str::from_utf8(bytes).ok()?.to_owned(),
            Cell::WideText(units) => String::from_utf16(units).ok()?,
        };
        self.conform(KeyValue::Text(text))
    }

    /// `value` as this type, for a value read as text or from an older state file; `None` if
    /// it is not a value of this type.
    pub(crate) fn conform(&self, value: KeyValue) -> Option<KeyValue> {
        match (self, value) {
            (KeyType::Integer(_), KeyValue::Int(v)) => Some(KeyValue::Int(v)),
            (KeyType::Integer(_), KeyValue::Text(t)) => t.trim().parse().ok().map(KeyValue::Int),
            (KeyType::Decimal { .. }, KeyValue::Int(v)) => Some(KeyValue::Decimal(v.to_string())),
            (KeyType::Decimal { .. }, KeyValue::Decimal(t) | KeyValue::Text(t)) => {
                let t = t.trim();
                Decimal::parse(t).map(|_| KeyValue::Decimal(t.to_owned()))
            }
            (KeyType::Double | KeyType::Real, KeyValue::Float(bits)) => Some(KeyValue::Float(bits)),
            (KeyType::Double, KeyValue::Text(t)) => {
                parse_float(&t).map(|v| KeyValue::Float(v.to_bits()))
            }
            // Parsed as f32 itself: through f64 first, a value could round twice.
            (KeyType::Real, KeyValue::Text(t)) => match t.trim() {
                "Infinity" => Some(f32::INFINITY),
                "-Infinity" => Some(f32::NEG_INFINITY),
                t => t.parse::<f32>().ok(),
            }
            .map(|v| KeyValue::Float(f64::from(v).to_bits())),
            (KeyType::Timestamp { .. }, KeyValue::Timestamp(ts)) => Some(KeyValue::Timestamp(ts)),
            (KeyType::Timestamp { .. }, KeyValue::Text(t)) => {
                Timestamp::parse(&t).map(KeyValue::Timestamp)
            }
            (KeyType::Date, KeyValue::Date(date)) => Some(KeyValue::Date(date)),
            (KeyType::Date, KeyValue::Text(t)) => Date::parse(&t).map(KeyValue::Date),
            (KeyType::Guid(_), KeyValue::Text(t)) => guid_bytes(&t).map(|_| KeyValue::Text(t)),
            (KeyType::Text { .. } | KeyType::Converted { .. }, KeyValue::Text(t)) => {
                Some(KeyValue::Text(t))
            }
            (KeyType::Binary { .. }, KeyValue::Binary(bytes)) => Some(KeyValue::Binary(bytes)),
            _ => None,
        }
    }

    /// The typed ODBC parameter holding `value`; `None` if `value` is not of this type.
    pub(crate) fn parameter(&self, value: &KeyValue) -> Option<Box<dyn InputParameter>> {
        let wide = |text: &str| VarWCharBox::from_str_slice(text);
        let units = |text: &str| NonZeroUsize::new(text.encode_utf16().count().max(1));
        Some(match (self, value) {
            (KeyType::Integer(integer), KeyValue::Int(v)) => Box::new(WithDataType {
                value: *v,
                data_type: match integer {
                    IntegerType::BigInt => DataType::BigInt,
                    IntegerType::Integer => DataType::Integer,
                    IntegerType::SmallInt => DataType::SmallInt,
                    IntegerType::TinyInt => DataType::TinyInt,
                },
            }),
            (KeyType::Decimal { precision, scale }, KeyValue::Decimal(text)) => {
                Box::new(WithDataType {
                    value: VarCharBox::from_string(text.clone()),
                    data_type: DataType::Numeric {
                        precision: *precision,
                        scale: *scale,
                    },
                })
            }
            (KeyType::Double, KeyValue::Float(bits)) => Box::new(f64::from_bits(*bits)),
            (KeyType::Real, KeyValue::Float(bits)) => Box::new(f64::from_bits(*bits) as f32),
            (
                KeyType::Timestamp {
                    column_size,
                    fraction_digits,
                    ..
                },
                KeyValue::Timestamp(ts),
            ) => Box::new(WithDataType {
                value: sys::Timestamp {
                    year: ts.date.year,
                    month: ts.date.month,
                    day: ts.date.day,
                    hour: ts.hour,
                    minute: ts.minute,
                    second: ts.second,
                    fraction: ts.nanos,
                },
                data_type: DataType::Other {
                    data_type: SqlDataType::TIMESTAMP,
                    column_size: NonZeroUsize::new(*column_size),
                    decimal_digits: *fraction_digits,
                },
            }),
            (KeyType::Date, KeyValue::Date(date)) => Box::new(sys::Date {
                year: date.year,
                month: date.month,
                day: date.day,
            }),
            (KeyType::Guid(GuidOrder::SqlServer), KeyValue::Text(text)) => Box::new(WithDataType {
                value: wide(text),
                data_type: DataType::Other {
                    data_type: SqlDataType::EXT_GUID,
                    column_size: NonZeroUsize::new(36),
                    decimal_digits: 0,
                },
            }),
            (KeyType::Text { unicode, length }, KeyValue::Text(text)) => {
                let length = length.and_then(NonZeroUsize::new).or_else(|| units(text));
                Box::new(WithDataType {
                    value: wide(text),
                    data_type: if *unicode {
                        DataType::WVarchar { length }
                    } else {
                        DataType::Varchar { length }
                    },
                })
            }
            // One declared length for every value, so SQL Server caches one plan per shape.
            (KeyType::Guid(GuidOrder::Bytes) | KeyType::Converted { .. }, KeyValue::Text(text)) => {
                Box::new(WithDataType {
                    value: wide(text),
                    data_type: DataType::WVarchar {
                        length: units(text).map(|n| n.max(CONVERTED_TEXT_LENGTH)),
                    },
                })
            }
            (KeyType::Binary { length }, KeyValue::Binary(bytes)) => Box::new(WithDataType {
                value: VarBinaryBox::from_vec(bytes.clone()),
                data_type: DataType::Varbinary {
                    length: length
                        .and_then(NonZeroUsize::new)
                        .or(NonZeroUsize::new(bytes.len().max(1))),
                },
            }),
            _ => return None,
        })
    }

    /// The server's order of two values of this type, where the client knows it exactly;
    /// `None` where only the server can tell (text under a collation, values it converts).
    pub(crate) fn compare(&self, a: &KeyValue, b: &KeyValue) -> Option<Ordering> {
        match (self, a, b) {
            (_, KeyValue::Int(x), KeyValue::Int(y)) => Some(x.cmp(y)),
            (_, KeyValue::Decimal(x), KeyValue::Decimal(y)) => {
                Some(Decimal::parse(x)?.cmp(&Decimal::parse(y)?))
            }
            (_, KeyValue::Float(x), KeyValue::Float(y)) => {
                f64::from_bits(*x).partial_cmp(&f64::from_bits(*y))
            }
            (_, KeyValue::Timestamp(x), KeyValue::Timestamp(y)) => Some(x.cmp(y)),
            (_, KeyValue::Date(x), KeyValue::Date(y)) => Some(x.cmp(y)),
            (KeyType::Guid(order), KeyValue::Text(x), KeyValue::Text(y)) => {
                let (x, y) = (guid_bytes(x)?, guid_bytes(y)?);
                Some(match order {
                    GuidOrder::SqlServer => sqlserver_guid_order(&x).cmp(&sqlserver_guid_order(&y)),
                    GuidOrder::Bytes => x.cmp(&y),
                })
            }
            // PostgreSQL and SQLite compare bytes as memcmp then length; SQL Server's binary
            // comparison of unequal lengths is left to the server.
            (KeyType::Binary { length }, KeyValue::Binary(x), KeyValue::Binary(y))
                if length.is_none() =>
            {
                Some(x.cmp(y))
            }
            _ => None,
        }
    }
}

/// Text bound once on every new connection and selected back, to prove text parameters reach
/// the server intact (Latin-1, beyond it, and outside the BMP).
pub(crate) const PARAMETER_PROBE: &str = "Ñ1 ü€😀";

/// The statement that returns its text parameter as the server received it.
pub(crate) fn parameter_probe_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::SqlServer => "SELECT CAST(? AS NVARCHAR(32)) AS probe",
        Dialect::Postgres => "SELECT CAST(? AS varchar(32)) AS probe",
        Dialect::Sqlite => "SELECT ? AS probe",
    }
}

/// The probe's parameter: UTF-16 data bound as `SQL_WVARCHAR`, as nvarchar keys are.
pub(crate) fn parameter_probe() -> Box<dyn InputParameter> {
    Box::new(WithDataType {
        value: VarWCharBox::from_str_slice(PARAMETER_PROBE),
        data_type: DataType::WVarchar {
            length: NonZeroUsize::new(32),
        },
    })
}

/// Whole keys compared column by column as the server orders them (`ORDER BY` the key); `None`
/// where a column's order is the server's alone and the values differ.
pub(crate) fn compare_keys(types: &[KeyType], a: &[KeyValue], b: &[KeyValue]) -> Option<Ordering> {
    for ((key_type, x), y) in types.iter().zip(a).zip(b) {
        match key_type.compare(x, y) {
            Some(Ordering::Equal) => {}
            Some(order) => return Some(order),
            None if x == y => {}
            None => return None,
        }
    }
    Some(Ordering::Equal)
}

/// Checks, row by row, that a read moves strictly forward in key order: after the last key
/// sent, after the range's lower bound, and increasing. Where the client cannot order a key
/// (text under a collation), a key equal to the last one sent, or to the first key of the
/// previous chunk (a bound the server misread starts the table over), is caught.
#[derive(Debug, Clone)]
pub(crate) struct Advance {
    types: Vec<KeyType>,
    names: Vec<String>,
    last: Option<Vec<KeyValue>>,
    /// First key of the chunk before the current one.
    previous_chunk_start: Option<Vec<KeyValue>>,
    chunk_start: Option<Vec<KeyValue>>,
    lower_exclusive: Option<KeyValue>,
}

/// A read returned a key at or before one already sent. Names the table's key columns, never
/// a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotAdvancing {
    pub(crate) columns: Vec<String>,
}

impl std::fmt::Display for NotAdvancing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the read did not advance in key order: the server returned a row whose key ({}) is \
             at or before a key already written; the table was stopped so no row is written \
             twice (the key bound may not have reached the server intact, or the key's order \
             differs from the server's)",
            self.columns.join(", ")
        )
    }
}

impl Advance {
    pub(crate) fn new(
        types: Vec<KeyType>,
        names: Vec<String>,
        after: Option<Vec<KeyValue>>,
        lower_exclusive: Option<KeyValue>,
    ) -> Advance {
        Advance {
            types,
            names,
            last: after,
            previous_chunk_start: None,
            chunk_start: None,
            lower_exclusive,
        }
    }

    /// The last key accepted (or the resume point it started after).
    pub(crate) fn last(&self) -> Option<&Vec<KeyValue>> {
        self.last.as_ref()
    }

    /// A new statement (keyset chunk, reopened read) starts.
    pub(crate) fn next_statement(&mut self) {
        if self.chunk_start.is_some() {
            self.previous_chunk_start = self.chunk_start.take();
        }
    }

    /// Accepts `key` as the next row's key, or says the read went backwards.
    pub(crate) fn check(&mut self, key: Vec<KeyValue>) -> Result<(), NotAdvancing> {
        let fail = || NotAdvancing {
            columns: self.names.clone(),
        };
        if let (Some(lower), Some(first_type), Some(first)) =
            (&self.lower_exclusive, self.types.first(), key.first())
            && first_type.compare(first, lower) != Some(Ordering::Greater)
        {
            return Err(fail());
        }
        if let Some(last) = &self.last {
            match compare_keys(&self.types, last, &key) {
                Some(Ordering::Less) => {}
                Some(_) => return Err(fail()),
                None if self.previous_chunk_start.as_ref() == Some(&key) => return Err(fail()),
                None => {}
            }
        }
        if self.chunk_start.is_none() {
            self.chunk_start = Some(key.clone());
        }
        self.last = Some(key);
        Ok(())
    }
}

/// An exact numeric parsed for comparison: sign, integer digits without leading zeros,
/// fraction digits without trailing zeros.
#[derive(Debug, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    integer: &'a str,
    fraction: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (integer.is_empty() && fraction.is_empty())
            || !all_digits(integer)
            || !all_digits(fraction)
        {
            return None;
        }
        let integer = integer.trim_start_matches('0');
        let fraction = fraction.trim_end_matches('0');
        Some(Decimal {
            negative: negative && !(integer.is_empty() && fraction.is_empty()),
            integer,
            fraction,
        })
    }

    fn magnitude_cmp(&self, other: &Decimal<'_>) -> Ordering {
        self.integer
            .len()
            .cmp(&other.integer.len())
            .then_with(|| self.integer.cmp(other.integer))
            .then_with(|| self.fraction.cmp(other.fraction))
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.magnitude_cmp(other),
            (true, true) => other.magnitude_cmp(self),
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// PostgreSQL prints `Infinity`, `-Infinity` and `NaN`; Rust reads `inf` and `NaN`.
fn parse_float(text: &str) -> Option<f64> {
    match text.trim() {
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// The 16 bytes of `6F9619FF-8B86-D011-B42D-00C04FD430C8` in written order.
fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(&hex, &mut bytes).ok()?;
    Some(bytes)
}

/// A GUID's sort key on SQL Server. Stored, the first three groups are little-endian
/// (`6F9619FF-8B86-D011` is stored `FF19966F 868B 11D0`); the server compares stored bytes
/// 10–15, then 8–9, 6–7, 4–5 and 0–3.
fn sqlserver_guid_order(written: &[u8; 16]) -> [u8; 16] {
    let stored = [
        written[3],
        written[2],
        written[1],
        written[0],
        written[5],
        written[4],
        written[7],
        written[6],
        written[8],
        written[9],
        written[10],
        written[11],
        written[12],
        written[13],
        written[14],
        written[15],
    ];
    const ORDER: [usize; 16] = [10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3];
    ORDER.map(|i| stored[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Date, KeyValue, Timestamp};

    fn column(source_type: &str) -> Column {
        Column::for_test("k", source_type, Some(1))
    }

    #[test]
    fn sqlserver_key_types_bind_as_the_column_type() {
        let of = |t: &str, length: Option<i64>, precision: Option<i64>, scale: Option<i64>| {
            let mut c = column(t);
            c.length = length;
            c.precision = precision;
            c.scale = scale;
            KeyType::of(Dialect::SqlServer, &c).expect("usable key")
        };
        let data_type = |key_type: &KeyType, value: KeyValue| {
            key_type.parameter(&value).expect("binds").data_type()
        };
        let varchar = of("varchar", Some(18), None, None);
        assert_eq!(
            data_type(&varchar, KeyValue::Text("Z1".into())),
            DataType::Varchar {
                length: NonZeroUsize::new(18)
            }
        );
        let nvarchar = of("nvarchar", Some(50), None, None);
        assert_eq!(
            data_type(&nvarchar, KeyValue::Text("Ñ1".into())),
            DataType::WVarchar {
                length: NonZeroUsize::new(50)
            }
        );
        let csn = of("numeric", None, Some(18), Some(0));
        assert!(csn.splits_as_integer());
        assert_eq!(
            data_type(&csn, KeyValue::Decimal("123456789012345678".into())),
            DataType::Numeric {
                precision: 18,
                scale: 0
            }
        );
        assert!(!of("numeric", None, Some(19), Some(0)).splits_as_integer());
        assert!(!of("decimal", None, Some(12), Some(2)).splits_as_integer());
        assert_eq!(
            data_type(&of("int", None, None, None), KeyValue::Int(7)),
            DataType::Integer
        );
        assert_eq!(
            data_type(
                &of("float", None, None, None),
                KeyValue::Float(1.5f64.to_bits())
            ),
            DataType::Double
        );
        assert_eq!(
            data_type(
                &of("real", None, None, None),
                KeyValue::Float(1.5f64.to_bits())
            ),
            DataType::Real
        );
        let timestamp = |key_type: &KeyType| {
            let ts = Timestamp::parse("2024-02-29 13:14:15.123").expect("timestamp");
            data_type(key_type, KeyValue::Timestamp(ts))
        };
        let sql_timestamp = |size, digits| DataType::Other {
            data_type: SqlDataType::TIMESTAMP,
            column_size: NonZeroUsize::new(size),
            decimal_digits: digits,
        };
        assert_eq!(
            timestamp(&of("datetime", None, None, None)),
            sql_timestamp(23, 3)
        );
        assert_eq!(
            timestamp(&of("smalldatetime", None, None, None)),
            sql_timestamp(16, 0)
        );
        assert_eq!(
            timestamp(&of("datetime2", None, None, Some(7))),
            sql_timestamp(27, 7)
        );
        assert_eq!(
            timestamp(&of("datetime2", None, None, Some(0))),
            sql_timestamp(19, 0)
        );
        let guid = of("uniqueidentifier", None, None, None);
        assert_eq!(
            data_type(
                &guid,
                KeyValue::Text("6F9619FF-8B86-D011-B42D-00C04FD430C8".into())
            ),
            DataType::Other {
                data_type: SqlDataType::EXT_GUID,
                column_size: NonZeroUsize::new(36),
                decimal_digits: 0
            }
        );
        assert_eq!(
            of("datetimeoffset", None, None, Some(7)).marker(Dialect::SqlServer),
            "CAST(? AS datetimeoffset(7))"
        );
        assert_eq!(varchar.marker(Dialect::SqlServer), "?");
        // Driver 18 declares a timestamp parameter datetime2: a datetime key converts it back,
        // a datetime2(3) key (the same precision) and a smalldatetime key need not.
        assert_eq!(
            of("datetime", None, None, None).marker(Dialect::SqlServer),
            "CAST(? AS DATETIME)"
        );
        assert_eq!(
            of("datetime2", None, None, Some(3)).marker(Dialect::SqlServer),
            "?"
        );
        assert_eq!(
            of("smalldatetime", None, None, None).marker(Dialect::SqlServer),
            "?"
        );
        assert!(KeyType::of(Dialect::SqlServer, &column("sql_variant")).is_none());
    }

    #[test]
    fn parameter_probe_statements() {
        let sql = parameter_probe_sql(Dialect::SqlServer);
        assert_eq!(crate::source::tsql_test::parse(sql), sql);
        assert_eq!(
            parameter_probe().data_type(),
            DataType::WVarchar {
                length: NonZeroUsize::new(32)
            }
        );
        assert!(PARAMETER_PROBE.encode_utf16().count() <= 32);
    }

    #[test]
    fn postgres_numeric_without_scale_is_converted_from_text() {
        let mut numeric = column("numeric");
        assert_eq!(
            KeyType::of(Dialect::Postgres, &numeric),
            Some(KeyType::Converted {
                sql_type: "numeric".into()
            })
        );
        numeric.precision = Some(18);
        numeric.scale = Some(0);
        assert!(
            KeyType::of(Dialect::Postgres, &numeric)
                .expect("key type")
                .splits_as_integer()
        );
    }

    #[test]
    fn a_value_of_another_type_is_not_bound() {
        let int = KeyType::Integer(IntegerType::BigInt);
        assert!(int.parameter(&KeyValue::Text("1".into())).is_none());
        assert_eq!(
            int.conform(KeyValue::Text(" 42 ".into())),
            Some(KeyValue::Int(42))
        );
        let decimal = KeyType::Decimal {
            precision: 18,
            scale: 0,
        };
        assert_eq!(
            decimal.conform(KeyValue::Int(5)),
            Some(KeyValue::Decimal("5".into()))
        );
        assert_eq!(decimal.conform(KeyValue::Text("1e5".into())), None);
    }

    #[test]
    fn fetched_cells_become_typed_keys() {
        let double = KeyType::Double;
        assert_eq!(
            double.value_of(Cell::Float(0.1)),
            Some(KeyValue::Float(0.1f64.to_bits()))
        );
        assert_eq!(
            double.value_of(Cell::Text(b"0.1")),
            Some(KeyValue::Float(0.1f64.to_bits()))
        );
        // A real printed shortest comes back as the same f32.
        let real = KeyType::Real.value_of(Cell::Text(b"0.1")).expect("real");
        assert_eq!(real, KeyValue::Float(f64::from(0.1f32).to_bits()));
        let timestamp = KeyType::Timestamp {
            column_size: 27,
            fraction_digits: 7,
            server_type: None,
        };
        assert_eq!(
            timestamp.value_of(Cell::Text(b"1-01-01 00:00:00.0000001")),
            Some(KeyValue::Timestamp(Timestamp {
                date: Date {
                    year: 1,
                    month: 1,
                    day: 1
                },
                hour: 0,
                minute: 0,
                second: 0,
                nanos: 100
            }))
        );
        let wide: Vec<u16> = "Ñ1".encode_utf16().collect();
        assert_eq!(
            KeyType::Text {
                unicode: true,
                length: None
            }
            .value_of(Cell::WideText(&wide)),
            Some(KeyValue::Text("Ñ1".into()))
        );
        assert_eq!(KeyType::Date.value_of(Cell::Null), None);
    }

    #[test]
    fn state_file_form_reads_old_and_new_keys() {
        let keys = vec![
            KeyValue::Int(-3),
            KeyValue::Text("O'Neil Ü".into()),
            KeyValue::Decimal("-12.50".into()),
            KeyValue::Float((-0.0f64).to_bits()),
            KeyValue::Float(f64::NAN.to_bits()),
            KeyValue::Timestamp(Timestamp::parse("2024-01-02 03:04:05.1234567").unwrap()),
            KeyValue::Date(Date::parse("0999-12-31").unwrap()),
            KeyValue::Binary(vec![0, 255]),
        ];
        let json = serde_json::to_string(&keys).unwrap();
        assert_eq!(
            json,
            "[-3,\"O'Neil Ü\",{\"decimal\":\"-12.50\"},{\"float_bits\":\"8000000000000000\"},\
             {\"float_bits\":\"7ff8000000000000\"},{\"timestamp\":\"2024-01-02T03:04:05.123456700\"},\
             {\"date\":\"0999-12-31\"},{\"hex\":\"00ff\"}]"
        );
        assert_eq!(serde_json::from_str::<Vec<KeyValue>>(&json).unwrap(), keys);
        // A state of the previous version: a numeric(18,0) key was saved as text.
        let old: Vec<KeyValue> = serde_json::from_str("[\"1500\", 7]").unwrap();
        let decimal = KeyType::Decimal {
            precision: 18,
            scale: 0,
        };
        assert_eq!(
            decimal.conform(old[0].clone()),
            Some(KeyValue::Decimal("1500".into()))
        );
        assert_eq!(
            KeyType::Integer(IntegerType::Integer).conform(old[1].clone()),
            Some(KeyValue::Int(7))
        );
    }

    #[test]
    fn decimals_compare_by_value() {
        fn d(t: &str) -> Decimal<'_> {
            Decimal::parse(t).unwrap()
        }
        assert!(d("9") < d("10"));
        assert!(d("-10") < d("-9"));
        assert!(d("1.5") < d("1.50001"));
        assert_eq!(d("1.50").cmp(&d("001.5")), Ordering::Equal);
        assert_eq!(d("-0.00").cmp(&d("0")), Ordering::Equal);
        assert!(d("-0.1") < d("0"));
        assert!(Decimal::parse("1e5").is_none());
        assert!(Decimal::parse("-").is_none());
    }

    #[test]
    fn sqlserver_guid_order_is_by_the_last_group_first() {
        let guid = KeyType::Guid(GuidOrder::SqlServer);
        let g = |t: &str| KeyValue::Text(t.into());
        // The last group outranks all others.
        assert_eq!(
            guid.compare(
                &g("FFFFFFFF-FFFF-FFFF-FFFF-000000000000"),
                &g("00000000-0000-0000-0000-000000000001")
            ),
            Some(Ordering::Less)
        );
        // Then the fourth group, then the third (stored little-endian: its second byte first).
        assert_eq!(
            guid.compare(
                &g("00000000-0000-0000-0100-000000000000"),
                &g("FFFFFFFF-FFFF-FFFF-0001-000000000000")
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(
            guid.compare(
                &g("00000000-0000-0001-0000-000000000000"),
                &g("00000000-0000-0100-0000-000000000000")
            ),
            Some(Ordering::Greater)
        );
        // The first group last, its last byte first.
        assert_eq!(
            guid.compare(
                &g("01000000-0000-0000-0000-000000000000"),
                &g("00000001-0000-0000-0000-000000000000")
            ),
            Some(Ordering::Less)
        );
        let uuid = KeyType::Guid(GuidOrder::Bytes);
        assert_eq!(
            uuid.compare(
                &g("01000000-0000-0000-0000-000000000000"),
                &g("00000001-0000-0000-0000-000000000000")
            ),
            Some(Ordering::Greater)
        );
    }

    fn text_advance(after: Option<&str>) -> Advance {
        Advance::new(
            vec![KeyType::Text {
                unicode: false,
                length: Some(18),
            }],
            vec!["PAT_ID".into()],
            after.map(|a| vec![KeyValue::Text(a.into())]),
            None,
        )
    }

    #[test]
    fn typed_keys_must_increase_past_the_last_key_sent() {
        let mut advance = Advance::new(
            vec![
                KeyType::Decimal {
                    precision: 18,
                    scale: 0,
                },
                KeyType::Double,
            ],
            vec!["PAT_ENC_CSN_ID".into(), "MEAS_DATE_REAL".into()],
            Some(vec![
                KeyValue::Decimal("10".into()),
                KeyValue::Float(2.5f64.to_bits()),
            ]),
            None,
        );
        let key = |csn: &str, real: f64| {
            vec![
                KeyValue::Decimal(csn.into()),
                KeyValue::Float(real.to_bits()),
            ]
        };
        advance.check(key("10", 2.75)).unwrap();
        advance.check(key("9", 99.0)).unwrap_err();
        let error = advance.check(key("10", 2.75)).unwrap_err();
        assert_eq!(error.columns, ["PAT_ENC_CSN_ID", "MEAS_DATE_REAL"]);
        assert!(error.to_string().contains("PAT_ENC_CSN_ID, MEAS_DATE_REAL"));
        advance.check(key("11", -1.0)).unwrap();
    }

    #[test]
    fn range_reads_start_after_their_lower_bound() {
        let mut advance = Advance::new(
            vec![KeyType::Integer(IntegerType::BigInt)],
            vec!["ID".into()],
            None,
            Some(KeyValue::Int(100)),
        );
        advance.check(vec![KeyValue::Int(100)]).unwrap_err();
        advance.check(vec![KeyValue::Int(101)]).unwrap();
    }

    #[test]
    fn text_keys_are_caught_repeating_the_last_key_or_the_previous_chunk() {
        let mut advance = text_advance(Some("M"));
        advance.check(vec![KeyValue::Text("M".into())]).unwrap_err();
        // The first chunk of a table, then a chunk whose bound the server misread: it starts
        // over at the table's first key.
        let mut advance = text_advance(None);
        advance.next_statement();
        for k in ["A", "B", "C"] {
            advance.check(vec![KeyValue::Text(k.into())]).unwrap();
        }
        advance.next_statement();
        let error = advance.check(vec![KeyValue::Text("A".into())]).unwrap_err();
        assert_eq!(error.columns, ["PAT_ID"]);
        // Text the client cannot order otherwise passes: the server's collation decides.
        let mut advance = text_advance(Some("a-c"));
        advance.check(vec![KeyValue::Text("ab".into())]).unwrap();
    }
}
