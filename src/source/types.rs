//! How each source type is fetched and written: the value kinds of the output contract.

use serde::{Deserialize, Serialize};

use super::Dialect;
use super::catalog::Column;
use crate::model::ParquetType;

/// What a column's values are, for fetching (buffer type and size) and for encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ValueKind {
    /// Fetched as a 64-bit integer; NDJSON number.
    Integer,
    /// Fetched as a double; written in its shortest exact form.
    Float,
    /// Fetched as text (`1`/`0`, `t`/`f`, `true`/`false`); written `true`/`false`.
    Boolean,
    /// Exact numeric, fetched as text and never through a float; NDJSON string.
    Decimal,
    /// Date, time, timestamp or datetimeoffset fetched as text with the source's full fractional
    /// precision; a timestamp's date/time separator is written as `T` (ISO 8601).
    Timestamp,
    /// Any other text-like value (char, text, uuid, xml, json, interval, ...).
    Text,
    /// Bytes: hex in CSV, base64 in NDJSON.
    Binary,
}

impl ValueKind {
    /// The kind of a column from its source type in `dialect`.
    pub(crate) fn of(dialect: Dialect, column: &Column) -> ValueKind {
        let t = column.source_type.to_ascii_lowercase();
        let t = t.as_str();
        match dialect {
            Dialect::SqlServer => match t {
                "bigint" | "int" | "smallint" | "tinyint" => ValueKind::Integer,
                "float" | "real" => ValueKind::Float,
                "bit" => ValueKind::Boolean,
                "decimal" | "numeric" | "money" | "smallmoney" => ValueKind::Decimal,
                "datetime" | "datetime2" | "smalldatetime" | "datetimeoffset" | "date" => {
                    ValueKind::Timestamp
                }
                // `timestamp` is SQL Server's old name for rowversion: 8 bytes.
                "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => ValueKind::Binary,
                _ => ValueKind::Text,
            },
            Dialect::Postgres => match t {
                "bigint" | "integer" | "smallint" | "int8" | "int4" | "int2" => ValueKind::Integer,
                "double precision" | "real" | "float8" | "float4" => ValueKind::Float,
                "boolean" | "bool" => ValueKind::Boolean,
                "numeric" | "decimal" => ValueKind::Decimal,
                "timestamp without time zone"
                | "timestamp with time zone"
                | "timestamp"
                | "timestamptz" => ValueKind::Timestamp,
                "bytea" => ValueKind::Binary,
                _ => ValueKind::Text,
            },
            // SQLite's type affinity rules (datatype3.html, section 3.1), in their order.
            Dialect::Sqlite => {
                if t.contains("int") {
                    ValueKind::Integer
                } else if t.contains("char") || t.contains("clob") || t.contains("text") {
                    ValueKind::Text
                } else if t.is_empty() || t.contains("blob") {
                    ValueKind::Binary
                } else if t.contains("real") || t.contains("floa") || t.contains("doub") {
                    ValueKind::Float
                } else if t.contains("bool") {
                    ValueKind::Boolean
                } else if t.contains("timestamp") || t.contains("datetime") {
                    ValueKind::Timestamp
                } else if t.contains("dec") || t.contains("numeric") {
                    ValueKind::Decimal
                } else {
                    ValueKind::Text
                }
            }
        }
    }

    /// Whether a float column holds single-precision values (`real`, `float4`), written as the
    /// shortest `f32`. SQLite's REAL is always 8 bytes.
    pub(crate) fn is_single_precision(dialect: Dialect, column: &Column) -> bool {
        let t = column.source_type.to_ascii_lowercase();
        match dialect {
            Dialect::SqlServer => t == "real",
            Dialect::Postgres => t == "real" || t == "float4",
            Dialect::Sqlite => false,
        }
    }
}

