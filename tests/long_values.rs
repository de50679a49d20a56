//! Long text and binary values (a 6M-character text, a 30 MB bytea) are read in pieces with
//! SQLGetData and streamed into the output: compared value by value with the source, in CSV and
//! NDJSON, plain and gzip, through psqlODBC (`UseDeclareFetch=1;Fetch=1`) and sqliteodbc, and
//! across SIGKILLs mid-table. Memory figures are the benchmark's (`scripts/bench.sh`); the
//! buffer sizes the reader allocates are unit-tested (`extract::piecewise`).

// Kills with SIGKILL, as tests/resume.rs does.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::output::{assert_same_rows, read_table, source_rows};
use common::running::Running;
use serde_json::{Value, json};

/// Rows 1..=120, mostly short; long values at rows 1, 60 and 120 (so reads go from bulk to
/// pieces and back), NULLs and empty values between them.
const POSTGRES_TABLE: &[&str] = &[
    "CREATE TABLE documents (id integer PRIMARY KEY, note text, doc bytea)",
    "INSERT INTO documents SELECT i, 'note ' || i, decode(lpad(to_hex(i), 4, '0'), 'hex') \
     FROM generate_series(1, 120) AS i",
    // 6,000,001 characters of 1-, 2-, 3- and 4-byte UTF-8 with quotes, commas, CR LF and a
    // backslash: every piece boundary of a 64 KiB buffer falls somewhere in a sequence.
    "UPDATE documents SET note = repeat('é€𝄞\"x,' || chr(13) || chr(10) || '\\', 666667) \
     WHERE id = 1",
    // 30 MiB.
    "UPDATE documents SET doc = decode(repeat('00ff7f80', 7864320), 'hex') WHERE id = 60",
    "UPDATE documents SET note = repeat('ü', 300000), \
     doc = decode(repeat('0a0d22', 100001), 'hex') WHERE id = 120",
    "UPDATE documents SET note = '', doc = NULL WHERE id = 2",
    "UPDATE documents SET note = NULL, doc = ''::bytea WHERE id = 3",
    "UPDATE documents SET note = NULL, doc = NULL WHERE id = 61",
    "UPDATE documents SET note = '', doc = ''::bytea WHERE id = 119",
];

fn config(connection_string: &str, output: &Path, format: &str, compression: &str) -> Value {
    json!({
        "connection_string": connection_string,
        "output_dir": output,
        "format": format,
        "compression": compression,
        "fetch_buffer_bytes": 65536,
        "part_file_max_bytes": 4_000_000,
        "tiers": {
            "small": {"batch_size": 16, "partition_size": 50, "checkpoint_interval": 10}
        }
    })
}

/// psqlODBC fetching one row per round trip, as the measurement did.
fn one_row_per_fetch(db: &common::PgDatabase) -> String {
    db.connection_string().replace("Fetch=2000", "Fetch=1")
}

fn postgres_documents(prefix: &str) -> common::PgDatabase {
    let db = common::pg_database(prefix);
    for sql in POSTGRES_TABLE {
        db.execute(sql);
    }
    db
}

fn assert_documents_equal_source(db: &common::PgDatabase, out: &Path) {
    let files = read_table(&out.join("public.documents"));
    assert_eq!(files.rows.len(), 120);
    let source = source_rows(
        &|sql| db.query(sql),
        "public.documents",
        &files,
        &|c| format!("\"{c}\""),
        &|c| format!("encode({c}, 'hex')"),
    );
    // The long values arrived whole, not only equal on both sides of a bug.
    let note = files.column_names().iter().position(|c| c == "note");
    let longest = files
        .rows
        .iter()
        .filter_map(|r| r[note.expect("note column")].as_ref())
        .map(|v| v.chars().count())
        .max();
    assert_eq!(longest, Some(6_000_003));
    assert_same_rows("public.documents", files.rows, source);
}

