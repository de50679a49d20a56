//! Why a worker fails a table: the reason goes to the writer, which shows it in the log, the
//! validation record and the state file. A reason names the table, column, codes and what to
//! change, never a row value.

use std::fmt;
use std::path::PathBuf;

use super::fetch::BatchError;
use crate::error::{DbError, Error};
use crate::incremental::keys::KeyListError;
use crate::incremental::sql::InvalidPosition;
use crate::model::Tier;
use crate::source::errors::classify;
use crate::source::key::{KeyMismatch, NotAdvancing};

/// Why the table cannot be copied in this run.
#[derive(Debug)]
pub(crate) enum TableFailure {
    /// A database error that a retry would not cure (permission, a missing object, bad SQL).
    Database {
        context: String,
        error: DbError,
    },
    /// Transient database errors kept coming, `retries` times in a row without progress.
    RetriesExhausted {
        retries: u32,
        context: String,
        error: DbError,
        /// The exact count of this tier's table is what kept failing.
        exact_count_of: Option<Tier>,
    },
    /// The preparation stalled and was abandoned by the watchdog `retries` times.
    PreparationStalled {
        retries: u32,
        exact_count_of: Option<Tier>,
    },
    /// Another error of a command, met while reading the table (a catalog value too long).
    Run(Error),
    ChangeTrackingDisabled,
    InvalidPosition(InvalidPosition),
    /// A resume point from the state file does not fit its key column.
    ResumePoint(KeyMismatch),
    /// A key bound could not be bound as a statement parameter.
    KeyParameter {
        table: String,
        error: KeyMismatch,
    },
    /// The text parameter probe came back changed.
    TextParameterChanged,
    LowDiskSpace {
        table: String,
        /// What the table does instead: "not started", "stopped before its next partition".
        when: &'static str,
        shortage: String,
    },
    KeyList {
        table: String,
        error: KeyListError,
    },
    /// The worker panicked (a bug) while it read the table.
    Panicked {
        table: String,
    },
    /// A resumed key scan's deletes were written from a scan that is gone.
    KeyScanGone {
        table: String,
    },
    /// A key value was NULL or not of its type.
    KeyUnreadable {
        table: String,
    },
    /// A key value was NULL or not of its type, where the read must resume after it.
    ResumeKeyUnreadable {
        table: String,
    },
    NotAdvancing {
        table: String,
        error: NotAdvancing,
    },
    Batch {
        table: String,
        error: BatchError,
    },
    Compression {
        table: String,
        error: std::io::Error,
    },
    /// A value of a bulk fetch did not arrive (the message of `delivery::Undelivered::describe`).
    Undelivered(String),
    /// A value read in pieces did not arrive whole.
    PieceMissing {
        table: String,
        column: String,
        diagnostic: Option<DbError>,
    },
    /// A row with a long value could not be spooled to a temporary file in `dir`.
    Spill {
        table: String,
        dir: PathBuf,
        error: std::io::Error,
    },
    ValueTooLarge {
        column: String,
        max_value_bytes: usize,
    },
    /// The table ran longer than its tier's `timeout_seconds`.
    TimedOut {
        seconds: u64,
        tier: Tier,
    },
}

impl TableFailure {
    /// A refused login fails every table the same way: the run stops.
    pub(crate) fn fatal_for_run(&self) -> bool {
        matches!(self, TableFailure::Database { error, .. } if classify(error).fatal_for_run())
    }
}

/// What to change when the exact count of a table keeps failing: the count is a scan of the
/// whole table, which the catalog's estimate spares.
fn exact_count_hint(f: &mut fmt::Formatter<'_>, tier: Option<Tier>) -> fmt::Result {
    match tier {
        Some(tier) => write!(
            f,
            ". The exact row count (COUNT_BIG(*)) scans the whole table: set \
             tiers.{tier}.row_counts to \"catalog\" to use the catalog's row count instead, or \
             raise stall_timeout_seconds and tiers.{tier}.timeout_seconds"
        ),
        None => Ok(()),
    }
}

