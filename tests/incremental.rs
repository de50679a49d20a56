//! Incremental sync against PostgreSQL: a full load, then changes in the source, then loads in
//! cursor mode with key-scan delete detection. What a loader rebuilds from the files (applied
//! in manifest order) must equal the source; a killed incremental run must neither lose nor
//! double a change; schema changes are reported and retyped columns reload the table.

#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::output::{TableFiles, apply_changes, assert_same_rows, read_table, source_rows};
use common::running::Running;
use serde_json::{Value, json};

fn config_json(connection_string: &str, output: &Path, format: &str) -> Value {
    json!({
        "connection_string": connection_string,
        "output_dir": output,
        "format": format,
        "small_table_threshold": 1000,
        "large_table_threshold": 1_000_000,
        "part_file_max_bytes": 100_000,
        "tiers": {
            "small": {"batch_size": 50, "partition_size": 200, "checkpoint_interval": 100},
            "medium": {"batch_size": 200, "partition_size": 2000, "checkpoint_interval": 500}
        },
        "incremental": {
            "cursor_columns": ["updated_at"],
            "lookback_minutes": 0,
            "detect_deletes": "key_scan",
            "tables": {"public.lookup": {"full_reload": false}}
        }
    })
}

/// A throwaway PostgreSQL database, a temp folder, the output folder in it and a CSV config
/// file for them.
fn csv_setup(prefix: &str) -> (common::PgDatabase, tempfile::TempDir, PathBuf, PathBuf) {
    let db = common::pg_database(prefix);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(
        dir.path(),
        config_json(&db.connection_string(), &out, "csv"),
    );
    (db, dir, out, config)
}

/// `patient`: integer key and a timestamptz cursor; `note`: a text key whose binary order
/// differs from a case-insensitive one, and a timestamp cursor; `visit`: a composite key;
/// `lookup`: no cursor, loaded once (`full_reload: false`); `code`: no cursor, reloaded each run.
fn create_tables(db: &common::PgDatabase, patients: u64) {
    db.execute(
        "CREATE TABLE patient (id bigint PRIMARY KEY, name text, amount numeric(12,2), \
         born date, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    db.execute(&format!(
        "INSERT INTO patient (id, name, amount, born) SELECT g, 'Patient ' || g || ' Ünïcödé', \
         g * 1.25, DATE '1950-01-01' + (g % 20000)::int FROM generate_series(1, {patients}) AS g"
    ));
    db.execute(
        "CREATE TABLE note (note_id varchar(20) PRIMARY KEY, body text, \
         updated_at timestamp(6) NOT NULL DEFAULT clock_timestamp())",
    );
    db.execute(
        "INSERT INTO note (note_id, body) SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'B' END || g, \
         'line 1' || chr(10) || 'line \"2\", ' || g FROM generate_series(1, 500) AS g",
    );
    db.execute(
        "CREATE TABLE visit (patient_id bigint, line int, code varchar(10), \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (patient_id, line))",
    );
    db.execute(
        "INSERT INTO visit (patient_id, line, code) SELECT g / 3, g % 3, 'C' || g \
         FROM generate_series(1, 900) AS g",
    );
    db.execute("CREATE TABLE lookup (code text PRIMARY KEY, label text)");
    db.execute("INSERT INTO lookup VALUES ('a', 'first'), ('b', NULL)");
    db.execute("CREATE TABLE code (code int PRIMARY KEY, label text)");
    db.execute("INSERT INTO code SELECT g, 'label ' || g FROM generate_series(1, 50) AS g");
}

