//! The database side: connection strings, connections, SQL dialects and catalog discovery.
//!
//! One ODBC `Environment` per process (odbc-api's static one); every worker opens its own
//! blocking `Connection` from a [`Source`].

pub mod catalog;
pub mod connection_string;
pub mod errors;
mod postgres;
mod query;
pub mod session;
mod sqlite;
pub mod sqlserver;
pub mod statement;
#[cfg(test)]
pub(crate) mod tsql_test;
pub mod types;

use odbc_api::{Connection, ConnectionOptions, Environment};
use serde::{Deserialize, Serialize};

use crate::config::{Config, SourceConfig};
use crate::error::{DbError, Error, Result};

pub use query::query_text;

/// The SQL flavour of the source, detected from the DBMS name the driver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    SqlServer,
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Maps `SQL_DBMS_NAME` ("Microsoft SQL Server", "PostgreSQL", "SQLite") to a dialect.
    pub fn from_dbms_name(name: &str) -> Option<Dialect> {
        let name = name.to_ascii_lowercase();
        if name.contains("sql server") {
            Some(Dialect::SqlServer)
        } else if name.contains("postgres") {
            Some(Dialect::Postgres)
        } else if name.contains("sqlite") {
            Some(Dialect::Sqlite)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::SqlServer => "sqlserver",
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// Quotes an identifier: `[..]` with `]` doubled on SQL Server, `".."` with `"` doubled
    /// elsewhere. Safe for spaces, reserved words, mixed case and non-ASCII names.
    pub fn quote_identifier(self, name: &str) -> String {
        match self {
            Dialect::SqlServer => format!("[{}]", name.replace(']', "]]")),
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// The quoted `schema.table` name as used in `FROM`. SQLite has one schema, `main`, which is
    /// implied.
    pub fn qualified_table(self, schema: &str, table: &str) -> String {
        match self {
            Dialect::Sqlite => self.quote_identifier(table),
            _ => format!(
                "{}.{}",
                self.quote_identifier(schema),
                self.quote_identifier(table)
            ),
        }
    }

    /// A string literal with quotes doubled (used only for catalog names, never for row values).
    pub fn string_literal(self, value: &str) -> String {
        match self {
            Dialect::SqlServer => format!("N'{}'", value.replace('\'', "''")),
            Dialect::Postgres | Dialect::Sqlite => format!("'{}'", value.replace('\'', "''")),
        }
    }
}

/// How to reach the source database; opens as many connections as the workers need.
#[derive(Debug, Clone)]
pub struct Source {
    connection_string: String,
    secret: Option<String>,
    login_timeout_sec: u32,
}

impl Source {
    pub fn from_config(config: &Config) -> Source {
        let connection_string = match &config.source {
            SourceConfig::ConnectionString {
                connection_string, ..
            } => connection_string.clone(),
            SourceConfig::SqlServer(sql) => connection_string::sqlserver(sql),
        };
        Source {
            connection_string,
            secret: config.source.secret().map(str::to_owned),
            login_timeout_sec: config.login_timeout_sec,
        }
    }

    /// The connection string with the password replaced by `***`: the only form ever shown.
    pub fn redacted(&self) -> String {
        connection_string::redact(&self.connection_string)
    }

    /// The secret to scrub from driver messages.
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    /// Opens one blocking connection with the login timeout set.
    pub fn connect(&self) -> Result<Connection<'static>> {
        let env = environment()?;
        let options = ConnectionOptions {
            login_timeout_sec: Some(self.login_timeout_sec),
            packet_size: None,
        };
        env.connect_with_connection_string(&self.connection_string, options)
            .map_err(|e| Error::Connect {
                connection: self.redacted(),
                source: DbError::from_odbc(&e, self.secret()),
            })
    }

    /// Converts an odbc-api error raised while doing `context` on this source.
    pub fn db_error(&self, context: impl Into<String>, error: &odbc_api::Error) -> Error {
        Error::Database {
            context: context.into(),
            source: DbError::from_odbc(error, self.secret()),
        }
    }
}

/// The process-wide ODBC environment.
pub fn environment() -> Result<&'static Environment> {
    odbc_api::environment().map_err(|e| Error::Connect {
        connection: "(no connection yet: the ODBC driver manager could not start)".into(),
        source: DbError::from_odbc(&e, None),
    })
}

/// What the database and the driver say about themselves (`ehi-sync check`).
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub dialect: Dialect,
    pub dbms_name: String,
    pub dbms_version: String,
    pub driver_name: String,
    pub driver_version: String,
    pub database: String,
}

