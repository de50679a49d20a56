//! Classification of database errors, so the workers know whether to retry a partition, fail
//! a table, or stop the whole run, and the scrubbing that keeps their messages free of the
//! password and of row values.
//!
//! The keys are the SQLSTATE and the native error code of the decisive diagnostic record
//! ([`decisive`] picks it among all records a failed call left, see `source::statement`). SQL
//! Server's native codes are specific and collision-free with the other drivers' numbers
//! (psqlODBC numbers its own errors below 64 and from 101 to about 220; sqliteodbc reports
//! SQLite result codes), so they are looked at first. Then the SQLSTATE: psqlODBC forwards the
//! server's SQLSTATE for server errors (`40P01`, `55P03`, `57014`, `57P01`, ...) and reports a
//! lost link as `08S01`. Only where a driver hides the SQLSTATE is the message text read (see
//! [`message_fallback`]).
//!
//! What psqlODBC 13.02 returned against PostgreSQL 15 for each fault, pinned in the tests below:
//!
//! | fault | SQLSTATE | native | message starts with |
//! |---|---|---|---|
//! | `lock_timeout` while another session holds the lock | 55P03 | 1 | `ERROR: canceling statement due to lock timeout` |
//! | `statement_timeout`, or an ODBC query timeout (psqlODBC sets `statement_timeout`) | 57014 | 1 | `ERROR: canceling statement due to statement timeout` |
//! | `SQLCancel` from another thread during execute | 57014 | 1 | `ERROR: canceling statement due to user request` |
//! | deadlock victim | 40P01 | 1 | `ERROR: deadlock detected` |
//! | `pg_terminate_backend`, mid-query or idle | 57P01 | 35 | `FATAL: terminating connection due to administrator command` |
//! | the next statement on that dead connection | 08S01 | 35 | `SQLExecDirect unable due to the connection lost` |
//! | TCP link cut mid-result | 08S01 | 35 | `server closed the connection unexpectedly` |
//! | link cut while sending (after a stall) | 08S01 | 26 | `The connection is down` |
//! | login: unknown role | 08001 | 101 | `connection to server at "…", port … failed: FATAL:  role "…" does not exist` |
//! | login: unknown database | 08001 | 101 | `… failed: FATAL:  database "…" does not exist` |
//! | login: role connection limit | 08001 | 101 | `… failed: FATAL:  too many connections for role "…"` |
//! | login timeout (server silent) | 08001 | 101 | `… failed: timeout expired` |
//! | `SELECT` without privilege | 42501 | 1 | `ERROR: permission denied for table …` |

use crate::error::DbError;

impl DbError {
    /// Converts an odbc-api error. `secret` (the password, if any) is removed from the message:
    /// some drivers echo parts of the connection string back.
    pub fn from_odbc(error: &odbc_api::Error, secret: Option<&str>) -> Self {
        let (state, native, message) = match error {
            odbc_api::Error::Diagnostics { record, .. } => (
                record.state.as_str().to_owned(),
                record.native_error,
                record_message(record),
            ),
            other => ("HY000".to_owned(), 0, other.to_string()),
        };
        let message = match secret {
            Some(secret) if !secret.is_empty() => message.replace(secret, "***"),
            _ => message,
        };
        DbError {
            state,
            native,
            message,
        }
    }
}

fn record_message(record: &odbc_api::handles::Record) -> String {
    let text = record.to_string();
    // odbc-api renders "State: XXXXX, Native error: N, Message: ..."; keep only the message.
    match text.split_once("Message: ") {
        Some((_, message)) => message.trim().to_owned(),
        None => text,
    }
}

impl DbError {
    /// The message cut down to what cannot hold a row value: its first line, without the
    /// statement text drivers echo (key literals of a resumed read) and with quoted parts
    /// masked (PostgreSQL quotes the offending value in conversion errors). For errors while
    /// reading rows; the SQLSTATE and native code stay whole.
    pub(crate) fn without_values(mut self) -> DbError {
        let first_line = self.message.lines().next().unwrap_or_default();
        let mut text = first_line.trim_end_matches(';').to_owned();
        for marker in ["SELECT ", "select ", "declare ", "DECLARE "] {
            if let Some(at) = text.find(marker) {
                text.truncate(at);
                text.push_str("[statement omitted]");
            }
        }
        let mut masked = String::with_capacity(text.len());
        let mut quote: Option<char> = None;
        for c in text.chars() {
            match quote {
                Some(q) if c == q => {
                    masked.push('…');
                    masked.push(c);
                    quote = None;
                }
                Some(_) => {}
                None => {
                    masked.push(c);
                    if c == '\'' || c == '"' {
                        quote = Some(c);
                    }
                }
            }
        }
        if let Some(q) = quote {
            masked.push('…');
            masked.push(q);
        }
        self.message = masked;
        self
    }
}

