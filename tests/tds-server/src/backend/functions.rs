//! The SQLite collations and functions the translated statements call: SQL Server collation
//! names, exact decimal and uniqueidentifier order, CAST/CONVERT, DATEADD, SQL_VARIANT_PROPERTY.

use std::cmp::Ordering;

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;

use super::types::{
    self, Stored, Timestamp, compare_decimal, compare_guid, convert_with_style, cp1252_bytes,
};
use crate::model::{Collation, ServerError, SqlType};

/// Registers every collation and function on a connection.
pub fn register(connection: &Connection) -> rusqlite::Result<()> {
    connection.create_collation("tds_decimal", compare_decimal)?;
    connection.create_collation("tds_guid", compare_guid)?;
    connection.collation_needed(sql_server_collation)?;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    connection.create_scalar_function("tds_convert", 5, flags, convert)?;
    connection.create_scalar_function("tds_dateadd", 4, flags, dateadd)?;
    connection.create_scalar_function("tds_variant_property", 2, flags, variant_property)?;
    connection.create_scalar_function("tds_datalength", 1, flags, datalength)?;
    Ok(())
}

/// Registers a SQL Server collation by its name when a statement first uses it. The order is
/// an approximation with the one distinction that loses rows when ignored ("Collation and
/// Unicode support", SQL Server collations): Unicode rules (`nvarchar`, and every text under a
/// Windows collation) ignore hyphens and apostrophes at the first level, so `N'a-c' > N'ab'`,
/// while a SQL_ collation's code-page rules (`varchar`, marked by the `#cp` suffix) do not, so
/// `'a-c' < 'ab'`. `_BIN`/`_BIN2` compare UTF-16 code units (Windows-1252 bytes for `varchar`),
/// `_CI_` compares without case (Unicode lower case); accents, kana and width always count.
fn sql_server_collation(connection: &Connection, name: &str) -> rusqlite::Result<()> {
    let upper = name.to_ascii_uppercase();
    let code_page = upper.ends_with("#CP");
    let binary = upper.contains("_BIN");
    let case_insensitive = upper.contains("_CI");
    let code_page_rules = code_page && upper.starts_with("SQL_");
    match (binary, code_page) {
        // Trailing spaces never count, binary collations included (ANSI padding).
        (true, true) => connection.create_collation(name, |a, b| {
            cp1252_bytes(a.trim_end_matches(' ')).cmp(&cp1252_bytes(b.trim_end_matches(' ')))
        }),
        (true, false) => connection.create_collation(name, |a, b| {
            let (a, b) = (a.trim_end_matches(' '), b.trim_end_matches(' '));
            a.encode_utf16().cmp(b.encode_utf16())
        }),
        (false, _) => connection.create_collation(name, move |a, b| {
            compare_text(a, b, case_insensitive, !code_page_rules)
        }),
    }
}

/// Compares text as a collation does: trailing spaces ignored (SQL Server pads for comparison),
/// case folded when `case_insensitive`, and with `word_sort` hyphens and apostrophes ignored
/// unless the texts are otherwise equal.
pub fn compare_text(a: &str, b: &str, case_insensitive: bool, word_sort: bool) -> Ordering {
    let fold = |s: &str, skip: bool| -> Vec<char> {
        let chars = s
            .trim_end_matches(' ')
            .chars()
            .filter(|c| !(skip && matches!(c, '-' | '\'' | '\u{2019}')));
        if case_insensitive {
            chars.flat_map(char::to_lowercase).collect()
        } else {
            chars.collect()
        }
    };
    if word_sort {
        fold(a, true)
            .cmp(&fold(b, true))
            .then_with(|| fold(a, false).cmp(&fold(b, false)))
    } else {
        fold(a, false).cmp(&fold(b, false))
    }
}

/// An error a function raises, carrying SQL Server's error number through SQLite's message.
pub fn function_error(error: ServerError) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(
        format!(
            "tds:{}:{}:{}:{}",
            error.number, error.state, error.class, error.message
        )
        .into(),
    )
}

/// The SQL Server error carried by a SQLite error message, if a function raised one.
pub fn carried_error(message: &str) -> Option<ServerError> {
    let rest = &message[message.find("tds:")? + 4..];
    let mut parts = rest.splitn(4, ':');
    let number = parts.next()?.parse().ok()?;
    let state = parts.next()?.parse().ok()?;
    let class = parts.next()?.parse().ok()?;
    Some(ServerError::new(number, state, class, parts.next()?))
}

