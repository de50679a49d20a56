//! Checking that every value of a bulk fetch arrived.
//!
//! A block fetch can succeed while single values failed: the driver returns
//! `SQL_SUCCESS_WITH_INFO`, marks the row `SQL_ROW_ERROR` or `SQL_ROW_SUCCESS_WITH_INFO` in the
//! row status array and leaves that row's buffers as they were (Microsoft ODBC Driver 18 does
//! this with 22007 "Invalid time format"). Written as they are, those values become blanks. So
//! every fetch buffer carries its own row status array (`SQL_ATTR_ROW_STATUS_PTR`, which
//! odbc-api does not bind) and keeps the diagnostic records of a fetch that returned
//! `SQL_SUCCESS_WITH_INFO` (odbc-api only logs them); a batch with a flagged row or a warning
//! about values is never encoded, its table fails. A truncated value is the one warning handled
//! elsewhere: odbc-api reports it as `TooLargeValueForBuffer` first, and the buffer grows.

use std::cell::RefCell;
use std::ops::Deref;

use odbc_api::buffers::ColumnarDynBuffer;
use odbc_api::handles::{AnyHandle, DiagnosticStream, Statement, StatementRef};
use odbc_api::sys::{HStmt, Handle, HandleType, Pointer, SqlReturn, StatementAttribute};
use odbc_api::{RowSetBuffer, TruncationInfo};

use crate::error::DbError;

/// Row status values of the ODBC specification (`sql.h`).
const SQL_ROW_SUCCESS: u16 = 0;
const SQL_ROW_ERROR: u16 = 5;
const SQL_ROW_SUCCESS_WITH_INFO: u16 = 6;
/// Diagnostic record fields: the row of the row set (1-based) and the column a record is about.
const SQL_DIAG_ROW_NUMBER: i16 = -1248;
const SQL_DIAG_COLUMN_NUMBER: i16 = -1247;
/// Diagnostic records kept per fetch; one is enough to fail the table, a few help the report.
const MAX_WARNINGS: usize = 8;

/// Whether a warning's SQLSTATE may concern a fetched value (see [`FetchBuffer::undelivered`]).
pub(crate) fn concerns_values(state: &str) -> bool {
    !matches!(state, "01000" | "01003")
}

/// A column-wise fetch buffer with a row status array and the warnings of its last fetch.
pub(crate) struct FetchBuffer {
    columns: ColumnarDynBuffer,
    /// One `SQLUSMALLINT` per row of the row set, written by the driver on every fetch.
    row_status: Box<[u16]>,
    /// The statement this buffer is bound to, while it is bound.
    statement: Option<BoundStatement>,
    /// Diagnostic records of the last fetch into this buffer that returned
    /// `SQL_SUCCESS_WITH_INFO`. `find_truncation` (`&self`) fills it.
    warnings: RefCell<Vec<Warning>>,
}

/// A diagnostic record of a fetch, reduced to what a report may show.
#[derive(Debug, Clone)]
pub(crate) struct Warning {
    pub(crate) error: DbError,
    /// The row of the batch it is about (0-based), when the driver says.
    pub(crate) row: Option<usize>,
    /// The result column it is about (0-based), when the driver says.
    pub(crate) column: Option<usize>,
}

/// A batch in which at least one value did not arrive.
#[derive(Debug, Clone)]
pub(crate) struct Undelivered {
    /// The first row the driver flagged (0-based), or the row a warning names.
    pub(crate) row: Option<usize>,
    /// The row's status: `SQL_ROW_ERROR` or `SQL_ROW_SUCCESS_WITH_INFO`.
    pub(crate) row_status: Option<u16>,
    pub(crate) warnings: Vec<Warning>,
}

impl Undelivered {
    /// The message for the table's failure: SQLSTATE, native error, column and row, never a
    /// value. `column_name` names a result column by its 0-based index.
    pub(crate) fn describe(
        &self,
        table: &str,
        column_name: &dyn Fn(usize) -> Option<String>,
    ) -> String {
        let first = self.warnings.first();
        let column = first
            .and_then(|w| w.column)
            .and_then(column_name)
            .map(|name| format!(" in column '{name}'"))
            .unwrap_or_default();
        let row = match self.row.or_else(|| first.and_then(|w| w.row)) {
            Some(row) => format!(" of row {} of a fetched batch", row + 1),
            None => " of a fetched batch".to_owned(),
        };
        let status = match self.row_status {
            Some(SQL_ROW_ERROR) => "the driver marked the row SQL_ROW_ERROR",
            Some(_) => "the driver marked the row SQL_ROW_SUCCESS_WITH_INFO",
            None => "the fetch returned SQL_SUCCESS_WITH_INFO",
        };
        let diagnostic = match first {
            Some(w) => format!(
                ": {} (SQLSTATE {}, native error {})",
                w.error.message, w.error.state, w.error.native
            ),
            None => ", without a diagnostic record".to_owned(),
        };
        format!(
            "{table}: a value{column}{row} did not arrive ({status}{diagnostic}); nothing of that \
             batch was written and the table is failed rather than written with a blank. Check \
             the column's values and type at the source, and the ODBC driver's version"
        )
    }
}

