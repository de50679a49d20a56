//! The database side: connection strings, connections, SQL dialects and catalog discovery.
//!
//! One ODBC `Environment` per process (odbc-api's static one); every worker opens its own
//! blocking `Connection` from a [`Source`].

pub mod catalog;
pub(crate) mod delivery;
pub mod errors;
pub(crate) mod key;
mod postgres;
mod query;
pub(crate) mod select;
pub mod session;
mod sqlite;
pub mod sqlserver;
pub(crate) mod statement;
#[cfg(test)]
pub(crate) mod tsql_test;
pub(crate) mod types;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use odbc_api::{Connection, ConnectionOptions, Cursor, Environment};
use serde::Serialize;

use crate::config::{Config, SourceConfig};
use crate::error::{ConfigError, DbError, Error, Result};

use crate::model::Dialect;
pub(crate) use query::{query_text, text_rows};

impl Dialect {
    /// Maps `SQL_DBMS_NAME` ("Microsoft SQL Server", "PostgreSQL", "SQLite") to a dialect.
    pub(crate) fn from_dbms_name(name: &str) -> Option<Dialect> {
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

    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) fn qualified_table(self, schema: &str, table: &str) -> String {
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
    pub(crate) fn string_literal(self, value: &str) -> String {
        match self {
            Dialect::SqlServer => format!("N'{}'", value.replace('\'', "''")),
            Dialect::Postgres | Dialect::Sqlite => format!("'{}'", value.replace('\'', "''")),
        }
    }
}

/// How to reach the source database; opens as many connections as the workers need.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    connection_string: String,
    secret: Option<String>,
    login_timeout_sec: u32,
    /// How statement text must be handed over, found on the first connection.
    statement_text: Arc<OnceLock<StatementText>>,
}

/// How statement text reaches the driver. Statements go through the wide (UTF-16) ODBC
/// functions, which a Unicode driver (Microsoft ODBC Driver 18, psqlODBC Unicode, FreeTDS)
/// receives as they are. A driver without wide functions (sqliteodbc) gets them from unixODBC
/// converted to 8 bits, one byte per UTF-16 unit, in the process's "C" locale: there, passing
/// each UTF-8 byte as the character of the same number delivers the exact UTF-8 bytes.
/// A probe on the first connection decides, and refuses a driver that mangles both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatementText {
    Wide,
    Utf8Bytes,
}

/// Non-ASCII text whose round trip through a literal proves statement text arrives intact:
/// Latin-1, a BMP character beyond it, and one outside the BMP (a surrogate pair in UTF-16).
const STATEMENT_TEXT_PROBE: &str = "é€😀";

impl Source {
    pub(crate) fn from_config(config: &Config) -> Source {
        let connection_string = match &config.source {
            SourceConfig::ConnectionString {
                connection_string, ..
            } => connection_string.clone(),
            SourceConfig::SqlServer(sql) => crate::config::connection_string::sqlserver(sql),
        };
        Source {
            connection_string,
            secret: config.source.secret().map(str::to_owned),
            login_timeout_sec: config.login_timeout_sec,
            statement_text: Arc::new(OnceLock::new()),
        }
    }

