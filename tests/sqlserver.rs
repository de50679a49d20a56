//! The SQL Server path end to end: ehi-sync configured with the `mssql_*` keys as a hospital
//! would, through Microsoft ODBC Driver 18 and FreeTDS, against the TDS test server
//! (`tests/tds-server`) serving Clarity-shaped and every-type fixtures. The expected output is
//! derived from the fixtures' SQLite files and row definitions, never read through a driver.
//!
//! What crosses the wire is asserted from the requests the server received: key parameters
//! typed as their key column, one statement text per table and shape, non-ASCII names and keys
//! intact, the session settings. Tests that make sense against a real SQL Server (every type,
//! keysets, resume) run against the one in `EHI_TEST_MSSQL` when it is set (see the README,
//! "How SQL Server is tested").

#![cfg(unix)]

mod common;
#[path = "common/mssql.rs"]
mod mssql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::output::{Side, read_table};
use common::running::Running;
use common::with;
use mssql::{
    CLARITY_TABLES, DATABASE, DRIVER18, FREETDS, Mssql, PASSWORD, RealServer, Run, SourceTable,
    Target, assert_output_equals, assert_output_equals_fixture, config, ehi, ehi_ok, serve,
    source_table, validation,
};
use serde_json::{Value as Json, json};
use tds_test_server::backend::types::parse_type;
use tds_test_server::backend::{ColumnDef, SqliteDatabase, fixtures};
use tds_test_server::{Fault, Received, RequestKind, ServerError, SqlType, TlsMode, Value};

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// The Clarity fixture plus two tables of key and value shapes it lacks: `VISIT_EVENT`
/// (composite key with a `datetime`, a money value) and `VARIANTS` (sql_variant of every base
/// type ehi-sync converts, real, datetimeoffset).
fn clarity(dir: &Path, rows: u64, tls: TlsMode) -> Mssql {
    let db = fixtures::clarity(&dir.join("clarity.sqlite"), DATABASE, rows).expect("Clarity");
    add_visit_event(&db, rows);
    add_variants(&db);
    serve(db, tls)
}

fn add_visit_event(db: &SqliteDatabase, rows: u64) {
    let col = ColumnDef::new;
    db.create_table(
        "dbo",
        "VISIT_EVENT",
        &[
            col("EVENT_TIME", "datetime", false),
            col("LINE", "int", false),
            col("CHARGE", "money", true),
        ],
        &["EVENT_TIME", "LINE"],
    )
    .expect("VISIT_EVENT");
    // datetime keeps 1/300 s: .000, .003, .007 and .997 all occur.
    let fractions = ["000", "003", "007", "997"];
    db.insert_rows(
        "dbo",
        "VISIT_EVENT",
        (0..rows).map(|n| {
            vec![
                text(&format!(
                    "2023-05-{:02} 10:{:02}:{:02}.{}",
                    1 + n / 600 % 28,
                    n / 10 % 60,
                    n % 60,
                    fractions[(n % 4) as usize]
                )),
                Value::Int((n % 2) as i64 + 1),
                text(&format!("{}.{:04}", n * 3, n % 10_000)),
            ]
        }),
    )
    .expect("VISIT_EVENT rows");
}

fn add_variants(db: &SqliteDatabase) {
    let col = ColumnDef::new;
    db.create_table(
        "dbo",
        "VARIANTS",
        &[
            col("ID", "int", false),
            col("V", "sql_variant", true),
            col("R", "real", true),
            col("DTO", "datetimeoffset(7)", true),
        ],
        &["ID"],
    )
    .expect("VARIANTS");
    let variant = |ty: SqlType, v: Value| Value::Variant(Box::new(ty), Box::new(v));
    let rows = vec![
        vec![
            Value::Int(1),
            variant(SqlType::Float, Value::Float(1.0 / 3.0)),
            Value::Float(f64::from(0.1f32)),
            text("2024-02-29 23:59:59.1234567 +05:30"),
        ],
        vec![
            Value::Int(2),
            variant(SqlType::DateTime, text("2024-02-29 23:59:59.997")),
            Value::Float(f64::from(1.0f32 / 3.0)),
            text("0001-01-01 00:00:00.0000000 -14:00"),
        ],
        vec![
            Value::Int(3),
            variant(SqlType::Money, text("12.3456")),
            Value::Float(f64::from(16_777_217.0f32)),
            text("9999-12-31 23:59:59.9999999 +14:00"),
        ],
        vec![
            Value::Int(4),
            variant(SqlType::NVarChar { length: Some(20) }, text("Ñandú ü€😀")),
            Value::Float(-0.0),
            text("2000-01-01 00:00:00.0000000 +00:00"),
        ],
        vec![
            Value::Int(5),
            variant(SqlType::Int, Value::Int(-42)),
            Value::Null,
            Value::Null,
        ],
        vec![
            Value::Int(6),
            variant(
                SqlType::DateTime2 { scale: 7 },
                text("1900-01-01 00:00:00.0000001"),
            ),
            Value::Float(f64::from(3.402_823_5e38_f32)),
            text("2024-06-30 12:00:00.5000000 -08:00"),
        ],
        vec![Value::Int(7), Value::Null, Value::Float(1e-45), Value::Null],
    ];
    db.insert_rows("dbo", "VARIANTS", rows)
        .expect("VARIANTS rows");
}

/// Every table of [`clarity`] (schema dbo).
fn tables() -> Vec<&'static str> {
    CLARITY_TABLES
        .into_iter()
        .chain(["VISIT_EVENT", "VARIANTS"])
        .collect()
}

fn write(dir: &Path, json: Json) -> std::path::PathBuf {
    common::write_config(dir, json)
}

/// The config file in `dir` for `driver` (CSV into `dir/out`) with `extra` keys on top.
fn config_file(m: &Mssql, dir: &Path, driver: &str, extra: Json) -> std::path::PathBuf {
    let out = dir.join("out");
    write(
        dir,
        with(config(m.server.port(), &out, driver, "csv"), extra),
    )
}

/// Syncs with `cfg`: every one of `tables` (schema dbo) is done and equals the fixture.
fn sync_exactly(cfg: &Path, out: &Path, m: &Mssql, tables: &[&str]) -> Run {
    let run = ehi_ok("sync", cfg, &[]);
    let done = format!("{} tables done, 0 failed", tables.len());
    assert!(run.stdout.contains(&done), "{}", run.all());
    for table in tables {
        assert_output_equals_fixture(out, &m.sqlite, "dbo", table);
    }
    run
}

/// The table `[dbo].[T]` a statement reads, by its `FROM` clause.
fn table_of(sql: &str) -> Option<&str> {
    let from = sql.find(" FROM [dbo].[")? + " FROM [dbo].[".len();
    let end = sql[from..].find(']')? + from;
    Some(&sql[from..end])
}

