//! SQLite catalog statements (the embedded demo source). SQLite keeps no statistics, so every
//! table is counted exactly, and declared types are free text (`DECIMAL(38,10)`).

use odbc_api::Connection;

use super::catalog::{Column, ColumnRow, SizedTable, parse_flag, parse_int};
use super::{Source, query_text};
use crate::error::Result;

/// SQLite's single schema.
pub(crate) const SCHEMA: &str = "main";

pub(crate) const TABLES_SQL: &str = "\
SELECT name FROM sqlite_master \
WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
ORDER BY name";

/// Columns in order with declared type, NOT NULL flag and key position (0 = not in the key).
pub(crate) const COLUMNS_SQL: &str = "\
SELECT m.name, p.cid, p.name, p.type, p.\"notnull\", p.pk \
FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
ORDER BY m.name, p.cid";

pub(super) fn tables(source: &Source, connection: &Connection<'_>) -> Result<Vec<SizedTable>> {
    let rows = query_text(source, connection, "reading the tables", TABLES_SQL)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .map(|name| SizedTable {
            schema: SCHEMA.to_owned(),
            name,
            rows: None,
        })
        .collect())
}

pub(super) fn columns(source: &Source, connection: &Connection<'_>) -> Result<Vec<ColumnRow>> {
    let rows = query_text(source, connection, "reading the columns", COLUMNS_SQL)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| match row.as_slice() {
            [Some(table), _cid, Some(name), declared, not_null, key] => {
                let declared = declared.clone().unwrap_or_default();
                let (source_type, first, second) = split_declared_type(&declared);
                let is_numeric = matches!(source_type.as_str(), "decimal" | "numeric");
                let key_position = parse_int(key)
                    .filter(|p| *p > 0)
                    .and_then(|p| usize::try_from(p).ok());
                Some(ColumnRow {
                    schema: SCHEMA.to_owned(),
                    table: table.clone(),
                    column: Column {
                        name: name.clone(),
                        length: first.filter(|_| !is_numeric),
                        precision: first.filter(|_| is_numeric),
                        scale: second,
                        source_type,
                        // A key column of a rowid table may hold NULL unless declared NOT NULL,
                        // except the INTEGER PRIMARY KEY rowid alias; report what is declared.
                        nullable: !parse_flag(not_null),
                        key_position,
                        collation: None,
                    },
                })
            }
            _ => None,
        })
        .collect())
}

/// Splits `VARCHAR(100)` into (`varchar`, 100, None) and `DECIMAL(38, 10)` into
/// (`decimal`, 38, 10). Type names are lower-cased.
fn split_declared_type(declared: &str) -> (String, Option<i64>, Option<i64>) {
    let Some((name, rest)) = declared.split_once('(') else {
        return (declared.trim().to_ascii_lowercase(), None, None);
    };
    let inner = rest.trim_end().trim_end_matches(')');
    let mut numbers = inner.split(',').map(|n| n.trim().parse::<i64>().ok());
    let first = numbers.next().flatten();
    let second = numbers.next().flatten();
    (name.trim().to_ascii_lowercase(), first, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types() {
        assert_eq!(
            split_declared_type("VARCHAR(100)"),
            ("varchar".into(), Some(100), None)
        );
        assert_eq!(
            split_declared_type("DECIMAL(38, 10)"),
            ("decimal".into(), Some(38), Some(10))
        );
        assert_eq!(
            split_declared_type("TIMESTAMP"),
            ("timestamp".into(), None, None)
        );
        assert_eq!(split_declared_type(""), (String::new(), None, None));
    }
}
