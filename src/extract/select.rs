//! The statements that read a table: key-range and keyset SELECTs, bounds and exact counts.
//!
//! Never OFFSET: a partition is a range of the leading key column, and a resumed partition adds
//! a keyset condition on the whole key, spelled out by hand because T-SQL has no row-value
//! comparison: `(a > @a) OR (a = @a AND b > @b)`.

use crate::source::Dialect;
use crate::source::catalog::Table;
use crate::source::types::select_expression;

/// A key value as read from the last row sent, rendered as a literal in the next statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum KeyValue {
    Int(i64),
    Text(String),
}

impl KeyValue {
    fn literal(&self, dialect: Dialect) -> String {
        match self {
            KeyValue::Int(v) => v.to_string(),
            KeyValue::Text(s) => dialect.string_literal(s),
        }
    }
}

/// The rows of a key range: `lower < key[0] <= upper`, either bound open when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRange {
    pub lower_exclusive: Option<i64>,
    pub upper_inclusive: Option<i64>,
}

impl KeyRange {
    pub const ALL: KeyRange = KeyRange {
        lower_exclusive: None,
        upper_inclusive: None,
    };
}

/// Everything needed to write the SELECT statements of one table.
#[derive(Debug, Clone)]
pub struct TableQuery {
    dialect: Dialect,
    from: String,
    select_list: String,
    key: Vec<String>,
    /// A condition every statement adds: an incremental read's cursor or version range.
    filter: Option<String>,
}

impl TableQuery {
    pub fn new(dialect: Dialect, table: &Table) -> TableQuery {
        let select_list = table
            .columns
            .iter()
            .map(|c| select_expression(dialect, c))
            .collect::<Vec<_>>()
            .join(", ");
        TableQuery {
            dialect,
            from: dialect.qualified_table(&table.schema, &table.name),
            select_list,
            key: table
                .primary_key
                .iter()
                .map(|k| dialect.quote_identifier(k))
                .collect(),
            filter: None,
        }
    }

    /// A query over any row source: `from` is a FROM clause (a table, or a join), `key` the
    /// key expressions in order, `filter` a condition every statement adds.
    pub fn from_parts(
        dialect: Dialect,
        from: String,
        select_list: String,
        key: Vec<String>,
        filter: Option<String>,
    ) -> TableQuery {
        TableQuery {
            dialect,
            from,
            select_list,
            key,
            filter,
        }
    }

    /// The same query restricted to the rows matching `filter`.
    pub fn filtered(mut self, filter: Option<String>) -> TableQuery {
        self.filter = filter;
        self
    }

    /// One statement reading `range` in key order, after `after` (the last key already sent),
    /// at most `limit` rows. A table without key reads everything in the order the server
    /// chooses.
    pub fn select(
        &self,
        range: KeyRange,
        after: Option<&[KeyValue]>,
        limit: Option<u64>,
    ) -> String {
        let mut conditions: Vec<String> = self.filter.iter().cloned().collect();
        if let Some(first) = self.key.first() {
            if let Some(lower) = range.lower_exclusive {
                conditions.push(format!("{first} > {lower}"));
            }
            if let Some(upper) = range.upper_inclusive {
                conditions.push(format!("{first} <= {upper}"));
            }
        }
        if let Some(after) = after {
            conditions.push(self.keyset_after(after));
        }
        let mut sql = String::from("SELECT ");
        if let (Dialect::SqlServer, Some(limit)) = (self.dialect, limit) {
            sql.push_str(&format!("TOP ({limit}) "));
        }
        sql.push_str(&self.select_list);
        sql.push_str(" FROM ");
        sql.push_str(&self.from);
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        if !self.key.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(&self.key.join(", "));
        }
        if let (Dialect::Postgres | Dialect::Sqlite, Some(limit)) = (self.dialect, limit) {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql
    }

    /// `(a > va) OR (a = va AND b > vb) OR ...` for the key columns present in `after`.
    fn keyset_after(&self, after: &[KeyValue]) -> String {
        let n = after.len().min(self.key.len());
        let terms: Vec<String> = (0..n)
            .map(|i| {
                let mut parts: Vec<String> = (0..i)
                    .map(|j| format!("{} = {}", self.key[j], after[j].literal(self.dialect)))
                    .collect();
                parts.push(format!(
                    "{} > {}",
                    self.key[i],
                    after[i].literal(self.dialect)
                ));
                format!("({})", parts.join(" AND "))
            })
            .collect();
        format!("({})", terms.join(" OR "))
    }

    /// Lowest and highest value of the leading key column: two index seeks on a clustered key.
    pub fn key_bounds(&self) -> Option<String> {
        let first = self.key.first()?;
        Some(format!(
            "SELECT MIN({first}) AS min_key, MAX({first}) AS max_key FROM {}{}",
            self.from,
            self.where_filter()
        ))
    }

    /// The exact row count taken when a table starts, for its validation record.
    pub fn count(&self) -> String {
        let count = match self.dialect {
            Dialect::SqlServer => "COUNT_BIG(*)",
            Dialect::Postgres | Dialect::Sqlite => "COUNT(*)",
        };
        format!(
            "SELECT {count} AS row_count FROM {}{}",
            self.from,
            self.where_filter()
        )
    }

