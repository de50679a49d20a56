//! SQL Server types as the backend stores and reports them: type names parsed into
//! [`SqlType`], the facts `sys.types`/`sys.columns` report for each type, how a value is stored in
//! SQLite (a form that sorts and compares right there) and how a stored value becomes the
//! canonical [`Value`] of a result column.
//!
//! Storage forms: integers and `bit` as INTEGER; `float`/`real` as REAL; `decimal`, `numeric`,
//! `money`, `smallmoney` as exact TEXT with the column's scale (compared by the `tds_decimal`
//! collation); date/time types as TEXT with seven fraction digits (`2024-01-31 13:45:00.1230000`,
//! so text order is time order); `uniqueidentifier` as upper-case TEXT (compared by the
//! `tds_guid` collation, SQL Server's byte-group order); binary types as BLOB; `sql_variant` as
//! TEXT `\u{1}base type\u{1}value`.

use std::fmt::Write as _;

use crate::model::{Collation, SqlType, Value};

/// Marks a stored `sql_variant`: `\u{1}<base type>\u{1}<stored value as text, blobs in hex>`.
pub const VARIANT_MARK: char = '\u{1}';

/// A type name as SQL Server spells it (`varchar(18)`, `numeric(18,0)`, `datetime2(7)`,
/// `nvarchar(max)`, `varchar(50) COLLATE Latin1_General_100_BIN2`) parsed into a [`SqlType`].
/// `default_collation` applies to character types without a COLLATE clause.
pub fn parse_type(text: &str, default_collation: &str) -> Option<SqlType> {
    let text = text.trim();
    let (text, collation) = match find_word(text, "collate") {
        Some(at) => (
            text[..at].trim(),
            Collation(text[at + "collate".len()..].trim().to_owned()),
        ),
        None => (text, Collation(default_collation.to_owned())),
    };
    let (name, args) = match text.find('(') {
        Some(open) => {
            let close = text.rfind(')')?;
            let args: Vec<String> = text[open + 1..close]
                .split(',')
                .map(|a| a.trim().to_ascii_lowercase())
                .collect();
            (text[..open].trim().to_ascii_lowercase(), args)
        }
        None => (text.to_ascii_lowercase(), Vec::new()),
    };
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u16>().ok());
    let length = |default: u16| -> Option<Option<u16>> {
        match args.first().map(String::as_str) {
            None => Some(Some(default)),
            Some("max") => Some(None),
            Some(n) => n.parse::<u16>().ok().map(Some),
        }
    };
    let scale = |default: u8| number(0).map_or(default, |s| s.min(7) as u8);
    Some(match name.as_str() {
        "tinyint" => SqlType::TinyInt,
        "smallint" => SqlType::SmallInt,
        "int" | "integer" => SqlType::Int,
        "bigint" => SqlType::BigInt,
        "bit" => SqlType::Bit,
        "decimal" | "numeric" | "dec" => SqlType::Decimal {
            precision: number(0).unwrap_or(18).clamp(1, 38) as u8,
            scale: number(1).unwrap_or(0).min(38) as u8,
        },
        "money" => SqlType::Money,
        "smallmoney" => SqlType::SmallMoney,
        "float" => match number(0) {
            Some(n) if n <= 24 => SqlType::Real,
            _ => SqlType::Float,
        },
        "real" => SqlType::Real,
        "date" => SqlType::Date,
        "time" => SqlType::Time { scale: scale(7) },
        "datetime" => SqlType::DateTime,
        "smalldatetime" => SqlType::SmallDateTime,
        "datetime2" => SqlType::DateTime2 { scale: scale(7) },
        "datetimeoffset" => SqlType::DateTimeOffset { scale: scale(7) },
        "char" | "character" => SqlType::Char {
            length: number(0).unwrap_or(1),
            collation,
        },
        "varchar" => SqlType::VarChar {
            length: length(30)?,
            collation,
        },
        "nchar" => SqlType::NChar {
            length: number(0).unwrap_or(1),
        },
        "nvarchar" => SqlType::NVarChar {
            length: length(30)?,
        },
        "sysname" => SqlType::NVarChar { length: Some(128) },
        "text" => SqlType::Text { collation },
        "ntext" => SqlType::NText,
        "image" => SqlType::Image,
        "binary" => SqlType::Binary {
            length: number(0).unwrap_or(1),
        },
        "varbinary" => SqlType::VarBinary {
            length: length(30)?,
        },
        "uniqueidentifier" => SqlType::UniqueIdentifier,
        "xml" => SqlType::Xml,
        "sql_variant" => SqlType::SqlVariant,
        "rowversion" | "timestamp" => SqlType::RowVersion,
        _ => return None,
    })
}

/// Byte offset of `word` (ASCII, case-insensitive) as a whole word in `text`.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(word) {
        let at = from + found;
        let before = lower[..at].chars().next_back();
        let after = lower[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if boundary(before) && boundary(after) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The type's name as `sys.types` and `SQL_VARIANT_PROPERTY(…, 'BaseType')` give it.
pub fn type_name(ty: &SqlType) -> &'static str {
    match ty {
        SqlType::TinyInt => "tinyint",
        SqlType::SmallInt => "smallint",
        SqlType::Int => "int",
        SqlType::BigInt => "bigint",
        SqlType::Bit => "bit",
        SqlType::Decimal { .. } => "decimal",
        SqlType::Money => "money",
        SqlType::SmallMoney => "smallmoney",
        SqlType::Float => "float",
        SqlType::Real => "real",
        SqlType::Date => "date",
        SqlType::Time { .. } => "time",
        SqlType::DateTime => "datetime",
        SqlType::SmallDateTime => "smalldatetime",
        SqlType::DateTime2 { .. } => "datetime2",
        SqlType::DateTimeOffset { .. } => "datetimeoffset",
        SqlType::Char { .. } => "char",
        SqlType::VarChar { .. } => "varchar",
        SqlType::NChar { .. } => "nchar",
        SqlType::NVarChar { .. } => "nvarchar",
        SqlType::Text { .. } => "text",
        SqlType::NText => "ntext",
        SqlType::Image => "image",
        SqlType::Binary { .. } => "binary",
        SqlType::VarBinary { .. } => "varbinary",
        SqlType::UniqueIdentifier => "uniqueidentifier",
        SqlType::Xml => "xml",
        SqlType::SqlVariant => "sql_variant",
        SqlType::RowVersion => "timestamp",
    }
}

/// The full type text (`varchar(18)`, `decimal(18,0)`, `nvarchar(max)`), as [`parse_type`] reads
/// it back (without the collation).
pub fn type_text(ty: &SqlType) -> String {
    let len = |l: &Option<u16>| l.map_or("max".to_owned(), |l| l.to_string());
    let name = type_name(ty);
    match ty {
        SqlType::Decimal { precision, scale } => format!("{name}({precision},{scale})"),
        SqlType::Time { scale }
        | SqlType::DateTime2 { scale }
        | SqlType::DateTimeOffset { scale } => format!("{name}({scale})"),
        SqlType::Char { length, .. } | SqlType::NChar { length } | SqlType::Binary { length } => {
            format!("{name}({length})")
        }
        SqlType::VarChar { length, .. }
        | SqlType::NVarChar { length }
        | SqlType::VarBinary { length } => format!("{name}({})", len(length)),
        _ => name.to_owned(),
    }
}