impl FetchBuffer {
    /// Wraps `columns`; binding sets the row status array.
    pub(crate) fn new(columns: ColumnarDynBuffer) -> FetchBuffer {
        let rows = columns.row_array_size().max(1);
        FetchBuffer {
            columns,
            row_status: vec![SQL_ROW_SUCCESS; rows].into_boxed_slice(),
            statement: None,
            warnings: RefCell::new(Vec::new()),
        }
    }

    /// A value the last fetch cut short, by the indicators, whatever the fetch returned:
    /// FreeTDS returns `SQL_SUCCESS`, not `SQL_SUCCESS_WITH_INFO`, from a bulk fetch that cut a
    /// `(max)` value (the indicator says `SQL_NO_TOTAL`), and odbc-api looks for truncation only
    /// after `SQL_SUCCESS_WITH_INFO`.
    pub(crate) fn truncated(&self) -> Option<TruncationInfo> {
        self.columns.find_truncation()
    }

    /// `Some` when a value of the fetched rows did not arrive: a row the driver flagged as an
    /// error, a row flagged with a warning about values, or such a warning of the fetch. Only
    /// warnings that say nothing about a value pass: a message (01000, e.g. `PRINT`) and
    /// "NULL value eliminated in set function" (01003, SQL Server's 8153 after `MAX` over a
    /// column with NULLs).
    pub(crate) fn undelivered(&self) -> Option<Undelivered> {
        let rows = self.columns.num_rows().min(self.row_status.len());
        let warnings = self.warnings.borrow().clone();
        let about_values = warnings.iter().any(|w| concerns_values(&w.error.state));
        let flagged = self.row_status[..rows].iter().position(|&s| {
            s == SQL_ROW_ERROR
                || (s == SQL_ROW_SUCCESS_WITH_INFO && (about_values || warnings.is_empty()))
        });
        if flagged.is_none() && !about_values {
            return None;
        }
        Some(Undelivered {
            row: flagged,
            row_status: flagged.map(|row| self.row_status[row]),
            warnings,
        })
    }

    /// Reads the diagnostic records of the fetch that just returned on the bound statement.
    fn record_warnings(&self) {
        let Some(statement) = &self.statement else {
            return;
        };
        let mut warnings = self.warnings.borrow_mut();
        warnings.clear();
        let mut stream = DiagnosticStream::new(statement);
        let mut number: i16 = 0;
        while let Some(record) = stream.next() {
            number += 1;
            if warnings.len() == MAX_WARNINGS {
                break;
            }
            let error = DbError {
                state: record.state.as_str().to_owned(),
                native: record.native_error,
                message: odbc_api::handles::slice_to_cow_utf8(&record.message).into_owned(),
            }
            .without_values();
            let row = statement
                .diag_integer(number, SQL_DIAG_ROW_NUMBER)
                .and_then(|r| usize::try_from(r).ok())
                .filter(|r| *r > 0)
                .map(|r| r - 1);
            let column = statement
                .diag_integer(number, SQL_DIAG_COLUMN_NUMBER)
                .and_then(|c| usize::try_from(c).ok())
                .filter(|c| *c > 0)
                .map(|c| c - 1);
            warnings.push(Warning { error, row, column });
        }
    }
}

impl Deref for FetchBuffer {
    type Target = ColumnarDynBuffer;

    fn deref(&self) -> &ColumnarDynBuffer {
        &self.columns
    }
}

// SAFETY: every pointer bound is owned by `self` and heap-allocated (the column buffers, as
// `ColumnarDynBuffer` guarantees, and the boxed row status array), so moving `self` does not
// move what the driver writes to. The statement's row status pointer outlives this binding:
// the next bind replaces it, and a statement whose last buffer is gone is only closed and freed,
// which writes no row status.
unsafe impl RowSetBuffer for FetchBuffer {
    fn bind_type(&self) -> usize {
        self.columns.bind_type()
    }

    fn row_array_size(&self) -> usize {
        self.columns.row_array_size()
    }

    fn mut_num_fetch_rows(&mut self) -> &mut usize {
        self.columns.mut_num_fetch_rows()
    }

