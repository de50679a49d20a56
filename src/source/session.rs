//! Session settings every worker connection starts with: the isolation level the reads use and
//! how long a read waits for a lock before giving up (and being retried).

use serde::{Deserialize, Serialize};

use super::Dialect;

/// How reads see concurrent writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// The database default. On SQL Server with READ_COMMITTED_SNAPSHOT ON it is already
    /// row-versioned and does not block writers.
    ReadCommitted,
    /// A consistent, lock-free read from row versions (SQL Server, when the database has
    /// ALLOW_SNAPSHOT_ISOLATION ON; `check` tells). PostgreSQL: REPEATABLE READ, its snapshot.
    Snapshot,
    /// NOLOCK: may read rows twice or miss them during page splits. Never the default.
    ReadUncommitted,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::Snapshot => "snapshot",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// The statements run on each new worker connection, in order.
pub fn setup_statements(
    dialect: Dialect,
    isolation: Isolation,
    lock_timeout_ms: Option<u64>,
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
            if let Some(ms) = lock_timeout_ms {
                statements.push(format!("SET LOCK_TIMEOUT {ms}"));
            }
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
            if let Some(ms) = lock_timeout_ms {
                statements.push(format!("SET lock_timeout = {ms}"));
            }
        }
        // One writer at a time and no isolation levels to choose: nothing to set.
        Dialect::Sqlite => {}
    }
    statements
}

/// SQL Server: whether the database allows SNAPSHOT isolation and uses row versioning for READ
/// COMMITTED (`ehi-sync check` reports both).
pub const SQLSERVER_SNAPSHOT_STATE_SQL: &str = "\
SELECT snapshot_isolation_state_desc, is_read_committed_snapshot_on \
FROM sys.databases WHERE database_id = DB_ID()";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tsql_test::parse;

    #[test]
    fn sqlserver_session_statements_parse() {
        let statements = setup_statements(Dialect::SqlServer, Isolation::Snapshot, Some(30_000));
        assert_eq!(
            statements,
            [
                "SET TRANSACTION ISOLATION LEVEL SNAPSHOT",
                "SET LOCK_TIMEOUT 30000"
            ]
        );
        for statement in &statements {
            assert_eq!(&parse(statement), statement);
        }
        let default = setup_statements(Dialect::SqlServer, Isolation::ReadCommitted, None);
        assert_eq!(default, ["SET TRANSACTION ISOLATION LEVEL READ COMMITTED"]);
        assert_eq!(parse(&default[0]), default[0]);
        let nolock = setup_statements(Dialect::SqlServer, Isolation::ReadUncommitted, None);
        assert_eq!(
            parse(&nolock[0]),
            "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"
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
    fn postgres_session_statements() {
        assert_eq!(
            setup_statements(Dialect::Postgres, Isolation::Snapshot, Some(500)),
            [
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "SET lock_timeout = 500"
            ]
        );
        assert!(setup_statements(Dialect::Sqlite, Isolation::Snapshot, Some(1)).is_empty());
    }
}
