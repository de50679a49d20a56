//! How each source type is fetched and written: the value kinds of the output contract.

use serde::{Deserialize, Serialize};

use super::Dialect;
use super::catalog::Column;

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
