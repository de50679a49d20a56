//! The statements that read a table: key-range and keyset SELECTs, bounds and exact counts.
//!
//! Never OFFSET: a partition is a range of the leading key column, and a resumed partition adds
//! a keyset condition on the whole key, spelled out by hand because T-SQL has no row-value
//! comparison: `(a > @a) OR (a = @a AND b > @b)`.

use odbc_api::parameter::InputParameter;

use super::key::{KeyMismatch, KeyType};
use crate::model::{Dialect, KeyRange, KeyValue};
use crate::source::catalog::Table;
use crate::source::types::select_expression;

/// One statement and its parameters: key values bound in the key column's own type. The text
/// depends only on the statement's shape (range bounds present, resumed or not), so the server
/// compiles it once per table and shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Select {
    pub(crate) sql: String,
    /// In marker order: the key column's name, its type and the value.
    pub(crate) params: Vec<(String, KeyType, KeyValue)>,
}

impl Select {
    /// The typed ODBC parameters, in marker order.
    pub(crate) fn parameters(&self) -> Result<Vec<Box<dyn InputParameter>>, KeyMismatch> {
        self.params
            .iter()
            .map(|(column, key_type, value)| {
                key_type.parameter(value).ok_or_else(|| KeyMismatch {
                    column: column.clone(),
                })
            })
            .collect()
    }
}

/// Everything needed to write the SELECT statements of one table.
#[derive(Debug, Clone)]
pub(crate) struct TableQuery {
    dialect: Dialect,
    from: String,
    select_list: String,
    key: Vec<String>,
    /// The key columns' names and types, in key order.
    key_columns: Vec<(String, KeyType)>,
    /// A condition every statement adds: an incremental read's cursor or version range.
    filter: Option<String>,
}

impl TableQuery {
    pub(crate) fn new(dialect: Dialect, table: &Table) -> TableQuery {
        let select_list = table
            .columns
            .iter()
            .map(|c| select_expression(dialect, c))
            .collect::<Vec<_>>()
            .join(", ");
        let key_columns = key_columns(dialect, table);
        TableQuery {
            dialect,
            from: dialect.qualified_table(&table.schema, &table.name),
            select_list,
            key: key_columns
                .iter()
                .map(|(k, _)| dialect.quote_identifier(k))
                .collect(),
            key_columns,
            filter: None,
        }
    }

