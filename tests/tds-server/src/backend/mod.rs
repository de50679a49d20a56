//! The SQLite backend: a SQLite file holds the user tables (values in storage forms that sort
//! right, see [`types`]), the statements ehi-sync sends are translated from T-SQL to SQLite
//! (`translate`), the `sys.*` catalog views are answered from the schema (`catalog`), and
//! result column types are inferred from the statement, as SQL Server would report them.
//!
//! What it proves is the wire and the client's binding, not SQL Server's semantics.
//!
//! Supported: SELECT with WITH (common table expressions), TOP, DISTINCT, joins (inner, left, right, full, cross, CROSS/OUTER
//! APPLY of `sys.dm_db_stats_histogram`/`_properties`), derived tables, subqueries, UNION
//! [ALL], WHERE/GROUP BY/HAVING/ORDER BY (output names and positions too), `@P1`-style
//! parameters, CAST/CONVERT/TRY_CAST/TRY_CONVERT with styles, COLLATE, CASE, IIF, ISNULL,
//! COALESCE, NULLIF, COUNT/COUNT_BIG/MIN/MAX/SUM/AVG, string functions (LEN, SUBSTRING, LEFT,
//! RIGHT, …), DATEADD, GETDATE and the like, DB_NAME, DB_ID, OBJECT_ID (of a literal or a
//! parameter), OBJECT_NAME, SCHEMA_NAME, DATABASEPROPERTYEX, SERVERPROPERTY,
//! SQL_VARIANT_PROPERTY, CHANGETABLE(CHANGES …), CHANGE_TRACKING_CURRENT_VERSION,
//! CHANGE_TRACKING_MIN_VALID_VERSION, MIN_ACTIVE_ROWVERSION, `@@VERSION`, `@@SPID`,
//! `@@TRANCOUNT` and other `@@` values; `SET` options (kept per session), BEGIN TRAN, COMMIT,
//! ROLLBACK, `IF cond statement`, USE of the current database; several statements per batch.
//!
//! Approximated: collation order (`_CI_` case-insensitive by Unicode lower case; Unicode rules
//! ignore hyphens and apostrophes first, a SQL_ collation's `varchar` rules do not, and a
//! `varchar` compared with an `nvarchar` takes the Unicode rules, as on SQL Server; `_BIN`/`_BIN2`
//! by UTF-16 code unit, Windows-1252 bytes for `varchar`; no other linguistic rules), datetimeoffset
//! compared by its local time, CHANGETABLE's operation for a key inserted and deleted after the
//! version ('D'), change tracking versions per row (SQL Server: per transaction), float styles
//! of CONVERT. Exact: decimal arithmetic order and text, uniqueidentifier order (SQL Server's
//! byte groups), datetime rounding to 1/300 s, `sys.columns` lengths, precisions and type ids.
//!
//! Not supported (Msg 102 naming the construct): WITH RECURSIVE, OFFSET/FETCH, window functions,
//! DECLARE/variables, temporary tables, INSERT/UPDATE/DELETE from clients, EXEC, FOR XML/JSON.

mod catalog;
mod connection;
pub mod fixtures;
mod functions;
mod translate;
pub mod types;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{Backend, BackendFactory, Collation, ServerError, SqlType, Value};
use types::{quote_ident, storage_declaration};

/// Why a fixture or table operation failed.
#[derive(Debug)]
pub enum BackendError {
    Sqlite(rusqlite::Error),
    /// A type name, table or value the backend does not accept.
    Invalid(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Sqlite(e) => write!(f, "SQLite: {e}"),
            BackendError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BackendError {}

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> BackendError {
        BackendError::Sqlite(e)
    }
}

/// A column of a table to create: its name, its SQL Server type (`varchar(18)`,
/// `varchar(50) COLLATE Latin1_General_100_BIN2`, `numeric(18,0)`, `rowversion`) and whether it
/// allows NULL.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub name: String,
    pub type_text: String,
    pub nullable: bool,
}

