//! SQL Server catalog statements (T-SQL). Each one is parsed with sqlparser's MsSqlDialect and
//! pinned in the tests below, because no SQL Server runs where this is built.

use odbc_api::Connection;

use super::catalog::{ColumnRow, Facets, SizedTable, parse_column_rows, parse_count};
use super::{Source, query_text};
use crate::error::{DbError, Error, Result};

/// Row counts of all user tables in one query, from partition metadata (no scans): the heap
/// (index 0) or clustered index (index 1) of each table. Needs VIEW DATABASE STATE.
pub const SIZES_SQL: &str = "\
SELECT s.name AS schema_name, t.name AS table_name, SUM(ps.row_count) AS row_count \
FROM sys.tables AS t \
JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
JOIN sys.dm_db_partition_stats AS ps ON ps.object_id = t.object_id AND ps.index_id IN (0, 1) \
WHERE t.is_ms_shipped = 0 \
GROUP BY s.name, t.name \
ORDER BY s.name, t.name";

/// The same from `sys.partitions`, visible with plain metadata permissions.
pub const SIZES_FALLBACK_SQL: &str = "\
SELECT s.name AS schema_name, t.name AS table_name, SUM(p.rows) AS row_count \
FROM sys.tables AS t \
JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
JOIN sys.partitions AS p ON p.object_id = t.object_id AND p.index_id IN (0, 1) \
WHERE t.is_ms_shipped = 0 \
GROUP BY s.name, t.name \
ORDER BY s.name, t.name";

/// Columns of all user tables in ordinal order. Alias types report their base type; lengths of
/// `nchar`/`nvarchar` are converted from bytes to characters; `-1` means `(max)`. Text columns
/// carry their collation, which orders and compares their keys.
pub const COLUMNS_SQL: &str = "\
SELECT s.name AS schema_name, t.name AS table_name, c.column_id, c.name AS column_name, \
COALESCE(bt.name, ty.name) AS type_name, \
CASE WHEN c.max_length = -1 THEN -1 \
WHEN COALESCE(bt.name, ty.name) IN ('nchar', 'nvarchar') THEN c.max_length / 2 \
ELSE c.max_length END AS max_length, \
c.precision, c.scale, c.is_nullable, c.collation_name \
FROM sys.columns AS c \
JOIN sys.tables AS t ON t.object_id = c.object_id \
JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id \
LEFT JOIN sys.types AS bt ON bt.user_type_id = ty.system_type_id AND ty.is_user_defined = 1 \
WHERE t.is_ms_shipped = 0 \
ORDER BY s.name, t.name, c.column_id";

/// Primary key columns of all user tables in key order.
pub const PRIMARY_KEYS_SQL: &str = "\
SELECT s.name AS schema_name, t.name AS table_name, ic.key_ordinal, c.name AS column_name \
FROM sys.indexes AS i \
JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
JOIN sys.tables AS t ON t.object_id = i.object_id \
JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
WHERE i.is_primary_key = 1 AND t.is_ms_shipped = 0 \
ORDER BY s.name, t.name, ic.key_ordinal";

/// Table sizes; falls back to `sys.partitions` when the login lacks VIEW DATABASE STATE.
pub(super) fn sized_tables(
    source: &Source,
    connection: &Connection<'_>,
) -> Result<Vec<SizedTable>> {
    let rows = match query_text(source, connection, "reading the table sizes", SIZES_SQL) {
        Ok(rows) => rows,
        Err(Error::Database { source: db, .. }) if lacks_view_database_state(&db) => {
            log::warn!(
                "no VIEW DATABASE STATE permission (native error {}); reading row counts from \
                 sys.partitions instead",
                db.native
            );
            query_text(
                source,
                connection,
                "reading the table sizes",
                SIZES_FALLBACK_SQL,
            )?
        }
        Err(other) => return Err(other),
    };
    Ok(rows
        .into_iter()
        .filter_map(|row| match row.as_slice() {
            [Some(schema), Some(name), count] => Some(SizedTable {
                schema: schema.clone(),
                name: name.clone(),
                rows: Some(count.as_deref().and_then(parse_count).unwrap_or(0)),
            }),
            _ => None,
        })
        .collect())
}

/// The sizing query was refused for want of VIEW DATABASE STATE: error 297 ("The user does not
/// have permission to perform this action") or 300 ("VIEW DATABASE STATE permission was
/// denied"). Other errors share SQLSTATE 42000 (syntax errors, missing objects) and are not this.
fn lacks_view_database_state(error: &DbError) -> bool {
    matches!(error.native, 297 | 300)
}

