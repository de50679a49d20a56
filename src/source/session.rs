//! Session settings every worker connection starts with: the isolation level the reads use and
//! how long a read waits for a lock before giving up (and being retried).

use std::time::Duration;

use odbc_api::Connection;

use super::{Dialect, Source, query_text};
use crate::error::{ConfigError, Result};
use crate::model::Isolation;

/// The statements run on each new worker connection, in order.
pub(crate) fn setup_statements(
    dialect: Dialect,
    isolation: Isolation,
    lock_timeout: Option<Duration>,
) -> Vec<String> {
    let mut statements = Vec::new();
    match dialect {
        Dialect::SqlServer => {
            let level = match isolation {
                Isolation::ReadCommitted => "READ COMMITTED",
                Isolation::Snapshot => "SNAPSHOT",
                Isolation::ReadUncommitted => "READ UNCOMMITTED",
            };
            statements.push(format!("SET TRANSACTION ISOLATION LEVEL {level}"));
            if let Some(timeout) = lock_timeout {
                statements.push(format!("SET LOCK_TIMEOUT {}", timeout.as_millis()));
            }
            // In a deadlock with the hospital's own work, this session is the victim ("SET
            // DEADLOCK_PRIORITY"): its read is retried from the last key sent, theirs is not.
            statements.push("SET DEADLOCK_PRIORITY LOW".to_owned());
        }
        Dialect::Postgres => {
            // PostgreSQL reads never block on row locks; READ UNCOMMITTED behaves as READ
            // COMMITTED there, and REPEATABLE READ is its snapshot.
            let level = match isolation {
                Isolation::ReadCommitted | Isolation::ReadUncommitted => "READ COMMITTED",
                Isolation::Snapshot => "REPEATABLE READ",
            };
            statements.push(format!(
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level}"
            ));
            if let Some(timeout) = lock_timeout {
                statements.push(format!("SET lock_timeout = {}", timeout.as_millis()));
            }
        }
        // One writer at a time and no isolation levels to choose: nothing to set.
        Dialect::Sqlite => {}
    }
    statements
}

/// SQL Server: the isolation of change tracking reads where the database allows it; the
/// connection's own setup statements are run again afterwards.
pub(crate) const SQLSERVER_SNAPSHOT_STATEMENT: &str = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT";

/// SQL Server: whether the database allows SNAPSHOT isolation and uses row versioning for READ
/// COMMITTED (`ehi-sync check` reports both).
pub const SQLSERVER_SNAPSHOT_STATE_SQL: &str = "\
SELECT snapshot_isolation_state_desc, is_read_committed_snapshot_on \
FROM sys.databases WHERE database_id = DB_ID()";

/// SQL Server's row-versioning settings of the current database: whether SNAPSHOT isolation
/// is allowed, and whether READ COMMITTED reads row versions. `None` on other databases.
pub(crate) fn sqlserver_row_versioning(
    source: &Source,
    connection: &Connection<'_>,
    dialect: Dialect,
) -> Result<Option<(String, bool)>> {
    if dialect != Dialect::SqlServer {
        return Ok(None);
    }
    let rows = query_text(
        source,
        connection,
        "reading the snapshot isolation settings",
        SQLSERVER_SNAPSHOT_STATE_SQL,
    )?;
    Ok(rows.into_iter().next().map(|row| {
        let snapshot = row.first().cloned().flatten().unwrap_or_default();
        let rcsi = matches!(row.get(1).cloned().flatten().as_deref(), Some("1" | "true"));
        (snapshot, rcsi)
    }))
}