/// Inserts, updates and deletes in every table with a cursor; returns the keys of `patient`
/// that were upserted and deleted.
fn change_source(db: &common::PgDatabase, patients: u64) -> (BTreeSet<String>, BTreeSet<String>) {
    db.execute(&format!(
        "INSERT INTO patient (id, name, amount, born) SELECT g, 'New ' || g, NULL, NULL \
         FROM generate_series({}, {}) AS g",
        patients + 1,
        patients + 40
    ));
    db.execute(
        "UPDATE patient SET name = name || ' (moved)', amount = 0.01, \
         updated_at = clock_timestamp() WHERE id % 50 = 7",
    );
    db.execute("DELETE FROM patient WHERE id % 50 = 3 OR id = 1");
    db.execute("UPDATE note SET body = '', updated_at = clock_timestamp() WHERE note_id = 'a10'");
    db.execute("DELETE FROM note WHERE note_id IN ('B1', 'a500', 'B499')");
    db.execute("INSERT INTO note (note_id, body) VALUES ('A1', NULL), ('b1', 'é')");
    db.execute("DELETE FROM visit WHERE patient_id = 0 OR (patient_id = 300 AND line = 0)");
    db.execute("UPDATE visit SET code = NULL, updated_at = clock_timestamp() WHERE line = 1 AND patient_id < 5");
    db.execute("UPDATE code SET label = 'changed' WHERE code = 1");
    // A new row deleted before the sync was never there for the loader.
    let upserted = (patients + 1..=patients + 40)
        .filter(|k| k % 50 != 3)
        .map(|k| k.to_string())
        .chain(
            (1..=patients)
                .filter(|k| k % 50 == 7)
                .map(|k| k.to_string()),
        )
        .collect();
    let deleted = (1..=patients)
        .filter(|k| k % 50 == 3 || *k == 1)
        .map(|k| k.to_string())
        .collect();
    (upserted, deleted)
}

fn sync(config: &Path) -> String {
    let done = Running::sync(config, &[]).wait(Duration::from_secs(300));
    assert_eq!(done.code, 0, "sync:\n{}\n{}", done.stdout, done.stderr);
    done.stdout
}

/// The rows a loader rebuilds from `table`'s files equal the source's rows.
fn assert_applied_equals_source(db: &common::PgDatabase, out: &Path, table: &str) -> TableFiles {
    let files = read_table(&out.join(format!("public.{table}")));
    let applied = apply_changes(&files);
    let source = source_rows(
        &|sql| db.query(sql),
        &format!("public.\"{table}\""),
        &files,
        // As text on the server: psqlODBC drops a timestamptz's offset.
        &|name| format!("\"{name}\"::text"),
        &|expr| format!("encode({expr}, 'hex')"),
    );
    assert_same_rows(table, applied, source);
    files
}

/// Keys (as text) of the rows `run_id` wrote with op `op`.
fn keys_of(files: &TableFiles, run_id: &str, op: &str) -> BTreeSet<String> {
    files
        .rows
        .iter()
        .zip(&files.ops)
        .zip(&files.runs)
        .filter(|((_, o), r)| o.as_str() == op && r.as_str() == run_id)
        .map(|((row, _), _)| row[0].clone().expect("key"))
        .collect()
}