/// `system_type_id` of a type in `sys.types` and `sys.columns` (SQL Server's own numbers).
pub fn system_type_id(ty: &SqlType) -> i64 {
    match ty {
        SqlType::Image => 34,
        SqlType::Text { .. } => 35,
        SqlType::UniqueIdentifier => 36,
        SqlType::Date => 40,
        SqlType::Time { .. } => 41,
        SqlType::DateTime2 { .. } => 42,
        SqlType::DateTimeOffset { .. } => 43,
        SqlType::TinyInt => 48,
        SqlType::SmallInt => 52,
        SqlType::Int => 56,
        SqlType::SmallDateTime => 58,
        SqlType::Real => 59,
        SqlType::Money => 60,
        SqlType::DateTime => 61,
        SqlType::Float => 62,
        SqlType::SqlVariant => 98,
        SqlType::NText => 99,
        SqlType::Bit => 104,
        SqlType::Decimal { .. } => 106,
        SqlType::SmallMoney => 122,
        SqlType::BigInt => 127,
        SqlType::VarBinary { .. } => 165,
        SqlType::VarChar { .. } => 167,
        SqlType::Binary { .. } => 173,
        SqlType::Char { .. } => 175,
        SqlType::RowVersion => 189,
        SqlType::NVarChar { .. } => 231,
        SqlType::NChar { .. } => 239,
        SqlType::Xml => 241,
    }
}

/// `max_length`, `precision` and `scale` of a column of this type as `sys.columns` reports
/// them: lengths in bytes (`nvarchar(10)` is 20), `-1` for `(max)` and `xml`.
pub fn column_facets(ty: &SqlType) -> (i64, i64, i64) {
    let fraction = |scale: u8, base: i64| base + if scale > 0 { i64::from(scale) + 1 } else { 0 };
    let time_bytes = |scale: u8| match scale {
        0..=2 => 3,
        3 | 4 => 4,
        _ => 5,
    };
    let len = |l: &Option<u16>, unit: i64| l.map_or(-1, |l| i64::from(l) * unit);
    match ty {
        SqlType::TinyInt => (1, 3, 0),
        SqlType::SmallInt => (2, 5, 0),
        SqlType::Int => (4, 10, 0),
        SqlType::BigInt => (8, 19, 0),
        SqlType::Bit => (1, 1, 0),
        SqlType::Decimal { precision, scale } => {
            let bytes = match precision {
                1..=9 => 5,
                10..=19 => 9,
                20..=28 => 13,
                _ => 17,
            };
            (bytes, i64::from(*precision), i64::from(*scale))
        }
        SqlType::Money => (8, 19, 4),
        SqlType::SmallMoney => (4, 10, 4),
        SqlType::Float => (8, 53, 0),
        SqlType::Real => (4, 24, 0),
        SqlType::Date => (3, 10, 0),
        SqlType::Time { scale } => (time_bytes(*scale), fraction(*scale, 8), i64::from(*scale)),
        SqlType::DateTime => (8, 23, 3),
        SqlType::SmallDateTime => (4, 16, 0),
        SqlType::DateTime2 { scale } => (
            time_bytes(*scale) + 3,
            fraction(*scale, 19),
            i64::from(*scale),
        ),
        SqlType::DateTimeOffset { scale } => (
            time_bytes(*scale) + 5,
            fraction(*scale, 26),
            i64::from(*scale),
        ),
        SqlType::Char { length, .. } | SqlType::Binary { length } => (i64::from(*length), 0, 0),
        SqlType::NChar { length } => (i64::from(*length) * 2, 0, 0),
        SqlType::VarChar { length, .. } | SqlType::VarBinary { length } => (len(length, 1), 0, 0),
        SqlType::NVarChar { length } => (len(length, 2), 0, 0),
        SqlType::Text { .. } | SqlType::NText | SqlType::Image => (16, 0, 0),
        SqlType::UniqueIdentifier => (16, 0, 0),
        SqlType::Xml => (-1, 0, 0),
        SqlType::SqlVariant => (8016, 0, 0),
        SqlType::RowVersion => (8, 0, 0),
    }
}

/// The collation of a character column as `sys.columns.collation_name` reports it; `None` for
/// other types. Unicode columns carry the database default.
pub fn column_collation(ty: &SqlType, database_default: &str) -> Option<String> {
    match ty {
        SqlType::Char { collation, .. }
        | SqlType::VarChar { collation, .. }
        | SqlType::Text { collation } => Some(collation.0.clone()),
        SqlType::NChar { .. } | SqlType::NVarChar { .. } | SqlType::NText => {
            Some(database_default.to_owned())
        }
        _ => None,
    }
}

/// Whether the type is one of the character types.
pub fn is_character(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Char { .. }
            | SqlType::VarChar { .. }
            | SqlType::NChar { .. }
            | SqlType::NVarChar { .. }
            | SqlType::Text { .. }
            | SqlType::NText
            | SqlType::Xml
    )
}

/// Whether the character type is non-Unicode (a code page).
pub fn is_code_page_text(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Char { .. } | SqlType::VarChar { .. } | SqlType::Text { .. }
    )
}

pub fn is_temporal(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Date
            | SqlType::Time { .. }
            | SqlType::DateTime
            | SqlType::SmallDateTime
            | SqlType::DateTime2 { .. }
            | SqlType::DateTimeOffset { .. }
    )
}

/// The SQLite column definition (type and collation) that stores values of `ty`.
pub fn storage_declaration(ty: &SqlType, database_default: &str) -> String {
    match ty {
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt | SqlType::Bit => {
            "INTEGER".to_owned()
        }
        SqlType::Float | SqlType::Real => "REAL".to_owned(),
        SqlType::Decimal { .. } | SqlType::Money | SqlType::SmallMoney => {
            "TEXT COLLATE tds_decimal".to_owned()
        }
        SqlType::UniqueIdentifier => "TEXT COLLATE tds_guid".to_owned(),
        SqlType::Binary { .. }
        | SqlType::VarBinary { .. }
        | SqlType::Image
        | SqlType::RowVersion => "BLOB".to_owned(),
        _ if is_character(ty) && !matches!(ty, SqlType::Xml) => {
            let collation = column_collation(ty, database_default)
                .unwrap_or_else(|| database_default.to_owned());
            format!(
                "TEXT COLLATE {}",
                quote_ident(&storage_collation(&collation, is_code_page_text(ty)))
            )
        }
        _ => "TEXT".to_owned(),
    }
}

/// The SQLite collation name for a SQL Server collation applied to code-page (`varchar`) or
/// Unicode text: binary collations compare code-page bytes or UTF-16 code units, which differ.
pub fn storage_collation(collation: &str, code_page: bool) -> String {
    if code_page {
        format!("{collation}#cp")
    } else {
        collation.to_owned()
    }
}