/// Refuses `snapshot` on a SQL Server database that does not allow it, before any table is
/// read (every read would fail with error 3952 otherwise).
pub(crate) fn check_isolation(
    isolation: Isolation,
    versioning: Option<&(String, bool)>,
) -> std::result::Result<(), ConfigError> {
    match (isolation, versioning) {
        (Isolation::Snapshot, Some((state, _))) if state != "ON" => Err(ConfigError::invalid(
            "isolation",
            format!(
                "\"snapshot\" needs ALLOW_SNAPSHOT_ISOLATION ON, and this database's \
                 snapshot_isolation_state is {state}"
            ),
            "\"read_committed\" (row-versioned anyway when READ_COMMITTED_SNAPSHOT is ON), or \
             ask the DBA to run ALTER DATABASE ... SET ALLOW_SNAPSHOT_ISOLATION ON",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Isolation;
    use crate::source::tsql_test::parse;

    #[test]
    fn sqlserver_session_statements_parse() {
        let statements = setup_statements(
            Dialect::SqlServer,
            Isolation::Snapshot,
            Some(Duration::from_secs(30)),
        );
        assert_eq!(
            statements,
            [
                "SET TRANSACTION ISOLATION LEVEL SNAPSHOT",
                "SET LOCK_TIMEOUT 30000",
                "SET DEADLOCK_PRIORITY LOW"
            ]
        );
        for statement in &statements {
            assert_eq!(&parse(statement), statement);
        }
        let default = setup_statements(Dialect::SqlServer, Isolation::ReadCommitted, None);
        assert_eq!(
            default,
            [
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET DEADLOCK_PRIORITY LOW"
            ]
        );
        assert_eq!(parse(&default[0]), default[0]);
        let nolock = setup_statements(Dialect::SqlServer, Isolation::ReadUncommitted, None);
        assert_eq!(
            parse(&nolock[0]),
            "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"
        );
    }

    #[test]
    fn sqlserver_snapshot_statement_parses() {
        assert_eq!(
            parse(SQLSERVER_SNAPSHOT_STATEMENT),
            SQLSERVER_SNAPSHOT_STATEMENT
        );
    }

    #[test]
    fn sqlserver_snapshot_state_query_parses() {
        assert_eq!(
            parse(SQLSERVER_SNAPSHOT_STATE_SQL),
            SQLSERVER_SNAPSHOT_STATE_SQL
        );
    }

    #[test]
    fn snapshot_is_refused_where_the_database_does_not_allow_it() {
        let off = ("OFF".to_owned(), true);
        let on = ("ON".to_owned(), false);
        let err = check_isolation(Isolation::Snapshot, Some(&off)).unwrap_err();
        assert!(
            err.to_string().contains("snapshot_isolation_state is OFF"),
            "{err}"
        );
        assert!(check_isolation(Isolation::Snapshot, Some(&on)).is_ok());
        assert!(check_isolation(Isolation::ReadCommitted, Some(&off)).is_ok());
        assert!(check_isolation(Isolation::Snapshot, None).is_ok());
    }

    #[test]
    fn the_lock_timeout_is_sent_in_milliseconds_and_none_sends_nothing() {
        let sent = |dialect, timeout| setup_statements(dialect, Isolation::ReadCommitted, timeout);
        let timeout = Some(Duration::from_millis(2500));
        assert!(sent(Dialect::SqlServer, timeout).contains(&"SET LOCK_TIMEOUT 2500".to_owned()));
        assert!(sent(Dialect::Postgres, timeout).contains(&"SET lock_timeout = 2500".to_owned()));
        for dialect in [Dialect::SqlServer, Dialect::Postgres] {
            assert!(
                !sent(dialect, None)
                    .iter()
                    .any(|s| s.to_ascii_lowercase().contains("lock_timeout")),
                "{dialect:?}"
            );
        }
    }

    #[test]
    fn postgres_session_statements() {
        assert_eq!(
            setup_statements(
                Dialect::Postgres,
                Isolation::Snapshot,
                Some(Duration::from_millis(500))
            ),
            [
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "SET lock_timeout = 500"
            ]
        );
        assert!(
            setup_statements(
                Dialect::Sqlite,
                Isolation::Snapshot,
                Some(Duration::from_secs(1))
            )
            .is_empty()
        );
    }
}
