//! The SQL Server suite's harness: the TDS test server serving a fixture, ehi-sync configured
//! with the `mssql_*` keys as a hospital would, and what the output must hold — derived from the
//! fixture's SQLite file (read with rusqlite, never through an ODBC driver), so a wrong encoding
//! on the wire or in the driver cannot hide on both sides.
//!
//! With `EHI_TEST_MSSQL` set to an ODBC connection string, [`Target::from_env`] points the tests
//! that make sense against a real SQL Server at it instead (they create and drop a schema
//! `ehi_test_<pid>_<n>`); without it they use the test server. Either way each prints which
//! target it ran against.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value as Json, json};
use tds_test_server::backend::types::{self, Stored};
use tds_test_server::backend::{SqliteDatabase, fixtures};
use tds_test_server::{ServerOptions, SqlType, TestServer, TlsMode, Value};

use crate::common::output::{Side, TableFiles, as_parquet_text, normalize, read_table};
use crate::common::with;

pub const DATABASE: &str = "Clarity";
pub const USER: &str = "ehi";
pub const PASSWORD: &str = "Ehi-Test-Passw0rd";
pub const DRIVER18: &str = "ODBC Driver 18 for SQL Server";
pub const FREETDS: &str = "FreeTDS";

/// The environment variable holding a real SQL Server's connection string.
pub const REAL_SERVER_VARIABLE: &str = "EHI_TEST_MSSQL";

/// The TDS test server and the SQLite file behind it.
pub struct Mssql {
    pub server: TestServer,
    /// The database the server serves: changes made through it (rows, change tracking) are
    /// seen by the next statement.
    pub db: Arc<SqliteDatabase>,
    pub sqlite: PathBuf,
}

/// Serves `db` on a free port of 127.0.0.1 with the suite's login.
pub fn serve(db: SqliteDatabase, tls: TlsMode) -> Mssql {
    let sqlite = db.path().to_owned();
    let db = Arc::new(db);
    let options = ServerOptions {
        users: vec![(USER.to_owned(), PASSWORD.to_owned())],
        tls,
        ..ServerOptions::default()
    };
    let server = TestServer::start(options, db.clone()).expect("the TDS test server starts");
    Mssql { server, db, sqlite }
}

/// The every-type fixture (`ALL_TYPES`).
pub fn every_type(dir: &Path, tls: TlsMode) -> Mssql {
    let path = dir.join("every_type.sqlite");
    serve(
        fixtures::every_type(&path, DATABASE).expect("the every-type fixture"),
        tls,
    )
}

/// A config with the `mssql_*` keys for the test server on `port`, small tiers so that even
/// the small fixtures are read in several partitions and chunks, and a short retry sleep.
pub fn config(port: u16, out: &Path, driver: &str, format: &str) -> Json {
    json!({
        "mssql_driver": driver,
        "mssql_server": "127.0.0.1",
        "mssql_port": port,
        "mssql_database": DATABASE,
        "mssql_user": USER,
        "mssql_password": PASSWORD,
        "mssql_encrypt": "no",
        "mssql_trust_server_certificate": true,
        "output_dir": out,
        "format": format,
        "retry_sleep_seconds": 0.2,
        "small_table_threshold": 200,
        "large_table_threshold": 5000,
        "tiers": {
            "small": {"batch_size": 16, "partition_size": 40, "checkpoint_interval": 50},
            "medium": {"batch_size": 64, "partition_size": 250, "checkpoint_interval": 300},
            "large": {"batch_size": 300, "partition_size": 1000, "checkpoint_interval": 2000}
        }
    })
}

/// What a finished `ehi-sync` command printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `ehi-sync <command> --config <config> <extra…>`.
pub fn ehi(command: &str, config: &Path, extra: &[&str]) -> Run {
    let config = config.to_str().expect("UTF-8 path");
    let mut args = vec![command, "--config", config];
    args.extend_from_slice(extra);
    crate::common::ehi_sync(&args).into()
}

/// `ehi(…)` that must exit 0.
pub fn ehi_ok(command: &str, config: &Path, extra: &[&str]) -> Run {
    let run = ehi(command, config, extra);
    assert_eq!(run.code, 0, "{command} failed:\n{}", run.all());
    run
}

/// A source table as the fixture holds it: column names, SQL Server types, rows as canonical
/// [`Value`]s read from the SQLite file (`schema.name` as the backend stores it).
pub struct SourceTable {
    pub columns: Vec<String>,
    pub types: Vec<SqlType>,
    pub rows: Vec<Vec<Value>>,
}