/// The Parquet type a column of `kind` is written as, and why when it is text although the
/// source type is not: where no Parquet type holds every value of the source type exactly, the
/// column is written as text (the same text CSV holds) rather than lose a digit or a date.
pub(crate) fn parquet_type(
    dialect: Dialect,
    column: &Column,
    kind: ValueKind,
) -> (ParquetType, Option<&'static str>) {
    let t = column.source_type.to_ascii_lowercase();
    let t = t.as_str();
    let text = |why| (ParquetType::String, Some(why));
    match kind {
        ValueKind::Integer => (ParquetType::Int64, None),
        ValueKind::Float if ValueKind::is_single_precision(dialect, column) => {
            (ParquetType::Float32, None)
        }
        ValueKind::Float => (ParquetType::Float64, None),
        ValueKind::Boolean => (ParquetType::Boolean, None),
        ValueKind::Decimal if dialect == Dialect::Sqlite => {
            text("SQLite keeps any value in a DECIMAL column; written as text")
        }
        // Fixed by the type ("money and smallmoney (Transact-SQL)"): the catalog's facets are
        // read for decimal and numeric only.
        ValueKind::Decimal if dialect == Dialect::SqlServer && t == "money" => (
            ParquetType::Decimal {
                precision: 19,
                scale: 4,
            },
            None,
        ),
        ValueKind::Decimal if dialect == Dialect::SqlServer && t == "smallmoney" => (
            ParquetType::Decimal {
                precision: 10,
                scale: 4,
            },
            None,
        ),
        ValueKind::Decimal => match (column.precision, column.scale) {
            (Some(precision @ 1..=38), Some(scale)) if (0..=precision).contains(&scale) => (
                ParquetType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                },
                None,
            ),
            _ => text(
                "declared without a precision of at most 38 digits, which Parquet's DECIMAL \
                 cannot hold; written as text",
            ),
        },
        ValueKind::Timestamp => match dialect {
            Dialect::Sqlite => text("SQLite keeps dates as text of any form; written as text"),
            Dialect::Postgres if t.contains("with time zone") || t == "timestamptz" => {
                (ParquetType::TimestampUtc, None)
            }
            Dialect::Postgres => (ParquetType::Timestamp, None),
            Dialect::SqlServer => match t {
                "date" => (ParquetType::Date, None),
                "datetimeoffset" => text(
                    "a Parquet timestamp holds an instant without its UTC offset; written as \
                     ISO 8601 text with the offset",
                ),
                "datetime2" if column.scale.is_none_or(|digits| digits > 6) => text(
                    "100-nanosecond fractions: Parquet's nanosecond timestamps span only the \
                     years 1677 to 2262 and microseconds would drop a digit; written as ISO \
                     8601 text",
                ),
                _ => (ParquetType::Timestamp, None),
            },
        },
        ValueKind::Text => match (dialect, t) {
            (Dialect::SqlServer, "time") => (ParquetType::TimeNanos, None),
            (Dialect::Postgres, "date") => (ParquetType::Date, None),
            (Dialect::Postgres, "time without time zone" | "time") => {
                text("PostgreSQL's time allows 24:00:00, which Parquet's TIME cannot hold")
            }
            _ => (ParquetType::String, None),
        },
        ValueKind::Binary => (ParquetType::Binary, None),
    }
}

/// The SELECT-list expression for a column: most columns are read as they are; SQL Server types
/// that ODBC cannot fetch as text or bytes are converted on the server. On PostgreSQL,
/// timestamps and decimals are cast to text on the server: psqlODBC would otherwise parse
/// their text into a struct and print it back (sscanf and sprintf per value, a fifth of the
/// client's time), and the server's text keeps a time zone offset the struct drops. Key
/// columns are never cast: `ORDER BY` names the output column, and it must order like the
/// `WHERE` keyset condition on the table's column.
pub(crate) fn select_expression(dialect: Dialect, column: &Column) -> String {
    qualified_select_expression(dialect, column, None)
}

