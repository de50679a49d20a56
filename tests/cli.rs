//! `check` and `plan` against real PostgreSQL and SQLite databases, and bad input tried as a new
//! user would: each mistake gives one clear message, a distinct non-zero exit code, no panic and
//! never the password.

mod common;

use std::path::Path;

use serde_json::{Value, json};

fn run(args: &[&str]) -> (i32, String, String) {
    let output = common::ehi_sync(args);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Asserts a user error: the exit code, a message containing `expected`, no panic or backtrace.
fn assert_user_error(args: &[&str], code: i32, expected: &str) -> String {
    let (actual, stdout, stderr) = run(args);
    assert_eq!(
        actual, code,
        "exit code for {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "{args:?}: expected '{expected}' in:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "one error line:\n{stderr}"
    );
    stderr
}

fn thresholds(connection_string: &str) -> Value {
    json!({
        "connection_string": connection_string,
        "small_table_threshold": 200,
        "large_table_threshold": 5000,
        "tiers": {"medium": {"partition_size": 250}}
    })
}

/// The generated tables at scale 300, in plan order: tier, name, rows.
const PLAN_ORDER: [(&str, &str, u64); 9] = [
    ("small", "wide_table", 30),
    ("small", "Order Detail", 60),
    ("small", "note_text", 150),
    ("medium", "patient", 300),
    ("medium", "audit_log", 600),
    ("medium", "order_proc", 600),
    ("medium", "encounter", 900),
    ("medium", "lab_result", 1200),
    ("large", "flowsheet_value", 6000),
];

fn assert_plan(plan: &Value, schema: &str) {
    let mut order = Vec::new();
    for tier in plan["tiers"].as_array().expect("tiers") {
        for table in tier["tables"].as_array().expect("tables") {
            order.push((
                tier["tier"].as_str().expect("tier").to_owned(),
                table["name"].as_str().expect("name").to_owned(),
                table["rows"].as_u64().expect("rows"),
            ));
            assert_eq!(table["schema"], schema);
        }
    }
    let expected: Vec<(String, String, u64)> = PLAN_ORDER
        .iter()
        .map(|(t, n, r)| (t.to_string(), n.to_string(), *r))
        .collect();
    assert_eq!(order, expected);
    assert_eq!(plan["total_rows"], 9840);
    assert_eq!(
        plan["keyless_tables"],
        json!([format!("{schema}.audit_log")])
    );
    let medium = &plan["tiers"][1];
    assert_eq!(medium["settings"]["partition_size"], 250);
    let lab = medium["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "lab_result")
        .expect("lab_result");
    assert_eq!(lab["primary_key"], json!(["order_id", "component_code"]));
    assert_eq!(lab["partitions"], 5);
}

#[test]
fn check_and_plan_on_postgres() {
    let db = common::pg_database("cli_plan");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(dir.path(), thresholds(&db.connection_string()));
    common::generate(&config, 300);

    let (code, stdout, stderr) = run(&["check", "--config", path(&config)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("dbms        PostgreSQL 15"), "{stdout}");
    assert!(stdout.contains("driver      psqlodbcw.so"), "{stdout}");
    assert!(stdout.contains("dialect     postgres"), "{stdout}");
    assert!(
        stdout.contains("text        ü€😀 read back intact (utf8)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("database    {}", db.name())),
        "{stdout}"
    );
    assert!(
        stdout.contains("tables      9 visible, 9 selected"),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(&["plan", "--config", path(&config), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON on stdout");
    assert_plan(&plan, "public");

    let (code, text, _) = run(&["plan", "--config", path(&config)]);
    assert_eq!(code, 0);
    assert!(text.contains("LARGE tier: 1 table, 6,000 rows"), "{text}");
    assert!(
        text.contains("public.audit_log  (one stream: no primary key)"),
        "{text}"
    );
    assert!(text.contains("Tables read as one stream (1)"), "{text}");
}

#[test]
fn plan_on_sqlite_with_columns_and_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(dir.path(), thresholds(&common::sqlite_database(dir.path())));
    common::generate(&config, 300);
    let (code, stdout, stderr) = run(&["plan", "--config", path(&config), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON");
    assert_plan(&plan, "main");
    assert_eq!(plan["dialect"], "sqlite");
}

/// Column discovery through the catalogs: types, sizes, precision, nullability, key positions
/// and names that need quoting.
#[test]
fn discovered_columns_on_postgres() {
    let db = common::pg_database("cli_columns");
    db.execute(
        "CREATE TABLE \"Mixed Case\".\"select\" (\"order\" bigint, \"naïve col\" varchar(40) NOT NULL, \
         amount numeric(38,10), at timestamp(6), flag boolean, raw bytea, id uuid, \
         PRIMARY KEY (\"naïve col\", \"order\"))"
            .replace("CREATE TABLE", "CREATE SCHEMA \"Mixed Case\"; CREATE TABLE")
            .as_str(),
    );
    db.execute("INSERT INTO \"Mixed Case\".\"select\" VALUES (1, 'a', 1.5, now(), true, '\\x00', gen_random_uuid())");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string": db.connection_string()}),
    );
    let (code, stdout, stderr) = run(&["plan", "--config", path(&config), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON");
    let table = &plan["tiers"][0]["tables"][0];
    assert_eq!(table["schema"], "Mixed Case");
    assert_eq!(table["name"], "select");
    assert_eq!(table["rows"], 1);
    assert_eq!(table["primary_key"], json!(["naïve col", "order"]));
    let (code, stdout, _) = run(&["sync", "--config", path(&config)]);
    assert_eq!(code, 0, "{stdout}");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("ehi-output/Mixed Case.select/_manifest.json"),
        )
        .expect("manifest"),
    )
    .expect("JSON");
    let columns = manifest["columns"].as_array().expect("columns");
    let summary: Vec<(String, String, Value, Value, Value, bool, Value)> = columns
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["source_type"].as_str().unwrap_or_default().to_owned(),
                c["length"].clone(),
                c["precision"].clone(),
                c["scale"].clone(),
                c["nullable"].as_bool().unwrap_or_default(),
                c["key_position"].clone(),
            )
        })
        .collect();
    let n = Value::Null;
    assert_eq!(
        summary,
        vec![
            (
                "order".into(),
                "bigint".into(),
                n.clone(),
                n.clone(),
                json!(0),
                false,
                json!(2)
            ),
            (
                "naïve col".into(),
                "character varying".into(),
                json!(40),
                n.clone(),
                n.clone(),
                false,
                json!(1)
            ),
            (
                "amount".into(),
                "numeric".into(),
                n.clone(),
                json!(38),
                json!(10),
                true,
                n.clone()
            ),
            (
                "at".into(),
                "timestamp without time zone".into(),
                n.clone(),
                n.clone(),
                json!(6),
                true,
                n.clone()
            ),
            (
                "flag".into(),
                "boolean".into(),
                n.clone(),
                n.clone(),
                n.clone(),
                true,
                n.clone()
            ),
            (
                "raw".into(),
                "bytea".into(),
                n.clone(),
                n.clone(),
                n.clone(),
                true,
                n.clone()
            ),
            (
                "id".into(),
                "uuid".into(),
                n.clone(),
                n.clone(),
                n.clone(),
                true,
                n.clone()
            ),
        ]
    );
}

#[test]
fn missing_config_file() {
    assert_user_error(
        &["plan", "--config", "/nonexistent/ehi.json"],
        2,
        "cannot read the config file '/nonexistent/ehi.json'",
    );
}

#[test]
fn invalid_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("c.json");
    std::fs::write(&config, "{\"threads\": 4,,}").expect("write");
    assert_user_error(
        &["check", "--config", path(&config)],
        2,
        "is not valid JSON (line 1",
    );
}

#[test]
fn missing_required_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(dir.path(), json!({"mssql_server": "sql01"}));
    assert_user_error(
        &["check", "--config", path(&config)],
        2,
        "config key 'mssql_database' is required",
    );
}

#[test]
fn threads_lots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string": "DSN=x", "threads": "lots"}),
    );
    assert_user_error(
        &["plan", "--config", path(&config)],
        2,
        "config key 'threads': \"lots\" is not a whole number; expected a whole number",
    );
}