/// What kind of failure an error is; decides retry, table failure, or the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Chosen as deadlock victim, or a serialization failure: the transaction was rolled back.
    Deadlock,
    /// Waited too long for a lock another session holds.
    LockTimeout,
    /// The link to the server broke or could not be made.
    ConnectionLost,
    /// The statement ran into a timeout or was cancelled.
    QueryTimeout,
    /// The server refuses work for now: throttling, failover, shutdown, connection limits.
    ServerBusy,
    /// The login may not read the object.
    Permission,
    /// A table, column or database that discovery saw is gone.
    ObjectMissing,
    /// The statement is wrong for this server (syntax, unknown function, other class-42 errors).
    BadSql,
    /// A value could not be converted, or arithmetic failed on a value.
    DataConversion,
    /// The read itself was spoiled by concurrent work and runs again as it is: data moved under
    /// a NOLOCK scan, a snapshot read met DDL or an update conflict.
    ReadInterrupted,
    /// The login was refused: nothing will work until the configuration is fixed.
    Authentication,
    /// Anything else: not retried, the table fails with the message.
    Other,
}

impl ErrorClass {
    /// Transient failures: drop the connection, back off, reconnect, resume the partition.
    pub(crate) fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Deadlock
                | ErrorClass::LockTimeout
                | ErrorClass::ConnectionLost
                | ErrorClass::QueryTimeout
                | ErrorClass::ServerBusy
                | ErrorClass::ReadInterrupted
        )
    }

    /// A refused login fails every table the same way: stop the run instead of failing each
    /// table in turn (and locking the account with repeated attempts).
    pub(crate) fn fatal_for_run(self) -> bool {
        self == ErrorClass::Authentication
    }

    /// A stable name for logs and validation records.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ErrorClass::Deadlock => "deadlock",
            ErrorClass::LockTimeout => "lock_timeout",
            ErrorClass::ConnectionLost => "connection_lost",
            ErrorClass::QueryTimeout => "query_timeout",
            ErrorClass::ServerBusy => "server_busy",
            ErrorClass::Permission => "permission",
            ErrorClass::ObjectMissing => "object_missing",
            ErrorClass::BadSql => "bad_sql",
            ErrorClass::DataConversion => "data_conversion",
            ErrorClass::ReadInterrupted => "read_interrupted",
            ErrorClass::Authentication => "authentication",
            ErrorClass::Other => "other",
        }
    }
}

/// What went wrong, for the retry log line: the SQL Server error's own cause where the number
/// says more than its class ("Database Engine events and errors"), else the class.
pub(crate) fn reason(error: &DbError) -> &'static str {
    match error.native {
        601 => "data moved while a NOLOCK scan read it (error 601)",
        3960 => "snapshot isolation update conflict (error 3960)",
        3961 => "the table was changed by DDL during a snapshot read (error 3961)",
        596 => "the session was killed (error 596)",
        1204 => "the server ran out of locks (error 1204)",
        701 => "the server ran out of memory for the query (error 701)",
        8645 => "the query timed out waiting for memory (error 8645)",
        40197 => "Azure SQL is failing over (error 40197)",
        40501 => "Azure SQL is busy (error 40501)",
        40613 => "the Azure SQL database is not available right now (error 40613)",
        1205 => "chosen as deadlock victim (error 1205)",
        1222 => "lock request timed out (error 1222)",
        _ => match classify(error) {
            ErrorClass::Deadlock => "deadlock victim or serialization failure",
            ErrorClass::LockTimeout => "lock wait timed out",
            ErrorClass::ConnectionLost => "the connection was lost",
            ErrorClass::QueryTimeout => "the statement timed out or was cancelled",
            ErrorClass::ServerBusy => "the server is busy or unavailable",
            ErrorClass::ReadInterrupted => "the read was interrupted by concurrent work",
            ErrorClass::Permission => "permission denied",
            ErrorClass::ObjectMissing => "an object is missing",
            ErrorClass::BadSql => "the statement was refused",
            ErrorClass::DataConversion => "a value could not be converted",
            ErrorClass::Authentication => "the login was refused",
            ErrorClass::Other => "database error",
        },
    }
}

