//! Small result sets (catalog queries, counts) read whole as text.

use odbc_api::buffers::{BufferDesc, ColumnarDynBuffer};
use odbc_api::handles::AsStatementRef;
use odbc_api::{Connection, Cursor};

use super::Source;
use super::statement::with_all_records;
use crate::error::Result;

/// Longest catalog value read (names are at most 128 characters on SQL Server, 63 bytes on
/// PostgreSQL; type names and version strings are short).
const MAX_CATALOG_TEXT: usize = 1024;
const ROWS_PER_FETCH: usize = 500;

/// Runs `sql` and returns every row as text, NULL as `None`. UTF-16 buffers, so non-ASCII names
/// arrive intact whatever the client code page. Only for result sets known to be small.
/// `doing` says what the query is for, as the context of its errors ("reading the columns").
pub fn query_text(
    source: &Source,
    connection: &Connection<'_>,
    doing: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>> {
    let fail = |e: odbc_api::Error| source.db_error(doing, &e);
    let mut statement = connection.preallocate().map_err(fail)?;
    let error = match statement.execute(sql, ()) {
        Ok(Some(cursor)) => return read_all(cursor).map_err(fail),
        Ok(None) => return Ok(Vec::new()),
        Err(error) => error,
    };
    Err(fail(with_all_records(&statement.as_stmt_ref(), error)))
}

/// Every row of `cursor` as text.
fn read_all(mut cursor: impl Cursor) -> Result<Vec<Vec<Option<String>>>, odbc_api::Error> {
    let columns = usize::try_from(cursor.num_result_cols()?).unwrap_or(0);
    let descs = (0..columns).map(|_| BufferDesc::WText {
        max_str_len: MAX_CATALOG_TEXT,
    });
    let buffer = ColumnarDynBuffer::from_descs(ROWS_PER_FETCH, descs);
    let mut block = cursor.bind_buffer(buffer)?;
    let mut rows = Vec::new();
    while let Some(batch) = block.fetch()? {
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