pub fn source_table(sqlite: &Path, schema: &str, name: &str) -> SourceTable {
    let connection = rusqlite::Connection::open(sqlite).expect("open the fixture's SQLite file");
    let mut statement = connection
        .prepare(
            "SELECT column_name, type_text FROM _tds_columns WHERE schema_name = ?1 AND \
             table_name = ?2 ORDER BY column_id",
        )
        .expect("the fixture's column list");
    let columns: Vec<(String, String)> = statement
        .query_map([schema, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("columns")
        .map(|c| c.expect("column"))
        .collect();
    assert!(
        !columns.is_empty(),
        "no table {schema}.{name} in the fixture"
    );
    let types: Vec<SqlType> = columns
        .iter()
        .map(|(_, t)| {
            types::parse_type(t, "SQL_Latin1_General_CP1_CI_AS").expect("fixture type parses")
        })
        .collect();
    let sqlite_name = if schema.eq_ignore_ascii_case("dbo") {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    };
    let select: Vec<String> = columns.iter().map(|(c, _)| types::quote_ident(c)).collect();
    let mut statement = connection
        .prepare(&format!(
            "SELECT {} FROM {}",
            select.join(", "),
            types::quote_ident(&sqlite_name)
        ))
        .expect("select the fixture's rows");
    let mut rows = Vec::new();
    let mut cursor = statement.query([]).expect("rows");
    while let Some(row) = cursor.next().expect("row") {
        rows.push(
            types
                .iter()
                .enumerate()
                .map(|(i, ty)| {
                    types::to_value(ty, Stored::from_ref(row.get_ref(i).expect("value")))
                })
                .collect(),
        );
    }
    SourceTable {
        columns: columns.into_iter().map(|(c, _)| c).collect(),
        types,
        rows,
    }
}

/// The text ehi-sync must write for `value` of type `ty`, before [`normalize`]: integers in
/// decimal, `bit` as 1/0, `float` as the shortest f64 and `real` as the shortest f32, exact
/// decimals as stored, date/time as ISO 8601 (no space before an offset), binary in hex.
pub fn expected_text(ty: &SqlType, value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Int(i) => i.to_string(),
        Value::Float(f) if *ty == SqlType::Real => format!("{:?}", *f as f32),
        Value::Float(f) => format!("{f:?}"),
        Value::Text(t) => match ty {
            SqlType::DateTimeOffset { .. } => iso_offset(t),
            _ => t.clone(),
        },
        Value::Bytes(b) => hex::encode(b),
        Value::Variant(base, inner) => return expected_text(base, inner).map(|t| variant(&t)),
    })
}

/// `2024-02-29 23:59:59.1234567 +05:30` → `2024-02-29T23:59:59.1234567+05:30`.
fn iso_offset(text: &str) -> String {
    let text = match text.rsplit_once(' ') {
        Some((at, offset)) if offset.starts_with(['+', '-']) => format!("{at}{offset}"),
        _ => text.to_owned(),
    };
    match text.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &text[..10], &text[11..]),
        _ => text,
    }
}

/// A `sql_variant` is written as text in its base type's form; compared as a number when it is
/// one (17 significant digits and the shortest form are the same double) and as ISO 8601 when
/// it is a date and time.
pub fn variant(text: &str) -> String {
    if let Ok(f) = text.parse::<f64>() {
        return format!("{f:?}");
    }
    iso_offset(text)
}

/// Asserts the table's output (`<out>/<schema>.<name>`) holds exactly the fixture's rows, value
/// for value; returns the files.
pub fn assert_output_equals_fixture(
    out: &Path,
    sqlite: &Path,
    schema: &str,
    name: &str,
) -> TableFiles {
    let files = read_table(&out.join(format!("{schema}.{name}")));
    assert_output_equals(
        &files,
        &source_table(sqlite, schema, name),
        &format!("{schema}.{name}"),
    );
    files
}