impl ColumnDef {
    pub fn new(name: &str, type_text: &str, nullable: bool) -> ColumnDef {
        ColumnDef {
            name: name.to_owned(),
            type_text: type_text.to_owned(),
            nullable,
        }
    }
}

/// Database-level settings the catalog reports and the backend enforces.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub database_name: String,
    pub collation: String,
    /// `sys.dm_db_*` views answer Msg 300 (no VIEW DATABASE STATE).
    pub deny_view_database_state: bool,
    /// CHANGE_TRACKING_MIN_VALID_VERSION answers NULL (no VIEW CHANGE TRACKING).
    pub deny_view_change_tracking: bool,
    pub allow_snapshot_isolation: bool,
    pub read_committed_snapshot: bool,
}

/// A SQLite file served as a SQL Server database. Opens one SQLite connection per TDS
/// connection ([`BackendFactory`]); the database name in LOGIN7 must match (case-insensitive)
/// or be empty, otherwise the login fails with Msg 4060.
pub struct SqliteDatabase {
    path: PathBuf,
    settings: Settings,
    /// The connection used by the table and change tracking API.
    admin: Arc<Mutex<Connection>>,
}

impl SqliteDatabase {
    /// Opens (or creates) the SQLite file `path` and serves it as database `database_name`.
    pub fn open(path: &Path, database_name: &str) -> Result<SqliteDatabase, BackendError> {
        let admin = open_connection(path)?;
        admin.pragma_update(None, "journal_mode", "WAL")?;
        admin.execute_batch(META_SCHEMA)?;
        Ok(SqliteDatabase {
            path: path.to_owned(),
            settings: Settings {
                database_name: database_name.to_owned(),
                collation: Collation::DEFAULT.to_owned(),
                deny_view_database_state: false,
                deny_view_change_tracking: false,
                allow_snapshot_isolation: true,
                read_committed_snapshot: true,
            },
            admin: Arc::new(Mutex::new(admin)),
        })
    }

    /// Simulates a login without VIEW DATABASE STATE: reading `sys.dm_db_partition_stats` (or
    /// any `sys.dm_db_*` view) fails with Msg 300, as SQL Server answers it.
    pub fn deny_view_database_state(mut self, deny: bool) -> SqliteDatabase {
        self.settings.deny_view_database_state = deny;
        self
    }

    /// Simulates a login without VIEW CHANGE TRACKING on the tables:
    /// `CHANGE_TRACKING_MIN_VALID_VERSION` answers NULL, as SQL Server does then.
    pub fn deny_view_change_tracking(mut self, deny: bool) -> SqliteDatabase {
        self.settings.deny_view_change_tracking = deny;
        self
    }