impl fmt::Display for TableFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableFailure::Database { context, error } => {
                write!(f, "{context}: {error} [{}]", classify(error).name())
            }
            TableFailure::RetriesExhausted {
                retries,
                context,
                error,
                exact_count_of,
            } => {
                write!(
                    f,
                    "gave up after {retries} retries: {context}: {error} [{}]",
                    classify(error).name()
                )?;
                exact_count_hint(f, *exact_count_of)
            }
            TableFailure::PreparationStalled {
                retries,
                exact_count_of,
            } => {
                write!(
                    f,
                    "gave up after {retries} retries: preparing the table did not finish within \
                     stall_timeout_seconds and the connection did not answer the cancel"
                )?;
                exact_count_hint(f, *exact_count_of)
            }
            TableFailure::Run(error) => write!(f, "{error}"),
            TableFailure::ChangeTrackingDisabled => f.write_str(
                "CHANGE_TRACKING_CURRENT_VERSION() returned no version: change tracking is not \
                 enabled on the database",
            ),
            TableFailure::InvalidPosition(error) => write!(f, "{error}"),
            TableFailure::ResumePoint(error) => write!(f, "{error}"),
            TableFailure::KeyParameter { table, error } => write!(f, "{table}: {error}"),
            TableFailure::TextParameterChanged => write!(
                f,
                "a text parameter ('{}') came back changed from the server: key bounds would \
                 not reach it intact, so keyset reads could skip or repeat rows; check the ODBC \
                 driver's character set settings",
                crate::source::key::PARAMETER_PROBE
            ),
            TableFailure::LowDiskSpace {
                table,
                when,
                shortage,
            } => write!(f, "{table}: {when}: {shortage}"),
            TableFailure::KeyList { table, error } => write!(f, "{table}: {error}"),
            TableFailure::Panicked { table } => write!(
                f,
                "{table}: an internal error of ehi-sync stopped its read (the panic message is \
                 in the log above; please report it); its files stay as checkpointed and the next \
                 sync reads it on from there"
            ),
            TableFailure::KeyScanGone { table } => write!(
                f,
                "{table}: its key scan was interrupted after it wrote deletes, and the scan they \
                 came from is gone (its work folder was removed, or an older ehi-sync ran it); \
                 run `ehi-sync sync --restart` to load the table again from its last committed \
                 position"
            ),
            TableFailure::KeyUnreadable { table } => {
                write!(f, "{table}: a primary key value could not be read")
            }
            TableFailure::ResumeKeyUnreadable { table } => write!(
                f,
                "{table}: a primary key value could not be read as a resume point"
            ),
            TableFailure::NotAdvancing { table, error } => write!(f, "{table}: {error}"),
            TableFailure::Batch { table, error } => write!(f, "{table}: {error}"),
            TableFailure::Compression { table, error } => {
                write!(f, "{table}: compression failed: {error}")
            }
            TableFailure::Undelivered(message) => f.write_str(message),
            TableFailure::PieceMissing {
                table,
                column,
                diagnostic,
            } => {
                write!(f, "{table}: a value in column '{column}' did not arrive")?;
                match diagnostic {
                    Some(diagnostic) => write!(f, ": {diagnostic}")?,
                    None => f.write_str(", the driver announced more data than it returned")?,
                }
                f.write_str(
                    "; the table is failed rather than written with a cut value. Check the ODBC \
                     driver's version",
                )
            }
            TableFailure::Spill { table, dir, error } => write!(
                f,
                "{table}: a row with a long value could not be written to a temporary file in \
                 {}: {error}",
                dir.display()
            ),
            TableFailure::ValueTooLarge {
                column,
                max_value_bytes,
            } => write!(
                f,
                "a value in column '{column}' is larger than max_value_bytes ({max_value_bytes} \
                 bytes); raise max_value_bytes in the config to copy it"
            ),
            TableFailure::TimedOut { seconds, tier } => write!(
                f,
                "the table ran longer than its tier's timeout of {seconds}s; raise \
                 tiers.{tier}.timeout_seconds to give it more time"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_timeout() -> DbError {
        DbError {
            state: "55P03".into(),
            native: 1,
            message: "ERROR: canceling statement due to lock timeout".into(),
        }
    }

    #[test]
    fn reasons_read_as_the_log_and_the_validation_record_show_them() {
        let permission = DbError {
            state: "42501".into(),
            native: 1,
            message: "ERROR: permission denied for table t".into(),
        };
        assert_eq!(
            TableFailure::Database {
                context: "reading dbo.t".into(),
                error: permission,
            }
            .to_string(),
            "reading dbo.t: ERROR: permission denied for table t (SQLSTATE 42501, native error \
             1) [permission]"
        );
        assert_eq!(
            TableFailure::RetriesExhausted {
                retries: 2,
                context: "taking the exact row count".into(),
                error: lock_timeout(),
                exact_count_of: Some(Tier::Large),
            }
            .to_string(),
            "gave up after 2 retries: taking the exact row count: ERROR: canceling statement due \
             to lock timeout (SQLSTATE 55P03, native error 1) [lock_timeout]. The exact row \
             count (COUNT_BIG(*)) scans the whole table: set tiers.large.row_counts to \
             \"catalog\" to use the catalog's row count instead, or raise stall_timeout_seconds \
             and tiers.large.timeout_seconds"
        );
        assert_eq!(
            TableFailure::PreparationStalled {
                retries: 3,
                exact_count_of: None,
            }
            .to_string(),
            "gave up after 3 retries: preparing the table did not finish within \
             stall_timeout_seconds and the connection did not answer the cancel"
        );
        assert_eq!(
            TableFailure::PieceMissing {
                table: "dbo.note".into(),
                column: "text".into(),
                diagnostic: None,
            }
            .to_string(),
            "dbo.note: a value in column 'text' did not arrive, the driver announced more data \
             than it returned; the table is failed rather than written with a cut value. Check \
             the ODBC driver's version"
        );
        assert_eq!(
            TableFailure::PieceMissing {
                table: "dbo.note".into(),
                column: "text".into(),
                diagnostic: Some(lock_timeout()),
            }
            .to_string(),
            "dbo.note: a value in column 'text' did not arrive: ERROR: canceling statement due \
             to lock timeout (SQLSTATE 55P03, native error 1); the table is failed rather than \
             written with a cut value. Check the ODBC driver's version"
        );
        assert_eq!(
            TableFailure::TimedOut {
                seconds: 60,
                tier: Tier::Small,
            }
            .to_string(),
            "the table ran longer than its tier's timeout of 60s; raise \
             tiers.small.timeout_seconds to give it more time"
        );
        assert_eq!(
            TableFailure::Batch {
                table: "dbo.t".into(),
                error: BatchError::UnknownOperation,
            }
            .to_string(),
            "dbo.t: the change tracking read returned an operation that is neither a delete nor \
             an upsert; no row of the batch was written"
        );
    }

    #[test]
    fn only_a_refused_login_stops_the_run() {
        let login = DbError {
            state: "28P01".into(),
            native: 1,
            message: "password authentication failed".into(),
        };
        let database = |error| TableFailure::Database {
            context: "connecting".into(),
            error,
        };
        assert!(database(login.clone()).fatal_for_run());
        assert!(!database(lock_timeout()).fatal_for_run());
        assert!(
            !TableFailure::RetriesExhausted {
                retries: 1,
                context: "connecting".into(),
                error: login,
                exact_count_of: None,
            }
            .fatal_for_run()
        );
    }
}