/// Asserts `files` hold exactly `source`'s rows (as a multiset), value for value.
pub fn assert_output_equals(files: &TableFiles, source: &SourceTable, table: &str) {
    assert_eq!(files.column_names(), source.columns, "{table}: columns");
    let kinds = files.kinds();
    // Parquet output: each expected text in the canonical text of its column's Parquet type.
    let parquet_types = files.parquet_types();
    let expected: Vec<Vec<Option<String>>> = source
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&source.types)
                .zip(&kinds)
                .enumerate()
                .map(|(i, ((value, ty), kind))| {
                    let text = normalize(kind, expected_text(ty, value), Side::Source);
                    match &parquet_types {
                        Some(types) => text.map(|t| as_parquet_text(&types[i], t)),
                        None => text,
                    }
                })
                .collect()
        })
        .collect();
    let written: Vec<Vec<Option<String>>> = files
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&source.types)
                .map(|(value, ty)| match ty {
                    SqlType::SqlVariant => value.as_deref().map(variant),
                    _ => value.clone(),
                })
                .collect()
        })
        .collect();
    assert_eq!(written.len(), expected.len(), "{table}: row count");
    let (mut written, mut expected) = (written, expected);
    written.sort();
    expected.sort();
    // Every differing value, by row and column name, cut short: a (max) value is long.
    let short = |v: &Option<String>| match v {
        Some(t) if t.chars().count() > 60 => {
            format!(
                "{:?}… ({} bytes)",
                t.chars().take(60).collect::<String>(),
                t.len()
            )
        }
        other => format!("{other:?}"),
    };
    let differences: Vec<String> = written
        .iter()
        .zip(&expected)
        .enumerate()
        .flat_map(|(row, (w, e))| {
            w.iter()
                .zip(e)
                .zip(&source.columns)
                .filter(|((a, b), _)| a != b)
                .map(move |((a, b), column)| {
                    format!(
                        "sorted row {row} {column}: written {} expected {}",
                        short(a),
                        short(b)
                    )
                })
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{table}: {} values differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// `ALL_TYPES` as the fixture defines it (`fixtures::every_type_rows`), the rowversion of each
/// row (set by the database) given by `rowversion(id)`.
pub fn every_type_source(rowversion: &dyn Fn(i64) -> Vec<u8>) -> SourceTable {
    let types = fixtures::EVERY_TYPE_COLUMNS
        .iter()
        .map(|(_, t)| types::parse_type(t, "SQL_Latin1_General_CP1_CI_AS").expect("type parses"))
        .collect();
    let rows = fixtures::every_type_rows()
        .into_iter()
        .map(|row| {
            let Some(Value::Int(id)) = row[0] else {
                panic!("ALL_TYPES rows start with their integer ID");
            };
            row.into_iter()
                .map(|v| v.unwrap_or_else(|| Value::Bytes(rowversion(id))))
                .collect()
        })
        .collect();
    SourceTable {
        columns: fixtures::EVERY_TYPE_COLUMNS
            .iter()
            .map(|(c, _)| (*c).to_owned())
            .collect(),
        types,
        rows,
    }
}

/// The Clarity fixture's tables (schema `dbo`).
pub const CLARITY_TABLES: [&str; 8] = [
    "PATIENT",
    "PAT_ENC",
    "FLOWSHEET",
    "ORDER_PROC",
    "DEVICE",
    "AUDIT_LOG",
    "Ünï tàble",
    "NOTE_TEXT",
];

/// The last validation record of `table` in `out/_validation.ndjson`.
pub fn validation(out: &Path, table: &str) -> Json {
    let text = std::fs::read_to_string(out.join("_validation.ndjson")).expect("validation file");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .rfind(|r| r["table"] == table)
        .unwrap_or_else(|| panic!("no validation record for {table}"))
}

/// Where a test that makes sense against a real SQL Server runs.
pub enum Target {
    /// The TDS test server (no `EHI_TEST_MSSQL`).
    TestServer,
    /// A real SQL Server: its connection string and the scratch schema this test owns.
    Real(RealServer),
}

impl Target {
    /// The real server of `EHI_TEST_MSSQL`, or the test server. Prints which, so a run's log
    /// says what it proved.
    pub fn from_env(test: &str) -> Target {
        match std::env::var(REAL_SERVER_VARIABLE) {
            Ok(connection_string) if !connection_string.trim().is_empty() => {
                let real = RealServer::new(connection_string);
                println!(
                    "{test}: target = real SQL Server from {REAL_SERVER_VARIABLE}, schema {}",
                    real.schema
                );
                Target::Real(real)
            }
            _ => {
                println!(
                    "{test}: target = TDS test server ({REAL_SERVER_VARIABLE} not set: no real \
                     SQL Server)"
                );
                Target::TestServer
            }
        }
    }
}

/// A scratch schema on a real SQL Server, dropped with its tables at the end of the test.
pub struct RealServer {
    pub connection_string: String,
    pub schema: String,
    connection: odbc_api::Connection<'static>,
}

/// Rows per `INSERT … VALUES` (SQL Server accepts at most 1,000).
const ROWS_PER_INSERT: usize = 200;

impl RealServer {
    fn new(connection_string: String) -> RealServer {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "ehi_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let connection = crate::common::connect(&connection_string);
        let real = RealServer {
            connection_string,
            schema,
            connection,
        };
        real.drop_schema();
        real.execute(&format!("CREATE SCHEMA [{}]", real.schema));
        real
    }

    pub fn execute(&self, sql: &str) {
        self.connection
            .execute(sql, (), None)
            .unwrap_or_else(|e| panic!("{REAL_SERVER_VARIABLE}: '{sql:.200}' failed: {e}"));
    }

    /// A config reading only this schema through the connection string.
    pub fn config(&self, out: &Path, format: &str) -> Json {
        with(
            config(0, out, DRIVER18, format),
            json!({
                "connection_string": self.connection_string,
                "mssql_driver": null, "mssql_server": null, "mssql_port": null,
                "mssql_database": null, "mssql_user": null, "mssql_password": null,
                "mssql_encrypt": null, "mssql_trust_server_certificate": null,
                "include": [format!("{}.*", self.schema)],
            }),
        )
    }

    /// Creates `name` with the fixture's columns (SQL Server type names) and key, and inserts
    /// the rows as typed literals, each column's value `CAST` to its exact type.
    pub fn create_table(
        &self,
        name: &str,
        columns: &[(&str, &str)],
        key: &[&str],
        rows: &[Vec<Value>],
    ) {
        let definitions: Vec<String> = columns
            .iter()
            .map(|(c, t)| {
                let null = if key.contains(c) || *t == "rowversion" {
                    " NOT NULL"
                } else {
                    " NULL"
                };
                format!("[{c}] {t}{null}")
            })
            .collect();
        let key_list: Vec<String> = key.iter().map(|k| format!("[{k}]")).collect();
        self.execute(&format!(
            "CREATE TABLE [{}].[{name}] ({}, PRIMARY KEY ({}))",
            self.schema,
            definitions.join(", "),
            key_list.join(", ")
        ));
        self.insert_rows(name, columns, rows);
    }

    /// Inserts `rows` (one value per column of `columns`, rowversion columns skipped) into
    /// `name` as typed literals.
    pub fn insert_rows(&self, name: &str, columns: &[(&str, &str)], rows: &[Vec<Value>]) {
        let insertable: Vec<usize> = (0..columns.len())
            .filter(|&i| columns[i].1 != "rowversion")
            .collect();
        let names: Vec<String> = insertable
            .iter()
            .map(|&i| format!("[{}]", columns[i].0))
            .collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let values: Vec<String> = chunk
                .iter()
                .map(|row| {
                    let literals: Vec<String> = insertable
                        .iter()
                        .map(|&i| tsql_literal(columns[i].1, &row[i]))
                        .collect();
                    format!("({})", literals.join(", "))
                })
                .collect();
            self.execute(&format!(
                "INSERT INTO [{}].[{name}] ({}) VALUES {}",
                self.schema,
                names.join(", "),
                values.join(", ")
            ));
        }
    }

    /// The rows of a table as text through the driver, for the values only the server knows
    /// (rowversion).
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        crate::common::query_on(&self.connection_string, sql)
    }

    fn drop_schema(&self) {
        // Tables first: DROP SCHEMA needs an empty schema.
        let tables = self.query(&format!(
            "SELECT t.name FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = \
             t.schema_id WHERE s.name = N'{}'",
            self.schema
        ));
        for table in tables.into_iter().filter_map(|mut r| r.remove(0)) {
            self.execute(&format!(
                "DROP TABLE [{}].[{}]",
                self.schema,
                table.replace(']', "]]")
            ));
        }
        self.execute(&format!(
            "IF SCHEMA_ID(N'{0}') IS NOT NULL DROP SCHEMA [{0}]",
            self.schema
        ));
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        // A failing drop must not abort a failing test's unwind.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drop_schema()));
    }
}