/// `@Pn` → the column it is compared with (`[COL] > @P1`, `[COL] = @P2`, `[COL] <= @P3`).
fn parameter_columns(sql: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut rest = sql;
    let mut offset = 0;
    while let Some(at) = rest.find("@P") {
        let absolute = offset + at;
        let digits: String = sql[absolute + 2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let before = sql[..absolute].trim_end_matches("CAST(");
        let before = before.trim_end_matches([' ', '>', '<', '=']);
        if let (Some(stripped), Some(open)) = (before.strip_suffix(']'), before.rfind('[')) {
            map.insert(format!("@P{digits}"), stripped[open + 1..].to_owned());
        }
        offset = absolute + 2;
        rest = &sql[offset..];
    }
    map
}

/// The reads of user tables (statements with a FROM [dbo].[…] but not the catalog's).
fn reads(received: &[Received]) -> Vec<&Received> {
    received
        .iter()
        .filter(|r| r.sql.starts_with("SELECT") && table_of(&r.sql).is_some())
        .filter(|r| !r.sql.contains("COUNT_BIG") && !r.sql.contains("MIN("))
        .collect()
}

/// Every key parameter of `reads` has its key column's own type (varchar(18) in the column's
/// collation, numeric(18,0), float, int, uniqueidentifier), except a datetime key: the driver
/// declares it `datetime_parameter`, and the statement converts it back to datetime. Keys are
/// never literals, and every parameterized read is one `sp_executesql`. Returns the
/// `TABLE.COLUMN`s seen as parameters.
fn assert_typed_key_parameters(
    m: &Mssql,
    reads: &[&Received],
    datetime_parameter: SqlType,
) -> BTreeSet<String> {
    let mut checked = BTreeSet::new();
    for r in reads {
        let table = table_of(&r.sql).expect("a table");
        let source = source_table(&m.sqlite, "dbo", table);
        let columns = parameter_columns(&r.sql);
        assert_eq!(
            columns.len(),
            r.params.len(),
            "{table}: every parameter compared with a key column: {}",
            r.sql
        );
        for p in &r.params {
            let column = &columns[&p.name];
            let i = source
                .columns
                .iter()
                .position(|c| c == column)
                .unwrap_or_else(|| panic!("{table}: no column {column}"));
            let expected = match &source.types[i] {
                SqlType::DateTime => {
                    let cast = format!("CAST({} AS DATETIME)", p.name);
                    assert!(
                        r.sql.contains(&format!("[{column}] = {cast}"))
                            || r.sql.contains(&format!("[{column}] > {cast}")),
                        "{table}.{column}: a datetime bound converted back: {}",
                        r.sql
                    );
                    datetime_parameter.clone()
                }
                other => other.clone(),
            };
            assert_eq!(
                p.ty, expected,
                "{table}.{column} parameter type; declared {:?}",
                r.declarations
            );
            checked.insert(format!("{table}.{column}"));
        }
        assert!(
            !r.sql.contains("> N'") && !r.sql.contains("> '") && !r.sql.contains("= N'"),
            "{table}: a literal key in {}",
            r.sql
        );
        if !r.params.is_empty() {
            assert_eq!(
                r.kind,
                RequestKind::Rpc("sp_executesql".into()),
                "{}",
                r.sql
            );
        }
    }
    checked
}

// ---------------------------------------------------------------------------------------------
// check, plan, sync through Driver 18
// ---------------------------------------------------------------------------------------------

#[test]
fn check_and_plan_of_a_clarity_database_through_driver18() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 300, TlsMode::Off);
    let out = dir.path().join("out");
    let cfg = write(dir.path(), config(m.server.port(), &out, DRIVER18, "csv"));
    let check = ehi_ok("check", &cfg, &[]);
    assert!(check.stdout.contains("check passed"), "{}", check.all());
    assert!(
        check.stdout.contains("driver      libmsodbcsql-18"),
        "Microsoft's driver ran:\n{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("tables      10 visible"),
        "{}",
        check.stdout
    );
    // Driver 18 answers a LoginTimeout keyword with 01S00 "Invalid connection string attribute"
    // on every connection; the login timeout is an attribute of the connection handle.
    assert!(
        !check.all().contains("LoginTimeout") && !check.all().contains("01S00"),
        "{}",
        check.all()
    );
    assert!(
        !check.all().contains(PASSWORD),
        "the password is never printed"
    );

    let plan = ehi_ok("plan", &cfg, &["--json"]);
    let plan: Json = serde_json::from_str(&plan.stdout).expect("plan --json is JSON");
    let tables: Vec<&Json> = plan["tiers"]
        .as_array()
        .expect("plan lists tiers")
        .iter()
        .flat_map(|tier| tier["tables"].as_array().expect("a tier lists tables"))
        .collect();
    assert_eq!(tables.len(), self::tables().len(), "{plan:#}");
    let mut modes = BTreeMap::new();
    for t in tables {
        let name = t["name"].as_str().expect("name").to_owned();
        let mode = t["read_mode"].as_str().expect("read_mode").to_owned();
        let has_key = !t["primary_key"].as_array().expect("key").is_empty();
        // A keyed table is never one stream: a failure would restart it from row 0.
        assert_eq!(
            mode == "stream",
            !has_key,
            "{name}: {mode} ({})",
            t["read_reason"]
        );
        modes.insert(name, mode);
    }
    assert_eq!(modes["AUDIT_LOG"], "stream");
    for name in ["PAT_ENC", "ORDER_PROC", "Ünï tàble", "VARIANTS"] {
        assert_eq!(
            modes[name], "range",
            "{name}: integer and numeric(18,0) keys in ranges"
        );
    }
    for name in ["PATIENT", "FLOWSHEET", "DEVICE", "NOTE_TEXT", "VISIT_EVENT"] {
        assert_eq!(
            modes[name], "keyset",
            "{name}: varchar, composite float, uniqueidentifier, datetime keys in keysets"
        );
    }
    let text_plan = ehi_ok("plan", &cfg, &[]);
    assert!(
        text_plan
            .stdout
            .contains("Tables read as one stream (1): each is restarted from its first row"),
        "{}",
        text_plan.stdout
    );
}

#[test]
fn clarity_sync_through_driver18_equals_the_source_and_sends_typed_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 300, TlsMode::Off);
    let out = dir.path().join("out");
    let cfg = write(dir.path(), config(m.server.port(), &out, DRIVER18, "csv"));
    sync_exactly(&cfg, &out, &m, &tables());
    for table in tables() {
        assert_eq!(
            validation(&out, &format!("dbo.{table}"))["status"],
            "ok",
            "{table}"
        );
    }

    let received = m.server.received();
    let reads = reads(&received);
    let checked = assert_typed_key_parameters(&m, &reads, SqlType::DateTime2 { scale: 3 });
    for key in [
        "PATIENT.PAT_ID",
        "PAT_ENC.PAT_ENC_CSN_ID",
        "ORDER_PROC.ORDER_PROC_ID",
        "FLOWSHEET.FLO_MEAS_ID",
        "FLOWSHEET.MEAS_DATE_REAL",
        "FLOWSHEET.LINE",
        "DEVICE.DEVICE_GUID",
        "VISIT_EVENT.EVENT_TIME",
        "VISIT_EVENT.LINE",
    ] {
        assert!(
            checked.contains(key),
            "{key} was sent as a parameter: {checked:?}"
        );
    }
    let datetime_params: Vec<&Value> = reads
        .iter()
        .flat_map(|r| &r.params)
        .filter(|p| p.ty == SqlType::DateTime2 { scale: 3 })
        .map(|p| &p.value)
        .collect();
    assert!(
        datetime_params
            .iter()
            .any(|v| matches!(v, Value::Text(t) if t.len() == 23)),
        "datetime bounds keep their 3 fraction digits: {datetime_params:?}"
    );

    // One statement text per table and shape: keyset chunks share the text of their shape.
    let mut texts: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for r in &reads {
        let entry = texts.entry(table_of(&r.sql).expect("table")).or_default();
        entry.0 += 1;
        entry.1.insert(r.sql.as_str());
    }
    let (flowsheet_reads, flowsheet_texts) = &texts["FLOWSHEET"];
    assert!(*flowsheet_reads >= 5, "FLOWSHEET read in chunks");
    assert_eq!(
        flowsheet_texts.len(),
        2,
        "the first chunk and the next ones: {flowsheet_texts:#?}"
    );
    let (_, pat_enc_texts) = &texts["PAT_ENC"];
    assert!(
        pat_enc_texts.len() <= 3,
        "ranges: first, middle, last: {pat_enc_texts:#?}"
    );

    // Non-ASCII names arrive intact (Driver 18 reads narrow statement text as Latin-1).
    assert!(
        received
            .iter()
            .any(|r| r.sql.contains("[Ünï col]") && r.sql.contains("[dbo].[Ünï tàble]")),
        "non-ASCII names intact"
    );

    // Session settings on every connection that reads.
    let count = |needle: &str| received.iter().filter(|r| r.sql.contains(needle)).count();
    let sessions = count("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
    assert!(sessions >= 2, "{sessions} sessions");
    assert_eq!(count("SET LOCK_TIMEOUT 60000"), sessions);
    assert_eq!(
        count("SET DEADLOCK_PRIORITY LOW"),
        sessions,
        "the extractor, not the hospital's ETL, is the deadlock victim"
    );
}

