//! Running statements so that a failure is judged on all its diagnostic records.
//!
//! odbc-api's `Error::Diagnostics` carries the first record of a failed call only, and frees the
//! statement of a failed `execute`. A driver may put the error that decides what to do behind
//! another one (Driver 18: 08001 "TCP Provider" before HYT00; SQL Server: 3621 "The statement
//! has been terminated" next to the real error), so these functions keep the statement handle
//! until its records are read and report the decisive one ([`errors::decisive`]), followed by
//! the others.

use std::sync::Arc;

use odbc_api::handles::{
    AsStatementRef, DiagnosticStream, Diagnostics, Record, SqlChar, Statement,
};
use odbc_api::{
    Connection, ConnectionTransitions, CursorImpl, OwnedCursor, ParameterCollectionRef,
};

use super::errors;
use crate::error::DbError;

/// Records read from one handle at most; the decisive one is among the first.
const MAX_RECORDS: usize = 16;

/// Executes `sql` with `params` on a statement that owns `connection`, as
/// `ConnectionTransitions::into_cursor` does, with a failure reported on all its records.
/// `allocated` gets the statement's handle before it executes, so a watchdog can cancel a
/// statement that blocks while executing (a count waiting for a lock).
pub(crate) fn open_cursor(
    connection: Arc<Connection<'static>>,
    sql: &str,
    params: impl ParameterCollectionRef,
    timeout_sec: Option<usize>,
    allocated: impl FnOnce(odbc_api::sys::HStmt),
) -> Result<Option<OwnedCursor<Arc<Connection<'static>>>>, odbc_api::Error> {
    let mut statement = connection.into_preallocated()?;
    if let Some(timeout_sec) = timeout_sec {
        statement.set_query_timeout_sec(timeout_sec)?;
    }
    allocated(statement.as_stmt_ref().as_sys());
    // `into_stmt` ends the borrowed cursor without closing it: the statement stays in cursor
    // state and is taken over below.
    let executed = statement.execute(sql, params).map(|cursor| {
        cursor.map(|cursor| {
            cursor.into_stmt();
        })
    });
    match executed {
        Err(error) => Err(with_all_records(&statement.as_stmt_ref(), error)),
        Ok(None) => Ok(None),
        // SAFETY: the statement has just been executed and produced a result set, so it is in
        // cursor state, which is all `CursorImpl::new` asks.
        Ok(Some(())) => Ok(Some(unsafe { CursorImpl::new(statement.into_handle()) })),
    }
}

/// Runs a statement that returns no rows (a session setting).
pub(crate) fn run(connection: &Connection<'_>, sql: &str) -> Result<(), odbc_api::Error> {
    let mut statement = connection.preallocate()?;
    let executed = statement.execute(sql, ()).map(|_| ());
    executed.map_err(|error| with_all_records(&statement.as_stmt_ref(), error))
}

/// `error` as the decisive of all diagnostic records `handle` holds after the failed call;
/// unchanged when there is only one, or it is not a diagnostic error.
pub(crate) fn with_all_records(
    handle: &impl Diagnostics,
    error: odbc_api::Error,
) -> odbc_api::Error {
    let odbc_api::Error::Diagnostics { function, .. } = &error else {
        return error;
    };
    let function = *function;
    let mut records = Vec::new();
    let mut stream = DiagnosticStream::new(handle);
    while let Some(record) = stream.next() {
        if records.len() == MAX_RECORDS {
            break;
        }
        records.push(Record {
            state: record.state,
            native_error: record.native_error,
            message: record.message.clone(),
        });
    }
    if records.len() < 2 {
        return error;
    }
    let classified: Vec<DbError> = records
        .iter()
        .map(|record| DbError {
            state: record.state.as_str().to_owned(),
            native: record.native_error,
            message: odbc_api::handles::slice_to_cow_utf8(&record.message).into_owned(),
        })
        .collect();
    let Some(best) = errors::decisive(&classified) else {
        return error;
    };
    let mut record = records.remove(best);
    // The other records after it, in their order: SQLSTATE, native error and message.
    for other in &records {
        let header = format!(
            " | SQLSTATE {}, native error {}: ",
            other.state.as_str(),
            other.native_error
        );
        // ASCII, so one SQL character per byte whether odbc-api uses narrow text (`SqlChar` is
        // `u8`, and the conversion a no-op) or wide text (`u16`).
        #[allow(clippy::useless_conversion)]
        record.message.extend(header.bytes().map(SqlChar::from));
        record.message.extend_from_slice(&other.message);
    }
    odbc_api::Error::Diagnostics { record, function }
}

