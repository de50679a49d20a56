//! The statements of incremental loads: upper bounds, cursor ranges, change tracking reads and
//! key scans. Positions come from the state file and the database; each is checked for its
//! form before it becomes a literal.

use crate::model::Dialect;
use crate::source::catalog::{Column, Table};
use crate::source::select::TableQuery;
use crate::source::types::qualified_select_expression;

use super::{CursorKind, OP_COLUMN, SyncMode};

/// The alias of `CHANGETABLE(...)` and of the table joined to it.
const CHANGES: &str = "ct";
const ROWS: &str = "t";

/// SQL Server: every table with change tracking enabled and the oldest version its history
/// still holds. (`CHANGE_TRACKING_MIN_VALID_VERSION` is NULL without VIEW CHANGE TRACKING.)
pub const CHANGE_TRACKING_TABLES: &str = "SELECT s.name AS schema_name, t.name AS table_name, \
     CHANGE_TRACKING_MIN_VALID_VERSION(t.object_id) AS min_valid_version \
     FROM sys.change_tracking_tables AS ctt \
     JOIN sys.tables AS t ON t.object_id = ctt.object_id \
     JOIN sys.schemas AS s ON s.schema_id = t.schema_id";

/// A saved or captured position that cannot be used as a literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the saved position of column '{column}' is not a valid {kind} value; run `ehi-sync sync \
     --restart` to reload the table"
)]
pub(crate) struct InvalidPosition {
    pub(crate) column: String,
    pub(crate) kind: &'static str,
}

/// The statement that captures a load's upper bound when the table starts: the change tracking
/// version (with the table's minimum valid version), `MIN_ACTIVE_ROWVERSION()`, or the cursor
/// column's highest value. `None` for full mode.
pub(crate) fn upper_bound(dialect: Dialect, table: &Table, mode: &SyncMode) -> Option<String> {
    let from = dialect.qualified_table(&table.schema, &table.name);
    match mode {
        SyncMode::Full { .. } => None,
        SyncMode::ChangeTracking => Some(format!(
            "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version, \
             CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID({})) AS min_valid_version",
            dialect.string_literal(&from)
        )),
        SyncMode::Cursor {
            kind: CursorKind::Rowversion,
            ..
        } => Some(
            "SELECT CONVERT(varchar(18), MIN_ACTIVE_ROWVERSION(), 1) AS upper_bound".to_owned(),
        ),
        SyncMode::Cursor { column, .. } => {
            let column = dialect.quote_identifier(column);
            Some(match dialect {
                // psqlODBC would re-print a timestamp through a struct and drop its offset.
                Dialect::Postgres => {
                    format!("SELECT CAST(MAX({column}) AS text) AS upper_bound FROM {from}")
                }
                Dialect::SqlServer | Dialect::Sqlite => {
                    format!("SELECT MAX({column}) AS upper_bound FROM {from}")
                }
            })
        }
    }
}

/// The rows of a cursor load: changed after `from` (less the lookback window for timestamps)
/// and at most `to`. Rowversion ranges are half-open, `[from, to)`, because
/// `MIN_ACTIVE_ROWVERSION()` is the first value not yet committed. A table that had no cursor
/// value when it started (`to` is `None`) has nothing to read.
pub(crate) fn cursor_filter(
    dialect: Dialect,
    column: &Column,
    kind: CursorKind,
    from: Option<&str>,
    to: Option<&str>,
    lookback_minutes: u32,
) -> Result<String, InvalidPosition> {
    let Some(to) = to else {
        return Ok("1 = 0".to_owned());
    };
    let quoted = dialect.quote_identifier(&column.name);
    let invalid = || InvalidPosition {
        column: column.name.clone(),
        kind: kind.name(),
    };
    let (lower, upper) = match kind {
        CursorKind::Rowversion => {
            let hex = |v: &str| rowversion_literal(v).ok_or_else(invalid);
            (
                from.map(|f| Ok::<_, InvalidPosition>(format!("{quoted} >= {}", hex(f)?)))
                    .transpose()?,
                format!("{quoted} < {}", hex(to)?),
            )
        }
        CursorKind::Integer => {
            let int = |v: &str| v.trim().parse::<i64>().map_err(|_| invalid());
            (
                from.map(|f| Ok::<_, InvalidPosition>(format!("{quoted} > {}", int(f)?)))
                    .transpose()?,
                format!("{quoted} <= {}", int(to)?),
            )
        }
        CursorKind::Timestamp => {
            let value = |v: &str| timestamp_literal(dialect, column, v);
            let lower = from.map(|f| {
                let start = value(f);
                let start = match (dialect, lookback_minutes) {
                    (_, 0) => start,
                    (Dialect::SqlServer, m) => format!("DATEADD(MINUTE, -{m}, {start})"),
                    (Dialect::Postgres, m) => format!("{start} - INTERVAL '{m} minutes'"),
                    (Dialect::Sqlite, m) => format!(
                        "strftime('%Y-%m-%d %H:%M:%f', {}, '-{m} minutes')",
                        dialect.string_literal(f)
                    ),
                };
                format!("{quoted} > {start}")
            });
            (lower, format!("{quoted} <= {}", value(to)))
        }
    };
    Ok(match lower {
        Some(lower) => format!("{lower} AND {upper}"),
        None => upper,
    })
}

/// `0x00000000000007D1` for a rowversion as SQL Server's `CONVERT(varchar, rv, 1)` prints it.
fn rowversion_literal(value: &str) -> Option<String> {
    let digits = value
        .trim()
        .strip_prefix("0x")
        .or(value.trim().strip_prefix("0X"))?;
    let valid =
        !digits.is_empty() && digits.len() <= 16 && digits.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("0x{}", digits.to_ascii_uppercase()))
}

/// A date/time value as a typed literal of the column's type, so the comparison uses the
/// column's index and not a conversion of every row.
fn timestamp_literal(dialect: Dialect, column: &Column, value: &str) -> String {
    let text = dialect.string_literal(value);
    match dialect {
        Dialect::SqlServer => {
            let target = if column.source_type.eq_ignore_ascii_case("datetimeoffset") {
                "datetimeoffset(7)"
            } else {
                "datetime2(7)"
            };
            format!("CAST({text} AS {target})")
        }
        Dialect::Postgres => format!("CAST({text} AS {})", column.source_type),
        Dialect::Sqlite => text,
    }
}

/// The change tracking read (SQL Server): every key changed after version `from` up to `to`,
/// joined back to the table for the current row. A key whose row is gone is a delete; its
/// other columns are NULL. The op is the last column of the select list, an `INT` (1 delete,
/// 0 upsert) so it reads the same through the narrow and the wide ODBC functions.
///
/// The changes are read as one statement in key order without `TOP`: `CHANGETABLE(CHANGES …)`
/// is evaluated again by every statement, so keyset chunks would cost time quadratic in the
/// number of changes. A retry resumes after the last key sent (one more evaluation).
pub(crate) fn change_tracking_query(table: &Table, from: i64, to: i64) -> TableQuery {
    let dialect = Dialect::SqlServer;
    let name = dialect.qualified_table(&table.schema, &table.name);
    let changes = dialect.quote_identifier(CHANGES);
    let rows = dialect.quote_identifier(ROWS);
    let key: Vec<String> = table
        .primary_key
        .iter()
        .map(|k| format!("{changes}.{}", dialect.quote_identifier(k)))
        .collect();
    let join = table
        .primary_key
        .iter()
        .map(|k| {
            let k = dialect.quote_identifier(k);
            format!("{rows}.{k} = {changes}.{k}")
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut select: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let qualifier = if c.key_position.is_some() {
                CHANGES
            } else {
                ROWS
            };
            qualified_select_expression(dialect, c, Some(qualifier))
        })
        .collect();
    let first_key = dialect.quote_identifier(table.primary_key.first().map_or("", |k| k));
    select.push(format!(
        "CAST(CASE WHEN {rows}.{first_key} IS NULL THEN 1 ELSE 0 END AS INT) AS {}",
        dialect.quote_identifier(OP_COLUMN)
    ));
    TableQuery::from_parts(
        dialect,
        table,
        format!(
            "CHANGETABLE(CHANGES {name}, {from}) AS {changes} LEFT OUTER JOIN {name} AS {rows} \
             ON {join}"
        ),
        select.join(", "),
        key,
        Some(format!("{changes}.[SYS_CHANGE_VERSION] <= {to}")),
    )
}

/// Change tracking's count of inserts, updates and deletes in the range; their sum is the
/// load's expected row count.
pub(crate) fn change_tracking_counts(table: &Table, from: i64, to: i64) -> String {
    let dialect = Dialect::SqlServer;
    let name = dialect.qualified_table(&table.schema, &table.name);
    format!(
        "SELECT [ct].[SYS_CHANGE_OPERATION] AS operation, COUNT_BIG(*) AS row_count \
         FROM CHANGETABLE(CHANGES {name}, {from}) AS [ct] \
         WHERE [ct].[SYS_CHANGE_VERSION] <= {to} GROUP BY [ct].[SYS_CHANGE_OPERATION]"
    )
}

/// Every key of the table, in the order of the key as declared: the primary key index serves it
/// without a sort, and the comparison with the previous key list depends on no order (see
/// `key_diff`), so no `COLLATE` is needed that would make the server sort every key in tempdb.
pub(crate) fn key_scan(dialect: Dialect, table: &Table) -> String {
    let key = table
        .primary_key
        .iter()
        .map(|k| dialect.quote_identifier(k))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {key} FROM {} ORDER BY {key}",
        dialect.qualified_table(&table.schema, &table.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyRange, KeyValue};
    use crate::source::tsql_test::{parse, table_names};

    fn patient() -> Table {
        Table {
            schema: "dbo".into(),
            name: "PAT ENC".into(),
            columns: vec![
                Column::for_test("PAT_ID", "varchar", Some(1)),
                Column::for_test("LINE", "int", Some(2)),
                Column::for_test("NOTE", "xml", None),
                Column::for_test("UPDATE_DATE", "datetime", None),
                Column::for_test("RV", "timestamp", None),
            ],
            primary_key: vec!["PAT_ID".into(), "LINE".into()],
            rows: 10,
            rows_exact: true,
        }
    }

    /// sqlparser does not know `CHANGETABLE(CHANGES t, v)` (the CHANGES keyword); the clause is
    /// pinned by the exact text, the rest of the statement is parsed with it written as a
    /// plain table-valued function.
    fn parse_changetable(sql: &str) -> String {
        assert!(sql.contains("CHANGETABLE(CHANGES "), "{sql}");
        parse(&sql.replace("CHANGETABLE(CHANGES ", "CHANGETABLE("))
            .replace("CHANGETABLE(", "CHANGETABLE(CHANGES ")
    }

    #[test]
    fn change_tracking_tables_query() {
        assert_eq!(parse(CHANGE_TRACKING_TABLES), CHANGE_TRACKING_TABLES);
    }

    #[test]
    fn change_tracking_version_and_min_valid_version() {
        let sql = upper_bound(Dialect::SqlServer, &patient(), &SyncMode::ChangeTracking).unwrap();
        assert_eq!(
            sql,
            "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version, \
             CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'[dbo].[PAT ENC]')) AS min_valid_version"
        );
        assert_eq!(parse(&sql), sql);
    }

    #[test]
    fn change_tracking_read_joins_back_and_marks_deletes_as_an_integer() {
        let query = change_tracking_query(&patient(), 41, 57);
        let plan = crate::plan::partition::change_tracking_read();
        let limit = crate::plan::partition::rows_per_statement(plan[0].mode, 5000);
        let sql = query.select(plan[0].range, None, limit).sql;
        let expected = "SELECT [ct].[PAT_ID] AS [PAT_ID], [ct].[LINE] AS [LINE], \
             CAST([t].[NOTE] AS NVARCHAR(MAX)) AS [NOTE], [t].[UPDATE_DATE] AS [UPDATE_DATE], \
             [t].[RV] AS [RV], CAST(CASE WHEN [t].[PAT_ID] IS NULL THEN 1 ELSE 0 END AS INT) \
             AS [_ehi_op] FROM CHANGETABLE(CHANGES [dbo].[PAT ENC], 41) AS [ct] LEFT OUTER JOIN \
             [dbo].[PAT ENC] AS [t] ON [t].[PAT_ID] = [ct].[PAT_ID] AND [t].[LINE] = [ct].[LINE] \
             WHERE [ct].[SYS_CHANGE_VERSION] <= 57 ORDER BY [ct].[PAT_ID], [ct].[LINE]";
        assert_eq!(sql, expected);
        assert_eq!(parse_changetable(&sql), expected);
        // A retry reads on after the last key sent, still in one statement.
        let after = [KeyValue::Text("Z'1".into()), KeyValue::Int(3)];
        let resumed = query.select(plan[0].range, Some(&after), limit).sql;
        assert_eq!(
            resumed,
            expected.replace(
                "WHERE [ct].[SYS_CHANGE_VERSION] <= 57 ORDER BY",
                "WHERE [ct].[SYS_CHANGE_VERSION] <= 57 AND (([ct].[PAT_ID] > ?) OR \
                 ([ct].[PAT_ID] = ? AND [ct].[LINE] > ?)) ORDER BY"
            )
        );
        assert_eq!(parse_changetable(&resumed), resumed);
    }

    #[test]
    fn change_tracking_counts_by_operation() {
        let sql = change_tracking_counts(&patient(), 41, 57);
        assert_eq!(
            sql,
            "SELECT [ct].[SYS_CHANGE_OPERATION] AS operation, COUNT_BIG(*) AS row_count FROM \
             CHANGETABLE(CHANGES [dbo].[PAT ENC], 41) AS [ct] WHERE [ct].[SYS_CHANGE_VERSION] <= \
             57 GROUP BY [ct].[SYS_CHANGE_OPERATION]"
        );
        assert_eq!(parse_changetable(&sql), sql);
    }

    #[test]
    fn rowversion_range_is_half_open_up_to_min_active_rowversion() {
        let rv = Column::for_test("RV", "timestamp", None);
        let mode = SyncMode::Cursor {
            column: "RV".into(),
            kind: CursorKind::Rowversion,
        };
        let bound = upper_bound(Dialect::SqlServer, &patient(), &mode).unwrap();
        assert_eq!(
            parse(&bound),
            "SELECT CONVERT(VARCHAR(18), MIN_ACTIVE_ROWVERSION(), 1) AS upper_bound"
        );
        let filter = cursor_filter(
            Dialect::SqlServer,
            &rv,
            CursorKind::Rowversion,
            Some("0x00000000000007d1"),
            Some("0x0000000000000900"),
            15,
        )
        .unwrap();
        assert_eq!(
            filter,
            "[RV] >= 0x00000000000007D1 AND [RV] < 0x0000000000000900"
        );
        let query = crate::source::select::TableQuery::new(Dialect::SqlServer, &patient())
            .filtered(Some(filter));
        let sql = query.select(KeyRange::ALL, None, Some(1000)).sql;
        assert_eq!(
            parse(&sql),
            "SELECT TOP (1000) [PAT_ID], [LINE], CAST([NOTE] AS NVARCHAR(MAX)) AS [NOTE], \
             [UPDATE_DATE], [RV] FROM [dbo].[PAT ENC] WHERE [RV] >= X'00000000000007D1' AND \
             [RV] < X'0000000000000900' ORDER BY [PAT_ID], [LINE]"
        );
        assert_eq!(table_names(&sql), [["dbo", "PAT ENC"]]);
        assert!(
            cursor_filter(
                Dialect::SqlServer,
                &rv,
                CursorKind::Rowversion,
                Some("0x1; DROP TABLE x"),
                Some("0x2"),
                0
            )
            .is_err()
        );
    }

    #[test]
    fn sqlserver_timestamp_cursor_with_lookback() {
        let mode = SyncMode::Cursor {
            column: "UPDATE_DATE".into(),
            kind: CursorKind::Timestamp,
        };
        let bound = upper_bound(Dialect::SqlServer, &patient(), &mode).unwrap();
        assert_eq!(
            parse(&bound),
            "SELECT MAX([UPDATE_DATE]) AS upper_bound FROM [dbo].[PAT ENC]"
        );
        let filter = cursor_filter(
            Dialect::SqlServer,
            &Column::for_test("UPDATE_DATE", "datetime", None),
            CursorKind::Timestamp,
            Some("2026-11-24 01:00:00.123"),
            Some("2026-11-25 01:00:00.457"),
            15,
        )
        .unwrap();
        assert_eq!(
            filter,
            "[UPDATE_DATE] > DATEADD(MINUTE, -15, CAST(N'2026-11-24 01:00:00.123' AS \
             datetime2(7))) AND [UPDATE_DATE] <= CAST(N'2026-11-25 01:00:00.457' AS datetime2(7))"
        );
        let query = TableQuery::new(Dialect::SqlServer, &patient()).filtered(Some(filter));
        for sql in [
            query.count(),
            query.select(KeyRange::ALL, None, None).sql,
            query.key_bounds().unwrap(),
        ] {
            assert_eq!(parse(&sql), sql);
        }
        assert_eq!(
            query.count(),
            "SELECT COUNT_BIG(*) AS row_count FROM [dbo].[PAT ENC] WHERE [UPDATE_DATE] > \
             DATEADD(MINUTE, -15, CAST(N'2026-11-24 01:00:00.123' AS datetime2(7))) AND \
             [UPDATE_DATE] <= CAST(N'2026-11-25 01:00:00.457' AS datetime2(7))"
        );
        let offset = cursor_filter(
            Dialect::SqlServer,
            &Column::for_test("CHANGED", "datetimeoffset", None),
            CursorKind::Timestamp,
            None,
            Some("2026-11-25 01:00:00.1234567 +01:00"),
            15,
        )
        .unwrap();
        assert_eq!(
            offset,
            "[CHANGED] <= CAST(N'2026-11-25 01:00:00.1234567 +01:00' AS datetimeoffset(7))"
        );
    }

    #[test]
    fn integer_cursor_and_empty_table() {
        let c = Column::for_test("SEQ", "bigint", None);
        assert_eq!(
            cursor_filter(
                Dialect::SqlServer,
                &c,
                CursorKind::Integer,
                Some("10"),
                Some("99"),
                15
            )
            .unwrap(),
            "[SEQ] > 10 AND [SEQ] <= 99"
        );
        assert_eq!(
            cursor_filter(
                Dialect::SqlServer,
                &c,
                CursorKind::Integer,
                Some("10"),
                None,
                0
            )
            .unwrap(),
            "1 = 0"
        );
        assert!(
            cursor_filter(
                Dialect::SqlServer,
                &c,
                CursorKind::Integer,
                Some("1 OR 1=1"),
                Some("2"),
                0
            )
            .is_err()
        );
    }

    #[test]
    fn postgres_timestamp_cursor() {
        let c = Column::for_test("updated_at", "timestamp with time zone", None);
        assert_eq!(
            cursor_filter(
                Dialect::Postgres,
                &c,
                CursorKind::Timestamp,
                Some("2026-11-24 01:00:00.123456+00"),
                Some("2026-11-25 01:00:00+00"),
                5
            )
            .unwrap(),
            "\"updated_at\" > CAST('2026-11-24 01:00:00.123456+00' AS timestamp with time zone) \
             - INTERVAL '5 minutes' AND \"updated_at\" <= CAST('2026-11-25 01:00:00+00' AS \
             timestamp with time zone)"
        );
    }

    #[test]
    fn key_scan_reads_the_key_in_its_own_index_order() {
        let sql = key_scan(Dialect::SqlServer, &patient());
        assert_eq!(
            sql,
            "SELECT [PAT_ID], [LINE] FROM [dbo].[PAT ENC] ORDER BY [PAT_ID], [LINE]"
        );
        assert_eq!(parse(&sql), sql);
        assert_eq!(table_names(&sql), [["dbo", "PAT ENC"]]);
        // A uniqueidentifier key is read as it is: no conversion that would hide the index.
        let mut guid = patient();
        guid.columns[0].source_type = "uniqueidentifier".into();
        assert_eq!(key_scan(Dialect::SqlServer, &guid), sql);
        let mut pg = patient();
        pg.columns[0].source_type = "character varying".into();
        assert_eq!(
            key_scan(Dialect::Postgres, &pg),
            "SELECT \"PAT_ID\", \"LINE\" FROM \"dbo\".\"PAT ENC\" ORDER BY \"PAT_ID\", \"LINE\""
        );
    }
}
