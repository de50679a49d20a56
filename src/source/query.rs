//! Small result sets (catalog queries, counts) read whole as text.

use odbc_api::buffers::{BufferDesc, ColumnarDynBuffer};
use odbc_api::handles::AsStatementRef;
use odbc_api::{Connection, Cursor};

use super::Source;
use super::statement::with_all_records;
use crate::error::{Error, Result};
use crate::source::delivery::FetchBuffer;

/// Longest catalog value read (names are at most 128 characters on SQL Server, 63 bytes on
/// PostgreSQL; type names and version strings are short).
const MAX_CATALOG_TEXT: usize = 1024;
const ROWS_PER_FETCH: usize = 500;

/// Runs `sql` and returns every row as text, NULL as `None`. UTF-16 buffers, so non-ASCII names
/// arrive intact whatever the client code page. Only for result sets known to be small.
/// `doing` says what the query is for, as the context of its errors ("reading the columns").
pub(crate) fn query_text(
    source: &Source,
    connection: &Connection<'_>,
    doing: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>> {
    let fail = |e: odbc_api::Error| source.db_error(doing, &e);
    let mut statement = connection.preallocate().map_err(fail)?;
    let error = match statement.execute(&source.sql(sql), ()) {
        Ok(Some(cursor)) => return text_rows(cursor, doing, &fail),
        Ok(None) => return Ok(Vec::new()),
        Err(error) => error,
    };
    Err(fail(with_all_records(&statement.as_stmt_ref(), error)))
}

/// Every row of `cursor` as text; a value the driver did not deliver (a count, a key bound) is
/// an error, never a NULL.
pub(crate) fn text_rows(
    mut cursor: impl Cursor,
    doing: &str,
    fail: &dyn Fn(odbc_api::Error) -> Error,
) -> Result<Vec<Vec<Option<String>>>> {
    let columns = usize::try_from(cursor.num_result_cols().map_err(fail)?).unwrap_or(0);
    let descs = (0..columns).map(|_| BufferDesc::WText {
        max_str_len: MAX_CATALOG_TEXT,
    });
    let buffer = FetchBuffer::new(ColumnarDynBuffer::from_descs(ROWS_PER_FETCH, descs));
    let mut block = cursor.bind_buffer(buffer).map_err(fail)?;
    let mut rows = Vec::new();
    // A catalog value longer than the buffer is an error too, never cut.
    while let Some(batch) = block.fetch_with_truncation_check(true).map_err(fail)? {
        if let Some(missing) = batch.undelivered() {
            return Err(Error::Discovery(
                missing.describe(doing, &|i| Some(format!("{}", i + 1))),
            ));
        }
        for row in 0..batch.num_rows() {
            let values = (0..columns)
                .map(|col| {
                    batch
                        .column(col)
                        .as_wide_text()
                        .and_then(|text| text.get(row))
                        .map(String::from_utf16_lossy)
                })
                .collect();
            rows.push(values);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_value_is_read_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = serde_json::json!({
            "connection_string": format!(
                "Driver={{SQLite3}};Database={};StepAPI=1",
                dir.path().join("q.db").display()
            )
        });
        let config = crate::config::Config::from_json(
            &config.to_string(),
            &dir.path().join("config.json"),
            dir.path(),
            &|_| None,
        )
        .expect("config");
        let source = Source::from_config(&config);
        let connection = source.connect().expect("connect");
        let rows = query_text(&source, &connection, "reading names", "SELECT 'ü€😀', NULL")
            .expect("short values");
        assert_eq!(rows, [[Some("ü€😀".to_owned()), None]]);
        // 1,200 characters do not fit the 1,024 of a catalog value: an error, not a cut value.
        let long = query_text(
            &source,
            &connection,
            "reading names",
            "SELECT hex(randomblob(600))",
        );
        let error = long
            .expect_err("a value longer than the buffer")
            .to_string();
        assert!(error.starts_with("reading names: "), "{error}");
    }
}