/// `"name"` with quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with quotes doubled.
pub fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A value in SQLite storage form.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl rusqlite::ToSql for Stored {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Stored::Null => ValueRef::Null,
            Stored::Integer(i) => ValueRef::Integer(*i),
            Stored::Real(r) => ValueRef::Real(*r),
            Stored::Text(t) => ValueRef::Text(t.as_bytes()),
            Stored::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Stored {
    pub fn from_ref(value: rusqlite::types::ValueRef<'_>) -> Stored {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => Stored::Null,
            ValueRef::Integer(i) => Stored::Integer(i),
            ValueRef::Real(r) => Stored::Real(r),
            ValueRef::Text(t) => Stored::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Stored::Blob(b.to_vec()),
        }
    }

    /// The value as text: integers and reals printed, blobs as upper-case hex.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Stored::Null => None,
            Stored::Integer(i) => Some(i.to_string()),
            Stored::Real(r) => Some(float_text(*r)),
            Stored::Text(t) => Some(t.clone()),
            Stored::Blob(b) => Some(hex(b)),
        }
    }
}

/// Why a value does not fit a type; the caller turns it into SQL Server's conversion error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    pub target: String,
}

/// Converts a value in its canonical form (a fixture value or an RPC parameter) into the storage
/// form of `ty`.
pub fn store(ty: &SqlType, value: &Value) -> Result<Stored, ConversionError> {
    let stored = match value {
        Value::Null => Stored::Null,
        Value::Int(i) => Stored::Integer(*i),
        Value::Float(f) => Stored::Real(*f),
        Value::Text(t) => Stored::Text(t.clone()),
        Value::Bytes(b) => Stored::Blob(b.clone()),
        Value::Variant(base, inner) => {
            let inner = store(base, inner)?;
            return Ok(match ty {
                SqlType::SqlVariant => variant_stored(base, &inner),
                _ => convert_stored(ty, base, &inner)?,
            });
        }
    };
    let source = match value {
        Value::Int(_) => SqlType::BigInt,
        Value::Float(_) => SqlType::Float,
        Value::Bytes(_) => SqlType::VarBinary { length: None },
        _ => SqlType::NVarChar { length: None },
    };
    convert_stored(ty, &source, &stored)
}

/// A stored `sql_variant`.
pub fn variant_stored(base: &SqlType, inner: &Stored) -> Stored {
    match inner {
        Stored::Null => Stored::Null,
        other => Stored::Text(format!(
            "{VARIANT_MARK}{}{VARIANT_MARK}{}",
            type_text(base),
            other.as_text().unwrap_or_default()
        )),
    }
}

/// Splits a stored `sql_variant` into its base type and its stored value.
pub fn variant_parts(text: &str) -> Option<(SqlType, Stored)> {
    let rest = text.strip_prefix(VARIANT_MARK)?;
    let (base, value) = rest.split_once(VARIANT_MARK)?;
    let base = parse_type(base, Collation::DEFAULT)?;
    let value = match &base {
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt | SqlType::Bit => {
            Stored::Integer(value.parse().ok()?)
        }
        SqlType::Float | SqlType::Real => Stored::Real(value.parse().ok()?),
        SqlType::Binary { .. } | SqlType::VarBinary { .. } | SqlType::RowVersion => {
            Stored::Blob(unhex(value)?)
        }
        _ => Stored::Text(value.to_owned()),
    };
    Some((base, value))
}

/// Converts a stored value of type `source` to the storage form of `target` (CAST, CONVERT
/// without a style, parameter binding, fixture values).
pub fn convert_stored(
    target: &SqlType,
    source: &SqlType,
    value: &Stored,
) -> Result<Stored, ConversionError> {
    convert_with_style(target, source, value, None)
}

/// [`convert_stored`] with CONVERT's style number.
pub fn convert_with_style(
    target: &SqlType,
    source: &SqlType,
    value: &Stored,
    style: Option<i64>,
) -> Result<Stored, ConversionError> {
    let fail = || ConversionError {
        target: type_text(target),
    };
    if let Stored::Null = value {
        return Ok(Stored::Null);
    }
    if let Stored::Text(t) = value
        && let Some((base, inner)) = variant_parts(t)
    {
        return match target {
            SqlType::SqlVariant => Ok(value.clone()),
            _ => convert_with_style(target, &base, &inner, style),
        };
    }
    Ok(match target {
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let (min, max) = match target {
                SqlType::TinyInt => (0, 255),
                SqlType::SmallInt => (-32768, 32767),
                SqlType::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            let i = match value {
                Stored::Integer(i) => *i,
                Stored::Real(r) if r.is_finite() => r.trunc() as i64,
                Stored::Text(t) => parse_integer_text(t).ok_or_else(fail)?,
                _ => return Err(fail()),
            };
            if i < min || i > max {
                return Err(fail());
            }
            Stored::Integer(i)
        }
        SqlType::Bit => Stored::Integer(match value {
            Stored::Integer(i) => i64::from(*i != 0),
            Stored::Real(r) => i64::from(*r != 0.0),
            Stored::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" => 1,
                "false" => 0,
                other => i64::from(parse_integer_text(other).ok_or_else(fail)? != 0),
            },
            _ => return Err(fail()),
        }),
        SqlType::Float | SqlType::Real => {
            let r = match value {
                Stored::Integer(i) => *i as f64,
                Stored::Real(r) => *r,
                Stored::Text(t) => t.trim().parse::<f64>().map_err(|_| fail())?,
                _ => return Err(fail()),
            };
            Stored::Real(if matches!(target, SqlType::Real) {
                f64::from(r as f32)
            } else {
                r
            })
        }
        SqlType::Decimal { .. } | SqlType::Money | SqlType::SmallMoney => {
            let scale = decimal_scale(target);
            let text = match value {
                Stored::Integer(i) => i.to_string(),
                Stored::Real(r) => format!("{r:.prec$}", prec = usize::from(scale)),
                Stored::Text(t) => t.trim().to_owned(),
                _ => return Err(fail()),
            };
            let normalized = normalize_decimal(&text, scale).ok_or_else(fail)?;
            if let SqlType::Decimal { precision, scale } = target {
                let digits = normalized
                    .trim_start_matches('-')
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('0')
                    .len();
                if digits > usize::from(precision - scale) {
                    return Err(fail());
                }
            }
            Stored::Text(normalized)
        }
        SqlType::Date
        | SqlType::Time { .. }
        | SqlType::DateTime
        | SqlType::SmallDateTime
        | SqlType::DateTime2 { .. }
        | SqlType::DateTimeOffset { .. } => {
            let text = match value {
                Stored::Text(t) => t,
                _ => return Err(fail()),
            };
            let parsed = Timestamp::parse(text).ok_or_else(fail)?;
            Stored::Text(parsed.stored(target))
        }
        SqlType::UniqueIdentifier => match value {
            Stored::Text(t) => Stored::Text(normalize_guid(t).ok_or_else(fail)?),
            Stored::Blob(b) if b.len() == 16 => Stored::Text(guid_from_bytes(b)),
            _ => return Err(fail()),
        },
        SqlType::Binary { .. }
        | SqlType::VarBinary { .. }
        | SqlType::Image
        | SqlType::RowVersion => {
            let mut bytes = match value {
                Stored::Blob(b) => b.clone(),
                Stored::Text(t) => text_bytes(t, source),
                Stored::Integer(i) => match source {
                    SqlType::TinyInt => vec![*i as u8],
                    SqlType::SmallInt => (*i as i16).to_be_bytes().to_vec(),
                    SqlType::Int => (*i as i32).to_be_bytes().to_vec(),
                    _ => i.to_be_bytes().to_vec(),
                },
                Stored::Real(r) => r.to_be_bytes().to_vec(),
                Stored::Null => Vec::new(),
            };
            match target {
                SqlType::Binary { length } => bytes.resize(usize::from(*length), 0),
                SqlType::VarBinary {
                    length: Some(length),
                } => bytes.truncate(usize::from(*length)),
                _ => {}
            }
            Stored::Blob(bytes)
        }
        SqlType::SqlVariant => variant_stored(source, value),
        SqlType::Char { .. }
        | SqlType::VarChar { .. }
        | SqlType::NChar { .. }
        | SqlType::NVarChar { .. }
        | SqlType::Text { .. }
        | SqlType::NText
        | SqlType::Xml => {
            let mut text = match (value, style) {
                (Stored::Blob(b), None) => binary_text(b, target),
                _ => to_text(source, value, style),
            };
            match target {
                SqlType::Char { length, .. } => {
                    text = pad(
                        truncate(&text, usize::from(*length), false),
                        usize::from(*length),
                        false,
                    );
                }
                SqlType::NChar { length } => {
                    text = pad(
                        truncate(&text, usize::from(*length), true),
                        usize::from(*length),
                        true,
                    );
                }
                SqlType::VarChar {
                    length: Some(length),
                    ..
                } => text = truncate(&text, usize::from(*length), false).to_owned(),
                SqlType::NVarChar {
                    length: Some(length),
                } => text = truncate(&text, usize::from(*length), true).to_owned(),
                _ => {}
            }
            Stored::Text(text)
        }
    })
}