fn sync(config: &Path) -> (i32, String) {
    let output = common::ehi_sync(&["sync", "--config", config.to_str().expect("UTF-8 path")]);
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn postgres_long_values_are_copied_exactly_in_every_format() {
    let db = postgres_documents("long_values");
    for (format, compression) in [("csv", "none"), ("ndjson", "none"), ("csv", "gzip")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        let config = common::write_config(
            dir.path(),
            config(&one_row_per_fetch(&db), &out, format, compression),
        );
        let (code, log) = sync(&config);
        assert_eq!(code, 0, "{format}/{compression}:\n{log}");
        assert_documents_equal_source(&db, &out);
    }
}

/// `max_value_bytes` still refuses a value above it, naming the column, never the value.
#[test]
fn a_value_above_max_value_bytes_fails_its_table_naming_the_column() {
    let db = postgres_documents("long_refused");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut json = config(&one_row_per_fetch(&db), &out, "csv", "none");
    json["max_value_bytes"] = json!(20 << 20);
    let config = common::write_config(dir.path(), json);
    let (code, log) = sync(&config);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains(
            "a value in column 'doc' is larger than max_value_bytes (20971520 bytes); raise \
             max_value_bytes in the config to copy it"
        ),
        "{log}"
    );
    assert!(!log.contains("ff7f80"), "no value in the messages");
}

/// SIGKILLs at moments spread over the read of the long values, each run resuming the last;
/// then the output is exact: no row half written, none twice.
#[test]
fn sigkill_while_long_values_stream_then_resume_is_exact() {
    let db = postgres_documents("long_kill");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(
        dir.path(),
        config(&one_row_per_fetch(&db), &out, "ndjson", "gzip"),
    );
    let mut kills = 0;
    for delay_ms in [300u64, 700, 1100, 1500, 2000, 2500] {
        let mut run = Running::sync(&config, &[]);
        if run.wait_for("Processing table", Duration::from_secs(60)) {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        if !run.is_running() {
            break;
        }
        run.signal("KILL");
        run.wait(Duration::from_secs(60));
        kills += 1;
    }
    let last = Running::sync(&config, &[]).wait(Duration::from_secs(300));
    assert_eq!(last.code, 0, "final run:\n{}\n{}", last.stdout, last.stderr);
    assert!(
        kills >= 2,
        "only {kills} kills landed before the run finished"
    );
    assert_documents_equal_source(&db, &out);
}

#[test]
fn sqlite_long_text_and_blob_are_copied_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let connection_string = common::sqlite_database(dir.path());
    common::execute_on(
        &connection_string,
        "CREATE TABLE documents (id INTEGER PRIMARY KEY, note TEXT, doc BLOB)",
    );
    // The text is built by SQLite itself: sqliteodbc would store a surrogate pair of the
    // statement text as two 3-byte sequences.
    common::execute_on(
        &connection_string,
        "INSERT INTO documents VALUES \
         (1, replace(hex(zeroblob(400000)), '00', char(233, 8364, 119070, 34, 120, 44)), \
         zeroblob(3000000)), \
         (2, '', NULL), (3, NULL, x''), (4, 'short', x'0102'), \
         (5, replace(hex(zeroblob(100000)), '00', char(252)), randomblob(2000000))",
    );
    for format in ["csv", "ndjson"] {
        let out = out.join(format);
        let config =
            common::write_config(dir.path(), config(&connection_string, &out, format, "none"));
        let (code, log) = sync(&config);
        assert_eq!(code, 0, "{format}:\n{log}");
        let files = read_table(&out.join("main.documents"));
        assert_eq!(files.rows.len(), 5);
        let source = source_rows(
            &|sql| common::query_on(&connection_string, sql),
            "documents",
            &files,
            &|c| format!("\"{c}\""),
            &|c| format!("CASE WHEN {c} IS NULL THEN NULL ELSE lower(hex({c})) END"),
        );
        assert_same_rows("main.documents", files.rows, source);
    }
}