#[test]
fn non_ascii_keys_are_sent_intact_as_chunk_bounds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 20, TlsMode::Off);
    let out = dir.path().join("out");
    // One-row keyset chunks: every key, Ñ1 and O'Neil included, becomes a bound.
    let cfg = with(
        config(m.server.port(), &out, DRIVER18, "ndjson"),
        json!({
            "include": ["dbo.PATIENT"],
            "tiers": {"small": {"batch_size": 1, "partition_size": 1, "checkpoint_interval": 1}}
        }),
    );
    let cfg = write(dir.path(), cfg);
    ehi_ok("sync", &cfg, &[]);
    assert_output_equals_fixture(&out, &m.sqlite, "dbo", "PATIENT");
    let bounds: BTreeSet<String> = m
        .server
        .received()
        .iter()
        .filter(|r| r.sql.contains("FROM [dbo].[PATIENT]"))
        .flat_map(|r| r.params.clone())
        .map(|p| {
            assert!(
                matches!(
                    p.ty,
                    SqlType::VarChar {
                        length: Some(18),
                        ..
                    }
                ),
                "{:?}",
                p.ty
            );
            match p.value {
                Value::Text(t) => t,
                other => panic!("a varchar key sent as {other:?}"),
            }
        })
        .collect();
    for special in fixtures::SPECIAL_PATIENT_IDS {
        assert!(
            bounds.contains(special),
            "{special} arrived intact: {bounds:?}"
        );
    }
}

/// Where the every-type table is served and what it holds.
enum EveryTypeSource {
    TestServer(Mssql),
    Real(RealServer),
}

impl EveryTypeSource {
    /// Sets up `ALL_TYPES` on `target` once; returns it with the expected rows.
    fn new(target: Target, dir: &Path) -> (EveryTypeSource, SourceTable) {
        match target {
            Target::TestServer => {
                let m = mssql::every_type(dir, TlsMode::Off);
                let stored = source_table(&m.sqlite, "dbo", "ALL_TYPES");
                let rowversions: BTreeMap<i64, Vec<u8>> = stored
                    .rows
                    .iter()
                    .map(|row| match (&row[0], row.last()) {
                        (Value::Int(id), Some(Value::Bytes(rv))) => (*id, rv.clone()),
                        other => panic!("ALL_TYPES row {other:?}"),
                    })
                    .collect();
                let expected = mssql::every_type_source(&|id| rowversions[&id].clone());
                // The SQLite file holds the fixture's own rows (the backend stores them exactly).
                assert_same_values(&stored, &expected);
                (EveryTypeSource::TestServer(m), expected)
            }
            Target::Real(real) => {
                let expected = every_type_on_real(&real);
                (EveryTypeSource::Real(real), expected)
            }
        }
    }

    /// The config reading it with `driver` (a real server's connection string names its own).
    fn config(&self, out: &Path, driver: &str, format: &str) -> Json {
        match self {
            EveryTypeSource::TestServer(m) => config(m.server.port(), out, driver, format),
            EveryTypeSource::Real(real) => real.config(out, format),
        }
    }

    fn folder(&self, out: &Path) -> std::path::PathBuf {
        match self {
            EveryTypeSource::TestServer(_) => out.join("dbo.ALL_TYPES"),
            EveryTypeSource::Real(real) => out.join(format!("{}.ALL_TYPES", real.schema)),
        }
    }
}

fn every_type_on_real(real: &RealServer) -> SourceTable {
    let rows: Vec<Vec<Value>> = fixtures::every_type_rows()
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.unwrap_or(Value::Null)).collect())
        .collect();
    real.create_table("ALL_TYPES", fixtures::EVERY_TYPE_COLUMNS, &["ID"], &rows);
    let rowversions: BTreeMap<i64, Vec<u8>> = real
        .query(&format!(
            "SELECT ID, CONVERT(VARCHAR(20), C_ROWVERSION, 2) FROM [{}].[ALL_TYPES]",
            real.schema
        ))
        .into_iter()
        .map(|r| {
            let id = r[0].as_deref().and_then(|s| s.parse().ok()).expect("ID");
            let rv = hex::decode(r[1].as_deref().expect("rowversion")).expect("hex");
            (id, rv)
        })
        .collect();
    mssql::every_type_source(&|id| rowversions[&id].clone())
}

fn assert_same_values(stored: &SourceTable, expected: &SourceTable) {
    assert_eq!(stored.columns, expected.columns);
    let mut a = stored.rows.clone();
    let mut b = expected.rows.clone();
    let id = |r: &Vec<Value>| match r[0] {
        Value::Int(i) => i,
        _ => 0,
    };
    a.sort_by_key(id);
    b.sort_by_key(id);
    assert_eq!(a, b, "the fixture's SQLite file holds every_type_rows()");
}

fn every_type_exact(driver: &str, test: &str) {
    let target = if driver == FREETDS {
        println!("{test}: target = TDS test server (FreeTDS runs against it only)");
        Target::TestServer
    } else {
        Target::from_env(test)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, expected) = EveryTypeSource::new(target, dir.path());
    for format in ["csv", "ndjson", "parquet"] {
        let out = dir.path().join(format!("out-{format}"));
        let sub = dir.path().join(format);
        std::fs::create_dir_all(&sub).expect("dir");
        let cfg = write(&sub, source.config(&out, driver, format));
        ehi_ok("check", &cfg, &[]);
        ehi_ok("sync", &cfg, &[]);
        let files = read_table(&source.folder(&out));
        assert_output_equals(&files, &expected, &format!("ALL_TYPES {driver} {format}"));
        let kinds: BTreeMap<String, String> = files
            .column_names()
            .into_iter()
            .zip(files.kinds())
            .collect();
        assert_eq!(kinds["C_REAL"], "float");
        assert_eq!(kinds["C_DATETIMEOFFSET"], "timestamp");
        assert_eq!(kinds["C_ROWVERSION"], "binary");
        if let Some(types) = files.parquet_types() {
            let parquet: BTreeMap<String, String> =
                files.column_names().into_iter().zip(types).collect();
            for (column, expected) in [
                ("C_BIGINT", "int64"),
                ("C_TINYINT", "int64"),
                ("C_BIT", "boolean"),
                ("C_DECIMAL", "decimal(38,10)"),
                ("C_NUMERIC", "decimal(18,0)"),
                ("C_MONEY", "decimal(19,4)"),
                ("C_SMALLMONEY", "decimal(10,4)"),
                ("C_FLOAT", "float64"),
                ("C_REAL", "float32"),
                ("C_DATE", "date"),
                ("C_TIME", "time(ns)"),
                ("C_DATETIME", "timestamp(us)"),
                ("C_SMALLDATETIME", "timestamp(us)"),
                // 100 ns digits and an offset: text, with the reason in the manifest.
                ("C_DATETIME2", "string"),
                ("C_DATETIMEOFFSET", "string"),
                ("C_NVARCHAR_MAX", "string"),
                ("C_GUID", "string"),
                ("C_VARBINARY_MAX", "binary"),
                ("C_ROWVERSION", "binary"),
            ] {
                assert_eq!(parquet[column], expected, "{column}'s Parquet type");
            }
        }
    }
}