#[test]
fn unknown_driver() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string": "Driver={No Such Driver};Server=x;Pwd=Sup3rSecret!"}),
    );
    let stderr = assert_user_error(
        &["check", "--config", path(&config)],
        3,
        "cannot connect to the database (Driver={No Such Driver};Server=x;Pwd=***)",
    );
    assert!(!stderr.contains("Sup3rSecret!"), "{stderr}");
}

/// Trust authentication here accepts any password, so a login failure is provoked with a role
/// that does not exist; the password given must appear nowhere.
#[test]
fn wrong_login_never_shows_the_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string":
            "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=postgres;\
             Uid=no_such_role;Pwd=${env:EHI_TEST_PASSWORD};CommLog=0;"}),
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ehi-sync"))
        .args(["check", "--config", path(&config)])
        .env("EHI_TEST_PASSWORD", "Hunter2-Secret")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("role \"no_such_role\" does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("Pwd=***"), "{stderr}");
    assert!(!stderr.contains("Hunter2-Secret") && !stdout.contains("Hunter2-Secret"));
}

#[test]
fn unreachable_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let config = common::write_config(
        dir.path(),
        json!({"connection_string":
            "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=1;Database=x;Uid=postgres;CommLog=0;",
            "login_timeout_seconds": 5}),
    );
    assert_user_error(
        &["check", "--config", path(&config)],
        3,
        "cannot connect to the database",
    );
}

#[test]
fn empty_database() {
    let db = common::pg_database("cli_empty");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string": db.connection_string()}),
    );
    assert_user_error(
        &["plan", "--config", path(&config)],
        5,
        "the database has no user tables visible to this login",
    );
}

#[test]
fn include_pattern_matching_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string": common::sqlite_database(dir.path()), "include": ["dbo.PAT*"]}),
    );
    common::generate(&config, 10);
    assert_user_error(
        &["plan", "--config", path(&config)],
        2,
        "the include/exclude patterns select none of the tables (9 tables in the database;",
    );
}

#[test]
fn unknown_keys_are_warned_about_not_fatal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(
        dir.path(),
        json!({"connection_string": common::sqlite_database(dir.path()), "treads": 4}),
    );
    common::generate(&config, 10);
    let (code, _, stderr) = run(&["plan", "--config", path(&config)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("unknown config keys ignored: treads"),
        "{stderr}"
    );
}

#[test]
fn every_subcommand_has_help() {
    for command in ["check", "plan", "sync", "status", "ddl", "generate"] {
        let (code, stdout, _) = run(&[command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        assert!(stdout.contains("--config"), "{command}: {stdout}");
    }
}
