//! One client connection: a SQLite connection with the `sys` views attached, the session state
//! SQL Server keeps (SET options, isolation level, transaction count), and the batch runner —
//! statements split, SET and transaction statements answered here, SELECTs translated and
//! streamed row by row to the sink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::Connection;
use sqlparser::ast::Statement;
use sqlparser::dialect::MsSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::Settings;
use super::catalog::{self, Catalog, SessionFacts};
use super::functions::carried_error;
use super::translate::{self, Context, Translation};
use super::types::{Stored, to_value};
use crate::model::{Backend, Interrupt, Param, ResultSink, ServerError};

/// Session ids handed out to connections, from 51 as SQL Server's user sessions start.
static NEXT_SPID: AtomicI64 = AtomicI64::new(51);

/// SQL Server's transaction isolation levels as `sys.dm_exec_sessions` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    ReadUncommitted = 1,
    ReadCommitted = 2,
    RepeatableRead = 3,
    Serializable = 4,
    Snapshot = 5,
}

pub struct Session {
    sqlite: Connection,
    settings: Settings,
    catalog: Catalog,
    spid: i64,
    trancount: i64,
    isolation: Isolation,
    lock_timeout: i64,
    deadlock_priority: i64,
    text_size: i64,
    language: String,
    date_format: String,
    /// ON/OFF options by lower-case name (ansi_nulls, quoted_identifier, nocount, fmtonly, …).
    options: HashMap<String, bool>,
    /// SET ROWCOUNT: stop a result after this many rows (0: no limit).
    row_limit: u64,
}

impl Session {
    pub fn new(sqlite: Connection, settings: Settings) -> rusqlite::Result<Session> {
        catalog::create_views(&sqlite, &settings.collation)?;
        let catalog = Catalog::load(&sqlite, &settings.collation)?;
        let options = [
            "ansi_nulls",
            "ansi_padding",
            "ansi_warnings",
            "quoted_identifier",
            "concat_null_yields_null",
            "arithabort",
            "ansi_null_dflt_on",
        ]
        .into_iter()
        .map(|o| (o.to_owned(), true))
        .collect();
        Ok(Session {
            sqlite,
            settings,
            catalog,
            spid: NEXT_SPID.fetch_add(1, Ordering::Relaxed),
            trancount: 0,
            isolation: Isolation::ReadCommitted,
            lock_timeout: -1,
            deadlock_priority: 0,
            text_size: 2_147_483_647,
            language: "us_english".to_owned(),
            date_format: "mdy".to_owned(),
            options,
            row_limit: 0,
        })
    }

    fn option(&self, name: &str) -> bool {
        self.options.get(name).copied().unwrap_or(false)
    }

    fn run_statement(
        &mut self,
        statement: &Statement,
        params: &[Param],
        sink: &mut dyn ResultSink,
    ) -> Result<(), Interrupt> {
        match statement {
            Statement::Query(query) => {
                self.refresh_catalog()?;
                let translation = {
                    let context = self.context(params);
                    translate::translate(query, &context)?
                };
                self.run(translation, sink)
            }
            Statement::If(if_statement) => {
                let mut blocks = vec![&if_statement.if_block];
                blocks.extend(&if_statement.elseif_blocks);
                for block in blocks {
                    let Some(condition) = &block.condition else {
                        continue;
                    };
                    let translation = {
                        let context = self.context(params);
                        translate::translate_condition(condition, &context)?
                    };
                    if self.evaluate(&translation)? {
                        for inner in block.conditional_statements.statements() {
                            self.run_statement(inner, params, sink)?;
                        }
                        return Ok(());
                    }
                }
                if let Some(block) = &if_statement.else_block {
                    for inner in block.conditional_statements.statements() {
                        self.run_statement(inner, params, sink)?;
                    }
                    return Ok(());
                }
                sink.done(None)
            }
            Statement::Commit { .. } => self.commit(sink),
            Statement::Rollback { .. } => self.rollback(sink),
            Statement::StartTransaction { .. } => self.begin(sink),
            other => Err(ServerError::syntax(format!(
                "the TDS test server does not support the statement {}",
                first_words(&other.to_string())
            ))
            .into()),
        }
    }