#[test]
fn every_type_is_exact_through_driver18_in_csv_ndjson_and_parquet() {
    every_type_exact(
        DRIVER18,
        "every_type_is_exact_through_driver18_in_csv_ndjson_and_parquet",
    );
}

#[test]
fn every_type_is_exact_through_freetds_in_csv_ndjson_and_parquet() {
    every_type_exact(
        FREETDS,
        "every_type_is_exact_through_freetds_in_csv_ndjson_and_parquet",
    );
}

#[test]
fn clarity_sync_through_freetds_equals_the_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 150, TlsMode::Off);
    let out = dir.path().join("out");
    let cfg = write(dir.path(), config(m.server.port(), &out, FREETDS, "ndjson"));
    let check = ehi_ok("check", &cfg, &[]);
    assert!(
        check.stdout.contains("libtdsodbc"),
        "FreeTDS ran:\n{}",
        check.stdout
    );
    sync_exactly(&cfg, &out, &m, &tables());
    let received = m.server.received();
    assert!(
        received
            .iter()
            .any(|r| r.sql.contains("[Ünï col]") && r.sql.contains("[dbo].[Ünï tàble]")),
        "non-ASCII names intact through FreeTDS"
    );
    // FreeTDS declares a timestamp parameter datetime2(7).
    let checked =
        assert_typed_key_parameters(&m, &reads(&received), SqlType::DateTime2 { scale: 7 });
    assert!(checked.contains("VISIT_EVENT.EVENT_TIME"), "{checked:?}");
    assert!(checked.contains("PAT_ENC.PAT_ENC_CSN_ID"), "{checked:?}");
}

// ---------------------------------------------------------------------------------------------
// Crash safety and faults
// ---------------------------------------------------------------------------------------------

/// A keyed table for the kill-and-resume test on either target: varchar(18) keys with the
/// special ids among them, numeric(18,0), datetime and nvarchar values.
const KEYS_COLUMNS: &[(&str, &str)] = &[
    ("PAT_ID", "varchar(18)"),
    ("CSN", "numeric(18,0)"),
    ("SEEN", "datetime"),
    ("NAME", "nvarchar(100)"),
];

fn keys_rows(rows: u64) -> Vec<Vec<Value>> {
    (0..rows)
        .map(|n| format!("K{n:06}"))
        .chain(
            fixtures::SPECIAL_PATIENT_IDS
                .iter()
                .map(|s| (*s).to_owned()),
        )
        .enumerate()
        .map(|(i, id)| {
            vec![
                Value::Text(id),
                text(&(700_000_000_000u64 + i as u64 * 7).to_string()),
                text(&format!(
                    "2022-{:02}-{:02} 08:00:00.997",
                    1 + i % 12,
                    1 + i % 28
                )),
                if i % 9 == 4 {
                    Value::Null
                } else {
                    text(&format!("Patiënt {i} ü€😀"))
                },
            ]
        })
        .collect()
}

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) % n
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_is_exact() {
    let test = "sigkill_at_random_moments_then_resume_is_exact";
    let target = Target::from_env(test);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let rows = keys_rows(20_000);
    let columns: Vec<String> = KEYS_COLUMNS.iter().map(|(c, _)| (*c).to_owned()).collect();
    let types: Vec<SqlType> = KEYS_COLUMNS
        .iter()
        .map(|(_, t)| parse_type(t, "SQL_Latin1_General_CP1_CI_AS").expect("type"))
        .collect();
    let expected = SourceTable {
        columns,
        types,
        rows: rows.clone(),
    };
    let (cfg, folder, _server) = match &target {
        Target::TestServer => {
            let db = SqliteDatabase::open(&dir.path().join("keys.sqlite"), DATABASE).expect("db");
            let defs: Vec<ColumnDef> = KEYS_COLUMNS
                .iter()
                .map(|(c, t)| ColumnDef::new(c, t, *c != "PAT_ID"))
                .collect();
            db.create_table("dbo", "KEYS", &defs, &["PAT_ID"])
                .expect("KEYS");
            db.insert_rows("dbo", "KEYS", rows).expect("rows");
            let m = serve(db, TlsMode::Off);
            let cfg = config(m.server.port(), &out, DRIVER18, "csv");
            (cfg, out.join("dbo.KEYS"), Some(m))
        }
        Target::Real(real) => {
            real.create_table("KEYS", KEYS_COLUMNS, &["PAT_ID"], &rows);
            (
                real.config(&out, "csv"),
                out.join(format!("{}.KEYS", real.schema)),
                None,
            )
        }
    };
    // Medium tier: keyset chunks of 250, checkpoints every 100 rows.
    let cfg = write(
        dir.path(),
        with(
            cfg,
            json!({
                "small_table_threshold": 100,
                "large_table_threshold": 100_000,
                "tiers": {"medium": {"batch_size": 50, "partition_size": 100, "checkpoint_interval": 100}}
            }),
        ),
    );
    let plan = ehi_ok("plan", &cfg, &[]);
    assert!(
        plan.stdout.contains("(keyset on varchar key)"),
        "{}",
        plan.stdout
    );
    let mut random = Lcg(0x5eed_1234);
    let started = Instant::now();
    let (mut kills, mut resumed) = (0, 0);
    while kills < 8 && started.elapsed() < Duration::from_secs(60) {
        let mut run = Running::sync(&cfg, &[]);
        if run.wait_for("Processing table", Duration::from_secs(60)) {
            std::thread::sleep(Duration::from_millis(random.below(150)));
        }
        if !run.is_running() {
            let finished = run.wait(Duration::from_secs(60));
            assert_eq!(finished.code, 0, "{}\n{}", finished.stdout, finished.stderr);
            break;
        }
        run.signal("KILL");
        if run
            .wait(Duration::from_secs(30))
            .stdout
            .contains("Resuming run")
        {
            resumed += 1;
        }
        kills += 1;
    }
    let last = Running::sync(&cfg, &[]).wait(Duration::from_secs(120));
    assert_eq!(last.code, 0, "{}\n{}", last.stdout, last.stderr);
    println!("{test}: {kills} kills, {resumed} of them in resumed runs");
    assert!(kills >= 5, "only {kills} kills landed");
    assert!(
        resumed >= 2,
        "kills must land in resumed runs too ({resumed})"
    );
    assert_output_equals(&read_table(&folder), &expected, "KEYS after resume");
}

/// The tables a fault test reads (small ones, without NOTE_TEXT's 1 MiB values).
fn fault_config(m: &Mssql, out: &Path, tables: &[&str]) -> Json {
    with(
        config(m.server.port(), out, DRIVER18, "csv"),
        json!({
            "include": tables.iter().map(|t| format!("dbo.{t}")).collect::<Vec<_>>(),
            "max_retries": 3,
        }),
    )
}

fn error_at(table: &str, row: u64, error: ServerError) -> Fault {
    Fault::ErrorAtRow {
        statement_contains: format!("FROM [dbo].[{table}]"),
        row,
        error,
        times: 1,
    }
}

#[test]
fn deadlock_and_lock_timeout_mid_stream_are_retried_and_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 300, TlsMode::Off);
    let out = dir.path().join("out");
    m.server.add_fault(error_at(
        "PAT_ENC",
        40,
        ServerError::new(
            1205,
            51,
            13,
            "Transaction (Process ID 57) was deadlocked on lock resources with another process \
             and has been chosen as the deadlock victim. Rerun the transaction.",
        ),
    ));
    m.server.add_fault(error_at(
        "FLOWSHEET",
        100,
        ServerError::new(1222, 56, 16, "Lock request time out period exceeded."),
    ));
    let tables = ["PAT_ENC", "FLOWSHEET", "PATIENT"];
    let cfg = write(dir.path(), fault_config(&m, &out, &tables));
    let run = sync_exactly(&cfg, &out, &m, &tables);
    let log = run.stderr.to_lowercase();
    assert!(
        log.contains("deadlock"),
        "the retry names the deadlock:\n{}",
        run.stderr
    );
    assert!(log.contains("lock"), "{}", run.stderr);
}