pub(super) fn columns(source: &Source, connection: &Connection<'_>) -> Result<Vec<ColumnRow>> {
    let rows = query_text(source, connection, "reading the columns", COLUMNS_SQL)?;
    Ok(parse_column_rows(
        rows,
        str::to_ascii_lowercase,
        |type_name| {
            let exact = matches!(type_name, "decimal" | "numeric");
            Facets {
                length: matches!(
                    type_name,
                    "char" | "varchar" | "nchar" | "nvarchar" | "binary" | "varbinary"
                ),
                precision: exact,
                scale: exact || matches!(type_name, "datetime2" | "time" | "datetimeoffset"),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tsql_test::{parse, table_names};

    #[test]
    fn sizes_statement() {
        assert_eq!(
            parse(SIZES_SQL),
            "SELECT s.name AS schema_name, t.name AS table_name, SUM(ps.row_count) AS row_count \
             FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
             JOIN sys.dm_db_partition_stats AS ps ON ps.object_id = t.object_id \
             AND ps.index_id IN (0, 1) WHERE t.is_ms_shipped = 0 GROUP BY s.name, t.name \
             ORDER BY s.name, t.name"
        );
        assert_eq!(parse(SIZES_SQL), SIZES_SQL);
    }

    #[test]
    fn only_errors_297_and_300_mean_no_view_database_state() {
        let error = |native| DbError {
            state: "42000".into(),
            native,
            message: String::new(),
        };
        assert!(lacks_view_database_state(&error(297)));
        assert!(lacks_view_database_state(&error(300)));
        // Incorrect syntax, invalid object name: same SQLSTATE, another problem.
        assert!(!lacks_view_database_state(&error(102)));
        assert!(!lacks_view_database_state(&error(208)));
    }

    #[test]
    fn sizes_fallback_statement() {
        assert_eq!(parse(SIZES_FALLBACK_SQL), SIZES_FALLBACK_SQL);
        assert!(SIZES_FALLBACK_SQL.contains("JOIN sys.partitions AS p"));
        assert!(SIZES_FALLBACK_SQL.contains("SUM(p.rows)"));
    }

    #[test]
    fn columns_statement() {
        assert_eq!(parse(COLUMNS_SQL), COLUMNS_SQL);
        assert_eq!(
            COLUMNS_SQL,
            "SELECT s.name AS schema_name, t.name AS table_name, c.column_id, \
             c.name AS column_name, COALESCE(bt.name, ty.name) AS type_name, \
             CASE WHEN c.max_length = -1 THEN -1 \
             WHEN COALESCE(bt.name, ty.name) IN ('nchar', 'nvarchar') THEN c.max_length / 2 \
             ELSE c.max_length END AS max_length, c.precision, c.scale, c.is_nullable, \
             c.collation_name FROM sys.columns AS c \
             JOIN sys.tables AS t ON t.object_id = c.object_id \
             JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
             JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id \
             LEFT JOIN sys.types AS bt ON bt.user_type_id = ty.system_type_id \
             AND ty.is_user_defined = 1 WHERE t.is_ms_shipped = 0 \
             ORDER BY s.name, t.name, c.column_id"
        );
        assert!(COLUMNS_SQL.contains("ORDER BY s.name, t.name, c.column_id"));
    }

    #[test]
    fn primary_keys_statement() {
        assert_eq!(parse(PRIMARY_KEYS_SQL), PRIMARY_KEYS_SQL);
        assert!(PRIMARY_KEYS_SQL.contains("WHERE i.is_primary_key = 1"));
        assert!(PRIMARY_KEYS_SQL.ends_with("ORDER BY s.name, t.name, ic.key_ordinal"));
    }

    #[test]
    fn exact_count_statement_with_names_needing_quotes() {
        let sql = super::super::catalog::count_sql(
            super::super::Dialect::SqlServer,
            &[
                ("dbo".into(), "Order Detail".into()),
                ("ü]".into(), "select".into()),
            ],
        );
        assert_eq!(
            sql,
            "SELECT N'dbo' AS schema_name, N'Order Detail' AS table_name, COUNT_BIG(*) AS \
             row_count FROM [dbo].[Order Detail] UNION ALL SELECT N'ü]' AS schema_name, \
             N'select' AS table_name, COUNT_BIG(*) AS row_count FROM [ü]]].[select]"
        );
        assert_eq!(
            table_names(&sql),
            [["dbo", "Order Detail"], ["ü]", "select"]]
        );
    }
}
