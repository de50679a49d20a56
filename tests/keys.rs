//! How keys reach the database: every key type bound as a typed parameter through psqlODBC and
//! sqliteodbc, keyset chunk boundaries on non-ASCII text, `numeric(18,0)` keys split into
//! parallel ranges, float columns in a composite key resumed after SIGKILL, reads that do not
//! advance stopped, and the plan's read mode for a Clarity-shaped schema.

#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::output::{assert_same_rows, read_table, source_rows};
use common::running::Running;
use serde_json::{Value, json};

/// Keyset chunks of 7 rows fetched 3 at a time: chunk and batch boundaries everywhere.
fn config_json(connection_string: &str, output: &Path) -> Value {
    json!({
        "connection_string": connection_string,
        "output_dir": output,
        "format": "csv",
        "small_table_threshold": 100000,
        "large_table_threshold": 1000000,
        "fetch_buffer_bytes": 65536,
        "tiers": {
            "small": {"batch_size": 3, "partition_size": 7, "checkpoint_interval": 10}
        }
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

fn sync(config: &Path) -> (i32, String, String) {
    run(&["sync", "--config", config.to_str().expect("UTF-8 path")])
}

/// The table's output equals the PostgreSQL table, row for row.
fn assert_pg_table_equals_source(db: &common::PgDatabase, out: &Path, table: &str) {
    let files = read_table(&out.join(format!("public.{table}")));
    let source = source_rows(
        &|sql| db.query(sql),
        &format!("public.\"{table}\""),
        &files,
        &|c| format!("\"{}\"", c.replace('"', "\"\"")),
        &|c| format!("encode({c}, 'hex')"),
    );
    assert!(!source.is_empty(), "{table}: the source has rows");
    assert_same_rows(table, files.rows, source);
}

fn table_state<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("{name} in the state file"))
}

/// Text keys with accents, a column named with non-ASCII, and keys of every other type the
/// typed parameters bind (timestamp, date, uuid, numeric with scale, bytea, text) in keyset
/// chunks whose boundaries fall on non-ASCII values: each table equals its source.
#[test]
fn postgres_keyset_chunks_of_every_key_type_equal_the_source() {
    let db = common::pg_database("keys_types");
    db.execute(
        "CREATE TABLE patient (\"PAT_ID\" varchar(18) PRIMARY KEY, \"Ünï col\" text, \
         born date)",
    );
    db.execute(
        "INSERT INTO patient SELECT \
         (ARRAY['Ñ', 'Ü', 'é', 'Z', 'a', '李', 'Ø'])[1 + n % 7] || n, \
         'José ' || n || ' 😀', DATE '1950-01-01' + n \
         FROM generate_series(1, 120) AS n",
    );
    db.execute(
        "CREATE TABLE typed_key (ts timestamp(6), d date, u uuid, amount numeric(12,2), \
         name text, payload bytea, note text, PRIMARY KEY (ts, d, u, amount, name, payload))",
    );
    db.execute(
        "INSERT INTO typed_key SELECT \
         TIMESTAMP '2024-01-01 00:00:00' + (n / 5) * INTERVAL '1.000001 second', \
         DATE '2024-01-01' + (n / 10), \
         CAST(md5(CAST(n / 2 AS text)) AS uuid), \
         (n % 3) * 1.25 - 1, \
         (ARRAY['Ñ', 'b', 'Ü'])[1 + n % 3], \
         decode(lpad(to_hex(n % 4), 2, '0'), 'hex'), \
         'row ' || n \
         FROM generate_series(1, 150) AS n",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(dir.path(), config_json(&db.connection_string(), &out));
    let (code, stdout, stderr) = sync(&config);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_pg_table_equals_source(&db, &out, "patient");
    assert_pg_table_equals_source(&db, &out, "typed_key");
    let state = common::read_state(&out);
    for table in ["public.patient", "public.typed_key"] {
        let partitions = &table_state(&state, table)["partitions"];
        assert_eq!(partitions.as_array().map(Vec::len), Some(1), "{table}");
        assert_eq!(partitions[0]["spec"]["mode"], "keyset", "{table}");
    }
}

/// `numeric(18,0)` ids (Clarity's `*_CSN_ID`) are split into ranges read by parallel workers,
/// like integers; the range bounds are numeric parameters.
#[test]
fn postgres_numeric_18_0_keys_are_read_in_parallel_ranges() {
    let db = common::pg_database("keys_numeric");
    db.execute(
        "CREATE TABLE pat_enc (\"PAT_ENC_CSN_ID\" numeric(18,0) PRIMARY KEY, \
         \"PAT_ID\" varchar(18), contact date)",
    );
    db.execute(
        "INSERT INTO pat_enc SELECT 100000000000000000 + n * 7919, 'Z' || (n % 50), \
         DATE '2020-01-01' + n FROM generate_series(1, 400) AS n",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut config_json = config_json(&db.connection_string(), &out);
    config_json["tiers"]["small"] = json!({"batch_size": 16, "partition_size": 50});
    let config = common::write_config(dir.path(), config_json);
    let (code, plan, stderr) = run(&["plan", "--config", config.to_str().expect("path"), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&plan).expect("plan JSON");
    let table = &plan["tiers"][0]["tables"][0];
    assert_eq!(table["read_mode"], "range", "{table}");
    assert_eq!(table["read_reason"], "range on whole-number decimal key");
    let (code, stdout, stderr) = sync(&config);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("with 4 workers"), "{stderr}");
    assert_pg_table_equals_source(&db, &out, "pat_enc");
    let state = common::read_state(&out);
    let partitions = table_state(&state, "public.pat_enc")["partitions"]
        .as_array()
        .expect("partitions")
        .clone();
    assert!(partitions.len() > 1, "{partitions:?}");
    assert!(
        partitions.iter().all(|p| p["spec"]["mode"] == "range"),
        "{partitions:?}"
    );
}

/// A composite key with a `double precision` column (Clarity's `MEAS_DATE_REAL`) is read in
/// keyset chunks, not one stream; SIGKILLed mid-table again and again, every resume binds the
/// saved float exactly and the output equals the source.
#[test]
fn postgres_float_in_a_composite_key_resumes_exactly_after_sigkill() {
    let db = common::pg_database("keys_float");
    db.execute(
        "CREATE TABLE ip_flwsht_meas (\"FSD_ID\" varchar(18), \"MEAS_DATE_REAL\" double \
         precision, \"LINE\" integer, \"MEAS_VALUE\" text, \
         PRIMARY KEY (\"FSD_ID\", \"MEAS_DATE_REAL\", \"LINE\"))",
    );
    // Fractions that have no short decimal form: a float printed or bound inexactly would
    // skip or repeat rows at a resume point.
    db.execute(
        "INSERT INTO ip_flwsht_meas SELECT 'F' || (n / 40), 60000 + (n % 40) / 3.0 + 1e-9 * n, \
         n % 3, 'value ' || n FROM generate_series(1, 40000) AS n",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut config_json = config_json(&db.connection_string(), &out);
    config_json["tiers"]["small"] =
        json!({"batch_size": 20, "partition_size": 100, "checkpoint_interval": 40});
    let config = common::write_config(dir.path(), config_json);
    let (code, plan, stderr) = run(&["plan", "--config", config.to_str().expect("path"), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&plan).expect("plan JSON");
    assert_eq!(plan["tiers"][0]["tables"][0]["read_mode"], "keyset");
    assert_eq!(plan["keyless_tables"], json!([]));

    let started = Instant::now();
    let mut kills = 0;
    let mut resumed_kills = 0;
    let mut delay = 50;
    while kills < 8 {
        assert!(started.elapsed() < Duration::from_secs(240), "kill loop");
        let mut running = Running::sync(&config, &[]);
        if running.wait_for("Processing table", Duration::from_secs(60)) {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if !running.is_running() {
            let finished = running.wait(Duration::from_secs(60));
            assert_eq!(finished.code, 0, "{}\n{}", finished.stdout, finished.stderr);
            break;
        }
        running.signal("KILL");
        let killed = running.wait(Duration::from_secs(60));
        if killed.stdout.contains("Resuming run") {
            resumed_kills += 1;
        }
        kills += 1;
        delay = 50 + (delay * 7) % 200;
    }
    assert!(kills >= 3, "only {kills} kills landed mid-table");
    assert!(resumed_kills >= 1, "no kill landed in a resumed run");
    let last = Running::sync(&config, &[]).wait(Duration::from_secs(120));
    assert_eq!(last.code, 0, "{}\n{}", last.stdout, last.stderr);
    assert_pg_table_equals_source(&db, &out, "ip_flwsht_meas");
    let state = common::read_state(&out);
    assert_eq!(state["finished"], true);
}

/// A key whose value as the client reads it is not the value the database compares: a SQLite
/// `INT` key column holding the real 10.5 (SQLite keeps it, type affinity cannot make it an
/// integer) reads as the integer 10. Resuming after it, `csn > 10` would return the 10.5 row
/// again, forever. The table stops with an error naming it and its key column, and the row is
/// never written twice.
#[test]
fn sqlite_a_read_that_goes_back_stops_the_table_and_writes_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let connection_string = common::sqlite_database(dir.path());
    common::execute_on(
        &connection_string,
        "CREATE TABLE encounter (csn INT NOT NULL PRIMARY KEY, note TEXT)",
    );
    common::execute_on(
        &connection_string,
        "CREATE TABLE visit (id INTEGER PRIMARY KEY, note TEXT)",
    );
    for n in 1..=20 {
        common::execute_on(
            &connection_string,
            &format!("INSERT INTO encounter VALUES ({n}, 'row {n}')"),
        );
        common::execute_on(
            &connection_string,
            &format!("INSERT INTO visit VALUES ({n}, 'row {n}')"),
        );
    }
    common::execute_on(
        &connection_string,
        "INSERT INTO encounter VALUES (10.5, 'the odd one')",
    );
    let out = dir.path().join("out");
    let config = common::write_config(dir.path(), config_json(&connection_string, &out));
    let (code, stdout, stderr) = sync(&config);
    assert_ne!(code, 0, "{stdout}\n{stderr}");
    let all = format!("{stdout}\n{stderr}");
    assert!(
        all.contains("main.encounter") && all.contains("did not advance in key order"),
        "{all}"
    );
    assert!(all.contains("(csn)"), "the key column is named: {all}");
    assert!(
        !all.contains("10.5") && !all.contains("odd one"),
        "no value in messages: {all}"
    );
    let validation = std::fs::read_to_string(out.join("_validation.ndjson")).expect("records");
    let encounter: Value = validation
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("record"))
        .find(|r| r["table"] == "main.encounter")
        .expect("encounter record");
    assert_ne!(encounter["status"], "ok", "{encounter}");
    // The other table is unaffected.
    let visit = read_table(&out.join("main.visit"));
    assert_eq!(visit.rows.len(), 20);
}

/// The plan of a Clarity-shaped schema reads every keyed table in ranges or keysets, and says
/// which and why; the one table without a key is a stream with a warning.
#[test]
fn plan_of_a_clarity_shaped_schema_has_no_keyed_stream() {
    let db = common::pg_database("keys_plan");
    db.execute("CREATE TABLE patient (\"PAT_ID\" varchar(18) PRIMARY KEY, \"PAT_NAME\" text)");
    db.execute(
        "CREATE TABLE pat_enc (\"PAT_ENC_CSN_ID\" numeric(18,0) PRIMARY KEY, \
         \"PAT_ID\" varchar(18))",
    );
    db.execute(
        "CREATE TABLE ip_flwsht_meas (\"FSD_ID\" varchar(18), \"LINE\" integer, \
         \"MEAS_DATE_REAL\" double precision, \"MEAS_VALUE\" text, \
         PRIMARY KEY (\"FSD_ID\", \"LINE\", \"MEAS_DATE_REAL\"))",
    );
    db.execute(
        "CREATE TABLE hsp_acct_dx (\"HSP_ACCOUNT_ID\" numeric(18,0), \"LINE\" integer, \
         \"DX_DATE_REAL\" real, PRIMARY KEY (\"HSP_ACCOUNT_ID\", \"LINE\", \"DX_DATE_REAL\"))",
    );
    db.execute("CREATE TABLE clarity_audit (\"EVENT\" text)");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(dir.path(), config_json(&db.connection_string(), &out));
    let (code, stdout, stderr) =
        run(&["plan", "--config", config.to_str().expect("path"), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON");
    let mut modes: Vec<(String, String, String)> = plan["tiers"]
        .as_array()
        .expect("tiers")
        .iter()
        .flat_map(|t| t["tables"].as_array().expect("tables").clone())
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_owned(),
                t["read_mode"].as_str().expect("mode").to_owned(),
                t["read_reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    modes.sort();
    let expected = [
        ("clarity_audit", "stream", "one stream: no primary key"),
        (
            "hsp_acct_dx",
            "range",
            "range on whole-number decimal composite key",
        ),
        ("ip_flwsht_meas", "keyset", "keyset on composite key"),
        ("pat_enc", "range", "range on whole-number decimal key"),
        ("patient", "keyset", "keyset on character varying key"),
    ]
    .map(|(n, m, r)| (n.to_owned(), m.to_owned(), r.to_owned()));
    assert_eq!(modes, expected);
    assert_eq!(plan["keyless_tables"], json!(["public.clarity_audit"]));
    let warnings: Vec<&str> = plan["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("public.clarity_audit is read as one stream")),
        "{warnings:?}"
    );
    let (code, text, _) = run(&["plan", "--config", config.to_str().expect("path")]);
    assert_eq!(code, 0);
    assert!(
        text.contains("public.ip_flwsht_meas  (keyset on composite key)"),
        "{text}"
    );
}

/// A state file written before keys were typed holds a `numeric` key as a string and a
/// timestamp as the text the driver printed. Resuming from such a state reads on exactly.
#[test]
fn a_state_of_the_previous_layout_resumes_exactly() {
    let db = common::pg_database("keys_old_state");
    db.execute(
        "CREATE TABLE pat_enc_hx (\"PAT_ENC_CSN_ID\" numeric(18,0), changed timestamp(6), \
         note text, PRIMARY KEY (\"PAT_ENC_CSN_ID\", changed))",
    );
    db.execute(
        "INSERT INTO pat_enc_hx SELECT 100000000000 + n / 10, \
         TIMESTAMP '2024-01-01 00:00:00' + n * INTERVAL '1.000001 second', 'change ' || n \
         FROM generate_series(1, 40000) AS n",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut config_json = config_json(&db.connection_string(), &out);
    config_json["tiers"]["small"] =
        json!({"batch_size": 20, "partition_size": 8000, "checkpoint_interval": 40});
    let config = common::write_config(dir.path(), config_json);
    let state_path = out.join("_state.json");
    let mut downgraded = 0;
    for attempt in 0..10 {
        let mut running = Running::sync(&config, &[]);
        if running.wait_for("Processing table", Duration::from_secs(60)) {
            std::thread::sleep(Duration::from_millis(300 + 100 * attempt));
        }
        assert!(
            running.is_running(),
            "the run ended before it could be killed"
        );
        running.signal("KILL");
        running.wait(Duration::from_secs(60));
        let mut state = common::read_state(&out);
        for table in state["tables"].as_array_mut().expect("tables") {
            for partition in table["partitions"].as_array_mut().expect("partitions") {
                let Some(key) = partition["last_key"].as_array_mut() else {
                    continue;
                };
                for value in key.iter_mut() {
                    let old = if let Some(digits) = value.get("decimal") {
                        digits.clone()
                    } else if let Some(ts) = value.get("timestamp").and_then(Value::as_str) {
                        // psqlODBC's text: a space, microseconds.
                        json!(ts.replacen('T', " ", 1)[..26])
                    } else {
                        continue;
                    };
                    *value = old;
                    downgraded += 1;
                }
            }
        }
        if downgraded > 0 {
            std::fs::write(&state_path, serde_json::to_vec(&state).expect("JSON"))
                .expect("write the state");
            break;
        }
    }
    assert!(downgraded >= 2, "no resume point was checkpointed");
    Running::resume(&config, Duration::from_secs(120));
    assert_pg_table_equals_source(&db, &out, "pat_enc_hx");
}