#[test]
fn a_cut_link_mid_stream_is_recovered_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 300, TlsMode::Off);
    let out = dir.path().join("out");
    m.server.add_fault(Fault::CutAtRow {
        statement_contains: "FROM [dbo].[FLOWSHEET]".into(),
        row: 70,
        times: 1,
    });
    m.server.add_fault(Fault::CutAtRow {
        statement_contains: "FROM [dbo].[PAT_ENC]".into(),
        row: 10,
        times: 2,
    });
    let tables = ["PAT_ENC", "FLOWSHEET"];
    let cfg = write(dir.path(), fault_config(&m, &out, &tables));
    let run = sync_exactly(&cfg, &out, &m, &tables);
    assert!(
        run.stderr.contains("08S01"),
        "Driver 18 reports the cut link as 08S01:\n{}",
        run.stderr
    );
}

#[test]
fn a_silent_stall_is_recovered_by_the_watchdog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 300, TlsMode::Off);
    let out = dir.path().join("out");
    m.server.add_fault(Fault::StallAtRow {
        statement_contains: "FROM [dbo].[FLOWSHEET]".into(),
        row: 120,
        duration: Duration::from_secs(15),
        times: 1,
    });
    let tables = ["FLOWSHEET", "PATIENT"];
    let cfg = with(
        fault_config(&m, &out, &tables),
        json!({"stall_timeout_seconds": 2}),
    );
    let cfg = write(dir.path(), cfg);
    let started = Instant::now();
    let run = sync_exactly(&cfg, &out, &m, &tables);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(14),
        "recovered before the stall ended: {took:?}"
    );
    assert!(
        run.stderr
            .contains("dbo.FLOWSHEET: no rows for 2s; cancelling the statement"),
        "the log says why the read was abandoned:\n{}",
        run.stderr
    );
}

#[test]
fn a_value_the_driver_cannot_convert_fails_its_table_without_writing_a_blank() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 300, TlsMode::Off);
    let out = dir.path().join("out");
    // PAT_ENC.UPDATE_DATE (datetime2(7)) at 24:00:00: Driver 18 answers 22007 for that row.
    m.server.add_fault(Fault::BadValueAtRow {
        statement_contains: "FROM [dbo].[PAT_ENC]".into(),
        row: 10,
        column: 5,
        times: 100,
    });
    let cfg = write(dir.path(), fault_config(&m, &out, &["PAT_ENC", "PATIENT"]));
    let run = ehi("sync", &cfg, &[]);
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(
        run.all().contains("22007"),
        "the SQLSTATE is named:\n{}",
        run.all()
    );
    assert_ne!(validation(&out, "dbo.PAT_ENC")["status"], "ok");
    assert_eq!(validation(&out, "dbo.PATIENT")["status"], "ok");
    assert_output_equals_fixture(&out, &m.sqlite, "dbo", "PATIENT");
    // Whatever PAT_ENC files exist hold only whole rows, each value the source's: no blank,
    // and no value left in the buffer by an earlier fetch.
    let folder = out.join("dbo.PAT_ENC");
    if folder.join("_manifest.json").exists() {
        let files = read_table(&folder);
        let source = source_table(&m.sqlite, "dbo", "PAT_ENC");
        let kinds = files.kinds();
        let expected: BTreeMap<Option<String>, Vec<Option<String>>> = source
            .rows
            .iter()
            .map(|row| {
                let row: Vec<Option<String>> = row
                    .iter()
                    .zip(&source.types)
                    .zip(&kinds)
                    .map(|((v, ty), kind)| {
                        common::output::normalize(kind, mssql::expected_text(ty, v), Side::Source)
                    })
                    .collect();
                (row[0].clone(), row)
            })
            .collect();
        for row in &files.rows {
            assert_eq!(
                Some(row),
                expected.get(&row[0]),
                "PAT_ENC {:?}: written as the source holds it",
                row[0]
            );
        }
    }
}

#[test]
fn transient_server_errors_are_retried_and_a_refused_database_is_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = clarity(dir.path(), 300, TlsMode::Off);
    let out = dir.path().join("out");
    m.server.add_fault(error_at(
        "PAT_ENC",
        20,
        ServerError::new(
            40613,
            1,
            17,
            "Database 'Clarity' on server 'tds-test-server' is not currently available.",
        ),
    ));
    m.server.add_fault(error_at(
        "FLOWSHEET",
        30,
        ServerError::new(233, 0, 20, "The connection was closed by the remote host."),
    ));
    let tables = ["PAT_ENC", "FLOWSHEET"];
    let cfg = write(dir.path(), fault_config(&m, &out, &tables));
    let run = sync_exactly(&cfg, &out, &m, &tables);
    assert!(run.stderr.contains("40613"), "{}", run.stderr);

    // 4060 at the first connect: the database name is wrong, retrying will not help.
    m.server.add_fault(Fault::LoginError {
        error: ServerError::new(
            4060,
            1,
            11,
            "Cannot open database \"Clarity\" requested by the login. The login failed.",
        ),
        times: 1,
    });
    let check = ehi("check", &cfg, &[]);
    assert_eq!(check.code, 3, "{}", check.all());
    assert!(check.all().contains("4060"), "{}", check.all());
}

// ---------------------------------------------------------------------------------------------
// Logins and TLS
// ---------------------------------------------------------------------------------------------

#[test]
fn a_wrong_password_exits_3_and_is_never_echoed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = mssql::every_type(dir.path(), TlsMode::Off);
    let out = dir.path().join("out");
    let wrong = "Wr0ng-Secret-Pa55-Ñ";
    for driver in [DRIVER18, FREETDS] {
        let cfg = config_file(&m, dir.path(), driver, json!({"mssql_password": wrong}));
        for command in ["check", "sync"] {
            let run = ehi(command, &cfg, &[]);
            assert_eq!(run.code, 3, "{driver} {command}: {}", run.all());
            assert!(
                !run.all().contains(wrong) && !run.all().contains("Wr0ng-Secret"),
                "{driver} {command} echoed the password:\n{}",
                run.all()
            );
            assert!(
                run.all().contains("18456") || run.all().contains("Login failed"),
                "{driver} {command}: {}",
                run.all()
            );
        }
    }
    assert!(!out.join("dbo.ALL_TYPES").exists(), "nothing written");
}

#[test]
fn an_unknown_database_exits_3_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = mssql::every_type(dir.path(), TlsMode::Off);
    let cfg = config_file(
        &m,
        dir.path(),
        DRIVER18,
        json!({"mssql_database": "Clarity_Typo"}),
    );
    let run = ehi("check", &cfg, &[]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.all().contains("4060") && run.all().contains("Clarity_Typo"),
        "{}",
        run.all()
    );
}