    /// `sql` as it must be passed to odbc-api for the driver to receive exactly `sql`.
    pub(crate) fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        match self.statement_text.get() {
            Some(StatementText::Utf8Bytes) if !sql.is_ascii() => {
                Cow::Owned(sql.bytes().map(char::from).collect())
            }
            _ => Cow::Borrowed(sql),
        }
    }

    /// Finds how statement text reaches this driver: a literal holding
    /// [`STATEMENT_TEXT_PROBE`] is selected each way and compared with what comes back.
    fn probe_statement_text(&self, connection: &Connection<'_>) -> Result<StatementText> {
        let dbms = connection
            .database_management_system_name()
            .map_err(|e| self.db_error("reading the DBMS name", &e))?;
        let prefix = match Dialect::from_dbms_name(&dbms) {
            Some(Dialect::SqlServer) => "N",
            _ => "",
        };
        let sql = format!("SELECT {prefix}'{STATEMENT_TEXT_PROBE}'");
        // A mangled literal may also fail to parse: an error only counts when no way returned
        // text at all.
        let mut mangled = false;
        let mut last_error = None;
        for (way, text) in [
            (StatementText::Wide, sql.clone()),
            (
                StatementText::Utf8Bytes,
                sql.bytes().map(char::from).collect(),
            ),
        ] {
            let read = (|| {
                let Some(mut cursor) = connection.execute(&text, (), None)? else {
                    return Ok(None);
                };
                let Some(mut row) = cursor.next_row()? else {
                    return Ok(None);
                };
                let mut buffer = Vec::new();
                Ok::<_, odbc_api::Error>(
                    row.get_wide_text(1, &mut buffer)?
                        .then(|| String::from_utf16_lossy(&buffer)),
                )
            })();
            match read {
                Ok(Some(text)) if text == STATEMENT_TEXT_PROBE => return Ok(way),
                Ok(_) => mangled = true,
                Err(e) => last_error = Some(e),
            }
        }
        if let (Some(e), false) = (last_error, mangled) {
            return Err(self.db_error("checking that statement text reaches the driver intact", &e));
        }
        // Like the text self-check's verdict: the driver or the locale must be set up otherwise.
        Err(Error::Config(ConfigError::Other(format!(
            "the ODBC driver does not receive non-ASCII statement text intact (a literal \
             '{STATEMENT_TEXT_PROBE}' came back changed): table and column names with accents \
             would be misread; check the driver and the process locale (LANG, LC_ALL)"
        ))))
    }

    /// The connection string with the password replaced by `***`: the only form ever shown.
    pub(crate) fn redacted(&self) -> String {
        crate::config::connection_string::redact(&self.connection_string)
    }

    /// The secret to scrub from driver messages.
    pub(crate) fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    /// Opens one blocking connection with the login timeout set.
    pub(crate) fn connect(&self) -> Result<Connection<'static>> {
        let env = environment()?;
        let options = ConnectionOptions {
            login_timeout_sec: Some(self.login_timeout_sec),
            packet_size: None,
        };
        let connection = env
            .connect_with_connection_string(&self.connection_string, options)
            .map_err(|e| Error::Connect {
                connection: self.redacted(),
                source: DbError::from_odbc(&e, self.secret()),
            })?;
        if self.statement_text.get().is_none() {
            let way = self.probe_statement_text(&connection)?;
            let _ = self.statement_text.set(way);
        }
        Ok(connection)
    }

    /// Converts an odbc-api error raised while doing `context` on this source.
    pub(crate) fn db_error(&self, context: impl Into<String>, error: &odbc_api::Error) -> Error {
        Error::Database {
            context: context.into(),
            source: DbError::from_odbc(error, self.secret()),
        }
    }
}

/// The process-wide ODBC environment.
pub(crate) fn environment() -> Result<&'static Environment> {
    odbc_api::environment().map_err(|e| Error::Connect {
        connection: "(no connection yet: the ODBC driver manager could not start)".into(),
        source: DbError::from_odbc(&e, None),
    })
}

/// What the database and the driver say about themselves (`ehi-sync check`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerInfo {
    pub(crate) dialect: Dialect,
    pub(crate) dbms_name: String,
    pub(crate) dbms_version: String,
    pub(crate) driver_name: String,
    pub(crate) driver_version: String,
    pub(crate) database: String,
}

/// Detects the dialect of an open connection.
pub(crate) fn detect_dialect(source: &Source, connection: &Connection<'_>) -> Result<Dialect> {
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

/// The name of the database the connection reads. Asked with a query: psqlODBC's wide
/// `SQLGetConnectAttrW(SQL_ATTR_CURRENT_CATALOG)` reports a length that cuts the name short.
pub(crate) fn current_database(
    source: &Source,
    connection: &Connection<'_>,
    dialect: Dialect,
) -> Result<String> {
    let sql = match dialect {
        Dialect::SqlServer => "SELECT DB_NAME()",
        Dialect::Postgres => "SELECT current_database()",
        // The file is the database; sqliteodbc reports no catalog.
        Dialect::Sqlite => return Ok("main".to_owned()),
    };
    let rows = query_text(source, connection, "the current database", sql)?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .unwrap_or_default())
}

/// Reads the DBMS and driver names and versions. Takes the connection because the driver
/// information needs its raw handle.
pub(crate) fn server_info(source: &Source, connection: Connection<'static>) -> Result<ServerInfo> {
    let dialect = detect_dialect(source, &connection)?;
    let dbms_name = connection
        .database_management_system_name()
        .map_err(|e| source.db_error("reading the DBMS name", &e))?;
    let database = current_database(source, &connection, dialect)?;
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
    use crate::model::Dialect;

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
    fn statement_text_for_a_driver_without_wide_functions_is_its_utf8_bytes() {
        let source = Source {
            connection_string: String::new(),
            secret: None,
            login_timeout_sec: 1,
            statement_text: Arc::new(OnceLock::new()),
        };
        let sql = "SELECT \"Ünï col\" FROM t";
        assert_eq!(source.sql(sql), sql, "before the probe");
        source
            .statement_text
            .set(StatementText::Utf8Bytes)
            .expect("unset");
        let passed = source.sql(sql);
        // unixODBC narrows each UTF-16 unit to one byte: the driver gets the UTF-8 bytes.
        let narrowed: Vec<u8> = passed.encode_utf16().map(|u| u as u8).collect();
        assert!(passed.encode_utf16().all(|u| u <= 0xFF));
        assert_eq!(narrowed, sql.as_bytes());
        assert!(matches!(source.sql("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn string_literals_double_quotes() {
        assert_eq!(Dialect::SqlServer.string_literal("O'Brien"), "N'O''Brien'");
        assert_eq!(Dialect::Postgres.string_literal("it's"), "'it''s'");
    }
}
