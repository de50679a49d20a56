//! Discovery: user tables with their columns, primary keys and row counts, a few catalog
//! queries for the whole database (never one query per table on SQL Server or PostgreSQL).

use std::collections::HashMap;

use odbc_api::Connection;
use serde::Serialize;

use super::{Dialect, Source, postgres, query_text, sqlite, sqlserver};
use crate::config::TableFilter;
use crate::error::{ConfigError, Error, Result};

/// A column as the source declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Column {
    pub(crate) name: String,
    /// The source's type name (`bigint`, `nvarchar`, `numeric`, `timestamp without time zone`).
    pub(crate) source_type: String,
    /// Declared length in characters (text) or bytes (binary); `-1` for `(max)`.
    pub(crate) length: Option<i64>,
    pub(crate) precision: Option<i64>,
    /// Decimal scale, or fractional-second digits for time types.
    pub(crate) scale: Option<i64>,
    pub(crate) nullable: bool,
    /// 1-based position in the primary key.
    pub(crate) key_position: Option<usize>,
    /// The collation of a text column (SQL Server `sys.columns.collation_name`, PostgreSQL's
    /// explicit column collation), which orders and compares its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) collation: Option<String>,
}

#[cfg(test)]
impl Column {
    /// A column for unit tests: nullable unless it is part of the key.
    pub(crate) fn for_test(name: &str, source_type: &str, key_position: Option<usize>) -> Column {
        Column {
            name: name.into(),
            source_type: source_type.into(),
            length: None,
            precision: None,
            scale: None,
            nullable: key_position.is_none(),
            key_position,
            collation: None,
        }
    }
}

/// A user table selected for copying.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    /// Primary key column names in key order; empty when the table has none.
    pub(crate) primary_key: Vec<String>,
    /// Row count from the catalog statistics, or exact when `rows_exact`.
    pub(crate) rows: u64,
    pub(crate) rows_exact: bool,
}

impl Table {
    /// `schema.table`, unquoted, as shown to people and matched by include/exclude.
    pub(crate) fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// One row of the sizing query: a table and its row count, `None` when statistics are missing.
pub(super) struct SizedTable {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) rows: Option<u64>,
}

/// Catalog rows of one column, as the dialect queries return them.
pub(super) struct ColumnRow {
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) column: Column,
}

/// The outcome of discovery.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    /// Selected tables, ordered by schema and name.
    pub(crate) tables: Vec<Table>,
    /// How many user tables the login can see before include/exclude.
    pub(crate) visible: usize,
}

/// Discovers every user table visible on `connection` that `filter` selects, sized and with
/// columns and keys.
pub(crate) fn discover(
    source: &Source,
    connection: &Connection<'_>,
    dialect: Dialect,
    filter: &TableFilter,
) -> Result<Discovery> {
    let all = match dialect {
        Dialect::SqlServer => sqlserver::sized_tables(source, connection)?,
        Dialect::Postgres => postgres::sized_tables(source, connection)?,
        Dialect::Sqlite => sqlite::tables(source, connection)?,
    };
    if all.is_empty() {
        return Err(Error::Discovery(
            "the database has no user tables visible to this login: check mssql_database \
             (or the connection string's database) and that the login may read the tables"
                .into(),
        ));
    }
    let visible = all.len();
    let mut selected: Vec<SizedTable> = all
        .into_iter()
        .filter(|t| filter.selects(&t.schema, &t.name))
        .collect();
    if selected.is_empty() {
        return Err(ConfigError::Other(format!(
            "the include/exclude patterns select none of the tables ({} in the database; \
             include: {:?}, exclude: {:?}); patterns match 'schema.table', e.g. \"dbo.*\"",
            crate::display::tables(visible),
            filter.include,
            filter.exclude
        ))
        .into());
    }

    let unsized_tables: Vec<(String, String)> = selected
        .iter()
        .filter(|t| t.rows.is_none())
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect();
    let exact = count_exactly(source, connection, dialect, &unsized_tables)?;
    for table in &mut selected {
        if table.rows.is_none() {
            table.rows = exact
                .get(&(table.schema.clone(), table.name.clone()))
                .copied();
        }
    }

    let column_rows = match dialect {
        Dialect::SqlServer => sqlserver::columns(source, connection)?,
        Dialect::Postgres => postgres::columns(source, connection)?,
        Dialect::Sqlite => sqlite::columns(source, connection)?,
    };
    let mut columns: HashMap<(String, String), Vec<Column>> = HashMap::new();
    for row in column_rows {
        columns
            .entry((row.schema, row.table))
            .or_default()
            .push(row.column);
    }
    let primary_keys_sql = match dialect {
        Dialect::SqlServer => Some(sqlserver::PRIMARY_KEYS_SQL),
        Dialect::Postgres => Some(postgres::PRIMARY_KEYS_SQL),
        // SQLite's key positions come with the columns.
        Dialect::Sqlite => None,
    };
    let mut keys = match primary_keys_sql {
        Some(sql) => group_keys(query_text(
            source,
            connection,
            "reading the primary keys",
            sql,
        )?),
        None => HashMap::new(),
    };

    let mut tables = Vec::with_capacity(selected.len());
    for sized in selected {
        let id = (sized.schema, sized.name);
        let mut table_columns = columns.remove(&id).unwrap_or_default();
        let primary_key = match keys.remove(&id) {
            Some(key) => key,
            None => key_from_positions(&table_columns),
        };
        for column in &mut table_columns {
            column.key_position = primary_key
                .iter()
                .position(|k| *k == column.name)
                .map(|p| p + 1);
        }
        if table_columns.is_empty() {
            return Err(Error::Discovery(format!(
                "no columns could be read for table {}.{}: the login may lack permission on it; \
                 exclude it with \"exclude\" or grant SELECT",
                id.0, id.1
            )));
        }
        tables.push(Table {
            rows: sized.rows.unwrap_or(0),
            rows_exact: unsized_tables.contains(&id),
            schema: id.0,
            name: id.1,
            columns: table_columns,
            primary_key,
        });
    }
    Ok(Discovery { tables, visible })
}