#[test]
fn encrypt_and_trust_server_certificate_behave_as_driver18_documents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = mssql::every_type(dir.path(), TlsMode::Required);
    // Encrypt=yes;TrustServerCertificate=yes: encrypted, the self-signed certificate accepted.
    let cfg = config_file(&m, dir.path(), DRIVER18, json!({"mssql_encrypt": "yes"}));
    ehi_ok("check", &cfg, &[]);
    ehi_ok("sync", &cfg, &[]);
    let files = read_table(&dir.path().join("out").join("dbo.ALL_TYPES"));
    assert_eq!(files.rows.len(), 4, "read over TLS");
    let logins = m.server.logins();
    assert!(
        logins.iter().all(|l| l.prelogin_encryption == 1),
        "every login asked for encryption: {logins:?}"
    );

    // Encrypt=strict (TDS 8: TLS before PRELOGIN) ignores TrustServerCertificate, as Driver 18
    // documents: the certificate is validated anyway (pin it with `cert`, see below).
    let cfg = config_file(&m, dir.path(), DRIVER18, json!({"mssql_encrypt": "strict"}));
    let run = ehi("check", &cfg, &[]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.all().contains("certificate verify failed"),
        "{}",
        run.all()
    );

    // TrustServerCertificate=no: the certificate, signed by a CA nobody trusts, fails.
    let cfg = config_file(
        &m,
        dir.path(),
        DRIVER18,
        json!({"mssql_encrypt": "yes", "mssql_trust_server_certificate": false}),
    );
    let run = ehi("check", &cfg, &[]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.all().to_lowercase().contains("certificate"),
        "a clear message:\n{}",
        run.all()
    );

    // A server without TLS and a client that requires it: no connection.
    std::fs::create_dir_all(dir.path().join("plain")).expect("dir");
    let plain = mssql::every_type(&dir.path().join("plain"), TlsMode::Off);
    let cfg = config_file(
        &plain,
        dir.path(),
        DRIVER18,
        json!({"mssql_encrypt": "yes"}),
    );
    let run = ehi("check", &cfg, &[]);
    assert_eq!(run.code, 3, "{}", run.all());
}

/// The test CA that signed the server's certificate, trusted through OpenSSL's `SSL_CERT_FILE`
/// (Driver 18 on Linux validates with OpenSSL's default verify paths), so that the host name
/// check is what decides.
#[test]
fn host_name_in_certificate_is_checked_against_the_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("db")).expect("dir");
    let m = mssql::every_type(&dir.path().join("db"), TlsMode::Required);
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, m.server.ca_certificate_pem().expect("a CA")).expect("pem");
    let check_with_trusted_cert = |extra: Json| -> mssql::Run {
        let cfg = config_file(
            &m,
            dir.path(),
            DRIVER18,
            with(
                json!({"mssql_encrypt": "yes", "mssql_trust_server_certificate": false}),
                extra,
            ),
        );
        std::process::Command::new(env!("CARGO_BIN_EXE_ehi-sync"))
            .args(["check", "--config"])
            .arg(&cfg)
            .env("SSL_CERT_FILE", &pem)
            .output()
            .expect("run ehi-sync")
            .into()
    };
    // The certificate is issued to localhost: 127.0.0.1 does not match it…
    let by_address = check_with_trusted_cert(json!({}));
    assert_eq!(by_address.code, 3, "{}", by_address.all());
    // …but HostNameInCertificate=localhost does, and so does connecting to localhost.
    let by_cert_name = check_with_trusted_cert(json!({"mssql_cert_server": "localhost"}));
    assert_eq!(by_cert_name.code, 0, "{}", by_cert_name.all());
    let by_host = check_with_trusted_cert(json!({"mssql_server": "localhost"}));
    assert_eq!(by_host.code, 0, "{}", by_host.all());
    // A name the certificate does not hold fails, by address…
    let wrong_name = check_with_trusted_cert(json!({"mssql_cert_server": "sql01.hospital.local"}));
    assert_eq!(wrong_name.code, 3, "{}", wrong_name.all());
    assert!(
        wrong_name.all().to_lowercase().contains("certificate"),
        "{}",
        wrong_name.all()
    );
    // …but Driver 18.6 on Linux accepts a certificate that matches the server name even when
    // HostNameInCertificate names another host (pinned: the documentation says the host name
    // in the certificate is expected to be HostNameInCertificate's).
    let server_name_wins = check_with_trusted_cert(
        json!({"mssql_server": "localhost", "mssql_cert_server": "sql01.hospital.local"}),
    );
    assert_eq!(server_name_wins.code, 0, "{}", server_name_wins.all());
}

#[test]
fn a_pinned_server_certificate_is_accepted_and_another_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("a")).expect("dir");
    std::fs::create_dir_all(dir.path().join("b")).expect("dir");
    let m = mssql::every_type(&dir.path().join("a"), TlsMode::Required);
    let other = mssql::every_type(&dir.path().join("b"), TlsMode::Required);
    let pinned = dir.path().join("pinned.pem");
    std::fs::write(&pinned, m.server.certificate_pem().expect("cert")).expect("pem");
    let foreign = dir.path().join("foreign.pem");
    std::fs::write(&foreign, other.server.certificate_pem().expect("cert")).expect("pem");
    // ServerCertificate (Driver 18.1+) is honoured with Encrypt=strict (TDS 8).
    let pin = |cert: &Path| json!({"mssql_encrypt": "strict", "mssql_trust_server_certificate": false, "cert": cert});
    let ok = ehi(
        "check",
        &config_file(&m, dir.path(), DRIVER18, pin(&pinned)),
        &[],
    );
    assert_eq!(ok.code, 0, "{}", ok.all());
    let refused = ehi(
        "check",
        &config_file(&m, dir.path(), DRIVER18, pin(&foreign)),
        &[],
    );
    assert_eq!(refused.code, 3, "{}", refused.all());
}

#[test]
fn freetds_refuses_certificate_validation_it_would_not_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = mssql::every_type(dir.path(), TlsMode::Required);
    let cfg = config_file(
        &m,
        dir.path(),
        FREETDS,
        json!({"mssql_encrypt": "yes", "mssql_trust_server_certificate": false}),
    );
    let run = ehi("check", &cfg, &[]);
    assert_eq!(
        run.code,
        2,
        "a config FreeTDS cannot honour:\n{}",
        run.all()
    );
    assert!(m.server.logins().is_empty(), "refused before connecting");
    // Trusting the certificate explicitly works, encrypted.
    let cfg = config_file(
        &m,
        dir.path(),
        FREETDS,
        json!({"mssql_encrypt": "yes", "mssql_trust_server_certificate": true}),
    );
    ehi_ok("check", &cfg, &[]);
}

// ---------------------------------------------------------------------------------------------
// Incremental loads
// ---------------------------------------------------------------------------------------------

fn keys_of(files: &common::output::TableFiles, run: &str, op: &str) -> BTreeSet<String> {
    files
        .rows
        .iter()
        .zip(&files.ops)
        .zip(&files.runs)
        .filter(|((_, o), r)| *o == op && *r == run)
        .map(|((row, _), _)| row[0].clone().expect("key"))
        .collect()
}

fn assert_applied_equals_fixture(out: &Path, m: &Mssql, table: &str) -> common::output::TableFiles {
    let files = read_table(&out.join(format!("dbo.{table}")));
    let applied = common::output::TableFiles {
        manifest: files.manifest.clone(),
        rows: common::output::apply_changes(&files),
        ops: Vec::new(),
        runs: Vec::new(),
    };
    assert_output_equals(&applied, &source_table(&m.sqlite, "dbo", table), table);
    files
}

/// The change-tracked table of the incremental tests, on either target.
const ORDERS_COLUMNS: &[(&str, &str)] = &[
    ("ORDER_PROC_ID", "numeric(18,0)"),
    ("PAT_ID", "varchar(18)"),
    ("DESCRIPTION", "varchar(254)"),
    ("NOTE", "nvarchar(max)"),
];

fn order_row(id: u64, description: &str) -> Vec<Value> {
    vec![
        text(&id.to_string()),
        text(&format!("Z{:07}", id % 97)),
        text(description),
        if id.is_multiple_of(5) {
            Value::Null
        } else {
            text(&format!("Order note {id}: Ünïcödé 😀\nsecond line"))
        },
    ]
}

/// Where `ORDERS` lives: the test server's SQLite file, or a real server's scratch schema with
/// change tracking enabled on the database and the table.
enum Orders {
    TestServer(Mssql),
    Real(RealServer),
}