/// How much a record says about what to do, for choosing among several: a refused login
/// stops the run, a transient error is retried, a specific error fails the table.
fn weight(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Authentication => 3,
        class if class.retryable() => 2,
        ErrorClass::Other => 0,
        _ => 1,
    }
}

/// The record of a failure that decides how it is handled, among all the diagnostic records
/// the handle holds (a driver may put the server's error behind its own, e.g. Driver 18's
/// 08001 "TCP Provider" before HYT00, or 3621 "The statement has been terminated" around the
/// real error): the first of the most decisive class. `None` for no records.
pub(crate) fn decisive(errors: &[DbError]) -> Option<usize> {
    let mut best: Option<(usize, u8)> = None;
    for (index, error) in errors.iter().enumerate() {
        let weight = weight(classify(error));
        if best.is_none_or(|(_, w)| weight > w) {
            best = Some((index, weight));
        }
    }
    best.map(|(index, _)| index)
}

/// Classifies a database error by native code (SQL Server), then SQLSTATE, then, only for
/// the generic states a driver uses when it hides the server's, by message text.
pub fn classify(error: &DbError) -> ErrorClass {
    if let Some(class) = sql_server_native(error.native) {
        return class;
    }
    let state = error.state.to_ascii_uppercase();
    match state.as_str() {
        "40001" | "40P01" => ErrorClass::Deadlock,
        "55P03" => ErrorClass::LockTimeout,
        // HYT00: ODBC query timeout (SQL Server native -2); HY008: cancelled by SQLCancel.
        "57014" | "HYT00" | "HY008" => ErrorClass::QueryTimeout,
        // HYT01: the connection timeout expired: the link, not the query, is stuck.
        "HYT01" => ErrorClass::ConnectionLost,
        // psqlODBC reports every failed login as 08001 with libpq's text; the server's
        // SQLSTATE (28P01, 3D000, 53300, 57P03) is lost.
        "08001" => message_fallback(&error.message).unwrap_or(ErrorClass::ConnectionLost),
        s if s.starts_with("08") => ErrorClass::ConnectionLost,
        "57P01" | "57P02" | "57P03" | "53300" => ErrorClass::ServerBusy,
        "28000" | "28P01" => ErrorClass::Authentication,
        "42501" => ErrorClass::Permission,
        // A column missing (42S22 / 42703) means the table changed since discovery.
        "42S02" | "42P01" | "42S22" | "42703" | "3D000" => ErrorClass::ObjectMissing,
        // 07006: the driver cannot convert the column to the requested C type.
        s if s.starts_with("22") || s == "07006" => ErrorClass::DataConversion,
        s if s.starts_with("42") => ErrorClass::BadSql,
        "HY000" => message_fallback(&error.message).unwrap_or(ErrorClass::Other),
        _ => ErrorClass::Other,
    }
}