    /// A query over any row source: `from` is a FROM clause (a table, or a join), `key` the
    /// key expressions in order (of the key columns of `table`), `filter` a condition every
    /// statement adds.
    pub(crate) fn from_parts(
        dialect: Dialect,
        table: &Table,
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
            key_columns: key_columns(dialect, table),
            filter,
        }
    }

    /// The same query restricted to the rows matching `filter`.
    pub(crate) fn filtered(mut self, filter: Option<String>) -> TableQuery {
        self.filter = filter;
        self
    }

    /// One statement reading `range` in key order, after `after` (the last key already sent),
    /// at most `limit` rows. A table without key reads everything in the order the server
    /// chooses.
    pub(crate) fn select(
        &self,
        range: KeyRange,
        after: Option<&[KeyValue]>,
        limit: Option<u64>,
    ) -> Select {
        let mut conditions: Vec<String> = self.filter.iter().cloned().collect();
        let mut params = Vec::new();
        if let (Some(first), Some((name, key_type))) = (self.key.first(), self.key_columns.first())
        {
            let marker = key_type.marker(self.dialect);
            for (bound, operator) in [(range.lower_exclusive, ">"), (range.upper_inclusive, "<=")] {
                if let Some(bound) = bound {
                    conditions.push(format!("{first} {operator} {marker}"));
                    params.push((name.clone(), key_type.clone(), key_type.bound(bound)));
                }
            }
        }
        if let Some(after) = after {
            conditions.push(self.keyset_after(after, &mut params));
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
        Select { sql, params }
    }

    /// `(a > ?) OR (a = ? AND b > ?) OR ...` for the key columns present in `after`, adding
    /// the values in marker order.
    fn keyset_after(
        &self,
        after: &[KeyValue],
        params: &mut Vec<(String, KeyType, KeyValue)>,
    ) -> String {
        let n = after.len().min(self.key.len()).min(self.key_columns.len());
        let terms: Vec<String> = (0..n)
            .map(|i| {
                let parts: Vec<String> = (0..=i)
                    .map(|j| {
                        let (name, key_type) = &self.key_columns[j];
                        params.push((name.clone(), key_type.clone(), after[j].clone()));
                        let operator = if j == i { ">" } else { "=" };
                        format!(
                            "{} {operator} {}",
                            self.key[j],
                            key_type.marker(self.dialect)
                        )
                    })
                    .collect();
                format!("({})", parts.join(" AND "))
            })
            .collect();
        format!("({})", terms.join(" OR "))
    }

    /// The names and types of the key columns, in key order.
    pub(crate) fn key_columns(&self) -> &[(String, KeyType)] {
        &self.key_columns
    }

    /// Lowest and highest value of the leading key column: two index seeks on a clustered key.
    pub(crate) fn key_bounds(&self) -> Option<String> {
        let first = self.key.first()?;
        Some(format!(
            "SELECT MIN({first}) AS min_key, MAX({first}) AS max_key FROM {}{}",
            self.from,
            self.where_filter()
        ))
    }

    /// The exact row count taken when a table starts, for its validation record.
    pub(crate) fn count(&self) -> String {
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

/// The name and key type of each primary key column of `table`; empty when one of them has a
/// type that cannot be a resume point (the table is then read as one stream).
fn key_columns(dialect: Dialect, table: &Table) -> Vec<(String, KeyType)> {
    table
        .primary_key
        .iter()
        .map(|k| {
            let column = table.columns.iter().find(|c| &c.name == k)?;
            Some((k.clone(), KeyType::of(dialect, column)?))
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyRange, KeyValue};
    use crate::source::catalog::Column;
    use crate::source::key::IntegerType;
    use crate::source::tsql_test::{parse, table_names};
    use odbc_api::DataType;
    use std::num::NonZeroUsize;

    fn lab_result() -> Table {
        let mut component = Column::for_test("COMPONENT", "varchar", Some(3));
        component.length = Some(30);
        Table {
            schema: "dbo".into(),
            name: "LAB RESULT".into(),
            columns: vec![
                Column::for_test("ORDER_ID", "bigint", Some(1)),
                Column::for_test("LINE", "int", Some(2)),
                component,
                Column::for_test("VALUE", "decimal", None),
                Column::for_test("REPORT", "xml", None),
            ],
            primary_key: vec!["ORDER_ID".into(), "LINE".into(), "COMPONENT".into()],
            rows: 10,
            rows_exact: true,
        }
    }

    /// A Clarity flowsheet shape: a numeric(18,0) encounter id, a float date and a varchar.
    fn flowsheet() -> Table {
        let mut csn = Column::for_test("PAT_ENC_CSN_ID", "numeric", Some(1));
        csn.precision = Some(18);
        csn.scale = Some(0);
        let mut pat = Column::for_test("PAT_ID", "varchar", Some(3));
        pat.length = Some(18);
        Table {
            schema: "dbo".into(),
            name: "IP_FLWSHT_MEAS".into(),
            columns: vec![
                csn,
                Column::for_test("MEAS_DATE_REAL", "float", Some(2)),
                pat,
                Column::for_test("MEAS_VALUE", "varchar", None),
            ],
            primary_key: vec![
                "PAT_ENC_CSN_ID".into(),
                "MEAS_DATE_REAL".into(),
                "PAT_ID".into(),
            ],
            rows: 10,
            rows_exact: false,
        }
    }

    fn data_types(select: &Select) -> Vec<DataType> {
        select
            .parameters()
            .expect("every value fits its type")
            .iter()
            .map(|p| p.data_type())
            .collect()
    }

    #[test]
    fn sqlserver_key_range_partition() {
        let query = TableQuery::new(Dialect::SqlServer, &lab_result());
        let range = KeyRange {
            lower_exclusive: Some(1000),
            upper_inclusive: Some(2000),
        };
        let select = query.select(range, None, None);
        assert_eq!(
            select.sql,
            "SELECT [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[LAB RESULT] \
             WHERE [ORDER_ID] > ? AND [ORDER_ID] <= ? ORDER BY [ORDER_ID], [LINE], [COMPONENT]"
        );
        assert_eq!(parse(&select.sql), select.sql);
        let values: Vec<&KeyValue> = select.params.iter().map(|(_, _, v)| v).collect();
        assert_eq!(values, [&KeyValue::Int(1000), &KeyValue::Int(2000)]);
        assert_eq!(data_types(&select), [DataType::BigInt, DataType::BigInt]);
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
        let select = query.select(range, Some(&after), None);
        assert_eq!(
            select.sql,
            "SELECT [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[LAB RESULT] \
             WHERE [ORDER_ID] <= ? AND (([ORDER_ID] > ?) OR ([ORDER_ID] = ? AND [LINE] > ?) \
             OR ([ORDER_ID] = ? AND [LINE] = ? AND [COMPONENT] > ?)) \
             ORDER BY [ORDER_ID], [LINE], [COMPONENT]"
        );
        assert_eq!(parse(&select.sql), select.sql);
        let varchar = DataType::Varchar {
            length: NonZeroUsize::new(30),
        };
        assert_eq!(
            data_types(&select),
            [
                DataType::BigInt,
                DataType::BigInt,
                DataType::BigInt,
                DataType::Integer,
                DataType::BigInt,
                DataType::Integer,
                varchar,
            ]
        );
        // The same text for every resume point: one plan on the server.
        let other = [
            KeyValue::Int(1),
            KeyValue::Int(1),
            KeyValue::Text("A".into()),
        ];
        assert_eq!(query.select(range, Some(&other), None).sql, select.sql);
    }

    #[test]
    fn sqlserver_keyset_chunk_uses_top() {
        let query = TableQuery::new(Dialect::SqlServer, &lab_result());
        let after = [
            KeyValue::Int(7),
            KeyValue::Int(1),
            KeyValue::Text("NA".into()),
        ];
        let select = query.select(KeyRange::ALL, Some(&after), Some(5000));
        assert!(
            select.sql.starts_with("SELECT TOP (5000) [ORDER_ID], "),
            "{}",
            select.sql
        );
        assert!(!select.sql.contains("OFFSET"));
        assert_eq!(parse(&select.sql), select.sql);
        let first_chunk = query.select(KeyRange::ALL, None, Some(5000));
        assert!(first_chunk.params.is_empty());
        assert_eq!(
            parse(&first_chunk.sql),
            "SELECT TOP (5000) [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[LAB RESULT] \
             ORDER BY [ORDER_ID], [LINE], [COMPONENT]"
        );
    }

    #[test]
    fn sqlserver_clarity_keys_bind_in_their_own_types() {
        let query = TableQuery::new(Dialect::SqlServer, &flowsheet());
        let range = KeyRange {
            lower_exclusive: Some(100),
            upper_inclusive: Some(200),
        };
        let after = [
            KeyValue::Decimal("150".into()),
            KeyValue::Float(45000.25f64.to_bits()),
            KeyValue::Text("Z123".into()),
        ];
        let select = query.select(range, Some(&after), Some(1000));
        assert_eq!(
            select.sql,
            "SELECT TOP (1000) [PAT_ENC_CSN_ID], [MEAS_DATE_REAL], [PAT_ID], [MEAS_VALUE] \
             FROM [dbo].[IP_FLWSHT_MEAS] WHERE [PAT_ENC_CSN_ID] > ? AND [PAT_ENC_CSN_ID] <= ? \
             AND (([PAT_ENC_CSN_ID] > ?) OR ([PAT_ENC_CSN_ID] = ? AND [MEAS_DATE_REAL] > ?) \
             OR ([PAT_ENC_CSN_ID] = ? AND [MEAS_DATE_REAL] = ? AND [PAT_ID] > ?)) \
             ORDER BY [PAT_ENC_CSN_ID], [MEAS_DATE_REAL], [PAT_ID]"
        );
        assert_eq!(parse(&select.sql), select.sql);
        let numeric = DataType::Numeric {
            precision: 18,
            scale: 0,
        };
        let varchar = DataType::Varchar {
            length: NonZeroUsize::new(18),
        };
        assert_eq!(
            data_types(&select),
            [
                numeric,
                numeric,
                numeric,
                numeric,
                DataType::Double,
                numeric,
                DataType::Double,
                varchar
            ]
        );
        assert_eq!(
            select.params[0].2,
            KeyValue::Decimal("100".into()),
            "integer range bounds of a numeric key are numerics"
        );
        // A value of another type is refused, naming the column.
        let wrong = [KeyValue::Text("x".into())];
        let error = query
            .select(KeyRange::ALL, Some(&wrong), None)
            .parameters()
            .err()
            .expect("refused");
        assert_eq!(error.column, "PAT_ENC_CSN_ID");
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
        let select = query.select(KeyRange::ALL, None, None);
        assert_eq!(
            select.sql,
            "SELECT [ORDER_ID], [LINE], [COMPONENT], [VALUE], \
             CAST([REPORT] AS NVARCHAR(MAX)) AS [REPORT] FROM [dbo].[AUDIT]]LOG]"
        );
        assert_eq!(table_names(&select.sql), [["dbo", "AUDIT]LOG"]]);
        assert_eq!(query.key_bounds(), None);
    }

    /// (`int` is no PostgreSQL catalog type name: such a key is bound as text and converted.)
    #[test]
    fn postgres_keyset_chunk_uses_limit() {
        let query = TableQuery::new(Dialect::Postgres, &lab_result());
        let after = [
            KeyValue::Int(7),
            KeyValue::Int(1),
            KeyValue::Text("NA".into()),
        ];
        let select = query.select(KeyRange::ALL, Some(&after), Some(100));
        assert_eq!(
            select.sql,
            "SELECT \"ORDER_ID\", \"LINE\", \"COMPONENT\", CAST(\"VALUE\" AS text) AS \"VALUE\", \"REPORT\" \
             FROM \"dbo\".\"LAB RESULT\" WHERE ((\"ORDER_ID\" > ?) OR (\"ORDER_ID\" = ? AND \
             \"LINE\" > CAST(? AS int)) OR (\"ORDER_ID\" = ? AND \"LINE\" = CAST(? AS int) \
             AND \"COMPONENT\" > ?)) \
             ORDER BY \"ORDER_ID\", \"LINE\", \"COMPONENT\" LIMIT 100"
        );
        assert_eq!(select.params.len(), 6);
        assert_eq!(
            select.params[1].1,
            KeyType::Integer(IntegerType::BigInt),
            "{:?}",
            select.params
        );
    }

    /// Every SQL Server key type in one composite key: each `?` is bound in the column's type,
    /// the three ODBC has no parameter type for are converted from text on the server, and the
    /// datetime bound (a datetime2 parameter to Driver 18) back to datetime.
    #[test]
    fn sqlserver_every_key_type_binds_in_its_own_type() {
        let column = |name: &str, t: &str, length: Option<i64>, scale: Option<i64>| {
            let mut c = Column::for_test(name, t, Some(1));
            c.length = length;
            c.scale = scale;
            c
        };
        let columns = vec![
            column("AT", "datetime", None, None),
            column("DAY", "date", None, None),
            column("ID", "uniqueidentifier", None, None),
            column("OFFSET", "datetimeoffset", None, Some(7)),
            column("CODE", "nchar", Some(4), None),
            column("HASH", "varbinary", Some(32), None),
            column("FLAG", "bit", None, None),
        ];
        let table = Table {
            schema: "dbo".into(),
            name: "T".into(),
            primary_key: columns.iter().map(|c| c.name.clone()).collect(),
            columns,
            rows: 1,
            rows_exact: true,
        };
        let query = TableQuery::new(Dialect::SqlServer, &table);
        let key_types: Vec<&KeyType> = query.key_columns().iter().map(|(_, t)| t).collect();
        let values: Vec<KeyValue> = [
            "2024-02-29 23:59:59.997",
            "2024-02-29",
            "6F9619FF-8B86-D011-B42D-00C04FD430C8",
            "2024-02-29 23:59:59.1234567 +01:00",
            "Ñ1  ",
        ]
        .iter()
        .zip(&key_types)
        .map(|(text, key_type)| {
            key_type
                .conform(KeyValue::Text((*text).to_owned()))
                .expect("conforms")
        })
        .chain([
            KeyValue::Binary(vec![0xde, 0xad]),
            KeyValue::Text("1".into()),
        ])
        .collect();
        let select = query.select(KeyRange::ALL, Some(&values), Some(10));
        assert!(
            select.sql.contains(
                "([AT] = CAST(? AS DATETIME) AND [DAY] = ? AND [ID] = ? AND [OFFSET] = CAST(? AS datetimeoffset(7)) \
                 AND [CODE] = ? AND [HASH] = ? AND [FLAG] > CAST(? AS BIT))"
            ),
            "{}",
            select.sql
        );
        assert_eq!(parse(&select.sql), select.sql);
        // Other values declare the same parameter types: one cached plan on the server.
        let mut other = values.clone();
        other[3] = KeyValue::Text("0001-01-01 00:00:00 +00:00".into());
        other[4] = KeyValue::Text("A".into());
        other[5] = KeyValue::Binary(vec![1; 20]);
        let other = query.select(KeyRange::ALL, Some(&other), Some(10));
        assert_eq!(
            (&other.sql, data_types(&other)),
            (&select.sql, data_types(&select))
        );
        let last_term = &data_types(&select)[21..];
        assert_eq!(
            last_term,
            [
                DataType::Other {
                    data_type: odbc_api::sys::SqlDataType::TIMESTAMP,
                    column_size: NonZeroUsize::new(23),
                    decimal_digits: 3
                },
                DataType::Date,
                DataType::Other {
                    data_type: odbc_api::sys::SqlDataType::EXT_GUID,
                    column_size: NonZeroUsize::new(36),
                    decimal_digits: 0
                },
                DataType::WVarchar {
                    length: NonZeroUsize::new(64)
                },
                DataType::WVarchar {
                    length: NonZeroUsize::new(4)
                },
                DataType::Varbinary {
                    length: NonZeroUsize::new(32)
                },
                DataType::WVarchar {
                    length: NonZeroUsize::new(64)
                },
            ]
        );
    }

    /// The statement shapes of one table: first and last range partitions, a middle one, each
    /// resumed; keyset first and resumed chunks. Each parses and has as many values as markers.
    #[test]
    fn sqlserver_statement_shapes_parse_with_their_markers() {
        let query = TableQuery::new(Dialect::SqlServer, &flowsheet());
        let after = [
            KeyValue::Decimal("5".into()),
            KeyValue::Float(1.0f64.to_bits()),
            KeyValue::Text("Z".into()),
        ];
        let ranges = [
            (None, Some(10)),
            (Some(10), Some(20)),
            (Some(20), None),
            (None, None),
        ];
        for (lower, upper) in ranges {
            let range = KeyRange {
                lower_exclusive: lower,
                upper_inclusive: upper,
            };
            for resumed in [None, Some(&after[..])] {
                for limit in [None, Some(100)] {
                    let select = query.select(range, resumed, limit);
                    assert_eq!(parse(&select.sql), select.sql);
                    assert_eq!(
                        select.sql.matches('?').count(),
                        select.params.len(),
                        "{}",
                        select.sql
                    );
                    assert_eq!(data_types(&select).len(), select.params.len());
                }
            }
        }
    }
}