/// Key column names ordered by the `key_position` the catalog gave each column.
fn key_from_positions(columns: &[Column]) -> Vec<String> {
    let mut keyed: Vec<(usize, &str)> = columns
        .iter()
        .filter_map(|c| c.key_position.map(|p| (p, c.name.as_str())))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, name)| name.to_owned()).collect()
}

/// Exact `COUNT(*)` of each table, batched into `UNION ALL` queries.
fn count_exactly(
    source: &Source,
    connection: &Connection<'_>,
    dialect: Dialect,
    tables: &[(String, String)],
) -> Result<HashMap<(String, String), u64>> {
    let mut counts = HashMap::new();
    // SQLite allows 500 terms in a compound SELECT; stay well below.
    for chunk in tables.chunks(100) {
        let sql = count_sql(dialect, chunk);
        for row in query_text(source, connection, "taking the exact row counts", &sql)? {
            let [schema, name, count] = row.as_slice() else {
                continue;
            };
            let (Some(schema), Some(name)) = (schema, name) else {
                continue;
            };
            let count = count.as_deref().and_then(parse_count).unwrap_or(0);
            counts.insert((schema.clone(), name.clone()), count);
        }
    }
    Ok(counts)
}

/// `SELECT 'schema', 'table', COUNT(*) FROM t UNION ALL ...` for the given tables.
pub fn count_sql(dialect: Dialect, tables: &[(String, String)]) -> String {
    let count = match dialect {
        Dialect::SqlServer => "COUNT_BIG(*)",
        Dialect::Postgres | Dialect::Sqlite => "COUNT(*)",
    };
    tables
        .iter()
        .map(|(schema, name)| {
            format!(
                "SELECT {} AS schema_name, {} AS table_name, {count} AS row_count FROM {}",
                dialect.string_literal(schema),
                dialect.string_literal(name),
                dialect.qualified_table(schema, name)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Which size facets of a catalog column apply to its type.
pub(super) struct Facets {
    pub(crate) length: bool,
    pub(crate) precision: bool,
    pub(crate) scale: bool,
}

/// Parses the rows of the SQL Server and PostgreSQL column queries, which share one layout:
/// schema, table, ordinal, name, type, length, precision, scale, nullable, collation.
pub(super) fn parse_column_rows(
    rows: Vec<Vec<Option<String>>>,
    type_name: impl Fn(&str) -> String,
    facets: impl Fn(&str) -> Facets,
) -> Vec<ColumnRow> {
    rows.into_iter()
        .filter_map(|row| match row.as_slice() {
            [
                Some(schema),
                Some(table),
                _ordinal,
                Some(name),
                Some(source_type),
                length,
                precision,
                scale,
                nullable,
                collation,
            ] => {
                let source_type = type_name(source_type);
                let facets = facets(&source_type);
                Some(ColumnRow {
                    schema: schema.clone(),
                    table: table.clone(),
                    column: Column {
                        name: name.clone(),
                        length: parse_int(length).filter(|_| facets.length),
                        precision: parse_int(precision).filter(|_| facets.precision),
                        scale: parse_int(scale).filter(|_| facets.scale),
                        source_type,
                        nullable: parse_flag(nullable),
                        key_position: None,
                        collation: collation.clone(),
                    },
                })
            }
            _ => None,
        })
        .collect()
}

/// Parses a count that a driver may render as `123`, `123.0` or `1.23e+06` (PostgreSQL's
/// `reltuples` is a float).
pub(crate) fn parse_count(text: &str) -> Option<u64> {
    let text = text.trim();
    text.parse::<u64>().ok().or_else(|| {
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v.round() as u64)
    })
}

/// Parses an optional integer catalog value.
pub(super) fn parse_int(text: &Option<String>) -> Option<i64> {
    text.as_deref().and_then(|t| t.trim().parse::<i64>().ok())
}

/// Catalog booleans arrive as `1`/`0`, `t`/`f`, `true`/`false` or `YES`/`NO` depending on the
/// driver.
pub(super) fn parse_flag(text: &Option<String>) -> bool {
    matches!(
        text.as_deref()
            .map(|t| t.trim().to_ascii_lowercase())
            .as_deref(),
        Some("1" | "t" | "true" | "yes" | "y")
    )
}

/// Groups `(schema, table, position, column)` key rows into key column lists in key order.
pub(super) fn group_keys(rows: Vec<Vec<Option<String>>>) -> HashMap<(String, String), Vec<String>> {
    let mut keys: HashMap<(String, String), Vec<(i64, String)>> = HashMap::new();
    for row in rows {
        if let [Some(schema), Some(table), position, Some(column)] = row.as_slice() {
            keys.entry((schema.clone(), table.clone()))
                .or_default()
                .push((parse_int(position).unwrap_or(0), column.clone()));
        }
    }
    keys.into_iter()
        .map(|(id, mut columns)| {
            columns.sort();
            (id, columns.into_iter().map(|(_, c)| c).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_driver_text() {
        assert_eq!(parse_count("42"), Some(42));
        assert_eq!(parse_count("1.5e+06"), Some(1_500_000));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("x"), None);
    }

    #[test]
    fn flags_from_driver_text() {
        for yes in ["1", "t", "true", "YES"] {
            assert!(parse_flag(&Some(yes.into())), "{yes}");
        }
        for no in ["0", "f", "false", "NO"] {
            assert!(!parse_flag(&Some(no.into())), "{no}");
        }
        assert!(!parse_flag(&None));
    }

    #[test]
    fn keys_grouped_in_key_order() {
        let row = |t: &str, p: &str, c: &str| {
            vec![
                Some("dbo".to_owned()),
                Some(t.to_owned()),
                Some(p.to_owned()),
                Some(c.to_owned()),
            ]
        };
        let keys = group_keys(vec![
            row("LAB", "2", "LINE"),
            row("LAB", "1", "ORDER_ID"),
            row("PAT", "1", "PAT_ID"),
        ]);
        assert_eq!(keys[&("dbo".into(), "LAB".into())], ["ORDER_ID", "LINE"]);
        assert_eq!(keys[&("dbo".into(), "PAT".into())], ["PAT_ID"]);
    }

    #[test]
    fn column_rows_carry_the_collation() {
        let text = |v: &str| Some(v.to_owned());
        let rows = vec![
            vec![
                text("dbo"),
                text("PATIENT"),
                text("1"),
                text("PAT_ID"),
                text("varchar"),
                text("18"),
                text("0"),
                text("0"),
                text("0"),
                text("SQL_Latin1_General_CP1_CI_AS"),
            ],
            vec![
                text("dbo"),
                text("PATIENT"),
                text("2"),
                text("BIRTH_DATE"),
                text("datetime"),
                text("8"),
                text("23"),
                text("3"),
                text("1"),
                None,
            ],
        ];
        let facets = |t: &str| Facets {
            length: t == "varchar",
            precision: false,
            scale: false,
        };
        let columns = parse_column_rows(rows, str::to_owned, facets);
        assert_eq!(columns.len(), 2);
        assert_eq!(
            columns[0].column.collation.as_deref(),
            Some("SQL_Latin1_General_CP1_CI_AS")
        );
        assert_eq!(columns[0].column.length, Some(18));
        assert!(!columns[0].column.nullable);
        assert_eq!(columns[1].column.collation, None);
    }

    #[test]
    fn exact_count_sql_quotes_names() {
        let sql = count_sql(
            Dialect::Postgres,
            &[
                ("public".into(), "order detail".into()),
                ("public".into(), "it's".into()),
            ],
        );
        assert_eq!(
            sql,
            "SELECT 'public' AS schema_name, 'order detail' AS table_name, COUNT(*) AS row_count \
             FROM \"public\".\"order detail\" UNION ALL SELECT 'public' AS schema_name, 'it''s' \
             AS table_name, COUNT(*) AS row_count FROM \"public\".\"it's\""
        );
    }
}
