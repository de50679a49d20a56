//! `ehi-sync ddl` against real output: the PostgreSQL statements create the tables in a fresh
//! database and load CSV (gzip) and NDJSON output through psql, the DuckDB statements load CSV,
//! NDJSON and Parquet output in DuckDB (python3, `import duckdb`), and every loaded table equals
//! its source row for row, NULL apart from the empty string. Snowflake cannot run here; its text
//! is pinned by the unit tests (`src/ddl/golden`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// Patients generated: enough for several part files per table and every kind of value.
const SCALE: u64 = 60;

/// Small parts, so the statements load several files per table.
fn config(connection_string: &str, out: &Path, format: &str, compression: &str) -> Value {
    json!({
        "connection_string": connection_string,
        "output_dir": out,
        "format": format,
        "compression": compression,
        "part_file_max_bytes": 20000,
        "small_table_threshold": 200,
        "large_table_threshold": 5000
    })
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = common::ehi_sync(args);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Syncs the source into `dir/out-<format>` and returns the config's path.
fn sync(dir: &Path, connection_string: &str, format: &str, compression: &str) -> PathBuf {
    let folder = dir.join(format);
    std::fs::create_dir_all(&folder).expect("config folder");
    let out = dir.join(format!("out-{format}"));
    let config = common::write_config(
        &folder,
        config(connection_string, &out, format, compression),
    );
    let (code, stdout, stderr) = run(&["sync", "--config", path(&config)]);
    assert_eq!(code, 0, "sync {format}:\n{stdout}\n{stderr}");
    config
}

/// `ehi-sync ddl --dialect <dialect>` into `<config folder>/<dialect>.sql`.
fn ddl(config: &Path, dialect: &str) -> PathBuf {
    let (code, stdout, stderr) = run(&["ddl", "--config", path(config), "--dialect", dialect]);
    assert_eq!(code, 0, "ddl --dialect {dialect}:\n{stderr}");
    for expected in [
        "CREATE TABLE \"public\".\"Order Detail\" (",
        "  \"select\" ",
        "  \"user\" ",
        "  \"Mixed Case\" ",
        "  \"naïve_col\" ",
    ] {
        assert!(stdout.contains(expected), "{expected} in:\n{stdout}");
    }
    let script = config.with_file_name(format!("{dialect}.sql"));
    std::fs::write(&script, stdout).expect("write the script");
    script
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Every generated table: schema, name.
fn tables() -> Vec<(String, String)> {
    ehi_sync::demo::expected_row_counts(SCALE)
        .into_iter()
        .map(|(name, _)| ("public".to_owned(), name.to_owned()))
        .collect()
}

/// `SELECT` of the source table's columns (the loaded table has the change columns too).
fn select_source_columns(db: &common::PgDatabase, schema: &str, name: &str) -> String {
    let columns = db.query(&format!(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = '{schema}' \
         AND table_name = '{}' ORDER BY ordinal_position",
        name.replace('\'', "''")
    ));
    let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let list: Vec<String> = columns
        .into_iter()
        .map(|row| quote(row[0].as_deref().expect("a column name")))
        .collect();
    format!(
        "SELECT {} FROM {}.{}",
        list.join(", "),
        quote(schema),
        quote(name)
    )
}

#[test]
fn postgres_statements_load_csv_and_ndjson_exactly() {
    let db = common::pg_database("ddl_pg_source");
    let dir = tempfile::tempdir().expect("temp dir");
    generate(&db, dir.path());
    for (format, compression) in [("csv", "gzip"), ("ndjson", "none")] {
        let config = sync(dir.path(), &db.connection_string(), format, compression);
        assert_postgres_load_equals_source(&db, &config, format);
    }
}

/// Fills the source with the generated tables.
fn generate(db: &common::PgDatabase, dir: &Path) {
    let folder = dir.join("generate");
    std::fs::create_dir_all(&folder).expect("config folder");
    let config = common::write_config(
        &folder,
        config(&db.connection_string(), &folder, "csv", "none"),
    );
    common::generate(&config, SCALE);
}

/// Runs the PostgreSQL statements of `config`'s output with psql in a new database and compares
/// every table with the source.
fn assert_postgres_load_equals_source(db: &common::PgDatabase, config: &Path, format: &str) {
    let script = ddl(config, "postgres");
    let target = common::pg_database("ddl_pg_target");
    let output = Command::new("psql")
        .args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", target.name()])
        .arg("-f")
        .arg(&script)
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql -f {}:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    for (schema, name) in tables() {
        let select = select_source_columns(db, &schema, &name);
        let mut source = db.query(&select);
        let mut loaded = target.query(&select);
        source.sort();
        loaded.sort();
        let differing = source.iter().zip(&loaded).filter(|(a, b)| a != b).count();
        assert!(
            source.len() == loaded.len() && differing == 0,
            "{format} {schema}.{name}: {} rows in the source, {} loaded, {differing} differ",
            source.len(),
            loaded.len()
        );
        let ops = target.query(&format!(
            "SELECT count(*) FROM \"{schema}\".\"{name}\" WHERE _ehi_op <> 'upsert' \
             OR _ehi_synced_at IS NULL"
        ));
        assert_eq!(ops[0][0].as_deref(), Some("0"), "{format} {schema}.{name}");
    }
    // The comparison above tells NULL from '': both occur in the source.
    let empties = target.query(
        "SELECT count(*) FILTER (WHERE value_text = ''), \
         count(*) FILTER (WHERE value_text IS NULL) FROM public.flowsheet_value",
    );
    assert!(
        empties[0].iter().all(|c| c.as_deref() != Some("0")),
        "{format}: empty strings and NULLs: {empties:?}"
    );
}

/// Loads a DuckDB script in memory and compares each table with the PostgreSQL source, value by
/// value in Python's types (bytes, Decimal, datetime, bool, float, str, None); prints only
/// names and counts.
const DUCKDB_CHECK: &str = r#"
import datetime, json, sys
import duckdb, pyodbc

connection, script, tables = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def canonical(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, float):
        return repr(v)
    return str(v)

def quote(name):
    return '"' + name.replace('"', '""') + '"'

loaded = duckdb.connect()
loaded.execute(open(script, encoding="utf-8").read())
source = pyodbc.connect(connection)
for schema, name in tables:
    columns = [row[0] for row in source.cursor().execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", schema, name)]
    table = quote(schema) + "." + quote(name)
    select = "SELECT " + ", ".join(map(quote, columns)) + " FROM " + table
    rows = lambda cursor: sorted((tuple(map(canonical, r)) for r in cursor.fetchall()), key=repr)
    expected = rows(source.cursor().execute(select))
    actual = rows(loaded.execute(select))
    differing = sum(1 for a, b in zip(expected, actual) if a != b)
    if len(expected) != len(actual) or differing:
        sys.exit(f"{table}: {len(expected)} rows in the source, {len(actual)} loaded, {differing} differ")
    ops = loaded.execute(f"SELECT count(*) FROM {table} WHERE _ehi_op <> 'upsert'").fetchone()[0]
    if ops:
        sys.exit(f"{table}: {ops} rows are not upserts")
    print(table, len(actual))
"#;

#[test]
fn duckdb_statements_load_csv_ndjson_and_parquet_exactly() {
    let db = common::pg_database("ddl_duckdb_source");
    let dir = tempfile::tempdir().expect("temp dir");
    generate(&db, dir.path());
    for (format, compression) in [("csv", "gzip"), ("ndjson", "zstd"), ("parquet", "zstd")] {
        let config = sync(dir.path(), &db.connection_string(), format, compression);
        let script = ddl(&config, "duckdb");
        let tables: Vec<[String; 2]> = tables().into_iter().map(|(s, n)| [s, n]).collect();
        // psqlODBC returns booleans as text unless told otherwise.
        let connection = format!("{}BoolsAsChar=0;", db.connection_string());
        let output = Command::new("python3")
            .args(["-c", DUCKDB_CHECK, &connection, path(&script)])
            .arg(serde_json::to_string(&tables).expect("JSON"))
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "{format}: the DuckDB statements of {}:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn without_finished_tables_ddl_says_to_sync_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string": "DSN=never-connected", "output_dir": out}),
    );
    let (code, stdout, stderr) = run(&["ddl", "--config", path(&config), "--dialect", "duckdb"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("under '{}'", out.display()))
            && stderr.contains("run `ehi-sync sync --config FILE` first"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["ddl", "--config", path(&config), "--dialect", "mysql"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid value 'mysql' for '--dialect <DIALECT>'")
            && stderr.contains("[possible values: snowflake, postgres, duckdb]"),
        "{stderr}"
    );
}