/// [`select_expression`] for a column of the table known as `qualifier` in a join (the change
/// tracking read joins the table to its change table).
pub(crate) fn qualified_select_expression(
    dialect: Dialect,
    column: &Column,
    qualifier: Option<&str>,
) -> String {
    let name = dialect.quote_identifier(&column.name);
    let quoted = match qualifier {
        Some(q) => format!("{}.{name}", dialect.quote_identifier(q)),
        None => name.clone(),
    };
    let aliased = |expression: String| format!("{expression} AS {name}");
    match dialect {
        Dialect::SqlServer => match column.source_type.to_ascii_lowercase().as_str() {
            "xml" => aliased(format!("CAST({quoted} AS NVARCHAR(MAX))")),
            "sql_variant" => aliased(sql_variant_text(&quoted)),
            "geography" | "geometry" | "hierarchyid" => aliased(format!("{quoted}.ToString()")),
            _ if qualifier.is_some() => aliased(quoted),
            _ => quoted,
        },
        Dialect::Postgres if column.key_position.is_some() => quoted,
        Dialect::Postgres => match ValueKind::of(dialect, column) {
            ValueKind::Timestamp | ValueKind::Decimal => aliased(format!("CAST({quoted} AS text)")),
            _ => quoted,
        },
        Dialect::Sqlite => quoted,
    }
}