    fn context<'a>(&'a self, params: &'a [Param]) -> Context<'a> {
        Context {
            catalog: &self.catalog,
            settings: &self.settings,
            params,
            spid: self.spid,
            trancount: self.trancount,
            lock_timeout: self.lock_timeout,
            text_size: self.text_size,
            language: &self.language,
            server_name: "localhost",
            describe_only: self.option("fmtonly"),
        }
    }

    fn refresh_catalog(&mut self) -> Result<(), ServerError> {
        let version: i64 = self
            .sqlite
            .query_row("PRAGMA main.schema_version", [], |r| r.get(0))
            .map_err(sqlite_error)?;
        if version != self.catalog.schema_version {
            self.catalog =
                Catalog::load(&self.sqlite, &self.settings.collation).map_err(sqlite_error)?;
        }
        Ok(())
    }

    fn prepare_views(&self, translation: &Translation) -> Result<(), ServerError> {
        if translation.views.is_empty() {
            return Ok(());
        }
        let option = |name: &str| self.option(name);
        let facts = SessionFacts {
            spid: self.spid,
            login: "ehi",
            isolation_level: self.isolation as i64,
            lock_timeout: self.lock_timeout,
            deadlock_priority: self.deadlock_priority,
            text_size: self.text_size,
            language: &self.language,
            date_format: &self.date_format,
            option: &option,
        };
        catalog::refresh(
            &self.sqlite,
            &translation.views,
            &self.catalog,
            &self.settings,
            &facts,
            translation.histogram_tables.as_deref(),
        )
        .map_err(sqlite_error)
    }

    fn check_isolation(&self, translation: &Translation) -> Result<(), ServerError> {
        if self.isolation == Isolation::Snapshot
            && !self.settings.allow_snapshot_isolation
            && translation.reads_user_tables
        {
            return Err(ServerError::new(
                3952,
                1,
                16,
                format!(
                    "Snapshot isolation transaction failed accessing database '{}' because \
                     snapshot isolation is not allowed in this database. Use ALTER DATABASE to \
                     allow snapshot isolation.",
                    self.settings.database_name
                ),
            ));
        }
        Ok(())
    }

    fn evaluate(&self, translation: &Translation) -> Result<bool, ServerError> {
        self.prepare_views(translation)?;
        let mut statement = self
            .sqlite
            .prepare(&translation.sql)
            .map_err(sqlite_error)?;
        let value: i64 = statement
            .query_row(rusqlite::params_from_iter(translation.binds.iter()), |r| {
                r.get(0)
            })
            .map_err(sqlite_error)?;
        Ok(value != 0)
    }