impl Orders {
    fn new(target: Target, dir: &Path, rows: &[Vec<Value>]) -> Orders {
        match target {
            Target::TestServer => {
                let db = SqliteDatabase::open(&dir.join("orders.sqlite"), DATABASE).expect("db");
                let defs: Vec<ColumnDef> = ORDERS_COLUMNS
                    .iter()
                    .map(|(c, t)| ColumnDef::new(c, t, *c != "ORDER_PROC_ID"))
                    .collect();
                db.create_table("dbo", "ORDERS", &defs, &["ORDER_PROC_ID"])
                    .expect("ORDERS");
                db.insert_rows("dbo", "ORDERS", rows.to_vec())
                    .expect("rows");
                db.enable_change_tracking("dbo", "ORDERS")
                    .expect("change tracking");
                Orders::TestServer(serve(db, TlsMode::Off))
            }
            Target::Real(real) => {
                real.create_table("ORDERS", ORDERS_COLUMNS, &["ORDER_PROC_ID"], rows);
                real.execute(
                    "IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE \
                     database_id = DB_ID()) ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON \
                     (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)",
                );
                real.execute(&format!(
                    "ALTER TABLE [{}].[ORDERS] ENABLE CHANGE_TRACKING",
                    real.schema
                ));
                Orders::Real(real)
            }
        }
    }

    fn config(&self, out: &Path) -> Json {
        match self {
            Orders::TestServer(m) => fault_config(m, out, &["ORDERS"]),
            Orders::Real(real) => real.config(out, "csv"),
        }
    }

    fn folder(&self, out: &Path) -> std::path::PathBuf {
        match self {
            Orders::TestServer(_) => out.join("dbo.ORDERS"),
            Orders::Real(real) => out.join(format!("{}.ORDERS", real.schema)),
        }
    }

    fn update(&self, id: u64, description: &str) {
        match self {
            Orders::TestServer(m) => assert!(
                m.db.update_row(
                    "dbo",
                    "ORDERS",
                    &[text(&id.to_string())],
                    &[("DESCRIPTION", text(description))]
                )
                .expect("update")
            ),
            Orders::Real(real) => real.execute(&format!(
                "UPDATE [{}].[ORDERS] SET [DESCRIPTION] = N'{description}' WHERE \
                 [ORDER_PROC_ID] = {id}",
                real.schema
            )),
        }
    }

    fn delete(&self, id: u64) {
        match self {
            Orders::TestServer(m) => assert!(
                m.db.delete_row("dbo", "ORDERS", &[text(&id.to_string())])
                    .expect("delete")
            ),
            Orders::Real(real) => real.execute(&format!(
                "DELETE FROM [{}].[ORDERS] WHERE [ORDER_PROC_ID] = {id}",
                real.schema
            )),
        }
    }

    fn insert(&self, rows: &[Vec<Value>]) {
        match self {
            Orders::TestServer(m) => {
                m.db.insert_rows("dbo", "ORDERS", rows.to_vec())
                    .expect("inserts");
            }
            Orders::Real(real) => real.insert_rows("ORDERS", ORDERS_COLUMNS, rows),
        }
    }
}

fn change_tracking(fetch_text: Option<&str>, test: &str) {
    let target = Target::from_env(test);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut rows: BTreeMap<u64, Vec<Value>> = (900_000..900_300u64)
        .map(|id| (id, order_row(id, &format!("CBC WITH DIFF – Ñ{id}"))))
        .collect();
    let first_rows: Vec<Vec<Value>> = rows.values().cloned().collect();
    let orders = Orders::new(target, dir.path(), &first_rows);
    let mut cfg = orders.config(&out);
    if let Some(width) = fetch_text {
        cfg = with(cfg, json!({"fetch_text": width}));
    }
    let cfg = write(dir.path(), cfg);
    let expected = |rows: &BTreeMap<u64, Vec<Value>>| SourceTable {
        columns: ORDERS_COLUMNS
            .iter()
            .map(|(c, _)| (*c).to_owned())
            .collect(),
        types: ORDERS_COLUMNS
            .iter()
            .map(|(_, t)| parse_type(t, "SQL_Latin1_General_CP1_CI_AS").expect("type"))
            .collect(),
        rows: rows.values().cloned().collect(),
    };
    let first = ehi_ok("sync", &cfg, &[]);
    assert!(
        !first.all().contains("unknown config keys ignored"),
        "every key is read (fetch_text selects the text width):\n{}",
        first.all()
    );
    assert_output_equals(
        &read_table(&orders.folder(&out)),
        &expected(&rows),
        "ORDERS",
    );

    let updated = [900_003, 900_077, 900_150];
    let deleted = [900_005, 900_006, 900_199];
    let inserted: Vec<u64> = (990_000..990_004).collect();
    for id in updated {
        orders.update(id, "changed Ñ€");
        rows.insert(id, order_row(id, "changed Ñ€"));
    }
    for id in deleted {
        orders.delete(id);
        rows.remove(&id);
    }
    let new_rows: Vec<Vec<Value>> = inserted.iter().map(|id| order_row(*id, "new")).collect();
    orders.insert(&new_rows);
    for (id, row) in inserted.iter().zip(new_rows) {
        rows.insert(*id, row);
    }

    let run = ehi_ok("sync", &cfg, &[]);
    assert!(
        run.stdout.contains("Loads: 1 incremental"),
        "{}",
        run.stdout
    );
    let files = read_table(&orders.folder(&out));
    assert_eq!(files.manifest["sync_type"], "incremental");
    let applied = common::output::TableFiles {
        manifest: files.manifest.clone(),
        rows: common::output::apply_changes(&files),
        ops: Vec::new(),
        runs: Vec::new(),
    };
    assert_output_equals(&applied, &expected(&rows), "ORDERS after the changes");
    let this_run = files.run_id();
    let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<BTreeSet<_>>();
    let mut upserted = ids(&updated);
    upserted.extend(ids(&inserted));
    assert_eq!(
        keys_of(&files, &this_run, "upsert"),
        upserted,
        "exactly the changed rows"
    );
    assert_eq!(
        keys_of(&files, &this_run, "delete"),
        ids(&deleted),
        "exactly the deletes"
    );
    if let Orders::TestServer(m) = &orders {
        assert!(
            m.server
                .received()
                .iter()
                .any(|r| r.sql.contains("CHANGETABLE(CHANGES")),
            "read through CHANGETABLE"
        );
    }
    let table = files.manifest["table"].as_str().expect("table").to_owned();
    assert_eq!(validation(&out, &table)["status"], "ok");
}

#[test]
fn change_tracking_writes_exactly_the_changes_with_their_operation() {
    change_tracking(
        None,
        "change_tracking_writes_exactly_the_changes_with_their_operation",
    );
}

/// The wide (UTF-16) text path Windows runs: the change operation must still be read right.
#[test]
fn change_tracking_with_wide_text_writes_deletes_as_deletes() {
    change_tracking(
        Some("utf16"),
        "change_tracking_with_wide_text_writes_deletes_as_deletes",
    );
}

