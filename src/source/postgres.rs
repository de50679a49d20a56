//! PostgreSQL catalog statements (the test and development source).

use odbc_api::Connection;

use super::catalog::{ColumnRow, Facets, SizedTable, parse_column_rows, parse_count};
use super::{Source, query_text};
use crate::error::Result;

/// Tables (plain and partitioned parents, not their partitions) readable by this login, with the
/// planner's row estimate. `reltuples` is -1 for a table never analyzed (PostgreSQL 14+): those
/// are counted exactly.
pub(crate) const SIZES_SQL: &str = "\
SELECT n.nspname, c.relname, CAST(c.reltuples AS bigint) \
FROM pg_catalog.pg_class AS c \
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
AND n.nspname NOT LIKE 'pg\\_%' \
AND has_table_privilege(c.oid, 'SELECT') \
ORDER BY 1, 2";

/// Columns in ordinal order. User-defined and array types report their own type name.
pub(crate) const COLUMNS_SQL: &str = "\
SELECT table_schema, table_name, ordinal_position, column_name, \
CASE WHEN data_type IN ('USER-DEFINED', 'ARRAY') THEN udt_name ELSE data_type END, \
character_maximum_length, numeric_precision, \
COALESCE(numeric_scale, datetime_precision), is_nullable, collation_name \
FROM information_schema.columns \
WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
ORDER BY table_schema, table_name, ordinal_position";

/// Primary key columns in key order.
pub(crate) const PRIMARY_KEYS_SQL: &str = "\
SELECT n.nspname, c.relname, k.ord, a.attname \
FROM pg_catalog.pg_index AS i \
JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid \
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum \
WHERE i.indisprimary \
ORDER BY 1, 2, 3";

pub(super) fn sized_tables(
    source: &Source,
    connection: &Connection<'_>,
) -> Result<Vec<SizedTable>> {
    let rows = query_text(source, connection, "reading the table sizes", SIZES_SQL)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| match row.as_slice() {
            [Some(schema), Some(name), estimate] => Some(SizedTable {
                schema: schema.clone(),
                name: name.clone(),
                // parse_count rejects -1: no statistics, count exactly.
                rows: estimate.as_deref().and_then(parse_count),
            }),
            _ => None,
        })
        .collect())
}

pub(super) fn columns(source: &Source, connection: &Connection<'_>) -> Result<Vec<ColumnRow>> {
    let rows = query_text(source, connection, "reading the columns", COLUMNS_SQL)?;
    Ok(parse_column_rows(rows, str::to_owned, |type_name| Facets {
        length: true,
        precision: matches!(type_name, "numeric" | "decimal"),
        scale: true,
    }))
}