/// Detects the dialect of an open connection.
pub fn detect_dialect(source: &Source, connection: &Connection<'_>) -> Result<Dialect> {
    let dbms = connection
        .database_management_system_name()
        .map_err(|e| source.db_error("reading the DBMS name", &e))?;
    Dialect::from_dbms_name(&dbms).ok_or_else(|| {
        Error::Discovery(format!(
            "the database reports itself as '{dbms}', which ehi-sync does not support; \
             supported are Microsoft SQL Server, PostgreSQL and SQLite"
        ))
    })
}

/// Reads the DBMS and driver names and versions. Takes the connection because the driver
/// information needs its raw handle.
pub fn server_info(source: &Source, connection: Connection<'static>) -> Result<ServerInfo> {
    let dialect = detect_dialect(source, &connection)?;
    let dbms_name = connection
        .database_management_system_name()
        .map_err(|e| source.db_error("reading the DBMS name", &e))?;
    let database = connection
        .current_catalog()
        .map_err(|e| source.db_error("reading the current database", &e))?;
    let handle = connection.into_handle();
    let info = |info_type| raw_info_string(handle.as_sys(), info_type);
    let server = ServerInfo {
        dialect,
        dbms_name,
        dbms_version: info(odbc_api::sys::InfoType::DbmsVer),
        driver_name: info(odbc_api::sys::InfoType::DriverName),
        driver_version: info(odbc_api::sys::InfoType::DriverVer),
        database,
    };
    let mut handle = handle;
    // A failed disconnect after a read-only session loses nothing; the handle is freed on drop.
    let _ = handle.disconnect();
    Ok(server)
}

/// `SQLGetInfo` for a string-valued info type; odbc-api exposes only the DBMS name. Returns an
/// empty string when the driver does not answer.
fn raw_info_string(hdbc: odbc_api::sys::HDbc, info_type: odbc_api::sys::InfoType) -> String {
    use odbc_api::sys::{Pointer, SqlReturn};
    let mut buffer = vec![0u16; 512];
    let mut length: i16 = 0;
    let byte_len = i16::try_from(buffer.len() * 2).unwrap_or(i16::MAX);
    // SAFETY: `hdbc` is a connected handle owned by the caller for the duration of this call;
    // the buffer pointer and its byte length describe memory we own; the driver writes at most
    // `byte_len` bytes and reports the full length in `length`.
    let ret = unsafe {
        odbc_api::sys::SQLGetInfoW(
            hdbc,
            info_type,
            buffer.as_mut_ptr() as Pointer,
            byte_len,
            &mut length,
        )
    };
    if ret != SqlReturn::SUCCESS && ret != SqlReturn::SUCCESS_WITH_INFO {
        return String::new();
    }
    let chars = usize::try_from(length).unwrap_or(0) / 2;
    let chars = chars.min(buffer.len().saturating_sub(1));
    String::from_utf16_lossy(&buffer[..chars])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_from_dbms_name() {
        assert_eq!(
            Dialect::from_dbms_name("Microsoft SQL Server"),
            Some(Dialect::SqlServer)
        );
        assert_eq!(
            Dialect::from_dbms_name("PostgreSQL"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::from_dbms_name("SQLite"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_dbms_name("Oracle"), None);
    }

    #[test]
    fn quoting_names_that_need_it() {
        let ss = Dialect::SqlServer;
        assert_eq!(ss.quote_identifier("order"), "[order]");
        assert_eq!(ss.quote_identifier("odd]name"), "[odd]]name]");
        assert_eq!(
            ss.qualified_table("dbo", "Order Detail"),
            "[dbo].[Order Detail]"
        );
        let pg = Dialect::Postgres;
        assert_eq!(pg.quote_identifier("user"), "\"user\"");
        assert_eq!(pg.quote_identifier("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            pg.qualified_table("Ünïcode", "Mixed Case"),
            "\"Ünïcode\".\"Mixed Case\""
        );
        assert_eq!(
            Dialect::Sqlite.qualified_table("main", "select"),
            "\"select\""
        );
    }

    #[test]
    fn string_literals_double_quotes() {
        assert_eq!(Dialect::SqlServer.string_literal("O'Brien"), "N'O''Brien'");
        assert_eq!(Dialect::Postgres.string_literal("it's"), "'it''s'");
    }
}