    unsafe fn bind_colmuns_to_cursor(
        &mut self,
        cursor: StatementRef<'_>,
    ) -> Result<(), odbc_api::Error> {
        let handle = cursor.as_sys();
        // SAFETY: `handle` is the valid statement odbc-api is binding this buffer to; the array
        // has one element per row of the row set and lives as long as `self` (see above).
        let ret = unsafe {
            odbc_api::sys::SQLSetStmtAttr(
                handle,
                StatementAttribute::RowStatusPtr,
                self.row_status.as_mut_ptr() as Pointer,
                0,
            )
        };
        if ret != SqlReturn::SUCCESS && ret != SqlReturn::SUCCESS_WITH_INFO {
            let mut record = odbc_api::handles::Record::default();
            return Err(if record.fill_from(&cursor, 1) {
                odbc_api::Error::Diagnostics {
                    record,
                    function: "SQLSetStmtAttr",
                }
            } else {
                odbc_api::Error::NoDiagnostics {
                    function: "SQLSetStmtAttr",
                }
            });
        }
        self.statement = Some(BoundStatement(handle));
        self.warnings.borrow_mut().clear();
        // SAFETY: forwarded from our caller's contract.
        unsafe { self.columns.bind_colmuns_to_cursor(cursor) }
    }

    /// odbc-api calls this right after a fetch returned `SQL_SUCCESS_WITH_INFO`, while that
    /// fetch's diagnostic records are still on the statement: the one moment to read them.
    fn find_truncation(&self) -> Option<TruncationInfo> {
        self.record_warnings();
        self.columns.find_truncation()
    }
}

/// The raw handle of the statement a buffer is bound to.
struct BoundStatement(HStmt);

// SAFETY: ODBC handles may be used from any thread; the buffer, and with it this handle, moves
// between odbc-api's fetch thread and the worker, and is used only while bound.
unsafe impl Send for BoundStatement {}

// SAFETY: the handle is the valid statement the buffer is bound to, and it is a statement.
unsafe impl AnyHandle for BoundStatement {
    fn as_handle(&self) -> Handle {
        self.0.as_handle()
    }

    fn handle_type(&self) -> HandleType {
        HandleType::Stmt
    }
}

impl BoundStatement {
    /// An integer field of diagnostic record `number` (`SQLGetDiagField`): `SQL_DIAG_ROW_NUMBER`
    /// is an `SQLLEN`, `SQL_DIAG_COLUMN_NUMBER` an `SQLINTEGER`. `None` if the driver does not
    /// provide it.
    fn diag_integer(&self, number: i16, field: i16) -> Option<i64> {
        let mut row: isize = 0;
        let mut column: i32 = 0;
        let target: Pointer = if field == SQL_DIAG_ROW_NUMBER {
            (&mut row as *mut isize).cast()
        } else {
            (&mut column as *mut i32).cast()
        };
        let mut length: i16 = 0;
        // SAFETY: the handle is valid (see above); `target` points to an integer of the field's
        // type, and integer fields take no buffer length.
        let ret = unsafe {
            odbc_api::sys::SQLGetDiagFieldW(
                HandleType::Stmt,
                self.as_handle(),
                number,
                field,
                target,
                0,
                &mut length,
            )
        };
        if ret != SqlReturn::SUCCESS && ret != SqlReturn::SUCCESS_WITH_INFO {
            return None;
        }
        Some(if field == SQL_DIAG_ROW_NUMBER {
            row as i64
        } else {
            i64::from(column)
        })
    }
}

#[cfg(test)]
mod tests {
    use odbc_api::buffers::BufferDesc;
    use odbc_api::{ConnectionOptions, Cursor};

    use super::*;

