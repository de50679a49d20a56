//! Errors as types, and the exit code each one maps to.
//!
//! A scheduler (Task Scheduler, cron, systemd) acts on the exit code, so every error kind maps to
//! one documented code (see the README). No error message ever carries a row value or a password:
//! connection strings are redacted before they are put into an error, and database messages are
//! scrubbed of the password (see `source::connection_string::redact`).

use std::path::PathBuf;

use crate::model::Holder;

/// Exit codes documented in the README. A scheduled task decides on these.
pub mod exit_code {
    /// Everything selected was processed.
    pub const OK: i32 = 0;
    /// An unexpected internal error; please report it.
    pub const INTERNAL: i32 = 1;
    /// Bad command line or configuration: fix the input, retrying will not help.
    pub const CONFIG: i32 = 2;
    /// The database could not be reached or refused the login.
    pub const CONNECTION: i32 = 3;
    /// Some tables failed, the others finished. Re-running resumes the failed ones.
    pub const PARTIAL_FAILURE: i32 = 4;
    /// The catalog could not be read (permissions, unsupported database).
    pub const DISCOVERY: i32 = 5;
    /// Another run holds the output folder's lock; try again later.
    pub const LOCKED: i32 = 6;
    /// Stopped by Ctrl+C / SIGTERM after a final checkpoint; the next run resumes.
    pub const INTERRUPTED: i32 = 7;
    /// The state file cannot be used (damaged, other version, other source); nothing was changed.
    pub const STATE: i32 = 8;
    /// The sync process crashed (a driver crash, usually) `max_crash_restarts` times in a row
    /// without progress; the output is intact up to the last checkpoint and the next run resumes.
    pub const CRASHED: i32 = 9;
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

    #[error("{0}")]
    Discovery(String),

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
    pub fn db_error(&self) -> Option<&DbError> {
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
            Error::Io { .. } => exit_code::INTERNAL,
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
    pub fn invalid(
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
/// already scrubbed of the password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} (SQLSTATE {state}, native error {native})")]
pub struct DbError {
    pub state: String,
    pub native: i32,
    pub message: String,
}

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
    pub fn without_values(mut self) -> DbError {
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn error(message: &str) -> DbError {
        DbError {
            state: "22P02".into(),
            native: 1,
            message: message.into(),
        }
    }

    #[test]
    fn read_errors_lose_values_and_statement_text() {
        assert_eq!(
            error("ERROR: invalid input syntax for type integer: \"Smith, John\";\nError while fetching")
                .without_values()
                .message,
            "ERROR: invalid input syntax for type integer: \"…\""
        );
        assert_eq!(
            error("The connection is down\nFailed to send 'declare \"SQL_CUR1\" cursor for SELECT x FROM t WHERE k > 'MRN123''")
                .without_values()
                .message,
            "The connection is down"
        );
        assert_eq!(
            error("Failed to send declare c cursor for SELECT * FROM t WHERE id > 42")
                .without_values()
                .message,
            "Failed to send [statement omitted]"
        );
        let kept = error("ERROR: canceling statement due to lock timeout;\nError while executing");
        assert_eq!(
            kept.without_values().message,
            "ERROR: canceling statement due to lock timeout"
        );
    }
}