fn stored(value: ValueRef<'_>) -> Stored {
    Stored::from_ref(value)
}

fn type_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<SqlType> {
    let text: String = ctx.get(i)?;
    types::parse_type(&text, Collation::DEFAULT)
        .ok_or_else(|| function_error(ServerError::syntax(format!("unknown type {text}"))))
}

fn to_sql(value: Stored) -> rusqlite::types::Value {
    match value {
        Stored::Null => rusqlite::types::Value::Null,
        Stored::Integer(i) => rusqlite::types::Value::Integer(i),
        Stored::Real(r) => rusqlite::types::Value::Real(r),
        Stored::Text(t) => rusqlite::types::Value::Text(t),
        Stored::Blob(b) => rusqlite::types::Value::Blob(b),
    }
}

/// `tds_convert(target type, source type, value, style, is_try)`: CAST, CONVERT, TRY_CAST and
/// TRY_CONVERT. A failed conversion is SQL Server's error 245 (or NULL for TRY_).
fn convert(ctx: &mut Context<'_>) -> rusqlite::Result<rusqlite::types::Value> {
    let target = type_arg(ctx, 0)?;
    let source = type_arg(ctx, 1)?;
    let value = stored(ctx.get_raw(2));
    let style: Option<i64> = ctx.get(3)?;
    let is_try: bool = ctx.get(4)?;
    match convert_with_style(&target, &source, &value, style) {
        Ok(v) => Ok(to_sql(v)),
        Err(_) if is_try => Ok(rusqlite::types::Value::Null),
        Err(e) => Err(function_error(ServerError::new(
            245,
            1,
            16,
            format!(
                "Conversion failed when converting the {} value to data type {}.",
                types::type_name(&source),
                e.target
            ),
        ))),
    }
}

/// `tds_dateadd(part, n, value, type)`.
fn dateadd(ctx: &mut Context<'_>) -> rusqlite::Result<rusqlite::types::Value> {
    let part: String = ctx.get(0)?;
    let n: Option<i64> = ctx.get(1)?;
    let value: Option<String> = ctx.get(2)?;
    let ty = type_arg(ctx, 3)?;
    let (Some(n), Some(value)) = (n, value) else {
        return Ok(rusqlite::types::Value::Null);
    };
    let added = Timestamp::parse(&value).and_then(|t| t.add(&part, n));
    match added {
        Some(t) => Ok(rusqlite::types::Value::Text(t.stored(&ty))),
        None => Err(function_error(ServerError::new(
            517,
            1,
            16,
            "Adding a value to a 'datetime' column caused an overflow.",
        ))),
    }
}

/// `tds_variant_property(value, property)`: SQL_VARIANT_PROPERTY.
fn variant_property(ctx: &mut Context<'_>) -> rusqlite::Result<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    let property: String = ctx.get(1)?;
    let base = match stored(ctx.get_raw(0)) {
        Stored::Null => return Ok(V::Null),
        Stored::Text(t) => match types::variant_parts(&t) {
            Some((base, _)) => base,
            None => SqlType::NVarChar { length: Some(4000) },
        },
        Stored::Integer(_) => SqlType::Int,
        Stored::Real(_) => SqlType::Float,
        Stored::Blob(_) => SqlType::VarBinary { length: Some(8000) },
    };
    let (max_length, precision, scale) = types::column_facets(&base);
    Ok(match property.to_ascii_lowercase().as_str() {
        "basetype" => V::Text(types::type_name(&base).to_owned()),
        "precision" => V::Integer(precision),
        "scale" => V::Integer(scale),
        "totalbytes" => V::Integer(max_length.max(0) + 2),
        "collation" => types::column_collation(&base, Collation::DEFAULT).map_or(V::Null, V::Text),
        "maxlength" => V::Integer(max_length),
        _ => V::Null,
    })
}

/// `tds_datalength(value)`: DATALENGTH in bytes (text counted as UTF-16, as nvarchar).
fn datalength(ctx: &mut Context<'_>) -> rusqlite::Result<Option<i64>> {
    Ok(match ctx.get_raw(0) {
        ValueRef::Null => None,
        ValueRef::Integer(_) | ValueRef::Real(_) => Some(8),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).encode_utf16().count() as i64 * 2),
        ValueRef::Blob(b) => Some(b.len() as i64),
    })
}
