//! Small result sets (catalog queries, counts) read whole as text.

use odbc_api::buffers::{BufferDesc, ColumnarDynBuffer};
use odbc_api::{Connection, Cursor};

use super::Source;
use crate::error::Result;

/// Longest catalog value read (names are at most 128 characters on SQL Server, 63 bytes on
/// PostgreSQL; type names and version strings are short).
const MAX_CATALOG_TEXT: usize = 1024;
const ROWS_PER_FETCH: usize = 500;

/// Runs `sql` and returns every row as text, NULL as `None`. UTF-16 buffers, so non-ASCII names
/// arrive intact whatever the client code page. Only for result sets known to be small.
pub fn query_text(
    source: &Source,
    connection: &Connection<'_>,
    what: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>> {
    let fail = |e: odbc_api::Error| source.db_error(format!("reading {what}"), &e);
    match connection
        .execute(&source.sql(sql), (), None)
        .map_err(fail)?
    {
        Some(cursor) => text_rows(cursor).map_err(fail),
        None => Ok(Vec::new()),
    }
}

/// Every row of `cursor` as text, NULL as `None`.
pub fn text_rows(
    mut cursor: impl Cursor,
) -> std::result::Result<Vec<Vec<Option<String>>>, odbc_api::Error> {
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