/// The code page of a character type's collation: UTF-8 for a `_UTF8` collation, else 1252
/// (the only other code page the wire encodes, see [`Collation`]).
fn code_page(ty: &SqlType) -> &'static encoding_rs::Encoding {
    match ty {
        SqlType::Char { collation, .. }
        | SqlType::VarChar { collation, .. }
        | SqlType::Text { collation }
            if collation.0.to_ascii_uppercase().contains("UTF8") =>
        {
            encoding_rs::UTF_8
        }
        _ => encoding_rs::WINDOWS_1252,
    }
}

fn is_unicode_text(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::NChar { .. } | SqlType::NVarChar { .. } | SqlType::NText | SqlType::Xml
    )
}

/// The bytes of text of type `source`, as CAST to a binary type gives them: UTF-16LE for
/// Unicode types, the collation's code page for the others (`?` for what 1252 lacks).
fn text_bytes(text: &str, source: &SqlType) -> Vec<u8> {
    if is_unicode_text(source) {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    } else if is_code_page_text(source) && code_page(source) == encoding_rs::WINDOWS_1252 {
        cp1252_bytes(text)
    } else {
        text.as_bytes().to_vec()
    }
}

/// Binary read as text of type `target`, as CAST from a binary type does: UTF-16LE code units
/// for Unicode types, the collation's code page for the others.
fn binary_text(bytes: &[u8], target: &SqlType) -> String {
    if is_unicode_text(target) {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        code_page(target)
            .decode_without_bom_handling(bytes)
            .0
            .into_owned()
    }
}

/// A value of type `source` as text, as CAST/CONVERT to a character type gives it.
fn to_text(source: &SqlType, value: &Stored, style: Option<i64>) -> String {
    match (value, source) {
        (Stored::Real(r), SqlType::Real) => match style {
            Some(1) => scientific(*r, 8),
            Some(2) => scientific(*r, 16),
            Some(3) => format_shortest_f32(*r as f32),
            _ => general(*r),
        },
        (Stored::Real(r), _) => match style {
            Some(1) => scientific(*r, 8),
            Some(2) => scientific(*r, 16),
            Some(3) => format_exponent(*r),
            _ => general(*r),
        },
        (Stored::Text(t), SqlType::Money | SqlType::SmallMoney) if style != Some(2) => {
            normalize_decimal(t, 2).unwrap_or_else(|| t.clone())
        }
        (Stored::Blob(b), _) => match style {
            Some(1) => format!("0x{}", hex(b)),
            Some(2) => hex(b),
            _ => String::from_utf8_lossy(b).into_owned(),
        },
        (Stored::Text(t), _) if is_temporal(source) => match Timestamp::parse(t) {
            Some(ts) => temporal_text(ts, source, style),
            None => t.clone(),
        },
        (other, _) => other.as_text().unwrap_or_default(),
    }
}

/// A date/time value as CONVERT to a character type prints it in `style` ("CAST and CONVERT",
/// date and time styles): `datetime`/`smalldatetime` default to style 0 (`Feb 29 2024 11:59PM`),
/// the newer types to ISO text; 120/121 ODBC canonical, 126/127 ISO 8601 with `T`.
fn temporal_text(ts: Timestamp, source: &SqlType, style: Option<i64>) -> String {
    let canonical = ts.canonical(source);
    let legacy = matches!(source, SqlType::DateTime | SqlType::SmallDateTime);
    match style {
        None | Some(0 | 100) if legacy => {
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let t = ts.rounded(source);
            let (y, m, d) = civil_from_days(t.days);
            let minutes = t.ticks / 600_000_000;
            let (h, mi) = (minutes / 60, minutes % 60);
            let (h12, half) = match h {
                0 => (12, "AM"),
                1..=11 => (h, "AM"),
                12 => (12, "PM"),
                _ => (h - 12, "PM"),
            };
            format!(
                "{} {d:>2} {y} {h12:>2}:{mi:02}{half}",
                MONTHS[(m - 1) as usize]
            )
        }
        Some(120) => canonical.chars().take(19).collect(),
        Some(126 | 127) => {
            let iso = canonical.replacen(' ', "T", 1);
            match source {
                SqlType::DateTimeOffset { .. } if style == Some(127) => match ts.offset_minutes {
                    Some(0) | None => format!("{}Z", iso.split(' ').next().unwrap_or("")),
                    _ => iso.replacen(' ', "", 1),
                },
                SqlType::DateTimeOffset { .. } => iso.replacen(' ', "", 1),
                _ => iso,
            }
        }
        _ => canonical,
    }
}