    /// Runs a translated SELECT, streaming each row to the sink as SQLite produces it.
    fn run(
        &mut self,
        translation: Translation,
        sink: &mut dyn ResultSink,
    ) -> Result<(), Interrupt> {
        self.check_isolation(&translation)?;
        self.prepare_views(&translation)?;
        let mut statement = self
            .sqlite
            .prepare(&translation.sql)
            .map_err(sqlite_error)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(translation.binds.iter()))
            .map_err(sqlite_error)?;
        sink.columns(&translation.columns)?;
        let mut count: u64 = 0;
        if !self.option("fmtonly") {
            let mut values = Vec::with_capacity(translation.columns.len());
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                values.clear();
                for (i, column) in translation.columns.iter().enumerate() {
                    let stored = Stored::from_ref(row.get_ref(i).map_err(sqlite_error)?);
                    values.push(to_value(&column.ty, stored));
                }
                sink.row(&values)?;
                count += 1;
                if self.row_limit > 0 && count >= self.row_limit {
                    break;
                }
            }
        }
        sink.done(if self.option("nocount") {
            None
        } else {
            Some(count)
        })
    }

    fn begin(&mut self, sink: &mut dyn ResultSink) -> Result<(), Interrupt> {
        if self.trancount == 0 {
            // A SQLite read transaction: later reads see one snapshot, as SNAPSHOT would.
            self.sqlite.execute_batch("BEGIN").map_err(sqlite_error)?;
        }
        self.trancount += 1;
        sink.done(None)
    }

    fn commit(&mut self, sink: &mut dyn ResultSink) -> Result<(), Interrupt> {
        if self.trancount == 0 {
            return Err(ServerError::new(
                3902,
                1,
                16,
                "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            )
            .into());
        }
        self.trancount -= 1;
        if self.trancount == 0 {
            self.sqlite.execute_batch("COMMIT").map_err(sqlite_error)?;
        }
        sink.done(None)
    }

    fn rollback(&mut self, sink: &mut dyn ResultSink) -> Result<(), Interrupt> {
        if self.trancount == 0 {
            return Err(ServerError::new(
                3903,
                1,
                16,
                "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            )
            .into());
        }
        self.trancount = 0;
        self.sqlite
            .execute_batch("ROLLBACK")
            .map_err(sqlite_error)?;
        sink.done(None)
    }

    /// `SET …`: the session options SQL Server and the drivers use. Values are kept (and shown
    /// by `sys.dm_exec_sessions` and `@@LOCK_TIMEOUT`, …); nothing else changes.
    fn set(&mut self, words: &[String], sink: &mut dyn ResultSink) -> Result<(), Interrupt> {
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let value = || words.get(1).cloned().unwrap_or_default();
        let number = |w: &str| -> Result<i64, ServerError> {
            w.parse::<i64>()
                .map_err(|_| ServerError::syntax(format!("SET {} needs a number", upper[0])))
        };
        match upper.first().map(String::as_str) {
            Some("TRANSACTION") => {
                let level = upper.get(3..).map(|l| l.join(" ")).unwrap_or_default();
                self.isolation = match level.as_str() {
                    "READ UNCOMMITTED" => Isolation::ReadUncommitted,
                    "READ COMMITTED" => Isolation::ReadCommitted,
                    "REPEATABLE READ" => Isolation::RepeatableRead,
                    "SERIALIZABLE" => Isolation::Serializable,
                    "SNAPSHOT" => Isolation::Snapshot,
                    _ => {
                        return Err(ServerError::syntax(format!(
                            "unknown isolation level '{level}'"
                        ))
                        .into());
                    }
                };
            }
            Some("LOCK_TIMEOUT") => self.lock_timeout = number(&value())?,
            Some("TEXTSIZE") => {
                let size = number(&value())?;
                self.text_size = if size == 0 { 4096 } else { size };
            }
            Some("ROWCOUNT") => self.row_limit = number(&value())?.max(0) as u64,
            Some("DEADLOCK_PRIORITY") => {
                self.deadlock_priority = match upper.get(1).map(String::as_str) {
                    Some("LOW") => -5,
                    Some("NORMAL") => 0,
                    Some("HIGH") => 5,
                    Some(n) => number(n)?,
                    None => {
                        return Err(
                            ServerError::syntax("SET DEADLOCK_PRIORITY needs a value").into()
                        );
                    }
                };
            }
            Some("DATEFORMAT") => self.date_format = value().to_ascii_lowercase(),
            Some("LANGUAGE") => self.language = unquote(&value()),
            Some("DATEFIRST") => {
                number(&value())?;
            }
            Some(_) => {
                // `SET option[, option…] ON|OFF`.
                let (last, names) = upper
                    .split_last()
                    .ok_or_else(|| ServerError::syntax("SET without an option"))?;
                let on = match last.as_str() {
                    "ON" => true,
                    "OFF" => false,
                    _ => {
                        return Err(ServerError::new(
                            195,
                            10,
                            15,
                            format!("'{}' is not a recognized SET option.", words[0]),
                        )
                        .into());
                    }
                };
                for name in names.iter().filter(|n| n.as_str() != ",") {
                    if name.starts_with('@') {
                        return Err(ServerError::syntax("SET of variables").into());
                    }
                    self.options.insert(name.to_ascii_lowercase(), on);
                }
            }
            None => return Err(ServerError::syntax("SET without an option").into()),
        }
        sink.done(None)
    }
}

impl Backend for Session {
    fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        sink: &mut dyn ResultSink,
    ) -> Result<(), Interrupt> {
        let sql = translate::without_changes_keyword(sql);
        let mut rest: &str = &sql;
        let dialect = MsSqlDialect {};
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
            if rest.is_empty() {
                return Ok(());
            }
            let tokens = significant_tokens(rest)?;
            let Some(first) = tokens.first() else {
                return Ok(());
            };
            let keyword = match &first.token {
                Token::Word(w) => w.keyword,
                _ => Keyword::NoKeyword,
            };
            match keyword {
                Keyword::SET
                | Keyword::BEGIN
                | Keyword::COMMIT
                | Keyword::ROLLBACK
                | Keyword::USE => {
                    let end = tokens
                        .iter()
                        .skip(1)
                        .find(|t| is_boundary(&t.token))
                        .map_or(rest.len(), |t| byte_offset(rest, t.span.start));
                    let words: Vec<String> = tokens
                        .iter()
                        .skip(1)
                        .take_while(|t| !is_boundary(&t.token))
                        .filter(|t| !matches!(t.token, Token::EOF))
                        .map(|t| match &t.token {
                            Token::Word(w) => w.value.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    match keyword {
                        Keyword::SET => self.set(&words, sink)?,
                        Keyword::BEGIN => {
                            let first = words.first().map(|w| w.to_ascii_uppercase());
                            if !matches!(first.as_deref(), Some("TRAN" | "TRANSACTION")) {
                                return Err(ServerError::syntax("BEGIN … END blocks").into());
                            }
                            self.begin(sink)?
                        }
                        Keyword::COMMIT => self.commit(sink)?,
                        Keyword::ROLLBACK => self.rollback(sink)?,
                        _ => {
                            let name = unquote(&words.concat());
                            if !name.eq_ignore_ascii_case(&self.settings.database_name) {
                                return Err(ServerError::new(
                                    911,
                                    1,
                                    16,
                                    format!(
                                        "Database '{name}' does not exist. Make sure that the \
                                         name is entered correctly."
                                    ),
                                )
                                .into());
                            }
                            sink.done(None)?
                        }
                    }
                    rest = &rest[end..];
                }
                _ => {
                    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
                    let statement = parser
                        .parse_statement()
                        .map_err(|e| ServerError::syntax(e.to_string()))?;
                    let next = parser.peek_token();
                    let end = match next.token {
                        Token::EOF => rest.len(),
                        _ => byte_offset(rest, next.span.start),
                    };
                    self.run_statement(&statement, params, sink)?;
                    rest = &rest[end..];
                }
            }
        }
    }
}

/// The tokens of a batch without whitespace and comments.
fn significant_tokens(text: &str) -> Result<Vec<TokenWithSpan>, ServerError> {
    let dialect = MsSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| ServerError::syntax(e.to_string()))?;
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect())
}

