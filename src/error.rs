//! Errors as types, and the exit code each one maps to.
//!
//! A scheduler (Task Scheduler, cron, systemd) acts on the exit code, so every error kind maps to
//! one documented code (see the README). No error message ever carries a row value or a password:
//! connection strings are redacted before they are put into an error (see
//! `config::connection_string::redact`), and database messages are scrubbed of the password and
//! of row values (see `source::errors`).

use std::path::PathBuf;

use crate::model::Holder;

/// Exit codes documented in the README. A scheduled task decides on these.
pub(crate) mod exit_code {
    /// Everything selected was processed.
    pub(crate) const OK: i32 = 0;
    /// An unexpected internal error; please report it.
    pub(crate) const INTERNAL: i32 = 1;
    /// Bad command line or configuration: fix the input, retrying will not help.
    pub(crate) const CONFIG: i32 = 2;
    /// The database could not be reached or refused the login.
    pub(crate) const CONNECTION: i32 = 3;
    /// Some tables failed, the others finished. Re-running resumes the failed ones.
    pub(crate) const PARTIAL_FAILURE: i32 = 4;
    /// The catalog could not be read (permissions, unsupported database).
    pub(crate) const DISCOVERY: i32 = 5;
    /// Another run holds the output folder's lock; try again later.
    pub(crate) const LOCKED: i32 = 6;
    /// Stopped by Ctrl+C / SIGTERM after a final checkpoint; the next run resumes.
    pub(crate) const INTERRUPTED: i32 = 7;
    /// The state file cannot be used (damaged, other version, other source); nothing was changed.
    pub(crate) const STATE: i32 = 8;
    /// The sync process crashed (a driver crash, usually) `max_crash_restarts` times in a row
    /// without progress; the output is intact up to the last checkpoint and the next run resumes.
    pub(crate) const CRASHED: i32 = 9;
}

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigError),

    #[error("cannot connect to the database ({connection}): {source}")]
    Connect {
        /// The connection string with its password redacted.
        connection: String,
        source: DbError,
    },

    #[error("{context}: {source}")]
    Database { context: String, source: DbError },

    /// The catalog could not be read or the database is not one ehi-sync supports.
    #[error("{0}")]
    Discovery(String),

    /// Something that should not happen whatever the input: a thread that panicked, a signal
    /// handler the OS refused, a report that could not be rendered. Please report it.
    #[error("{0}")]
    Internal(String),

    #[error("{0}")]
    Locked(#[from] LockError),

    #[error("{0}")]
    State(#[from] StateError),

    #[error("{context} '{path}': {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why the run lock of an output folder cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another ehi-sync run (pid {pid} on {host}, started {started_at}) is writing to '{dir}'; \
         wait for it to finish or stop it, then try again",
        pid = .holder.as_ref().map_or("unknown".to_owned(), |h| h.pid.to_string()),
        host = .holder.as_ref().map_or("unknown host", |h| h.host.as_str()),
        started_at = .holder.as_ref().map_or("at an unknown time", |h| h.started_at.as_str()),
    )]
    Held {
        dir: PathBuf,
        holder: Option<Holder>,
    },
    #[error("cannot use the lock file '{path}': {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a state file cannot be used. The run stops before touching any output.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state file '{path}' is damaged ({problem}); no output was changed. Restore it from \
         a backup, or run `ehi-sync sync --restart` to discard the unfinished run and start over"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "the state file '{path}' was written by an incompatible version of ehi-sync (state \
         version {found}, this version reads {reads}); no output was changed. Finish \
         the run with the version that started it, or run `ehi-sync sync --restart`"
    )]
    Version {
        path: PathBuf,
        found: u64,
        reads: u32,
    },
    #[error(
        "the state file '{path}' belongs to another source or output format ({theirs}; this \
         config: {ours}); no output was changed. Use another output_dir, or run \
         `ehi-sync sync --restart` to discard the unfinished run"
    )]
    OtherSource {
        path: PathBuf,
        theirs: String,
        ours: String,
    },
}

impl Error {
    /// The database error behind this one, for the retry decision.
    pub(crate) fn db_error(&self) -> Option<&DbError> {
        match self {
            Error::Connect { source, .. } | Error::Database { source, .. } => Some(source),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => exit_code::CONFIG,
            Error::Connect { .. } => exit_code::CONNECTION,
            Error::Database { .. } | Error::Discovery(_) => exit_code::DISCOVERY,
            Error::Io { .. } | Error::Internal(_) => exit_code::INTERNAL,
            Error::Locked(LockError::Held { .. }) => exit_code::LOCKED,
            Error::Locked(LockError::Io { .. }) => exit_code::INTERNAL,
            Error::State(_) => exit_code::STATE,
        }
    }
}

/// A configuration problem. The message names the key, the problem and the expected form.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("the config file '{path}' is not valid JSON (line {line}, column {column}): {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("config key '{key}': {problem}; expected {expected}")]
    Invalid {
        key: String,
        problem: String,
        expected: String,
    },

    #[error("config key '{key}' is required: {hint}")]
    Missing { key: String, hint: String },

    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    pub(crate) fn invalid(
        key: impl Into<String>,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
            expected: expected.into(),
        }
    }
}

/// An ODBC diagnostic reduced to what classification needs: SQLSTATE, native code and a message
/// already scrubbed of the password. Built and scrubbed of values in `source::errors`, beside
/// its classification.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} (SQLSTATE {state}, native error {native})")]
pub struct DbError {
    pub state: String,
    pub(crate) native: i32,
    pub message: String,
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_exits_with_its_documented_code() {
        let code = |error: Error| error.exit_code();
        assert_eq!(
            code(Error::Internal("the writer thread stopped".into())),
            exit_code::INTERNAL
        );
        assert_eq!(
            code(Error::Discovery("no user tables".into())),
            exit_code::DISCOVERY
        );
        assert_eq!(
            code(Error::Config(ConfigError::Other("bad".into()))),
            exit_code::CONFIG
        );
    }
}