/// CONVERT(…, float, 0): at most six significant digits, scientific notation when the exponent
/// is below -4 or at least 6, with a three-digit exponent (`1.23457e+006`).
fn general(r: f64) -> String {
    if r == 0.0 || !r.is_finite() {
        return format!("{r}");
    }
    let exponent = r.abs().log10().floor() as i32;
    let rounded: f64 = format!("{r:.5e}").parse().unwrap_or(r);
    let exponent = if rounded.abs().log10().floor() as i32 > exponent {
        exponent + 1
    } else {
        exponent
    };
    if (-4..6).contains(&exponent) {
        let decimals = (5 - exponent).max(0) as usize;
        let s = format!("{r:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    } else {
        let s = format!("{r:.5e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.trim_end_matches('0').trim_end_matches('.')
        } else {
            mantissa
        };
        exponent_suffix(mantissa, exp)
    }
}

/// CONVERT(…, float, 1|2): `digits` significant digits, always scientific (`1.2345600e+002`).
fn scientific(r: f64, digits: usize) -> String {
    let s = format!("{r:.prec$e}", prec = digits - 1);
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    exponent_suffix(mantissa, exp)
}

fn exponent_suffix(mantissa: &str, exp: &str) -> String {
    let e: i32 = exp.parse().unwrap_or(0);
    format!("{mantissa}e{}{:03}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Converts a stored value to the canonical [`Value`] of a result column of type `ty`.
pub fn to_value(ty: &SqlType, stored: Stored) -> Value {
    match (ty, stored) {
        (_, Stored::Null) => Value::Null,
        // Long values pass through without a copy (a 100 MB nvarchar(max) is moved, not cloned).
        (
            SqlType::VarChar { length: None, .. }
            | SqlType::NVarChar { length: None }
            | SqlType::Text { .. }
            | SqlType::NText
            | SqlType::Xml,
            Stored::Text(t),
        ) if !t.starts_with(VARIANT_MARK) => Value::Text(t),
        (SqlType::VarBinary { length: None } | SqlType::Image, Stored::Blob(b)) => Value::Bytes(b),
        (SqlType::SqlVariant, Stored::Text(t)) => match variant_parts(&t) {
            Some((base, inner)) => {
                let inner = to_value(&base, inner);
                Value::Variant(Box::new(base), Box::new(inner))
            }
            None => Value::Variant(
                Box::new(SqlType::NVarChar { length: Some(4000) }),
                Box::new(Value::Text(t)),
            ),
        },
        (SqlType::SqlVariant, Stored::Integer(i)) => {
            Value::Variant(Box::new(SqlType::Int), Box::new(Value::Int(i)))
        }
        (SqlType::SqlVariant, Stored::Real(r)) => {
            Value::Variant(Box::new(SqlType::Float), Box::new(Value::Float(r)))
        }
        (SqlType::SqlVariant, Stored::Blob(b)) => Value::Variant(
            Box::new(SqlType::VarBinary { length: Some(8000) }),
            Box::new(Value::Bytes(b)),
        ),
        (_, stored) => {
            let source = match &stored {
                Stored::Integer(_) => SqlType::BigInt,
                Stored::Real(_) => SqlType::Float,
                Stored::Blob(_) => SqlType::VarBinary { length: None },
                _ => ty.clone(),
            };
            let converted = convert_stored(ty, &source, &stored).unwrap_or(stored);
            match (ty, converted) {
                (_, Stored::Null) => Value::Null,
                (_, Stored::Integer(i)) => Value::Int(i),
                (_, Stored::Real(r)) => Value::Float(r),
                (_, Stored::Blob(b)) => Value::Bytes(b),
                (_, Stored::Text(t)) if is_temporal(ty) => match Timestamp::parse(&t) {
                    Some(ts) => Value::Text(ts.canonical(ty)),
                    None => Value::Text(t),
                },
                (_, Stored::Text(t)) => Value::Text(t),
            }
        }
    }
}

fn decimal_scale(ty: &SqlType) -> u8 {
    match ty {
        SqlType::Decimal { scale, .. } => *scale,
        _ => 4,
    }
}

fn parse_integer_text(text: &str) -> Option<i64> {
    let t = text.trim();
    t.parse::<i64>().ok().or_else(|| {
        // '12.0' converts to int in CAST from decimal text.
        let (int, frac) = t.split_once('.')?;
        frac.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| int.parse::<i64>().ok())
            .flatten()
    })
}

/// An exact decimal text with exactly `scale` fraction digits (rounded half away from zero),
/// or `None` when `text` is not a decimal number.
pub fn normalize_decimal(text: &str, scale: u8) -> Option<String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(at) => (&digits[..at], digits[at + 1..].parse::<i32>().ok()?),
        None => (digits, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let all: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    // The position of the decimal point within `all`.
    let point = i64::try_from(int.len()).ok()? + i64::from(exponent);
    let scale_i = i64::from(scale);
    // Digits up to point + scale, then the rounding digit.
    let keep = point + scale_i;
    let digit_at = |i: i64| -> u8 {
        if i < 0 || i >= all.len() as i64 {
            0
        } else {
            all[i as usize]
        }
    };
    let start = point.min(0) - 1;
    let mut out: Vec<u8> = (start..keep).map(digit_at).collect();
    if digit_at(keep) >= 5 {
        let mut i = out.len();
        while i > 0 {
            i -= 1;
            if out[i] == 9 {
                out[i] = 0;
            } else {
                out[i] += 1;
                break;
            }
        }
    }
    // `out` covers positions start..keep; the integer part is start..point.
    let int_len = usize::try_from(point - start).ok()?;
    let int_part: String = out[..int_len.min(out.len())]
        .iter()
        .map(|d| char::from(b'0' + d))
        .collect();
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let frac_part: String = out[int_len.min(out.len())..]
        .iter()
        .map(|d| char::from(b'0' + d))
        .collect();
    let zero = int_part == "0" && frac_part.bytes().all(|b| b == b'0');
    let mut result = String::new();
    if negative && !zero {
        result.push('-');
    }
    result.push_str(int_part);
    if scale > 0 {
        result.push('.');
        result.push_str(&frac_part);
    }
    Some(result)
}

/// Compares two decimal texts by value (the `tds_decimal` collation); texts that are not
/// numbers compare bytewise after numbers.
pub fn compare_decimal(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn parts(t: &str) -> Option<(bool, String, String)> {
        let t = t.trim();
        let (neg, rest) = match t.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, t),
        };
        let (i, f) = rest.split_once('.').unwrap_or((rest, ""));
        if !i.bytes().all(|b| b.is_ascii_digit()) || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let i = i.trim_start_matches('0').to_owned();
        let f = f.trim_end_matches('0').to_owned();
        let zero = i.is_empty() && f.is_empty();
        Some((neg && !zero, i, f))
    }
    match (parts(a), parts(b)) {
        (Some((na, ia, fa)), Some((nb, ib, fb))) => {
            let magnitude = ia
                .len()
                .cmp(&ib.len())
                .then_with(|| ia.cmp(&ib))
                .then_with(|| fa.cmp(&fb));
            match (na, nb) {
                (false, false) => magnitude,
                (true, true) => magnitude.reverse(),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// A GUID text in upper case without braces, or `None` when it is not one.
pub fn normalize_guid(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches('{').trim_end_matches('}');
    let hex_only: String = t.chars().filter(|c| *c != '-').collect();
    if hex_only.len() != 32 || !hex_only.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let u = hex_only.to_ascii_uppercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &u[..8],
        &u[8..12],
        &u[12..16],
        &u[16..20],
        &u[20..]
    ))
}

/// The 16 bytes of a GUID as SQL Server stores them (the first three groups little-endian).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let t = normalize_guid(text)?.replace('-', "");
    let raw = unhex(&t)?;
    let mut out = [0u8; 16];
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    for (i, &from) in order.iter().enumerate() {
        out[i] = raw[from];
    }
    Some(out)
}

fn guid_from_bytes(bytes: &[u8]) -> String {
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let raw: Vec<u8> = order.iter().map(|&i| bytes[i]).collect();
    let h = hex(&raw);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// SQL Server's uniqueidentifier order (as `SqlGuid.CompareTo` documents it): bytes 10–15, then
/// 8–9, 6–7, 4–5, 0–3 of the stored form.
pub fn compare_guid(a: &str, b: &str) -> std::cmp::Ordering {
    const ORDER: [usize; 16] = [10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3];
    match (guid_bytes(a), guid_bytes(b)) {
        (Some(x), Some(y)) => ORDER
            .iter()
            .map(|&i| x[i].cmp(&y[i]))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A float printed as the shortest text that reads back to the same value.
pub fn float_text(r: f64) -> String {
    let s = format!("{r}");
    if s.contains('e') || s.len() < 22 {
        s
    } else {
        format_exponent(r)
    }
}

/// Seventeen significant digits (CONVERT style 3: every float a distinct text).
fn format_exponent(r: f64) -> String {
    let s = format!("{r:.16e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    format!("{mantissa}E{exp}")
}

fn format_shortest_f32(r: f32) -> String {
    format!("{r}")
}

/// Lengths of `nchar`/`nvarchar` count UTF-16 code units (a character outside the BMP takes
/// two), of `char`/`varchar` characters (one byte each in a code page).
fn units(c: char, utf16: bool) -> usize {
    if utf16 { c.len_utf16() } else { 1 }
}

fn truncate(text: &str, length: usize, utf16: bool) -> &str {
    let mut used = 0;
    for (at, c) in text.char_indices() {
        used += units(c, utf16);
        if used > length {
            return &text[..at];
        }
    }
    text
}

fn pad(text: &str, chars: usize, utf16: bool) -> String {
    let n: usize = text.chars().map(|c| units(c, utf16)).sum();
    let mut s = text.to_owned();
    s.extend(std::iter::repeat_n(' ', chars.saturating_sub(n)));
    s
}

/// A date and/or time with an optional offset, in 100 ns ticks: the common form behind every
/// date/time type's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Days since 0001-01-01.
    pub days: i64,
    /// 100 ns ticks since midnight.
    pub ticks: i64,
    /// Offset from UTC in minutes, when the text had one.
    pub offset_minutes: Option<i32>,
    /// Whether the text had a date part (time-only values default to 1900-01-01).
    pub has_date: bool,
}

const TICKS_PER_DAY: i64 = 864_000_000_000;

impl Timestamp {
    /// Parses `YYYY-MM-DD`, `YYYY-MM-DD[ T]hh:mm[:ss[.fffffff]][ ][+|-hh:mm|Z]` and `hh:mm[:ss[.f]]`.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let t = text.trim();
        let (date_part, rest) = if t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') {
            (Some(&t[..10]), t[10..].trim_start_matches(['T', ' ']))
        } else {
            (None, t)
        };
        let days = match date_part {
            Some(d) => {
                let y: i64 = d.get(..4)?.parse().ok()?;
                let m: u32 = d.get(5..7)?.parse().ok()?;
                let day: u32 = d.get(8..10)?.parse().ok()?;
                if !(1..=12).contains(&m) || day == 0 || day > days_in_month(y, m) {
                    return None;
                }
                days_from_civil(y, m, day)
            }
            None => days_from_civil(1900, 1, 1),
        };
        let (time_part, offset_part) = match rest.find(['+', 'Z']).or_else(|| {
            // A '-' after the time is an offset sign.
            rest.char_indices()
                .skip(1)
                .find(|(_, c)| *c == '-')
                .map(|(i, _)| i)
        }) {
            Some(at) => (rest[..at].trim(), Some(rest[at..].trim())),
            None => (rest.trim(), None),
        };
        let ticks = if time_part.is_empty() {
            date_part?;
            0
        } else {
            let (hms, frac) = time_part.split_once('.').unwrap_or((time_part, ""));
            let mut fields = hms.split(':');
            let h: i64 = fields.next()?.trim().parse().ok()?;
            let mi: i64 = fields.next().unwrap_or("0").parse().ok()?;
            let s: i64 = fields.next().unwrap_or("0").parse().ok()?;
            if h > 23 || mi > 59 || s > 59 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let mut digits: String = frac.chars().take(7).collect();
            while digits.len() < 7 {
                digits.push('0');
            }
            let f: i64 = digits.parse().ok()?;
            ((h * 60 + mi) * 60 + s) * 10_000_000 + f
        };
        let offset_minutes = match offset_part {
            None => None,
            Some("Z") => Some(0),
            Some(o) => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let (h, m) = o[1..].trim().split_once(':').unwrap_or((&o[1..], "0"));
                Some(sign * (h.trim().parse::<i32>().ok()? * 60 + m.trim().parse::<i32>().ok()?))
            }
        };
        Some(Timestamp {
            days,
            ticks,
            offset_minutes,
            has_date: date_part.is_some(),
        })
    }

    fn normalized(mut self) -> Timestamp {
        self.days += self.ticks.div_euclid(TICKS_PER_DAY);
        self.ticks = self.ticks.rem_euclid(TICKS_PER_DAY);
        self
    }

    /// Rounded to what `ty` can hold: datetime to 1/300 s as SQL Server displays it
    /// (.000/.003/.007), smalldatetime to the minute, the others to their scale.
    pub fn rounded(self, ty: &SqlType) -> Timestamp {
        let mut t = self;
        match ty {
            SqlType::DateTime => {
                let ms_ticks = 10_000;
                let within = t.ticks % 10_000_000;
                let whole = t.ticks - within;
                // 1/300 s steps, then printed to milliseconds.
                let steps = (within as f64 * 300.0 / 10_000_000.0).round() as i64;
                let ms = (steps as f64 * 1000.0 / 300.0).round() as i64;
                t.ticks = whole + ms * ms_ticks;
            }
            SqlType::SmallDateTime => {
                let minute = 600_000_000;
                t.ticks = (t.ticks + minute / 2) / minute * minute;
            }
            SqlType::Time { scale }
            | SqlType::DateTime2 { scale }
            | SqlType::DateTimeOffset { scale } => {
                let unit = 10_i64.pow(7 - u32::from((*scale).min(7)));
                t.ticks = (t.ticks + unit / 2) / unit * unit;
            }
            _ => {}
        }
        t.normalized()
    }

    fn date_text(&self) -> String {
        let (y, m, d) = civil_from_days(self.days);
        format!("{y:04}-{m:02}-{d:02}")
    }

    fn time_text(&self, digits: usize) -> String {
        let secs = self.ticks / 10_000_000;
        let frac = self.ticks % 10_000_000;
        let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if digits > 0 {
            let f = format!("{frac:07}");
            s.push('.');
            s.push_str(&f[..digits]);
        }
        s
    }

    fn offset_text(&self) -> String {
        let o = self.offset_minutes.unwrap_or(0);
        let sign = if o < 0 { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", o.abs() / 60, o.abs() % 60)
    }

    /// The storage form for `ty`: seven fraction digits, so that text order is time order.
    pub fn stored(self, ty: &SqlType) -> String {
        let t = self.rounded(ty);
        match ty {
            SqlType::Date => t.date_text(),
            SqlType::Time { .. } => t.time_text(7),
            SqlType::DateTimeOffset { .. } => {
                format!("{} {} {}", t.date_text(), t.time_text(7), t.offset_text())
            }
            _ => format!("{} {}", t.date_text(), t.time_text(7)),
        }
    }

    /// The canonical [`Value`] text for `ty`: as many fraction digits as the type has.
    pub fn canonical(self, ty: &SqlType) -> String {
        let t = self.rounded(ty);
        let digits = |scale: &u8| usize::from(*scale).min(7);
        match ty {
            SqlType::Date => t.date_text(),
            SqlType::Time { scale } => t.time_text(digits(scale)),
            SqlType::DateTime => format!("{} {}", t.date_text(), t.time_text(3)),
            SqlType::SmallDateTime => format!("{} {}", t.date_text(), t.time_text(0)),
            SqlType::DateTime2 { scale } => {
                format!("{} {}", t.date_text(), t.time_text(digits(scale)))
            }
            SqlType::DateTimeOffset { scale } => format!(
                "{} {} {}",
                t.date_text(),
                t.time_text(digits(scale)),
                t.offset_text()
            ),
            _ => format!("{} {}", t.date_text(), t.time_text(7)),
        }
    }

    /// DATEADD: `part` is SQL Server's datepart name or abbreviation.
    pub fn add(self, part: &str, n: i64) -> Option<Timestamp> {
        let tick = |unit: i64| {
            let mut t = self;
            t.ticks += n.checked_mul(unit)?;
            Some(t.normalized())
        };
        match part.to_ascii_lowercase().as_str() {
            "year" | "yy" | "yyyy" => self.add_months(n.checked_mul(12)?),
            "quarter" | "qq" | "q" => self.add_months(n.checked_mul(3)?),
            "month" | "mm" | "m" => self.add_months(n),
            "day" | "dd" | "d" | "dayofyear" | "dy" | "y" | "weekday" | "dw" | "w" => {
                tick(TICKS_PER_DAY)
            }
            "week" | "wk" | "ww" => tick(7 * TICKS_PER_DAY),
            "hour" | "hh" => tick(36_000_000_000),
            "minute" | "mi" | "n" => tick(600_000_000),
            "second" | "ss" | "s" => tick(10_000_000),
            "millisecond" | "ms" => tick(10_000),
            "microsecond" | "mcs" => tick(10),
            "nanosecond" | "ns" => {
                let mut t = self;
                t.ticks += n / 100;
                Some(t.normalized())
            }
            _ => None,
        }
    }

    fn add_months(self, n: i64) -> Option<Timestamp> {
        let (y, m, d) = civil_from_days(self.days);
        let total = y * 12 + i64::from(m) - 1 + n;
        let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
        if !(1..=9999).contains(&ny) {
            return None;
        }
        let nd = d.min(days_in_month(ny, nm));
        Some(Timestamp {
            days: days_from_civil(ny, nm, nd),
            ..self
        })
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 0001-01-01 (proleptic Gregorian), after H. Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 + 719_162
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days - 719_162 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Windows-1252 bytes of a text (`?` for characters outside the code page): how SQL Server
/// stores `varchar` under a CP1252 collation, and so how a binary collation orders it.
pub fn cp1252_bytes(text: &str) -> Vec<u8> {
    const HIGH: [(u8, char); 27] = [
        (0x80, '€'),
        (0x82, '‚'),
        (0x83, 'ƒ'),
        (0x84, '„'),
        (0x85, '…'),
        (0x86, '†'),
        (0x87, '‡'),
        (0x88, 'ˆ'),
        (0x89, '‰'),
        (0x8A, 'Š'),
        (0x8B, '‹'),
        (0x8C, 'Œ'),
        (0x8E, 'Ž'),
        (0x91, '\u{2018}'),
        (0x92, '\u{2019}'),
        (0x93, '\u{201C}'),
        (0x94, '\u{201D}'),
        (0x95, '•'),
        (0x96, '–'),
        (0x97, '—'),
        (0x98, '˜'),
        (0x99, '™'),
        (0x9A, 'š'),
        (0x9B, '›'),
        (0x9C, 'œ'),
        (0x9E, 'ž'),
        (0x9F, 'Ÿ'),
    ];
    text.chars()
        .map(|c| {
            let code = u32::from(c);
            if code < 0x80 || (0xA0..=0xFF).contains(&code) {
                code as u8
            } else {
                HIGH.iter().find(|(_, h)| *h == c).map_or(b'?', |(b, _)| *b)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> SqlType {
        parse_type(text, Collation::DEFAULT).unwrap()
    }

    /// CAST and CONVERT (without a style) between binary and text reinterpret the bytes:
    /// UTF-16LE for nvarchar, the code page for varchar (ehi-sync's text self-check builds
    /// ü€😀 and Ñé this way and compares `N'ü€😀'` as bytes).
    #[test]
    fn binary_and_text_cast_through_their_encodings() {
        let cast = |target: &str, source: &str, value: Stored| {
            convert_stored(&ty(target), &ty(source), &value).unwrap()
        };
        let utf16 = vec![0xFC, 0x00, 0xAC, 0x20, 0x3D, 0xD8, 0x00, 0xDE];
        assert_eq!(
            cast("nvarchar(4)", "varbinary(8)", Stored::Blob(utf16.clone())),
            Stored::Text("ü€😀".into())
        );
        assert_eq!(
            cast("varbinary(8)", "nvarchar(4)", Stored::Text("ü€😀".into())),
            Stored::Blob(utf16)
        );
        assert_eq!(
            cast(
                "varchar(10)",
                "varbinary(2)",
                Stored::Blob(vec![0xD1, 0xE9])
            ),
            Stored::Text("Ñé".into())
        );
        assert_eq!(
            cast("varbinary(10)", "varchar(10)", Stored::Text("Ñé".into())),
            Stored::Blob(vec![0xD1, 0xE9])
        );
        assert_eq!(
            cast("varbinary(3)", "varchar(3)", Stored::Text("Ñ€Ω".into())),
            Stored::Blob(vec![0xD1, 0x80, b'?'])
        );
    }

    #[test]
    fn type_names_parse() {
        assert_eq!(
            ty("varchar(18)"),
            SqlType::VarChar {
                length: Some(18),
                collation: Collation::default_collation()
            }
        );
        assert_eq!(
            ty("numeric(18,0)"),
            SqlType::Decimal {
                precision: 18,
                scale: 0
            }
        );
        assert_eq!(ty("NVARCHAR(MAX)"), SqlType::NVarChar { length: None });
        assert_eq!(
            ty("varchar(max) COLLATE Latin1_General_100_BIN2"),
            SqlType::VarChar {
                length: None,
                collation: Collation("Latin1_General_100_BIN2".into())
            }
        );
        assert_eq!(ty("datetime2"), SqlType::DateTime2 { scale: 7 });
        assert_eq!(ty("float(24)"), SqlType::Real);
        assert_eq!(ty("timestamp"), SqlType::RowVersion);
        assert_eq!(parse_type("geography", Collation::DEFAULT), None);
    }

    #[test]
    fn facets_as_sys_columns_reports_them() {
        assert_eq!(column_facets(&ty("nvarchar(10)")), (20, 0, 0));
        assert_eq!(column_facets(&ty("nvarchar(max)")), (-1, 0, 0));
        assert_eq!(column_facets(&ty("numeric(18,0)")), (9, 18, 0));
        assert_eq!(column_facets(&ty("datetime2(7)")), (8, 27, 7));
        assert_eq!(column_facets(&ty("datetimeoffset(7)")), (10, 34, 7));
        assert_eq!(column_facets(&ty("time(7)")), (5, 16, 7));
        assert_eq!(column_facets(&ty("datetime")), (8, 23, 3));
    }

    #[test]
    fn decimals_normalize_exactly() {
        assert_eq!(normalize_decimal("1.5", 4).unwrap(), "1.5000");
        assert_eq!(normalize_decimal("-0.00004", 4).unwrap(), "0.0000");
        assert_eq!(normalize_decimal("-0.00005", 4).unwrap(), "-0.0001");
        assert_eq!(normalize_decimal("9.99995", 4).unwrap(), "10.0000");
        assert_eq!(normalize_decimal("123", 0).unwrap(), "123");
        assert_eq!(normalize_decimal("1.5e3", 1).unwrap(), "1500.0");
        assert_eq!(
            normalize_decimal("9999999999999999999999999999.9999999999", 10).unwrap(),
            "9999999999999999999999999999.9999999999"
        );
        assert_eq!(normalize_decimal("abc", 2), None);
        use std::cmp::Ordering::*;
        assert_eq!(compare_decimal("10", "9.5"), Greater);
        assert_eq!(compare_decimal("-10", "-9.5"), Less);
        assert_eq!(compare_decimal("1.50", "1.5"), Equal);
    }

    #[test]
    fn guids_sort_in_sql_server_order() {
        use std::cmp::Ordering::*;
        // The last group is the most significant.
        assert_eq!(
            compare_guid(
                "FFFFFFFF-FFFF-FFFF-FFFF-000000000000",
                "00000000-0000-0000-0000-000000000001"
            ),
            Less
        );
        // Within the first group, the last byte is the most significant.
        assert_eq!(
            compare_guid(
                "01000000-0000-0000-0000-000000000000",
                "00000001-0000-0000-0000-000000000000"
            ),
            Less
        );
        assert_eq!(
            normalize_guid("{6f9619ff-8b86-d011-b42d-00c04fc964ff}").unwrap(),
            "6F9619FF-8B86-D011-B42D-00C04FC964FF"
        );
    }

    #[test]
    fn timestamps_round_to_their_type() {
        let t = Timestamp::parse("2024-02-29 23:59:59.9985").unwrap();
        assert_eq!(t.stored(&SqlType::DateTime), "2024-03-01 00:00:00.0000000");
        let t = Timestamp::parse("2024-02-29T10:00:00.996").unwrap();
        assert_eq!(t.canonical(&SqlType::DateTime), "2024-02-29 10:00:00.997");
        let t = Timestamp::parse("9999-12-31 23:59:59.9999999").unwrap();
        assert_eq!(
            t.canonical(&SqlType::DateTime2 { scale: 7 }),
            "9999-12-31 23:59:59.9999999"
        );
        let t = Timestamp::parse("0001-01-01").unwrap();
        assert_eq!(t.canonical(&SqlType::Date), "0001-01-01");
        let t = Timestamp::parse("2024-01-01 10:00:00.5 -05:30").unwrap();
        assert_eq!(
            t.stored(&SqlType::DateTimeOffset { scale: 7 }),
            "2024-01-01 10:00:00.5000000 -05:30"
        );
        assert_eq!(
            t.add("minute", -15)
                .unwrap()
                .canonical(&SqlType::DateTime2 { scale: 3 }),
            "2024-01-01 09:45:00.500"
        );
        assert_eq!(
            Timestamp::parse("13:45:10.1234567")
                .unwrap()
                .canonical(&SqlType::Time { scale: 7 }),
            "13:45:10.1234567"
        );
    }

    #[test]
    fn stored_values_come_back_canonical() {
        let money = to_value(&SqlType::Money, Stored::Integer(12));
        assert_eq!(money, Value::Text("12.0000".into()));
        let numeric = to_value(&ty("numeric(18,0)"), Stored::Text("123".into()));
        assert_eq!(numeric, Value::Text("123".into()));
        let variant = variant_stored(&SqlType::Int, &Stored::Integer(42));
        assert_eq!(
            to_value(&SqlType::SqlVariant, variant),
            Value::Variant(Box::new(SqlType::Int), Box::new(Value::Int(42)))
        );
        assert_eq!(
            store(&ty("char(5)"), &Value::Text("ab".into())).unwrap(),
            Stored::Text("ab   ".into())
        );
        assert_eq!(cp1252_bytes("Ñ€é"), vec![0xD1, 0x80, 0xE9]);
    }

    #[test]
    fn text_conversions_follow_convert_styles() {
        let float = |r: f64, style| to_text(&SqlType::Float, &Stored::Real(r), style);
        assert_eq!(float(0.1, None), "0.1");
        assert_eq!(float(123_456.0, None), "123456");
        assert_eq!(float(1_234_567.0, None), "1.23457e+006");
        assert_eq!(float(0.000_01, None), "1e-005");
        assert_eq!(float(123.456, Some(1)), "1.2345600e+002");
        assert_eq!(float(0.1, Some(3)), "1.0000000000000001E-1");
        let datetime = |t: &str, style| to_text(&SqlType::DateTime, &Stored::Text(t.into()), style);
        assert_eq!(
            datetime("2024-02-29 23:59:59.997", None),
            "Feb 29 2024 11:59PM"
        );
        assert_eq!(datetime("2024-01-01 00:05:00", None), "Jan  1 2024 12:05AM");
        assert_eq!(
            datetime("2024-02-29 23:59:59.997", Some(126)),
            "2024-02-29T23:59:59.997"
        );
        assert_eq!(
            datetime("2024-02-29 23:59:59.997", Some(120)),
            "2024-02-29 23:59:59"
        );
        let dto = SqlType::DateTimeOffset { scale: 7 };
        assert_eq!(
            to_text(
                &dto,
                &Stored::Text("2024-02-29 10:00:00.5 +05:30".into()),
                Some(126)
            ),
            "2024-02-29T10:00:00.5000000+05:30"
        );
        assert_eq!(
            to_text(&SqlType::Money, &Stored::Text("12.3456".into()), None),
            "12.35"
        );
    }
}