    fn where_filter(&self) -> String {
        self.filter
            .as_ref()
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::catalog::Column;
    use crate::source::tsql_test::{parse, table_names};

    fn lab_result() -> Table {
        Table {
            schema: "dbo".into(),
            name: "LAB RESULT".into(),
            columns: vec![
                Column::for_test("ORDER_ID", "bigint", Some(1)),
                Column::for_test("LINE", "int", Some(2)),
                Column::for_test("COMPONENT", "varchar", Some(3)),
                Column::for_test("VALUE", "decimal", None),
                Column::for_test("REPORT", "xml", None),
            ],
            primary_key: vec!["ORDER_ID".into(), "LINE".into(), "COMPONENT".into()],
            rows: 10,
            rows_exact: true,
        }
    }

    #[test]
    fn sqlserver_key_range_partition() {
        let query = TableQuery::new(Dialect::SqlServer, &lab_result());
        let range = KeyRange {
            lower_exclusive: Some(1000),
            upper_inclusive: Some(2000),
        };
        let sql = query.select(range, None, None);
        assert_eq!(
            sql,
            "SELECT [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[LAB RESULT] \
             WHERE [ORDER_ID] > 1000 AND [ORDER_ID] <= 2000 ORDER BY [ORDER_ID], [LINE], [COMPONENT]"
        );
        assert_eq!(parse(&sql), sql);
    }

    #[test]
    fn sqlserver_resumed_partition_spells_out_composite_keyset() {
        let query = TableQuery::new(Dialect::SqlServer, &lab_result());
        let range = KeyRange {
            lower_exclusive: None,
            upper_inclusive: Some(2000),
        };
        let after = [
            KeyValue::Int(1500),
            KeyValue::Int(3),
            KeyValue::Text("O'Neil Ü".into()),
        ];
        let sql = query.select(range, Some(&after), None);
        assert_eq!(
            sql,
            "SELECT [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[LAB RESULT] \
             WHERE [ORDER_ID] <= 2000 AND (([ORDER_ID] > 1500) OR ([ORDER_ID] = 1500 AND [LINE] > 3) \
             OR ([ORDER_ID] = 1500 AND [LINE] = 3 AND [COMPONENT] > N'O''Neil Ü')) \
             ORDER BY [ORDER_ID], [LINE], [COMPONENT]"
        );
        assert_eq!(parse(&sql), sql);
    }

    #[test]
    fn sqlserver_keyset_chunk_uses_top() {
        let query = TableQuery::new(Dialect::SqlServer, &lab_result());
        let after = [
            KeyValue::Int(7),
            KeyValue::Int(1),
            KeyValue::Text("NA".into()),
        ];
        let sql = query.select(KeyRange::ALL, Some(&after), Some(5000));
        assert!(sql.starts_with("SELECT TOP (5000) [ORDER_ID], "), "{sql}");
        assert!(!sql.contains("OFFSET"));
        assert_eq!(parse(&sql), sql);
        let first_chunk = query.select(KeyRange::ALL, None, Some(5000));
        assert_eq!(
            parse(&first_chunk),
            "SELECT TOP (5000) [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[LAB RESULT] \
             ORDER BY [ORDER_ID], [LINE], [COMPONENT]"
        );
    }

    #[test]
    fn sqlserver_bounds_and_count() {
        let query = TableQuery::new(Dialect::SqlServer, &lab_result());
        let bounds = query.key_bounds().unwrap();
        assert_eq!(
            parse(&bounds),
            "SELECT MIN([ORDER_ID]) AS min_key, MAX([ORDER_ID]) AS max_key FROM [dbo].[LAB RESULT]"
        );
        assert_eq!(
            parse(&query.count()),
            "SELECT COUNT_BIG(*) AS row_count FROM [dbo].[LAB RESULT]"
        );
    }

    #[test]
    fn table_without_key_is_one_unordered_stream() {
        let mut table = lab_result();
        table.primary_key.clear();
        table.name = "AUDIT]LOG".into();
        let query = TableQuery::new(Dialect::SqlServer, &table);
        let sql = query.select(KeyRange::ALL, None, None);
        assert_eq!(
            sql,
            "SELECT [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[AUDIT]]LOG]"
        );
        assert_eq!(table_names(&sql), [["dbo", "AUDIT]LOG"]]);
        assert_eq!(query.key_bounds(), None);
    }

    #[test]
    fn postgres_keyset_chunk_uses_limit() {
        let query = TableQuery::new(Dialect::Postgres, &lab_result());
        let after = [
            KeyValue::Int(7),
            KeyValue::Int(1),
            KeyValue::Text("NA".into()),
        ];
        assert_eq!(
            query.select(KeyRange::ALL, Some(&after), Some(100)),
            "SELECT \"ORDER_ID\", \"LINE\", \"COMPONENT\", CAST(\"VALUE\" AS text) AS \"VALUE\", \"REPORT\" \
             FROM \"dbo\".\"LAB RESULT\" WHERE ((\"ORDER_ID\" > 7) OR (\"ORDER_ID\" = 7 AND \
             \"LINE\" > 1) OR (\"ORDER_ID\" = 7 AND \"LINE\" = 1 AND \"COMPONENT\" > 'NA')) \
             ORDER BY \"ORDER_ID\", \"LINE\", \"COMPONENT\" LIMIT 100"
        );
    }
}