/// `fetch_text`: `utf8`, or `utf16` for the wide text path Windows runs (text keys, key lists
/// and delete rows included). `time_zone`: the database's session time zone if not the
/// server's, so the sync reads its timestamptz values with that offset.
fn check_cursor_and_key_scan(format: &str, fetch_text: &str, time_zone: Option<&str>) {
    let db = common::pg_database(&format!("incr_{format}_{fetch_text}"));
    if let Some(zone) = time_zone {
        db.execute(&format!(
            "ALTER DATABASE \"{}\" SET timezone TO '{zone}'",
            db.name()
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut config_json = config_json(&db.connection_string(), &out, format);
    config_json["fetch_text"] = json!(fetch_text);
    let config = common::write_config(dir.path(), config_json);
    let patients = 3000;
    create_tables(&db, patients);

    let first = sync(&config);
    assert!(
        first.contains("Loads: 0 incremental, 5 full, 0 skipped"),
        "{first}"
    );
    for table in ["patient", "note", "visit", "lookup", "code"] {
        let files = assert_applied_equals_source(&db, &out, table);
        assert_eq!(files.manifest["sync_type"], "full", "{table}");
    }
    if format == "parquet" {
        let patient = read_table(&out.join("public.patient"));
        let types: Vec<(String, String)> = patient
            .column_names()
            .into_iter()
            .zip(patient.parquet_types().expect("Parquet types"))
            .collect();
        let expected = [
            ("id", "int64"),
            ("name", "string"),
            ("amount", "decimal(12,2)"),
            ("born", "date"),
            ("updated_at", "timestamp(us, UTC)"),
        ]
        .map(|(n, t)| (n.to_owned(), t.to_owned()));
        assert_eq!(
            types, expected,
            "public.patient: typed columns, the cursor an instant"
        );
    }

    let (upserted, deleted) = change_source(&db, patients);
    let second = sync(&config);
    assert!(
        second.contains("Loads: 3 incremental, 1 full, 1 skipped"),
        "{second}"
    );
    assert!(
        second.contains("incremental  public.patient: cursor updated_at (timestamp) after "),
        "{second}"
    );
    for table in ["patient", "note", "visit", "lookup", "code"] {
        assert_applied_equals_source(&db, &out, table);
    }
    let patient = read_table(&out.join("public.patient"));
    let run = patient.run_id();
    assert_eq!(patient.manifest["sync_type"], "incremental");
    assert_eq!(
        keys_of(&patient, &run, "upsert"),
        upserted,
        "exactly the changed rows"
    );
    assert_eq!(
        keys_of(&patient, &run, "delete"),
        deleted,
        "exactly the deleted keys"
    );
    let changes = &patient.manifest["changes"];
    assert_eq!(changes["upserted"], upserted.len() as u64);
    assert_eq!(changes["deleted"], deleted.len() as u64);
    assert_eq!(changes["inserted"], 39);
    assert_eq!(changes["updated"], upserted.len() as u64 - 39);
    assert_eq!(
        patient.manifest["loads"].as_array().map(Vec::len),
        Some(2),
        "the full load and one incremental load"
    );
    assert!(
        patient.manifest["position_from"].as_str().is_some()
            && patient.manifest["position_to"] != patient.manifest["position_from"]
    );
    let note = read_table(&out.join("public.note"));
    let note_run = note.run_id();
    assert_eq!(
        keys_of(&note, &note_run, "delete"),
        ["B1", "B499", "a500"].map(String::from).into(),
        "text keys merge in binary order"
    );
    assert_eq!(
        keys_of(&note, &note_run, "upsert"),
        ["A1", "a10", "b1"].map(String::from).into()
    );
    let lookup = read_table(&out.join("public.lookup"));
    assert_eq!(
        lookup.manifest["sync_type"], "full",
        "skipped: the first load stays"
    );
    let code = read_table(&out.join("public.code"));
    assert_eq!(code.manifest["sync_type"], "full");
    assert_eq!(code.rows.len(), 50);
    let validation = std::fs::read_to_string(out.join("_validation.ndjson")).expect("records");
    let last: Value = validation
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|r| r["table"] == "public.patient")
        .expect("patient record");
    assert_eq!(last["sync_type"], "incremental");
    assert_eq!(last["status"], "ok", "{last}");

    // Nothing changed: an incremental load with no rows; the files still rebuild the source.
    let third = sync(&config);
    assert!(
        third.contains("Loads: 3 incremental, 1 full, 1 skipped"),
        "{third}"
    );
    let patient = assert_applied_equals_source(&db, &out, "patient");
    assert_eq!(patient.manifest["row_count"], 0);
    assert_eq!(patient.manifest["loads"].as_array().map(Vec::len), Some(3));
}

#[test]
fn cursor_mode_with_key_scan_rebuilds_the_source_csv() {
    check_cursor_and_key_scan("csv", "utf8", None);
}

#[test]
fn cursor_mode_with_key_scan_rebuilds_the_source_ndjson() {
    check_cursor_and_key_scan("ndjson", "utf8", None);
}

/// Parquet, with the session in a time zone a fractional number of hours west of UTC: the
/// timestamptz cursor (`patient`, `visit`) is written as UTC instants (`timestamp(us, UTC)`)
/// and must be the same instants the source prints with their `-03:30` or `-02:30` offset.
#[test]
fn cursor_mode_with_key_scan_rebuilds_the_source_parquet() {
    check_cursor_and_key_scan("parquet", "utf8", Some("America/St_Johns"));
}

#[test]
fn cursor_mode_with_key_scan_and_utf16_text_rebuilds_the_source() {
    check_cursor_and_key_scan("ndjson", "utf16", None);
}

/// Keys the server orders unlike their bytes: non-ASCII text under a linguistic collation
/// (ICU `en-US`: `a-c` before `ab`, `Ärzte` next to `arzt`, `ß` next to `ss`) and decimals with
/// a scale (`-2.50` before `-1.00`, `2.00` before `10.25`). The key scan reads them in the
/// index's own order and finds exactly the deleted rows.
#[test]
fn key_scan_finds_exactly_the_deletes_whatever_order_the_server_sorts_keys_in() {
    let (db, _dir, out, config) = csv_setup("incr_collation");
    db.execute(
        "CREATE TABLE person (name text COLLATE \"en-US-x-icu\" PRIMARY KEY, note text, \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    let stems = [
        "Zoë", "zoe", "Ärzte", "arzt", "émile", "Emile", "ß", "ss", "Ñandú", "nandu", "李", "a-c",
        "ab", "Ab", "AB", "ǅ", "z\u{301}", "😀",
    ];
    let names: Vec<String> = (0..60)
        .flat_map(|i| stems.iter().map(move |s| format!("{s} {i}")))
        .collect();
    let values: Vec<String> = names
        .iter()
        .map(|n| format!("('{}', 'n')", n.replace('\'', "''")))
        .collect();
    db.execute(&format!(
        "INSERT INTO person (name, note) VALUES {}",
        values.join(", ")
    ));
    db.execute(
        "CREATE TABLE measure (amount numeric(10,2) PRIMARY KEY, label text, \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    db.execute(
        "INSERT INTO measure (amount, label) SELECT g * 0.25 - 100, 'm' \
         FROM generate_series(0, 999) AS g",
    );
    sync(&config);

    // Every third name of some stems, and a range of amounts across zero.
    let gone: BTreeSet<String> = names
        .iter()
        .enumerate()
        .filter(|(i, n)| i % 3 == 0 && !n.starts_with('a'))
        .map(|(_, n)| n.clone())
        .collect();
    let list: Vec<String> = gone
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect();
    db.execute(&format!(
        "DELETE FROM person WHERE name IN ({})",
        list.join(", ")
    ));
    db.execute("DELETE FROM measure WHERE amount BETWEEN -2.5 AND 10.25 OR amount = 149.75");
    let gone_amounts: BTreeSet<String> = (0..1000)
        .map(|g| f64::from(g) * 0.25 - 100.0)
        .filter(|a| (-2.5..=10.25).contains(a) || *a == 149.75)
        .map(|a| format!("{a:.2}"))
        .collect();
    let second = sync(&config);
    assert!(second.contains("Loads: 2 incremental"), "{second}");
    for (table, expected) in [("person", &gone), ("measure", &gone_amounts)] {
        let files = assert_applied_equals_source(&db, &out, table);
        let run = files.run_id();
        assert_eq!(&keys_of(&files, &run, "delete"), expected, "{table}");
        assert!(keys_of(&files, &run, "upsert").is_empty(), "{table}");
        assert_eq!(files.manifest["changes"]["deleted"], expected.len() as u64);
        assert_eq!(files.manifest["changes"]["inserted"], 0);
    }
    // Nothing changed since: no delete is reported twice.
    sync(&config);
    for table in ["person", "measure"] {
        let files = assert_applied_equals_source(&db, &out, table);
        let run = files.run_id();
        assert!(keys_of(&files, &run, "delete").is_empty(), "{table}");
    }
    assert_key_scan_work_removed(&out.join("public.person"));
}

/// The key scan's work folder (`_keyscan-<run id>`) is removed with the table done.
fn assert_key_scan_work_removed(folder: &Path) {
    let left: Vec<String> = std::fs::read_dir(folder)
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("_keyscan-"))
        .collect();
    assert!(
        left.is_empty(),
        "the key scan's work folder is left: {left:?}"
    );
}

/// SIGKILL once the key scan has written some of its deletes: the resumed run compares the
/// scan it kept (no second scan of the table) and writes each remaining delete once.
#[test]
fn a_run_killed_while_writing_deletes_resumes_from_the_kept_scan() {
    let db = common::pg_database("incr_kill_deletes");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut json = config_json(&db.connection_string(), &out, "csv");
    json["tiers"]["medium"]["checkpoint_interval"] = json!(5000);
    let config = common::write_config(dir.path(), json);
    let members = 200_000;
    db.execute(
        "CREATE TABLE member (id bigint PRIMARY KEY, \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    db.execute(&format!(
        "INSERT INTO member (id) SELECT g FROM generate_series(1, {members}) AS g"
    ));
    sync(&config);
    let full_run = read_table(&out.join("public.member")).run_id();
    db.execute("DELETE FROM member WHERE id % 4 <> 0");
    let deleted: BTreeSet<String> = (1..=members)
        .filter(|k| k % 4 != 0)
        .map(|k| k.to_string())
        .collect();

    let mut run = Running::sync(&config, &[]);
    let state_path = out.join("_state.json");
    let started = std::time::Instant::now();
    let deletes_written = || -> bool {
        let Ok(bytes) = std::fs::read(&state_path) else {
            return false;
        };
        let Ok(state) = serde_json::from_slice::<Value>(&bytes) else {
            return false;
        };
        state["tables"].as_array().into_iter().flatten().any(|t| {
            t["table"] == "public.member"
                && t["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["spec"]["mode"] == "key_scan" && !p["last_key"].is_null())
        })
    };
    while !deletes_written() {
        assert!(
            run.is_running(),
            "the run ended before its deletes could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no delete written"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    run.signal("KILL");
    run.wait(Duration::from_secs(60));

    let resumed = Running::sync(&config, &[]).wait(Duration::from_secs(300));
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains(
            "public.member: comparing the key scan this run finished earlier (50000 keys)"
        ),
        "{}",
        resumed.stderr
    );
    let files = assert_applied_equals_source(&db, &out, "member");
    let deletes: Vec<&String> = files
        .rows
        .iter()
        .zip(&files.ops)
        .zip(&files.runs)
        .filter(|((_, op), run)| op.as_str() == "delete" && run.as_str() != full_run)
        .map(|((row, _), _)| row[0].as_ref().expect("key"))
        .collect();
    assert_eq!(deletes.len(), deleted.len(), "each delete exactly once");
    assert_eq!(
        deletes.into_iter().cloned().collect::<BTreeSet<_>>(),
        deleted
    );
    assert_key_scan_work_removed(&out.join("public.member"));
}

/// SIGKILL while the incremental load reads its changes and scans its keys, again and again;
/// after the final run every change is in the files exactly once.
#[test]
fn killed_incremental_sync_loses_and_doubles_nothing() {
    let (db, _dir, out, config) = csv_setup("incr_kill");
    let patients = 200_000;
    create_tables(&db, patients);
    sync(&config);
    let before = read_table(&out.join("public.patient"));
    let full_rows = before.rows.len();
    db.execute(
        "UPDATE patient SET name = name || ' (again)', updated_at = clock_timestamp() \
         WHERE id % 3 <> 0",
    );
    db.execute("DELETE FROM patient WHERE id % 7 = 0");
    // Counted after the delete: deleted rows are not read again.
    let changed = db.query("SELECT count(*) FROM patient WHERE id % 3 <> 0")[0][0]
        .clone()
        .expect("count");
    let changed: usize = changed.parse().expect("number");
    let deleted = (1..=patients).filter(|k| k % 7 == 0).count();

    let mut kills = 0;
    let mut resumed = 0;
    for delay in [100u64, 700, 300, 1500, 500, 1100, 200, 900] {
        let mut run = Running::sync(&config, &[]);
        if run.wait_for("public.patient", Duration::from_secs(60)) {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if !run.is_running() {
            break;
        }
        run.signal("KILL");
        let killed = run.wait(Duration::from_secs(60));
        if killed.stdout.contains("Resuming run") {
            resumed += 1;
        }
        kills += 1;
    }
    let started = std::time::Instant::now();
    let last = sync(&config);
    eprintln!(
        "{kills} kills, {resumed} runs resumed; the last run took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 2, "the kills must land mid-run: {last}");
    let patient = assert_applied_equals_source(&db, &out, "patient");
    // The changes sit in the files of the loads after the full one (a run that finished
    // before its kill is followed by a load with nothing to read).
    let full_run = before.run_id();
    let count = |op: &str| {
        patient
            .ops
            .iter()
            .zip(&patient.runs)
            .filter(|(o, r)| o.as_str() == op && r.as_str() != full_run)
            .count()
    };
    assert_eq!(count("upsert"), changed, "each changed row exactly once");
    assert_eq!(count("delete"), deleted, "each deleted key exactly once");
    assert_eq!(patient.rows.len(), full_rows + changed + deleted);
}

/// Added, dropped and retyped columns between syncs: reported in the plan, the manifest and the
/// validation record; an added column starts files with the new header; a retyped one reloads
/// the table in full.
#[test]
fn schema_changes_are_reported_and_retyping_reloads() {
    let (db, _dir, out, config) = csv_setup("incr_schema");
    create_tables(&db, 200);
    sync(&config);

    db.execute("ALTER TABLE patient ADD COLUMN phone text");
    db.execute(
        "UPDATE patient SET phone = '555-' || id, updated_at = clock_timestamp() WHERE id <= 5",
    );
    let added = sync(&config);
    assert!(
        added.contains("public.patient: added phone (text)"),
        "the plan names the added column:\n{added}"
    );
    let patient = read_table(&out.join("public.patient"));
    assert_eq!(patient.manifest["sync_type"], "incremental");
    assert_eq!(patient.manifest["schema_changes"][0]["column"], "phone");
    assert_eq!(patient.manifest["schema_changes"][0]["change"], "added");
    let newest = patient.manifest["files"]
        .as_array()
        .and_then(|f| f.last())
        .and_then(|f| f["name"].as_str())
        .expect("a file of this run")
        .to_owned();
    let header = std::fs::read_to_string(out.join("public.patient").join(&newest))
        .expect("part file")
        .lines()
        .next()
        .map(str::to_owned);
    assert_eq!(
        header.as_deref(),
        Some("id,name,amount,born,updated_at,phone,_ehi_op,_ehi_synced_at"),
        "new files carry the new header"
    );
    let loads = patient.manifest["loads"].as_array().expect("loads");
    assert_eq!(loads[0]["columns"].as_array().map(Vec::len), Some(5));
    assert_eq!(loads[1]["columns"].as_array().map(Vec::len), Some(6));

    db.execute("ALTER TABLE patient DROP COLUMN born");
    let dropped = sync(&config);
    assert!(
        dropped.contains("public.patient: dropped born"),
        "{dropped}"
    );
    let validation = std::fs::read_to_string(out.join("_validation.ndjson")).expect("records");
    assert!(
        validation.contains("\"change\":\"dropped\""),
        "the validation record reports the dropped column"
    );
    let patient = read_table(&out.join("public.patient"));
    assert_eq!(patient.manifest["sync_type"], "incremental");

    db.execute("ALTER TABLE patient ALTER COLUMN amount TYPE numeric(14,3)");
    let retyped = sync(&config);
    assert!(
        retyped.contains("column types changed: retyped amount (numeric(12,2) -> numeric(14,3))"),
        "{retyped}"
    );
    let patient = assert_applied_equals_source(&db, &out, "patient");
    assert_eq!(
        patient.manifest["sync_type"], "full",
        "a retyped column reloads the table"
    );
    assert_eq!(patient.manifest["loads"].as_array().map(Vec::len), Some(1));
}

/// SQLite through sqliteodbc: an integer cursor, a text key compared in SQLite's own binary
/// order, and a SIGTERM in the middle of an incremental load (exit 7, then resumed).
#[test]
fn sqlite_integer_cursor_and_graceful_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let connection_string = common::sqlite_database(dir.path());
    let config = common::write_config(dir.path(), {
        let mut json = config_json(&connection_string, &out, "csv");
        json["incremental"]["cursor_columns"] = json!(["version"]);
        json
    });
    let run = |sql: &str| common::execute_on(&connection_string, sql);
    run("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, version INTEGER NOT NULL)");
    run(
        "INSERT INTO item WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g \
         WHERE n < 100000) SELECT n, 'item ' || n, n FROM g",
    );
    run("CREATE TABLE tag (code TEXT PRIMARY KEY, version INTEGER NOT NULL)");
    run("INSERT INTO tag VALUES ('b', 1), ('B', 2), ('a', 3), ('é', 4)");
    sync(&config);

    run("UPDATE item SET name = name || ' v2', version = 100000 + id WHERE id % 2 = 0");
    run("DELETE FROM item WHERE id % 5 = 0");
    run("UPDATE tag SET version = 10 WHERE code = 'B'");
    run("DELETE FROM tag WHERE code = 'a'");
    run("INSERT INTO tag VALUES ('A', 11)");

    let mut stopping = Running::sync(&config, &[]);
    let stopped_early = stopping.wait_for("main.item (", Duration::from_secs(60)) && {
        std::thread::sleep(Duration::from_millis(50));
        stopping.is_running()
    };
    if stopped_early {
        stopping.signal("TERM");
    }
    let first = stopping.wait(Duration::from_secs(60));
    // 50,000 changed rows take far longer than 50 ms to read in a debug build.
    assert!(
        stopped_early,
        "the SIGTERM must land while main.item is read"
    );
    assert_eq!(
        first.code, 7,
        "SIGTERM stops after a final checkpoint:\n{}\n{}",
        first.stdout, first.stderr
    );
    sync(&config);
    for table in ["item", "tag"] {
        let files = read_table(&out.join(format!("main.{table}")));
        assert_eq!(files.manifest["sync_type"], "incremental", "{table}");
        let source = source_rows(
            &|sql| common::query_on(&connection_string, sql),
            &format!("\"{table}\""),
            &files,
            &|c| format!("\"{c}\""),
            &|c| format!("lower(hex({c}))"),
        );
        assert_same_rows(table, apply_changes(&files), source);
    }
    // The changes are in the load after the full one (the stopped run may have finished
    // `tag`, small tables go first; the last run then had nothing new for it).
    let tag = read_table(&out.join("main.tag"));
    let second = tag.manifest["loads"][1]["run_id"]
        .as_str()
        .expect("a second load")
        .to_owned();
    assert_eq!(keys_of(&tag, &second, "delete"), ["a".to_owned()].into());
    assert_eq!(
        keys_of(&tag, &second, "upsert"),
        ["A", "B"].map(String::from).into()
    );
}