/// SQL Server native error numbers (Microsoft ODBC Driver / FreeTDS pass the server's error
/// number as the native code). Numbers whose SQLSTATE already says it all (208 → 42S02,
/// 207 → 42S22, 102 → 42000, -2 → HYT00) are left to the SQLSTATE: psqlODBC uses 207 and 208
/// for its own connection errors.
fn sql_server_native(native: i32) -> Option<ErrorClass> {
    let class = match native {
        1205 => ErrorClass::Deadlock,
        1222 => ErrorClass::LockTimeout,
        // Transport errors: 233 no process on the other end, 10053 / 10054 connection
        // aborted / reset, 10060 connect timed out, 64 network name no longer available,
        // 121 semaphore timeout.
        233 | 10053 | 10054 | 10060 | 64 | 121 => ErrorClass::ConnectionLost,
        // Azure SQL transient errors and throttling (40197 failover, 40501 service busy,
        // 40613 database unavailable, 49918-49920 too many requests, 10928 / 10929 resource
        // limits), and 4060 "cannot open database", which Microsoft's own retry list treats
        // as transient (the database moves during a failover). A misspelled database fails
        // the first connect, before any retry logic runs.
        40197 | 40501 | 40613 | 49918 | 49919 | 49920 | 10928 | 10929 | 4060 => {
            ErrorClass::ServerBusy
        }
        18456 => ErrorClass::Authentication,
        229 | 230 => ErrorClass::Permission,
        // 601 NOLOCK data movement, 3960 / 3961 snapshot update conflict / DDL during a
        // snapshot read: run the read again.
        601 | 3960 | 3961 => ErrorClass::ReadInterrupted,
        // 596: the session was killed (KILL, or the server ending it).
        596 => ErrorClass::ConnectionLost,
        // Resources: 1204 no more locks, 701 out of memory, 8645 memory grant timeout.
        1204 | 701 | 8645 => ErrorClass::ServerBusy,
        // 245 conversion failed, 8114 error converting data type, 8115 arithmetic overflow.
        245 | 8114 | 8115 => ErrorClass::DataConversion,
        _ => return None,
    };
    Some(class)
}