#[cfg(test)]
mod tests {
    use odbc_api::Cursor;
    use odbc_api::handles::{DiagnosticResult, State};

    use super::*;

    /// The records a driver left on a handle after a failed call.
    struct Left(Vec<(&'static str, i32, &'static str)>);

    impl Diagnostics for Left {
        fn diagnostic_record(
            &self,
            rec_number: i16,
            message_text: &mut [SqlChar],
        ) -> Option<DiagnosticResult> {
            let (state, native_error, message) =
                *self.0.get(usize::try_from(rec_number - 1).ok()?)?;
            for (slot, byte) in message_text.iter_mut().zip(message.bytes()) {
                #[allow(clippy::useless_conversion)]
                let char = SqlChar::from(byte);
                *slot = char;
            }
            let mut code = [0u8; 5];
            code.copy_from_slice(state.as_bytes());
            Some(DiagnosticResult {
                state: State(code),
                native_error,
                text_length: i16::try_from(message.len()).ok()?,
            })
        }
    }

    fn first_record_error(left: &Left) -> odbc_api::Error {
        let mut record = Record::default();
        assert!(record.fill_from(left, 1));
        odbc_api::Error::Diagnostics {
            record,
            function: "SQLExecDirect",
        }
    }

    #[test]
    fn the_decisive_record_is_reported_first_and_the_others_follow() {
        let left = Left(vec![
            ("01000", 3621, "The statement has been terminated."),
            (
                "40001",
                1205,
                "Transaction was deadlocked on lock resources.",
            ),
        ]);
        let error = with_all_records(&left, first_record_error(&left));
        let db = DbError::from_odbc(&error, None);
        assert_eq!((db.state.as_str(), db.native), ("40001", 1205));
        assert_eq!(
            db.message,
            "Transaction was deadlocked on lock resources. | SQLSTATE 01000, native error 3621: \
             The statement has been terminated."
        );
        assert!(errors::classify(&db).retryable());
        let single = Left(vec![("42S02", 208, "Invalid object name.")]);
        let error = with_all_records(&single, first_record_error(&single));
        assert_eq!(
            DbError::from_odbc(&error, None).message,
            "Invalid object name."
        );
    }

    fn sqlite(dir: &std::path::Path) -> Connection<'static> {
        let env = crate::source::environment().expect("ODBC environment");
        let connection_string = format!(
            "Driver={{SQLite3}};Database={};StepAPI=1",
            dir.join("s.db").display()
        );
        env.connect_with_connection_string(&connection_string, Default::default())
            .expect("sqliteodbc connects")
    }

    #[test]
    fn statements_run_and_open_cursors_like_odbc_api() {
        let dir = tempfile::tempdir().expect("temp dir");
        let connection = sqlite(dir.path());
        run(&connection, "CREATE TABLE t (id INTEGER PRIMARY KEY)").expect("create");
        run(&connection, "INSERT INTO t VALUES (1), (2)").expect("insert");
        // As the workers hold it: the Arc lets the statement own the connection.
        #[allow(clippy::arc_with_non_send_sync)]
        let connection = Arc::new(connection);
        let cursor = open_cursor(
            Arc::clone(&connection),
            "SELECT id FROM t",
            (),
            Some(5),
            |_| {},
        )
        .expect("select")
        .expect("a result set");
        let mut cursor = cursor;
        let mut row = cursor.next_row().expect("fetch").expect("a row");
        let mut id = 0i64;
        row.get_data(1, &mut id).expect("id");
        assert_eq!(id, 1);
        drop(cursor);
        let failed = run(&connection, "SELECT * FROM missing_table").unwrap_err();
        let db = DbError::from_odbc(&failed, None);
        assert!(db.message.contains("missing_table"), "{db}");
        let failed = open_cursor(connection, "SELEKT 1", (), None, |_| {}).unwrap_err();
        assert!(matches!(failed, odbc_api::Error::Diagnostics { .. }));
    }
}