    /// The row-versioning settings `sys.databases` reports; reads under SNAPSHOT isolation fail
    /// with Msg 3952 when `allow_snapshot` is false.
    pub fn row_versioning(mut self, allow_snapshot: bool, read_committed_snapshot: bool) -> Self {
        self.settings.allow_snapshot_isolation = allow_snapshot;
        self.settings.read_committed_snapshot = read_committed_snapshot;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn database_name(&self) -> &str {
        &self.settings.database_name
    }

    /// Creates a user table (`schema` `dbo` or any other) with SQL Server column types and an
    /// optional primary key (the clustered index `sys.indexes` reports).
    pub fn create_table(
        &self,
        schema: &str,
        name: &str,
        columns: &[ColumnDef],
        primary_key: &[&str],
    ) -> Result<(), BackendError> {
        let mut definitions = Vec::new();
        let mut parsed = Vec::new();
        for column in columns {
            let ty = types::parse_type(&column.type_text, &self.settings.collation).ok_or_else(
                || BackendError::Invalid(format!("unknown SQL Server type {}", column.type_text)),
            )?;
            definitions.push(format!(
                "{} {}{}",
                quote_ident(&column.name),
                storage_declaration(&ty, &self.settings.collation),
                // The triggers fill rowversion columns after the row is written.
                if column.nullable || ty == SqlType::RowVersion {
                    ""
                } else {
                    " NOT NULL"
                }
            ));
            parsed.push(ty);
        }
        for key in primary_key {
            if !columns.iter().any(|c| c.name == *key) {
                return Err(BackendError::Invalid(format!(
                    "no key column {key} in {name}"
                )));
            }
        }
        if !primary_key.is_empty() {
            definitions.push(format!(
                "PRIMARY KEY ({})",
                primary_key
                    .iter()
                    .map(|k| quote_ident(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let sqlite_name = sqlite_table_name(schema, name);
        let mut admin = self.admin.lock();
        let tx = admin.transaction()?;
        tx.execute_batch(&format!(
            "CREATE TABLE {} ({})",
            quote_ident(&sqlite_name),
            definitions.join(", ")
        ))?;
        tx.execute(
            "INSERT INTO _tds_tables (schema_name, table_name, sqlite_name, object_id, \
             primary_key) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                schema,
                name,
                sqlite_name,
                object_id(schema, name),
                primary_key.join("\u{1}")
            ],
        )?;
        for (i, column) in columns.iter().enumerate() {
            tx.execute(
                "INSERT INTO _tds_columns (schema_name, table_name, column_id, column_name, \
                 type_text, is_nullable) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    schema,
                    name,
                    i as i64 + 1,
                    column.name,
                    column.type_text,
                    column.nullable
                ],
            )?;
        }
        install_triggers(&tx, schema, name)?;
        tx.commit()?;
        Ok(())
    }

    /// Inserts rows (values in their canonical [`Value`] forms, one per column in order) in one
    /// transaction with a prepared statement; returns how many.
    pub fn insert_rows<I>(&self, schema: &str, name: &str, rows: I) -> Result<u64, BackendError>
    where
        I: IntoIterator<Item = Vec<Value>>,
    {
        let mut admin = self.admin.lock();
        let table = table_types(&admin, schema, name, &self.settings.collation)?;
        let tx = admin.transaction()?;
        let mut count = 0;
        {
            let placeholders: Vec<String> = (1..=table.len()).map(|i| format!("?{i}")).collect();
            let mut insert = tx.prepare(&format!(
                "INSERT INTO {} VALUES ({})",
                quote_ident(&sqlite_table_name(schema, name)),
                placeholders.join(", ")
            ))?;
            for row in rows {
                if row.len() != table.len() {
                    return Err(BackendError::Invalid(format!(
                        "{name} has {} columns, a row has {} values",
                        table.len(),
                        row.len()
                    )));
                }
                let stored = store_row(&table, &row)?;
                insert.execute(rusqlite::params_from_iter(stored.iter()))?;
                count += 1;
            }
        }
        tx.commit()?;
        Ok(count)
    }

    /// Updates the row whose primary key is `key`, setting the given columns; change tracking
    /// and rowversion columns follow. Returns whether a row matched.
    pub fn update_row(
        &self,
        schema: &str,
        name: &str,
        key: &[Value],
        set: &[(&str, Value)],
    ) -> Result<bool, BackendError> {
        let admin = self.admin.lock();
        let types = table_types(&admin, schema, name, &self.settings.collation)?;
        let (key_where, mut values) = key_condition(&admin, schema, name, &types, key, 0)?;
        let mut assignments = Vec::new();
        for (column, value) in set {
            let ty = &types
                .iter()
                .find(|(n, _)| n == column)
                .ok_or_else(|| BackendError::Invalid(format!("no column {column} in {name}")))?
                .1;
            values.push(types::store(ty, value).map_err(|e| {
                BackendError::Invalid(format!("{column}: value does not fit {}", e.target))
            })?);
            assignments.push(format!("{} = ?{}", quote_ident(column), values.len()));
        }
        let changed = admin.execute(
            &format!(
                "UPDATE {} SET {} WHERE {key_where}",
                quote_ident(&sqlite_table_name(schema, name)),
                assignments.join(", ")
            ),
            rusqlite::params_from_iter(values.iter()),
        )?;
        Ok(changed > 0)
    }

    /// Deletes the row whose primary key is `key`. Returns whether a row matched.
    pub fn delete_row(
        &self,
        schema: &str,
        name: &str,
        key: &[Value],
    ) -> Result<bool, BackendError> {
        let admin = self.admin.lock();
        let types = table_types(&admin, schema, name, &self.settings.collation)?;
        let (key_where, values) = key_condition(&admin, schema, name, &types, key, 0)?;
        let changed = admin.execute(
            &format!(
                "DELETE FROM {} WHERE {key_where}",
                quote_ident(&sqlite_table_name(schema, name)),
            ),
            rusqlite::params_from_iter(values.iter()),
        )?;
        Ok(changed > 0)
    }

    /// Enables change tracking on the database (if not yet) and on a table with a primary key:
    /// from now on every insert, update and delete bumps the database's version and records the
    /// key (`CHANGETABLE(CHANGES …)`).
    pub fn enable_change_tracking(&self, schema: &str, name: &str) -> Result<(), BackendError> {
        let mut admin = self.admin.lock();
        let tx = admin.transaction()?;
        let key = primary_key(&tx, schema, name)?;
        if key.is_empty() {
            return Err(BackendError::Invalid(format!(
                "change tracking needs a primary key, and {schema}.{name} has none"
            )));
        }
        let types = table_types(&tx, schema, name, &self.settings.collation)?;
        let side = change_table_name(schema, name);
        let key_columns: Vec<String> = key
            .iter()
            .map(|k| {
                let ty = &types.iter().find(|(n, _)| n == k).map(|(_, t)| t.clone());
                let declaration = ty
                    .as_ref()
                    .map(|t| storage_declaration(t, &self.settings.collation))
                    .unwrap_or_default();
                format!("{} {declaration}", quote_ident(k))
            })
            .collect();
        tx.execute_batch(&format!(
            "INSERT OR IGNORE INTO _tds_state (name, value) VALUES ('change_tracking', 1); \
             CREATE TABLE IF NOT EXISTS {} ({}, creation_version INTEGER, last_version INTEGER \
             NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY ({}))",
            quote_ident(&side),
            key_columns.join(", "),
            key.iter()
                .map(|k| quote_ident(k))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        let version: i64 = tx.query_row(
            "SELECT value FROM _tds_state WHERE name = 'ct_version'",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO _tds_ct_tables (object_id, schema_name, table_name, \
             side_table, begin_version, min_valid_version) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![object_id(schema, name), schema, name, side, version],
        )?;
        install_triggers(&tx, schema, name)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets a tracked table's `CHANGE_TRACKING_MIN_VALID_VERSION` (as if cleanup had run) and
    /// drops the change rows older than it.
    pub fn set_min_valid_version(
        &self,
        schema: &str,
        name: &str,
        version: i64,
    ) -> Result<(), BackendError> {
        let admin = self.admin.lock();
        admin.execute(
            "UPDATE _tds_ct_tables SET min_valid_version = ?1 WHERE object_id = ?2",
            params![version, object_id(schema, name)],
        )?;
        admin.execute(
            &format!(
                "DELETE FROM {} WHERE last_version < ?1",
                quote_ident(&change_table_name(schema, name))
            ),
            params![version],
        )?;
        Ok(())
    }

    /// Makes `sys.partitions` and `sys.dm_db_partition_stats` report `rows` for a table instead
    /// of its real count (stale statistics, as after bulk loads); `None` reports the real count
    /// again.
    pub fn set_catalog_row_count(
        &self,
        schema: &str,
        name: &str,
        rows: Option<u64>,
    ) -> Result<(), BackendError> {
        let admin = self.admin.lock();
        let id = object_id(schema, name);
        match rows {
            Some(rows) => admin.execute(
                "INSERT OR REPLACE INTO _tds_catalog_rows (object_id, row_count) VALUES (?1, ?2)",
                params![id, rows as i64],
            )?,
            None => admin.execute(
                "DELETE FROM _tds_catalog_rows WHERE object_id = ?1",
                params![id],
            )?,
        };
        Ok(())
    }

    /// The database's change tracking version now (`CHANGE_TRACKING_CURRENT_VERSION()`).
    pub fn change_tracking_version(&self) -> Result<i64, BackendError> {
        let admin = self.admin.lock();
        Ok(admin.query_row(
            "SELECT value FROM _tds_state WHERE name = 'ct_version'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Every user table (`schema.name`, or the bare name in `dbo`) with its row count.
    pub fn row_counts(&self) -> Result<Vec<(String, u64)>, BackendError> {
        let admin = self.admin.lock();
        let tables: Vec<(String, String)> = admin
            .prepare("SELECT schema_name, table_name FROM _tds_tables ORDER BY 1, 2")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut counts = Vec::new();
        for (schema, name) in tables {
            let sqlite_name = sqlite_table_name(&schema, &name);
            let count: i64 = admin.query_row(
                &format!("SELECT COUNT(*) FROM {}", quote_ident(&sqlite_name)),
                [],
                |r| r.get(0),
            )?;
            counts.push((sqlite_name, count.max(0) as u64));
        }
        Ok(counts)
    }

    /// Runs SQLite statements on the backing file directly (test set-up). Triggers keep change
    /// tracking and rowversion columns right for writes made this way too.
    pub fn execute_sqlite(&self, sql: &str) -> Result<(), BackendError> {
        self.admin.lock().execute_batch(sql)?;
        Ok(())
    }
}

impl BackendFactory for SqliteDatabase {
    fn open(&self, database: &str) -> Result<Box<dyn Backend>, ServerError> {
        if !database.is_empty() && !database.eq_ignore_ascii_case(&self.settings.database_name) {
            return Err(ServerError::new(
                4060,
                1,
                11,
                format!(
                    "Cannot open database \"{database}\" requested by the login. The login failed."
                ),
            ));
        }
        let sqlite = open_connection(&self.path)
            .map_err(|e| ServerError::new(4060, 1, 11, format!("Cannot open database: {e}")))?;
        let session = connection::Session::new(sqlite, self.settings.clone())
            .map_err(|e| ServerError::new(4060, 1, 11, format!("Cannot open database: {e}")))?;
        Ok(Box::new(session))
    }
}

/// The tables the backend keeps beside the user tables.
const META_SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS _tds_tables (schema_name TEXT NOT NULL, table_name TEXT NOT NULL, \
  sqlite_name TEXT NOT NULL, object_id INTEGER NOT NULL, primary_key TEXT NOT NULL, \
  PRIMARY KEY (schema_name, table_name));
CREATE TABLE IF NOT EXISTS _tds_columns (schema_name TEXT NOT NULL, table_name TEXT NOT NULL, \
  column_id INTEGER NOT NULL, column_name TEXT NOT NULL, type_text TEXT NOT NULL, \
  is_nullable INTEGER NOT NULL, PRIMARY KEY (schema_name, table_name, column_id));
CREATE TABLE IF NOT EXISTS _tds_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO _tds_state (name, value) VALUES ('ct_version', 0), ('rowversion', 2000);
CREATE TABLE IF NOT EXISTS _tds_catalog_rows (object_id INTEGER PRIMARY KEY, \
  row_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _tds_ct_tables (object_id INTEGER PRIMARY KEY, \
  schema_name TEXT NOT NULL, table_name TEXT NOT NULL, side_table TEXT NOT NULL, \
  begin_version INTEGER NOT NULL, min_valid_version INTEGER NOT NULL);";

pub(crate) fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(30))?;
    functions::register(&connection)?;
    Ok(connection)
}

/// The SQLite table holding `schema.name`: the bare name in `dbo`, `schema.name` otherwise.
pub(crate) fn sqlite_table_name(schema: &str, name: &str) -> String {
    if schema.eq_ignore_ascii_case("dbo") {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

fn change_table_name(schema: &str, name: &str) -> String {
    format!("_tds_ct.{schema}.{name}")
}

/// A stable object id for a table (FNV-1a of its lower-case name), in SQL Server's range.
pub(crate) fn object_id(schema: &str, name: &str) -> i64 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in format!("{}.{}", schema.to_lowercase(), name.to_lowercase()).bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    100_000_000 + i64::from(hash % 1_900_000_000)
}

fn table_types(
    connection: &Connection,
    schema: &str,
    name: &str,
    collation: &str,
) -> Result<Vec<(String, SqlType)>, BackendError> {
    let mut statement = connection.prepare(
        "SELECT column_name, type_text FROM _tds_columns WHERE schema_name = ?1 AND \
         table_name = ?2 ORDER BY column_id",
    )?;
    let rows = statement.query_map(params![schema, name], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (column, text) = row?;
        let ty = types::parse_type(&text, collation)
            .ok_or_else(|| BackendError::Invalid(format!("unknown type {text}")))?;
        out.push((column, ty));
    }
    if out.is_empty() {
        return Err(BackendError::Invalid(format!("no table {schema}.{name}")));
    }
    Ok(out)
}

fn primary_key(
    connection: &Connection,
    schema: &str,
    name: &str,
) -> Result<Vec<String>, BackendError> {
    let key: Option<String> = connection
        .query_row(
            "SELECT primary_key FROM _tds_tables WHERE schema_name = ?1 AND table_name = ?2",
            params![schema, name],
            |r| r.get(0),
        )
        .optional()?;
    let key = key.ok_or_else(|| BackendError::Invalid(format!("no table {schema}.{name}")))?;
    Ok(key
        .split('\u{1}')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect())
}

fn store_row(
    table: &[(String, SqlType)],
    row: &[Value],
) -> Result<Vec<types::Stored>, BackendError> {
    table
        .iter()
        .zip(row)
        .map(|((column, ty), value)| {
            types::store(ty, value).map_err(|e| {
                BackendError::Invalid(format!("{column}: value does not fit {}", e.target))
            })
        })
        .collect()
}

fn key_condition(
    connection: &Connection,
    schema: &str,
    name: &str,
    types: &[(String, SqlType)],
    key: &[Value],
    first: usize,
) -> Result<(String, Vec<types::Stored>), BackendError> {
    let columns = primary_key(connection, schema, name)?;
    if columns.len() != key.len() {
        return Err(BackendError::Invalid(format!(
            "{name} has {} key columns, {} values given",
            columns.len(),
            key.len()
        )));
    }
    let mut values = Vec::new();
    let mut terms = Vec::new();
    for (column, value) in columns.iter().zip(key) {
        let ty = &types
            .iter()
            .find(|(n, _)| n == column)
            .ok_or_else(|| BackendError::Invalid(format!("no column {column}")))?
            .1;
        values.push(
            types::store(ty, value)
                .map_err(|e| BackendError::Invalid(format!("{column}: {}", e.target)))?,
        );
        terms.push(format!(
            "{} = ?{}",
            quote_ident(column),
            first + values.len()
        ));
    }
    Ok((terms.join(" AND "), values))
}

/// (Re)creates the triggers of a table that keep its rowversion columns and its change tracking
/// rows current. One trigger per event does both, so that the trigger's own update of the
/// rowversion column does not fire it again (SQLite's recursive triggers are off).
fn install_triggers(connection: &Connection, schema: &str, name: &str) -> Result<(), BackendError> {
    let types = table_types(connection, schema, name, Collation::DEFAULT)?;
    let key = primary_key(connection, schema, name)?;
    let table = quote_ident(&sqlite_table_name(schema, name));
    let tracked: bool = connection.query_row(
        "SELECT COUNT(*) > 0 FROM _tds_ct_tables WHERE object_id = ?1",
        params![object_id(schema, name)],
        |r| r.get(0),
    )?;
    let rowversions: Vec<&String> = types
        .iter()
        .filter(|(_, t)| *t == SqlType::RowVersion)
        .map(|(n, _)| n)
        .collect();
    let side = quote_ident(&change_table_name(schema, name));
    let version = "(SELECT value FROM _tds_state WHERE name = 'ct_version')";
    let bump_version = "UPDATE _tds_state SET value = value + 1 WHERE name = 'ct_version';";
    let key_list = key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let key_of = |row: &str| {
        key.iter()
            .map(|k| format!("{row}.{}", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let set_rowversion = |row: &str| -> String {
        if rowversions.is_empty() {
            return String::new();
        }
        let assignments = rowversions
            .iter()
            .map(|c| {
                format!(
                    "{} = unhex(printf('%016X', (SELECT value FROM _tds_state WHERE name = \
                     'rowversion')))",
                    quote_ident(c)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "UPDATE _tds_state SET value = value + 1 WHERE name = 'rowversion'; \
             UPDATE {table} SET {assignments} WHERE rowid = {row}.rowid;"
        )
    };
    let record = |row: &str, deleted: bool| -> String {
        if !tracked {
            return String::new();
        }
        let creation = if deleted { "NULL" } else { version };
        format!(
            "{bump_version} INSERT INTO {side} ({key_list}, creation_version, last_version, \
             deleted) VALUES ({}, {creation}, {version}, {}) ON CONFLICT DO UPDATE SET \
             last_version = excluded.last_version, deleted = excluded.deleted;",
            key_of(row),
            i64::from(deleted)
        )
    };
    let update_record = if tracked {
        let changed_key = key
            .iter()
            .map(|k| format!("OLD.{0} IS NOT NEW.{0}", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" OR ");
        format!(
            "{bump_version} INSERT INTO {side} ({key_list}, creation_version, last_version, \
             deleted) SELECT {}, NULL, {version}, 1 WHERE {changed_key} ON CONFLICT DO UPDATE \
             SET last_version = excluded.last_version, deleted = 1; \
             INSERT INTO {side} ({key_list}, creation_version, last_version, deleted) VALUES \
             ({}, CASE WHEN {changed_key} THEN {version} END, {version}, 0) ON CONFLICT DO \
             UPDATE SET last_version = excluded.last_version, deleted = 0;",
            key_of("OLD"),
            key_of("NEW"),
        )
    } else {
        String::new()
    };
    let prefix = format!("_tds_trigger.{schema}.{name}");
    for event in ["insert", "update", "delete"] {
        connection.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS {}",
            quote_ident(&format!("{prefix}.{event}"))
        ))?;
    }
    // The insert trigger's own update of a new row's rowversion (NULL before it) must not count
    // as an update.
    let update_when = rowversions
        .first()
        .map(|c| format!(" WHEN OLD.{} IS NOT NULL", quote_ident(c)))
        .unwrap_or_default();
    let bodies = [
        (
            "insert",
            String::new(),
            format!("{}{}", set_rowversion("NEW"), record("NEW", false)),
        ),
        (
            "update",
            update_when,
            format!("{}{update_record}", set_rowversion("NEW")),
        ),
        ("delete", String::new(), record("OLD", true)),
    ];
    for (event, when, body) in bodies {
        if body.is_empty() {
            continue;
        }
        connection.execute_batch(&format!(
            "CREATE TRIGGER {} AFTER {} ON {table} FOR EACH ROW{when} BEGIN {body} END",
            quote_ident(&format!("{prefix}.{event}")),
            event.to_ascii_uppercase()
        ))?;
    }
    Ok(())
}