/// A T-SQL literal of `value` converted to the column type `ty` (independent of the login's
/// language: dates in ISO 8601 with `T`, binary as `0x…`).
fn tsql_literal(ty: &str, value: &Value) -> String {
    let cast_type = ty.split(" COLLATE").next().unwrap_or(ty);
    let lower = cast_type.to_ascii_lowercase();
    // Text goes in as nvarchar and the column converts it to its own collation's code page (a
    // CAST would convert it to the database default's first).
    let character = ["char", "varchar", "nchar", "nvarchar", "text", "ntext"]
        .iter()
        .any(|t| lower == *t || lower.starts_with(&format!("{t}(")));
    let literal = match value {
        Value::Null => return "NULL".to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:e}"),
        Value::Bytes(b) => format!("0x{}", hex::encode(b)),
        Value::Text(t) => {
            let t = if ty.starts_with("date") || ty.starts_with("smalldatetime") {
                iso_offset(t)
            } else {
                t.clone()
            };
            format!("N'{}'", t.replace('\'', "''"))
        }
        Value::Variant(base, inner) => {
            return format!(
                "CAST({} AS {})",
                tsql_literal(&types::type_text(base), inner),
                types::type_text(base)
            );
        }
    };
    if character || lower == "sql_variant" {
        return literal;
    }
    format!("CAST({literal} AS {cast_type})")
}