/// A `sql_variant` as text in the exact form of its base type. A plain `CAST(v AS nvarchar)`
/// uses each type's default style ("CAST and CONVERT"): 6 significant digits for float, `mon dd
/// yyyy hh:miAM` for datetime, 2 decimals for money. So: float and real with style 3 (17
/// digits, lossless), date and time types in ISO 8601 (style 126; 23 for date), datetimeoffset
/// with its offset (126), money with 4 decimals (style 2), binary as `0x…` hex (style 1), and
/// everything else (integers, decimal, text, uniqueidentifier) cast as it is, which is exact.
/// `nvarchar(max)`: a variant holds up to 8,000 bytes, 16,002 characters as hex.
fn sql_variant_text(v: &str) -> String {
    let text = |expression: &str, style: Option<u8>| match style {
        Some(style) => format!("CONVERT(NVARCHAR(MAX), {expression}, {style})"),
        None => format!("CAST({expression} AS NVARCHAR(MAX))"),
    };
    let branches = [
        ("float", text(&format!("CAST({v} AS FLOAT)"), Some(3))),
        ("real", text(&format!("CAST({v} AS FLOAT)"), Some(3))),
        (
            "datetime",
            text(&format!("CAST({v} AS DATETIME)"), Some(126)),
        ),
        (
            "smalldatetime",
            text(&format!("CAST({v} AS SMALLDATETIME)"), Some(126)),
        ),
        (
            "datetime2",
            text(&format!("CAST({v} AS DATETIME2(7))"), Some(126)),
        ),
        (
            "datetimeoffset",
            text(&format!("CAST({v} AS DATETIMEOFFSET(7))"), Some(126)),
        ),
        ("date", text(&format!("CAST({v} AS DATE)"), Some(23))),
        ("time", text(&format!("CAST({v} AS TIME(7))"), None)),
        ("money", text(&format!("CAST({v} AS MONEY)"), Some(2))),
        ("smallmoney", text(&format!("CAST({v} AS MONEY)"), Some(2))),
        (
            "binary",
            text(&format!("CAST({v} AS VARBINARY(8000))"), Some(1)),
        ),
        (
            "varbinary",
            text(&format!("CAST({v} AS VARBINARY(8000))"), Some(1)),
        ),
    ];
    let mut sql = format!("CASE CAST(SQL_VARIANT_PROPERTY({v}, 'BaseType') AS NVARCHAR(128))");
    for (base_type, expression) in branches {
        sql.push_str(&format!(" WHEN '{base_type}' THEN {expression}"));
    }
    sql.push_str(&format!(" ELSE {} END", text(v, None)));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(source_type: &str) -> Column {
        Column::for_test("c", source_type, None)
    }

    #[test]
    fn sqlserver_kinds() {
        let kind = |t| ValueKind::of(Dialect::SqlServer, &column(t));
        assert_eq!(kind("bigint"), ValueKind::Integer);
        assert_eq!(kind("decimal"), ValueKind::Decimal);
        assert_eq!(kind("money"), ValueKind::Decimal);
        assert_eq!(kind("float"), ValueKind::Float);
        assert_eq!(kind("bit"), ValueKind::Boolean);
        assert_eq!(kind("datetime2"), ValueKind::Timestamp);
        assert_eq!(kind("datetimeoffset"), ValueKind::Timestamp);
        assert_eq!(kind("date"), ValueKind::Timestamp);
        assert_eq!(kind("time"), ValueKind::Text);
        assert_eq!(kind("timestamp"), ValueKind::Binary, "rowversion");
        assert_eq!(kind("uniqueidentifier"), ValueKind::Text);
        assert_eq!(kind("nvarchar"), ValueKind::Text);
    }

    #[test]
    fn postgres_kinds() {
        let kind = |t| ValueKind::of(Dialect::Postgres, &column(t));
        assert_eq!(kind("timestamp without time zone"), ValueKind::Timestamp);
        assert_eq!(kind("bytea"), ValueKind::Binary);
        assert_eq!(kind("numeric"), ValueKind::Decimal);
        assert_eq!(kind("uuid"), ValueKind::Text);
        assert_eq!(kind("boolean"), ValueKind::Boolean);
    }

    #[test]
    fn sqlite_affinity_kinds() {
        let kind = |t| ValueKind::of(Dialect::Sqlite, &column(t));
        assert_eq!(kind("bigint"), ValueKind::Integer);
        assert_eq!(kind("varchar"), ValueKind::Text);
        assert_eq!(kind("blob"), ValueKind::Binary);
        assert_eq!(kind("double"), ValueKind::Float);
        assert_eq!(kind("decimal"), ValueKind::Decimal);
        assert_eq!(kind("boolean"), ValueKind::Boolean);
        assert_eq!(kind("timestamp"), ValueKind::Timestamp);
        assert_eq!(kind("date"), ValueKind::Text);
        assert_eq!(kind("uuid"), ValueKind::Text);
    }

    #[test]
    fn parquet_types_hold_every_value_of_the_source_type() {
        let of = |dialect, source_type: &str, precision, scale| {
            let c = Column {
                precision,
                scale,
                ..column(source_type)
            };
            let (t, note) = parquet_type(dialect, &c, ValueKind::of(dialect, &c));
            (t.name(), note.is_some())
        };
        let s = Dialect::SqlServer;
        assert_eq!(of(s, "bigint", None, None), ("int64".into(), false));
        assert_eq!(of(s, "real", None, None), ("float32".into(), false));
        assert_eq!(of(s, "float", None, None), ("float64".into(), false));
        assert_eq!(of(s, "bit", None, None), ("boolean".into(), false));
        assert_eq!(
            of(s, "numeric", Some(18), Some(0)),
            ("decimal(18,0)".into(), false)
        );
        assert_eq!(
            of(s, "decimal", Some(38), Some(10)),
            ("decimal(38,10)".into(), false)
        );
        assert_eq!(of(s, "money", None, None), ("decimal(19,4)".into(), false));
        assert_eq!(of(s, "date", Some(10), Some(0)), ("date".into(), false));
        assert_eq!(
            of(s, "datetime", Some(23), Some(3)),
            ("timestamp(us)".into(), false)
        );
        assert_eq!(
            of(s, "datetime2", Some(26), Some(6)),
            ("timestamp(us)".into(), false)
        );
        assert_eq!(
            of(s, "datetime2", Some(27), Some(7)),
            ("string".into(), true)
        );
        assert_eq!(
            of(s, "datetimeoffset", Some(34), Some(7)),
            ("string".into(), true)
        );
        assert_eq!(of(s, "time", Some(16), Some(7)), ("time(ns)".into(), false));
        assert_eq!(
            of(s, "uniqueidentifier", None, None),
            ("string".into(), false)
        );
        assert_eq!(of(s, "varbinary", None, None), ("binary".into(), false));
        assert_eq!(
            of(s, "smallmoney", None, None),
            ("decimal(10,4)".into(), false)
        );
        let p = Dialect::Postgres;
        assert_eq!(of(p, "numeric", None, None), ("string".into(), true));
        assert_eq!(
            of(p, "numeric", Some(12), Some(2)),
            ("decimal(12,2)".into(), false)
        );
        assert_eq!(of(p, "real", None, None), ("float32".into(), false));
        assert_eq!(
            of(p, "timestamp with time zone", None, Some(6)),
            ("timestamp(us, UTC)".into(), false)
        );
        assert_eq!(
            of(p, "timestamp without time zone", None, Some(6)),
            ("timestamp(us)".into(), false)
        );
        assert_eq!(of(p, "date", None, None), ("date".into(), false));
        assert_eq!(
            of(p, "time without time zone", None, None),
            ("string".into(), true)
        );
        assert_eq!(of(p, "bytea", None, None), ("binary".into(), false));
        let l = Dialect::Sqlite;
        assert_eq!(of(l, "INTEGER", None, None), ("int64".into(), false));
        assert_eq!(
            of(l, "DECIMAL(10,2)", Some(10), Some(2)),
            ("string".into(), true)
        );
        assert_eq!(of(l, "TIMESTAMP", None, None), ("string".into(), true));
    }

    #[test]
    fn parquet_type_names_read_back() {
        for t in [
            ParquetType::Int64,
            ParquetType::Decimal {
                precision: 38,
                scale: 4,
            },
            ParquetType::TimestampUtc,
            ParquetType::TimeNanos,
        ] {
            assert_eq!(ParquetType::try_from(t.name()), Ok(t));
        }
        assert!(ParquetType::try_from("decimal(x,2)".to_owned()).is_err());
    }

    #[test]
    fn sql_variant_is_converted_by_its_base_type() {
        let mut c = column("sql_variant");
        c.name = "v".into();
        let sql = select_expression(Dialect::SqlServer, &c);
        assert_eq!(
            sql,
            "CASE CAST(SQL_VARIANT_PROPERTY([v], 'BaseType') AS NVARCHAR(128)) \
             WHEN 'float' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS FLOAT), 3) \
             WHEN 'real' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS FLOAT), 3) \
             WHEN 'datetime' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS DATETIME), 126) \
             WHEN 'smalldatetime' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS SMALLDATETIME), 126) \
             WHEN 'datetime2' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS DATETIME2(7)), 126) \
             WHEN 'datetimeoffset' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS DATETIMEOFFSET(7)), 126) \
             WHEN 'date' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS DATE), 23) \
             WHEN 'time' THEN CAST(CAST([v] AS TIME(7)) AS NVARCHAR(MAX)) \
             WHEN 'money' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS MONEY), 2) \
             WHEN 'smallmoney' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS MONEY), 2) \
             WHEN 'binary' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS VARBINARY(8000)), 1) \
             WHEN 'varbinary' THEN CONVERT(NVARCHAR(MAX), CAST([v] AS VARBINARY(8000)), 1) \
             ELSE CAST([v] AS NVARCHAR(MAX)) END AS [v]"
        );
        let statement = format!("SELECT {sql} FROM [dbo].[t]");
        assert_eq!(crate::source::tsql_test::parse(&statement), statement);
    }

    #[test]
    fn single_precision_floats() {
        let single = |d, t| ValueKind::is_single_precision(d, &column(t));
        assert!(single(Dialect::SqlServer, "real"));
        assert!(!single(Dialect::SqlServer, "float"));
        assert!(single(Dialect::Postgres, "real"));
        assert!(!single(Dialect::Postgres, "double precision"));
        assert!(!single(Dialect::Sqlite, "real"));
    }

    #[test]
    fn sqlserver_conversions_in_select() {
        let mut c = column("xml");
        c.name = "doc".into();
        assert_eq!(
            select_expression(Dialect::SqlServer, &c),
            "CAST([doc] AS NVARCHAR(MAX)) AS [doc]"
        );
        c.source_type = "geography".into();
        assert_eq!(
            select_expression(Dialect::SqlServer, &c),
            "[doc].ToString() AS [doc]"
        );
        c.source_type = "int".into();
        assert_eq!(select_expression(Dialect::SqlServer, &c), "[doc]");
        c.source_type = "xml".into();
        assert_eq!(select_expression(Dialect::Postgres, &c), "\"doc\"");
        c.source_type = "timestamp without time zone".into();
        assert_eq!(
            select_expression(Dialect::Postgres, &c),
            "CAST(\"doc\" AS text) AS \"doc\""
        );
        c.source_type = "numeric".into();
        assert_eq!(
            select_expression(Dialect::Postgres, &c),
            "CAST(\"doc\" AS text) AS \"doc\""
        );
        assert_eq!(select_expression(Dialect::Sqlite, &c), "\"doc\"");
        c.key_position = Some(1);
        assert_eq!(select_expression(Dialect::Postgres, &c), "\"doc\"");
    }
}