#[test]
fn a_rowversion_cursor_load_with_a_key_scan_writes_exactly_the_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDatabase::open(&dir.path().join("rv.sqlite"), DATABASE).expect("db");
    db.create_table(
        "dbo",
        "CLARITY_DEP",
        &[
            ColumnDef::new("DEP_ID", "numeric(18,0)", false),
            ColumnDef::new("DEP_NAME", "varchar(254)", true),
            ColumnDef::new("RV", "rowversion", false),
        ],
        &["DEP_ID"],
    )
    .expect("table");
    db.insert_rows(
        "dbo",
        "CLARITY_DEP",
        (1..=400u64).map(|n| {
            vec![
                text(&(10_000 + n).to_string()),
                text(&format!("Dep Ñ{n}")),
                Value::Null,
            ]
        }),
    )
    .expect("rows");
    let m = serve(db, TlsMode::Off);
    let out = dir.path().join("out");
    let cfg = with(
        config(m.server.port(), &out, DRIVER18, "ndjson"),
        json!({"incremental": {"detect_deletes": "key_scan", "lookback_minutes": 0}}),
    );
    let cfg = write(dir.path(), cfg);
    ehi_ok("sync", &cfg, &[]);
    let first = assert_output_equals_fixture(&out, &m.sqlite, "dbo", "CLARITY_DEP");
    assert_eq!(
        first.manifest["sync_mode"]["kind"], "rowversion",
        "{:#}",
        first.manifest
    );

    let key = |n: u64| vec![text(&(10_000 + n).to_string())];
    for n in [2, 200, 399] {
        m.db.update_row(
            "dbo",
            "CLARITY_DEP",
            &key(n),
            &[("DEP_NAME", text("renamed"))],
        )
        .expect("update");
    }
    for n in [7, 300] {
        m.db.delete_row("dbo", "CLARITY_DEP", &key(n))
            .expect("delete");
    }
    m.db.insert_rows(
        "dbo",
        "CLARITY_DEP",
        [vec![text("20001"), text("new"), Value::Null]],
    )
    .expect("insert");
    let run = ehi_ok("sync", &cfg, &[]);
    assert!(
        run.stdout.contains("Loads: 1 incremental"),
        "{}",
        run.stdout
    );
    let files = assert_applied_equals_fixture(&out, &m, "CLARITY_DEP");
    let this_run = files.run_id();
    assert_eq!(
        keys_of(&files, &this_run, "upsert"),
        ["10002", "10200", "10399", "20001"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        keys_of(&files, &this_run, "delete"),
        ["10007", "10300"].map(String::from).into()
    );
    // The cursor bound is a binary(8) parameter, not a literal.
    let received = m.server.received();
    let cursor_reads: Vec<&Received> = received
        .iter()
        .filter(|r| r.sql.contains("FROM [dbo].[CLARITY_DEP]") && r.sql.contains("[RV] >"))
        .collect();
    assert!(!cursor_reads.is_empty(), "a read after the last rowversion");
    for r in cursor_reads {
        let columns = parameter_columns(&r.sql);
        for p in &r.params {
            if columns.get(&p.name).map(String::as_str) == Some("RV") {
                assert!(
                    matches!(
                        p.ty,
                        SqlType::Binary { length: 8 }
                            | SqlType::VarBinary { .. }
                            | SqlType::RowVersion
                    ),
                    "rowversion bound as {:?}",
                    p.ty
                );
            }
        }
    }
}

/// A (max) value longer than its first fetch buffer is re-read whole through both drivers
/// (the buffer grows by what the driver reports). FreeTDS 1.3 returns SQL_SUCCESS, not
/// SQL_SUCCESS_WITH_INFO, from a bulk fetch that cut a varchar(max) value converted from its
/// code page (the indicator says SQL_NO_TOTAL), so a truncation check that only looks at the
/// buffers after SQL_SUCCESS_WITH_INFO misses it. `LEGACY` holds only two-byte characters in
/// UTF-8, so the cut at the 4096-byte first buffer ends on a character boundary and the UTF-8
/// check cannot catch it either: only a truncation check on the indicators stands between a
/// long note and a cut one.
#[test]
fn long_values_through_freetds_are_never_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDatabase::open(&dir.path().join("long.sqlite"), DATABASE).expect("db");
    db.create_table(
        "dbo",
        "HNO_NOTE",
        &[
            ColumnDef::new("NOTE_ID", "varchar(18)", false),
            ColumnDef::new("NOTE", "nvarchar(max)", true),
            ColumnDef::new("LEGACY", "varchar(max)", true),
            ColumnDef::new("RAW", "varbinary(max)", true),
            ColumnDef::new("ASCII", "varchar(max)", true),
        ],
        &["NOTE_ID"],
    )
    .expect("table");
    db.insert_rows(
        "dbo",
        "HNO_NOTE",
        (1..=3usize).map(|n| {
            vec![
                text(&format!("N{n}")),
                text(&"Progress note line. ".repeat(5_000 * n)),
                text(&"Ñ".repeat(10_000 * n)),
                Value::Bytes(vec![b'x'; 70_000 * n]),
                text(&"Legacy ASCII text. ".repeat(4_000 * n)),
            ]
        }),
    )
    .expect("rows");
    let m = serve(db, TlsMode::Off);
    let source = source_table(&m.sqlite, "dbo", "HNO_NOTE");
    for driver in [DRIVER18, FREETDS] {
        let out = dir.path().join(format!("out-{}", driver.len()));
        let cfg = write(dir.path(), config(m.server.port(), &out, driver, "csv"));
        let run = ehi("sync", &cfg, &[]);
        if run.code == 0 {
            let files = read_table(&out.join("dbo.HNO_NOTE"));
            for row in &files.rows {
                let id = row[0].clone().expect("key");
                let expected = source
                    .rows
                    .iter()
                    .find(|r| r[0] == Value::Text(id.clone()))
                    .expect("source row");
                for (i, value) in row.iter().enumerate().skip(1) {
                    let written = value.as_ref().map_or(0, String::len);
                    let whole =
                        mssql::expected_text(&source.types[i], &expected[i]).map_or(0, |t| t.len());
                    assert_eq!(
                        written, whole,
                        "{driver}: {id}.{} written with {written} of its {whole} bytes",
                        source.columns[i]
                    );
                }
            }
            assert_output_equals_fixture(&out, &m.sqlite, "dbo", "HNO_NOTE");
        } else {
            assert_ne!(validation(&out, "dbo.HNO_NOTE")["status"], "ok", "{driver}");
            panic!(
                "{driver}: long values failed the table instead of being read:\n{}",
                run.all()
            );
        }
    }
}

/// A 20 MB `nvarchar(max)` value (and a 20 MB `varbinary(max)`) among short rows, NULLs and
/// empty values: read in pieces with SQLGetData through Driver 18 and written exactly, in CSV
/// and NDJSON.
#[test]
fn a_20_mb_max_value_streams_exactly_through_driver18() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDatabase::open(&dir.path().join("big.sqlite"), DATABASE).expect("database");
    let col = ColumnDef::new;
    db.create_table(
        "dbo",
        "BIG_NOTE",
        &[
            col("NOTE_ID", "int", false),
            col("NOTE", "nvarchar(max)", true),
            col("RAW", "varbinary(max)", true),
        ],
        &["NOTE_ID"],
    )
    .expect("BIG_NOTE");
    // 24 bytes of UTF-8 per line, a surrogate pair among them: 20 MiB.
    let big = "Ünïcode \"note\", 😀\r\n".repeat((20 << 20) / 24);
    db.insert_rows(
        "dbo",
        "BIG_NOTE",
        [
            vec![Value::Int(1), text("short"), Value::Bytes(vec![1, 2])],
            vec![
                Value::Int(2),
                text(&big),
                Value::Bytes((0..=255u8).cycle().take(20 << 20).collect()),
            ],
            vec![Value::Int(3), text(""), Value::Bytes(Vec::new())],
            vec![Value::Int(4), Value::Null, Value::Null],
        ],
    )
    .expect("BIG_NOTE rows");
    let m = serve(db, TlsMode::Off);
    for format in ["csv", "ndjson"] {
        let out = dir.path().join(format);
        let cfg = write(dir.path(), config(m.server.port(), &out, DRIVER18, format));
        let run = ehi_ok("sync", &cfg, &[]);
        assert!(
            run.stdout.contains("1 table done, 0 failed"),
            "{}",
            run.all()
        );
        let files = assert_output_equals_fixture(&out, &m.sqlite, "dbo", "BIG_NOTE");
        assert_eq!(files.rows.len(), 4);
    }
}