/// Fallback for drivers that hide the server's SQLSTATE behind a generic one (HY000, or
/// 08001 for every failed login through psqlODBC/libpq): recognises PostgreSQL's and libpq's
/// English messages. A server with a translated `lc_messages` is not recognised here; its
/// errors stay `ConnectionLost` (08001) or `Other` (HY000).
fn message_fallback(message: &str) -> Option<ErrorClass> {
    let message = message.to_ascii_lowercase();
    let has = |needle: &str| message.contains(needle);
    let class = if has("password authentication failed")
        || has("no pg_hba.conf entry")
        || (has("role \"") && has("\" does not exist"))
    {
        ErrorClass::Authentication
    } else if has("database \"") && has("\" does not exist") {
        ErrorClass::ObjectMissing
    } else if has("permission denied") {
        ErrorClass::Permission
    } else if has("too many connections")
        || has("the database system is starting up")
        || has("the database system is shutting down")
        || has("the database system is in recovery mode")
        || has("the database system is not yet accepting connections")
        || has("terminating connection due to administrator command")
    {
        ErrorClass::ServerBusy
    } else if has("canceling statement due to lock timeout") {
        ErrorClass::LockTimeout
    } else if has("canceling statement due to statement timeout")
        || has("canceling statement due to user request")
    {
        ErrorClass::QueryTimeout
    } else if has("deadlock detected") || has("could not serialize access") {
        ErrorClass::Deadlock
    } else if has("server closed the connection unexpectedly")
        || has("could not receive data from server")
        || has("could not send data to server")
        || has("no connection to the server")
        || has("the connection has been lost")
        || has("the connection is down")
    {
        ErrorClass::ConnectionLost
    } else {
        return None;
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(state: &str, native: i32, message: &str) -> DbError {
        DbError {
            state: state.to_owned(),
            native,
            message: message.to_owned(),
        }
    }

    fn class(state: &str, native: i32, message: &str) -> ErrorClass {
        classify(&error(state, native, message))
    }

    /// Observed through psqlODBC 13.02 against PostgreSQL 15 (see the module table).
    #[test]
    fn postgres_faults_as_psqlodbc_reports_them() {
        let cases = [
            (
                "55P03",
                1,
                "ERROR: canceling statement due to lock timeout;\nError while executing the query",
                ErrorClass::LockTimeout,
            ),
            (
                "57014",
                1,
                "ERROR: canceling statement due to statement timeout;\nError while executing the query",
                ErrorClass::QueryTimeout,
            ),
            (
                "57014",
                1,
                "ERROR: canceling statement due to user request;\nError while executing the query",
                ErrorClass::QueryTimeout,
            ),
            (
                "40P01",
                1,
                "ERROR: deadlock detected;\nError while executing the query",
                ErrorClass::Deadlock,
            ),
            (
                "57P01",
                35,
                "FATAL: terminating connection due to administrator command;\nThe connection has been lost",
                ErrorClass::ServerBusy,
            ),
            (
                "08S01",
                35,
                "SQLExecDirect unable due to the connection lost",
                ErrorClass::ConnectionLost,
            ),
            (
                "08S01",
                35,
                "SQLColAttribute unable due to the connection lost",
                ErrorClass::ConnectionLost,
            ),
            (
                "08S01",
                35,
                "server closed the connection unexpectedly\n\tThis probably means the server \
                 terminated abnormally\n\tbefore or while processing the request.\n;\nThe \
                 connection has been lost",
                ErrorClass::ConnectionLost,
            ),
            (
                "08S01",
                26,
                "The connection is down\nFailed to send 'declare \"SQL_CUR1\" cursor with hold for SELECT 1'",
                ErrorClass::ConnectionLost,
            ),
            (
                "08001",
                101,
                "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  role \"nobody\" does not exist",
                ErrorClass::Authentication,
            ),
            (
                "08001",
                101,
                "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"nodb\" does not exist",
                ErrorClass::ObjectMissing,
            ),
            (
                "08001",
                101,
                "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  too many connections for role \"etl\"",
                ErrorClass::ServerBusy,
            ),
            (
                "08001",
                101,
                "connection to server at \"127.0.0.1\", port 5432 failed: timeout expired",
                ErrorClass::ConnectionLost,
            ),
            (
                "42501",
                1,
                "ERROR: permission denied for table t;\nError while executing the query",
                ErrorClass::Permission,
            ),
            (
                "42P01",
                1,
                "ERROR: relation \"no_such_table\" does not exist;\nError while executing the query",
                ErrorClass::ObjectMissing,
            ),
            (
                "42703",
                1,
                "ERROR: column \"gone\" does not exist;\nError while executing the query",
                ErrorClass::ObjectMissing,
            ),
            (
                "42601",
                1,
                "ERROR: syntax error at or near \"SELEC\";\nError while executing the query",
                ErrorClass::BadSql,
            ),
            (
                "42883",
                1,
                "ERROR: function no_such_fn() does not exist;\nError while executing the query",
                ErrorClass::BadSql,
            ),
            (
                "22012",
                1,
                "ERROR: division by zero;\nError while fetching the next result",
                ErrorClass::DataConversion,
            ),
            (
                "22003",
                1,
                "ERROR: smallint out of range;\nError while executing the query",
                ErrorClass::DataConversion,
            ),
        ];
        for (state, native, message, expected) in cases {
            assert_eq!(
                class(state, native, message),
                expected,
                "{state} {native} {message}"
            );
        }
    }

    /// PostgreSQL SQLSTATEs not provoked here (no password auth, no crash), by the server's
    /// documented codes.
    #[test]
    fn postgres_sqlstates() {
        for (state, expected) in [
            ("40001", ErrorClass::Deadlock),
            ("57P02", ErrorClass::ServerBusy),
            ("57P03", ErrorClass::ServerBusy),
            ("53300", ErrorClass::ServerBusy),
            ("08000", ErrorClass::ConnectionLost),
            ("08003", ErrorClass::ConnectionLost),
            ("08006", ErrorClass::ConnectionLost),
            ("28P01", ErrorClass::Authentication),
            ("28000", ErrorClass::Authentication),
            ("3D000", ErrorClass::ObjectMissing),
            ("22P02", ErrorClass::DataConversion),
        ] {
            assert_eq!(class(state, 1, "ERROR: x"), expected, "{state}");
        }
    }

    /// Microsoft's documented SQLSTATE / native pairs for SQL Server errors.
    #[test]
    fn sql_server_errors() {
        let cases = [
            ("40001", 1205, ErrorClass::Deadlock),
            // 1222 is classified by its number whatever SQLSTATE the driver puts on it.
            ("HY000", 1222, ErrorClass::LockTimeout),
            ("HYT00", 1222, ErrorClass::LockTimeout),
            ("08S01", 233, ErrorClass::ConnectionLost),
            ("08S01", 10053, ErrorClass::ConnectionLost),
            ("08S01", 10054, ErrorClass::ConnectionLost),
            ("08001", 10060, ErrorClass::ConnectionLost),
            ("08S01", 64, ErrorClass::ConnectionLost),
            ("08S01", 121, ErrorClass::ConnectionLost),
            ("08S01", 0, ErrorClass::ConnectionLost),
            ("08001", 0, ErrorClass::ConnectionLost),
            ("HYT00", -2, ErrorClass::QueryTimeout),
            ("HYT00", 0, ErrorClass::QueryTimeout),
            ("HYT01", 0, ErrorClass::ConnectionLost),
            ("HY008", 0, ErrorClass::QueryTimeout),
            ("42000", 40197, ErrorClass::ServerBusy),
            ("42000", 40501, ErrorClass::ServerBusy),
            ("08001", 40613, ErrorClass::ServerBusy),
            ("42000", 49918, ErrorClass::ServerBusy),
            ("42000", 49919, ErrorClass::ServerBusy),
            ("42000", 49920, ErrorClass::ServerBusy),
            ("42000", 10928, ErrorClass::ServerBusy),
            ("42000", 10929, ErrorClass::ServerBusy),
            ("42000", 4060, ErrorClass::ServerBusy),
            ("28000", 18456, ErrorClass::Authentication),
            ("42000", 229, ErrorClass::Permission),
            ("42000", 230, ErrorClass::Permission),
            ("42S02", 208, ErrorClass::ObjectMissing),
            ("42S22", 207, ErrorClass::ObjectMissing),
            ("42000", 102, ErrorClass::BadSql),
            ("22018", 245, ErrorClass::DataConversion),
            ("42000", 8114, ErrorClass::DataConversion),
            ("22003", 8115, ErrorClass::DataConversion),
            ("07006", 0, ErrorClass::DataConversion),
            ("HY000", 601, ErrorClass::ReadInterrupted),
            ("40001", 3960, ErrorClass::ReadInterrupted),
            ("HY000", 3961, ErrorClass::ReadInterrupted),
            ("HY000", 596, ErrorClass::ConnectionLost),
            ("HY000", 1204, ErrorClass::ServerBusy),
            ("42000", 701, ErrorClass::ServerBusy),
            ("42000", 8645, ErrorClass::ServerBusy),
        ];
        for (state, native, expected) in cases {
            assert_eq!(
                class(
                    state,
                    native,
                    "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]x"
                ),
                expected,
                "{state} {native}"
            );
        }
    }

    #[test]
    fn transient_sql_server_errors_are_retried_with_their_reason() {
        for (native, reason_text) in [
            (601, "NOLOCK"),
            (3960, "update conflict"),
            (3961, "DDL during a snapshot read"),
            (596, "session was killed"),
            (1204, "out of locks"),
            (701, "out of memory"),
            (8645, "waiting for memory"),
            (40197, "failing over"),
            (40501, "Azure SQL is busy"),
            (40613, "not available"),
            (1205, "deadlock victim"),
        ] {
            let error = error("HY000", native, "x");
            assert!(classify(&error).retryable(), "{native}");
            let text = reason(&error);
            assert!(text.contains(reason_text), "{native}: {text}");
            assert!(
                text.contains(&format!("error {native}")),
                "{native}: {text}"
            );
        }
        assert_eq!(
            reason(&error("57014", 1, "x")),
            "the statement timed out or was cancelled"
        );
    }

    #[test]
    fn the_most_decisive_record_of_several_is_chosen() {
        let terminated = error("01000", 3621, "The statement has been terminated.");
        let deadlock = error("40001", 1205, "Transaction was deadlocked");
        let login = error("28000", 18456, "Login failed");
        let link = error("08001", 0, "TCP Provider: Error code 0x2749");
        assert_eq!(decisive(&[]), None);
        assert_eq!(decisive(std::slice::from_ref(&terminated)), Some(0));
        assert_eq!(decisive(&[terminated.clone(), deadlock.clone()]), Some(1));
        assert_eq!(decisive(&[deadlock.clone(), terminated.clone()]), Some(0));
        assert_eq!(decisive(&[link.clone(), login.clone()]), Some(1));
        assert_eq!(
            decisive(&[error("42000", 102, "syntax"), terminated]),
            Some(0)
        );
    }

    /// psqlODBC uses 207 and 208 for its own connection errors; those must not read as SQL
    /// Server's "invalid column" / "invalid object name".
    #[test]
    fn psqlodbc_numbers_do_not_collide_with_sql_server_ones() {
        assert_eq!(class("HY011", 207, "x"), ErrorClass::Other);
        assert_eq!(class("HY001", 208, "x"), ErrorClass::Other);
    }

    /// Only HY000 (and 08001) read the message: a generic state with PostgreSQL's text.
    #[test]
    fn message_fallback_for_generic_states() {
        for (message, expected) in [
            (
                "server closed the connection unexpectedly",
                ErrorClass::ConnectionLost,
            ),
            (
                "could not receive data from server: Connection reset by peer",
                ErrorClass::ConnectionLost,
            ),
            ("no connection to the server", ErrorClass::ConnectionLost),
            (
                "FATAL: terminating connection due to administrator command",
                ErrorClass::ServerBusy,
            ),
            (
                "ERROR: canceling statement due to lock timeout",
                ErrorClass::LockTimeout,
            ),
            (
                "ERROR: canceling statement due to statement timeout",
                ErrorClass::QueryTimeout,
            ),
            ("ERROR: deadlock detected", ErrorClass::Deadlock),
            (
                "ERROR: could not serialize access due to concurrent update",
                ErrorClass::Deadlock,
            ),
            (
                "FATAL: the database system is starting up",
                ErrorClass::ServerBusy,
            ),
            (
                "FATAL:  password authentication failed for user \"etl\"",
                ErrorClass::Authentication,
            ),
            ("something else entirely", ErrorClass::Other),
        ] {
            assert_eq!(class("HY000", 0, message), expected, "{message}");
        }
        assert_eq!(
            class(
                "08001",
                101,
                "connection to server at \"db\", port 5432 failed: FATAL:  password \
                 authentication failed for user \"etl\""
            ),
            ErrorClass::Authentication
        );
        assert_eq!(
            class(
                "08001",
                101,
                "connection to server at \"db\", port 5432 failed: FATAL:  permission denied \
                 for database \"ehr\""
            ),
            ErrorClass::Permission
        );
        // A specific SQLSTATE wins over the text.
        assert_eq!(
            class("42601", 1, "ERROR: deadlock detected"),
            ErrorClass::BadSql
        );
    }

    #[test]
    fn retry_and_fatal_rules() {
        let all = [
            ErrorClass::Deadlock,
            ErrorClass::LockTimeout,
            ErrorClass::ConnectionLost,
            ErrorClass::QueryTimeout,
            ErrorClass::ServerBusy,
            ErrorClass::Permission,
            ErrorClass::ObjectMissing,
            ErrorClass::BadSql,
            ErrorClass::DataConversion,
            ErrorClass::Authentication,
            ErrorClass::Other,
        ];
        let retryable: Vec<_> = all
            .iter()
            .filter(|c| c.retryable())
            .map(|c| c.name())
            .collect();
        assert_eq!(
            retryable,
            [
                "deadlock",
                "lock_timeout",
                "connection_lost",
                "query_timeout",
                "server_busy"
            ]
        );
        let fatal: Vec<_> = all
            .iter()
            .filter(|c| c.fatal_for_run())
            .map(|c| c.name())
            .collect();
        assert_eq!(fatal, ["authentication"]);
        assert!(!ErrorClass::Authentication.retryable());
        let mut names: Vec<_> = all.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn read_errors_lose_values_and_statement_text() {
        assert_eq!(
            error("22P02", 1, "ERROR: invalid input syntax for type integer: \"Smith, John\";\nError while fetching")
                .without_values()
                .message,
            "ERROR: invalid input syntax for type integer: \"…\""
        );
        assert_eq!(
            error("22P02", 1, "The connection is down\nFailed to send 'declare \"SQL_CUR1\" cursor for SELECT x FROM t WHERE k > 'MRN123''")
                .without_values()
                .message,
            "The connection is down"
        );
        assert_eq!(
            error(
                "22P02",
                1,
                "Failed to send declare c cursor for SELECT * FROM t WHERE id > 42"
            )
            .without_values()
            .message,
            "Failed to send [statement omitted]"
        );
        let kept = error(
            "22P02",
            1,
            "ERROR: canceling statement due to lock timeout;\nError while executing",
        );
        assert_eq!(
            kept.without_values().message,
            "ERROR: canceling statement due to lock timeout"
        );
    }
}