/// Where a statement ends without a semicolon: the first word of the next statement.
fn is_boundary(token: &Token) -> bool {
    match token {
        Token::SemiColon | Token::EOF => true,
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::SELECT
                | Keyword::SET
                | Keyword::WITH
                | Keyword::BEGIN
                | Keyword::COMMIT
                | Keyword::ROLLBACK
                | Keyword::IF
                | Keyword::DECLARE
                | Keyword::EXEC
                | Keyword::EXECUTE
                | Keyword::USE
                | Keyword::INSERT
                | Keyword::UPDATE
                | Keyword::DELETE
        ),
        _ => false,
    }
}

/// The byte offset of a tokenizer location (1-based line and character column) in `text`.
fn byte_offset(text: &str, location: Location) -> usize {
    if location.line == 0 {
        return text.len();
    }
    let mut line = 1;
    let mut column = 1;
    for (i, c) in text.char_indices() {
        if line == location.line && column == location.column {
            return i;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    text.len()
}

fn unquote(text: &str) -> String {
    let t = text.trim();
    let t = t
        .strip_prefix('N')
        .filter(|r| r.starts_with('\''))
        .unwrap_or(t);
    t.trim_matches(|c| c == '\'' || c == '[' || c == ']' || c == '"')
        .to_owned()
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A SQLite error as SQL Server would report its cause: a conversion error a function raised,
/// a lock that could not be had, or the SQLite message.
fn sqlite_error(error: rusqlite::Error) -> ServerError {
    let message = error.to_string();
    if let Some(carried) = carried_error(&message) {
        return carried;
    }
    if let rusqlite::Error::SqliteFailure(e, _) = &error
        && matches!(
            e.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        )
    {
        return ServerError::new(1222, 51, 16, "Lock request time out period exceeded.");
    }
    ServerError::new(50000, 1, 16, format!("TDS test server (SQLite): {message}"))
}

impl From<rusqlite::Error> for Interrupt {
    fn from(error: rusqlite::Error) -> Interrupt {
        Interrupt::Error(sqlite_error(error))
    }
}