    /// A SQLite database (through the real sqliteodbc driver) with one text column.
    fn sqlite_with_values(dir: &std::path::Path, values: &[&str]) -> odbc_api::Connection<'static> {
        let env = crate::source::environment().expect("ODBC environment");
        let connection_string = format!(
            "Driver={{SQLite3}};Database={};StepAPI=1",
            dir.join("values.db").display()
        );
        let connection = env
            .connect_with_connection_string(&connection_string, ConnectionOptions::default())
            .expect("sqliteodbc connects");
        connection
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)", (), None)
            .expect("create");
        for (id, value) in values.iter().enumerate() {
            let sql = format!("INSERT INTO t VALUES ({id}, '{value}')");
            connection.execute(&sql, (), None).expect("insert");
        }
        connection
    }

    fn text_buffer(max_str_len: usize) -> FetchBuffer {
        FetchBuffer::new(ColumnarDynBuffer::from_descs(
            10,
            [BufferDesc::Text { max_str_len }],
        ))
    }

    #[test]
    fn a_complete_batch_is_delivered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let connection = sqlite_with_values(dir.path(), &["a", "bb", "ccc"]);
        let cursor = connection
            .execute("SELECT s FROM t ORDER BY id", (), None)
            .expect("select")
            .expect("a result set");
        let mut block = cursor.bind_buffer(text_buffer(16)).expect("bind");
        let batch = block
            .fetch_with_truncation_check(true)
            .expect("fetch")
            .expect("rows");
        assert_eq!(batch.num_rows(), 3);
        assert!(batch.undelivered().is_none(), "{:?}", batch.undelivered());
    }

    #[test]
    fn a_row_the_driver_flags_is_undelivered_with_its_diagnostic() {
        // sqliteodbc flags a value that did not fit with SQL_ROW_SUCCESS_WITH_INFO and 01004,
        // the one per-row failure it reports (a value it cannot convert becomes NULL or a
        // number's prefix without any warning). The row status array and the warning arrive
        // in the buffer, whatever odbc-api makes of the fetch.
        let dir = tempfile::tempdir().expect("temp dir");
        let connection = sqlite_with_values(dir.path(), &["a", "far too long", "c"]);
        let cursor = connection
            .execute("SELECT s FROM t ORDER BY id", (), None)
            .expect("select")
            .expect("a result set");
        let mut block = cursor.bind_buffer(text_buffer(4)).expect("bind");
        let fetched = block.fetch_with_truncation_check(true);
        assert!(matches!(
            fetched,
            Err(odbc_api::Error::TooLargeValueForBuffer { .. })
        ));
        let (_cursor, buffer) = block.unbind().expect("unbind");
        let missing = buffer
            .undelivered()
            .expect("the flagged row is undelivered");
        assert_eq!(missing.row, Some(1));
        assert_eq!(missing.row_status, Some(SQL_ROW_SUCCESS_WITH_INFO));
        let warning = missing
            .warnings
            .first()
            .expect("the fetch's warning is kept");
        assert_eq!(warning.error.state, "01004");
        let message = missing.describe("main.t", &|i| (i == 0).then(|| "s".to_owned()));
        assert!(message.starts_with("main.t: a value"), "{message}");
        assert!(message.contains("of row 2 of a fetched batch"), "{message}");
        assert!(message.contains("SQLSTATE 01004"), "{message}");
        assert!(!message.contains("far too long"), "{message}");
    }

    #[test]
    fn warnings_about_values_fail_the_batch_and_messages_do_not() {
        let mut buffer = text_buffer(8);
        *buffer.mut_num_fetch_rows() = 2;
        let warning = |state: &str| Warning {
            error: DbError {
                state: state.into(),
                native: 8153,
                message: "Warning: Null value is eliminated by an aggregate".into(),
            },
            row: None,
            column: None,
        };
        buffer.warnings.replace(vec![warning("01003")]);
        assert!(buffer.undelivered().is_none());
        buffer.row_status[1] = SQL_ROW_SUCCESS_WITH_INFO;
        assert!(buffer.undelivered().is_none(), "flagged for a message only");
        buffer
            .warnings
            .replace(vec![warning("01003"), warning("22007")]);
        assert_eq!(buffer.undelivered().and_then(|m| m.row), Some(1));
        buffer.row_status[1] = SQL_ROW_SUCCESS;
        assert_eq!(buffer.undelivered().map(|m| m.row), Some(None));
        buffer.warnings.replace(Vec::new());
        buffer.row_status[0] = SQL_ROW_ERROR;
        assert_eq!(buffer.undelivered().and_then(|m| m.row), Some(0));
    }

    #[test]
    fn the_report_names_column_row_and_diagnostic_but_no_value() {
        let missing = Undelivered {
            row: Some(4),
            row_status: Some(SQL_ROW_ERROR),
            warnings: vec![Warning {
                error: DbError {
                    state: "22018".into(),
                    native: 245,
                    message: "Conversion failed when converting the varchar value 'Smith' to \
                              data type int."
                        .into(),
                }
                .without_values(),
                row: Some(4),
                column: Some(1),
            }],
        };
        let names = ["PAT_ID", "BIRTH_TIME"];
        let message = missing.describe("dbo.PATIENT", &|i| names.get(i).map(|n| n.to_string()));
        assert!(
            message.starts_with(
                "dbo.PATIENT: a value in column 'BIRTH_TIME' of row 5 of a fetched batch did \
                 not arrive (the driver marked the row SQL_ROW_ERROR: Conversion failed"
            ),
            "{message}"
        );
        assert!(
            message.contains("(SQLSTATE 22018, native error 245)"),
            "{message}"
        );
        assert!(!message.contains("Smith"), "{message}");
    }
}
