//! End-to-end: `ehi-sync sync` of the synthetic EHR database from PostgreSQL and SQLite, in CSV,
//! NDJSON and Parquet, all three tiers, compared value by value with the source.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::output::{
    TableFiles, as_parquet_text, assert_postgres_output_equals_source, assert_same_rows,
    read_parquet_files, read_table, source_rows,
};
use common::running::Running;
use serde_json::{Value, json};

const SCALE: u64 = 300;

/// Small thresholds and partitions so 300 patients give all three tiers, many partitions per
/// table, several part files and many checkpoints. `compression` "default" leaves the key out.
fn sync_config(connection_string: &str, output: &Path, format: &str, compression: &str) -> Value {
    let mut config = json!({
        "connection_string": connection_string,
        "output_dir": output,
        "format": format,
        "compression": compression,
        "small_table_threshold": 200,
        "large_table_threshold": 5000,
        "part_file_max_bytes": 40000,
        "fetch_buffer_bytes": 65536,
        "tiers": {
            "small": {"batch_size": 16, "partition_size": 40, "checkpoint_interval": 50},
            "medium": {"batch_size": 64, "partition_size": 250, "checkpoint_interval": 300},
            "large": {"batch_size": 300, "partition_size": 1000, "checkpoint_interval": 2000}
        }
    });
    if compression == "default" {
        config
            .as_object_mut()
            .expect("object")
            .remove("compression");
    }
    config
}

fn run_sync(config: &Path) -> (i32, String, String) {
    let output = common::ehi_sync(&["sync", "--config", config.to_str().expect("UTF-8 path")]);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes `config_json` into `dir`, generates the tables at [`SCALE`] and syncs them: the sync
/// must succeed, and `fetch_text` must be a known key. Returns its standard output.
fn generate_and_sync(dir: &Path, config_json: Value) -> String {
    let config = common::write_config(dir, config_json);
    common::generate(&config, SCALE);
    let (code, stdout, stderr) = run_sync(&config);
    assert_eq!(code, 0, "sync failed:\n{stdout}\n{stderr}");
    assert!(
        !stderr.contains("fetch_text"),
        "fetch_text is a known key: {stderr}"
    );
    stdout
}

/// Every generated table, with its folder and expected row count.
fn expected_tables(schema: &str) -> Vec<(String, u64)> {
    ehi_sync::demo::expected_row_counts(SCALE)
        .into_iter()
        .map(|(name, rows)| (format!("{schema}.{name}"), rows))
        .collect()
}

/// The ODBC text width of a run: `utf8` (narrow functions) or `utf16` (wide, as on Windows).
fn check_postgres(format: &str, compression: &str, isolation: &str, fetch_text: &str) {
    let db = common::pg_database(&format!("sync_{format}_{compression}_{fetch_text}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut config_json = sync_config(&db.connection_string(), &out, format, compression);
    config_json["isolation"] = json!(isolation);
    config_json["fetch_text"] = json!(fetch_text);
    let stdout = generate_and_sync(dir.path(), config_json);
    assert!(stdout.contains("9 tables done, 0 failed"), "{stdout}");
    assert!(
        stdout.contains(&format!("reads:    {isolation} isolation")),
        "{stdout}"
    );
    assert_postgres_output_equals_source(&db, &out, SCALE, &[]);
    if format == "parquet" {
        check_parquet_types(&out, "public");
    }
    check_validation_records(&out, "public");
    assert_eq!(
        std::fs::read_to_string(out.join("public.flowsheet_value/_manifest.json"))
            .map(|m| m.contains("\"fsv_id\""))
            .ok(),
        Some(true)
    );
}

fn check_sqlite(format: &str, fetch_text: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let connection_string = common::sqlite_database(dir.path());
    let mut config_json = sync_config(&connection_string, &out, format, "none");
    config_json["fetch_text"] = json!(fetch_text);
    generate_and_sync(dir.path(), config_json);
    assert_sqlite_output_equals_source(&connection_string, &out);
    if format == "parquet" {
        check_parquet_types(&out, "main");
    }
    check_validation_records(&out, "main");
}

/// The Parquet type of every generated column. The PostgreSQL tables' types all have a Parquet
/// type that holds every value (numeric with its precision and scale, timestamp(6), date,
/// bytea), so none falls back to text; SQLite keeps any value in a DECIMAL or TIMESTAMP
/// column, so those may be typed or text with a note saying why.
fn check_parquet_types(out: &Path, schema: &str) {
    for (table, _) in expected_tables(schema) {
        let files = read_table(&out.join(&table));
        assert_eq!(files.manifest["format"], "parquet");
        for column in files.manifest["columns"].as_array().expect("columns") {
            let name = &column["name"];
            let source_type = column["source_type"]
                .as_str()
                .expect("source_type")
                .to_ascii_lowercase();
            let kind = column["value_kind"].as_str().expect("value_kind");
            let parquet_type = column["parquet_type"].as_str().expect("parquet_type");
            let note = column["parquet_note"].as_str();
            let decimal = format!("decimal({},{})", column["precision"], column["scale"]);
            let typed = match kind {
                "integer" => "int64",
                "float" => "float64",
                "boolean" => "boolean",
                "binary" => "binary",
                "decimal" => decimal.as_str(),
                "timestamp" => "timestamp(us)",
                _ if source_type == "date" && schema == "public" => "date",
                _ => "string",
            };
            let text_with_note = schema == "main"
                && matches!(kind, "decimal" | "timestamp")
                && parquet_type == "string"
                && note.is_some();
            assert!(
                parquet_type == typed && (note.is_none() || typed == "string") || text_with_note,
                "{table}.{name} ({source_type}, {kind}): parquet_type {parquet_type}, note \
                 {note:?}; expected {typed}"
            );
        }
    }
}

/// Every generated table in `out` equals the SQLite source, row for row.
fn assert_sqlite_output_equals_source(connection_string: &str, out: &Path) {
    for (table, rows) in expected_tables("main") {
        let files = read_table(&out.join(&table));
        assert_eq!(files.rows.len() as u64, rows, "{table}");
        let name = table.trim_start_matches("main.");
        let source = source_rows(
            &|sql| common::query_on(connection_string, sql),
            &format!("\"{name}\""),
            &files,
            &|c| format!("\"{}\"", c.replace('"', "\"\"")),
            &|c| format!("CASE WHEN {c} IS NULL THEN NULL ELSE lower(hex({c})) END"),
        );
        assert_same_rows(&table, files.rows, source);
    }
}

/// One record per table, all `ok`, expected = extracted, tiers as the thresholds say.
fn check_validation_records(out: &Path, schema: &str) {
    let text = std::fs::read_to_string(out.join("_validation.ndjson")).expect("validation file");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("validation record is JSON"))
        .collect();
    assert_eq!(records.len(), 9);
    for record in &records {
        assert_eq!(record["status"], "ok", "{record}");
        assert_eq!(record["difference"], 0, "{record}");
        assert_eq!(
            record["expected_rows"], record["extracted_rows"],
            "{record}"
        );
        let rows = record["extracted_rows"].as_u64().unwrap_or(0);
        let tier = if rows < 200 {
            "small"
        } else if rows < 5000 {
            "medium"
        } else {
            "large"
        };
        assert_eq!(record["tier"], tier, "{record}");
    }
    let flowsheet = records
        .iter()
        .find(|r| r["table"] == format!("{schema}.flowsheet_value"))
        .expect("flowsheet record");
    assert_eq!(flowsheet["tier"], "large");
}

#[test]
fn postgres_to_csv_equals_source() {
    check_postgres("csv", "none", "read_committed", "utf8");
}

#[test]
fn postgres_to_ndjson_equals_source() {
    check_postgres("ndjson", "none", "read_uncommitted", "utf8");
}

/// Parquet with its default compression (zstd inside the files): every value read by pyarrow
/// and by DuckDB, typed columns as the manifest says.
#[test]
fn postgres_to_parquet_equals_source() {
    check_postgres("parquet", "default", "read_committed", "utf8");
}

#[test]
fn postgres_to_compressed_files_equals_source() {
    check_postgres("csv", "gzip", "snapshot", "utf8");
    check_postgres("ndjson", "zstd", "snapshot", "utf8");
}

#[test]
fn sqlite_to_csv_equals_source() {
    check_sqlite("csv", "utf8");
}

#[test]
fn sqlite_to_ndjson_equals_source() {
    check_sqlite("ndjson", "utf8");
}

/// Uncompressed Parquet (`"compression": "none"`).
#[test]
fn sqlite_to_parquet_equals_source() {
    check_sqlite("parquet", "utf8");
}

/// The two Parquet readers the comparisons use (tests/common/read_parquet.py), on files pyarrow
/// writes: the same canonical text for every type of the contract and its edge values (NULL
/// next to '' and to NaN, 1840 and 9999 dates, int64's ends, 38 digits, two row groups), and a
/// type that strays from the contract named so that it cannot pass for the manifest's.
#[test]
fn parquet_readers_agree_on_every_type() {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/common/parquet_sample.py"
        ))
        .arg(dir.path())
        .status()
        .expect("python3 runs");
    assert!(status.success(), "parquet_sample.py");
    let views = read_parquet_files(&[
        dir.path().join("typed.parquet"),
        dir.path().join("stray.parquet"),
    ]);
    let (pyarrow, duckdb) = &views[0];
    assert_eq!(pyarrow, duckdb, "pyarrow and DuckDB read the same");
    assert_eq!(pyarrow.codecs, ["ZSTD"]);
    let expected: [(&str, &str, [Option<&str>; 5]); 12] = [
        (
            "i",
            "int64",
            [
                Some("1"),
                None,
                Some("-9223372036854775808"),
                Some("9223372036854775807"),
                Some("0"),
            ],
        ),
        (
            "f",
            "float64",
            [
                Some("0.1"),
                Some("NaN"),
                Some("Infinity"),
                Some("-Infinity"),
                Some("-0.0"),
            ],
        ),
        (
            "g",
            "float32",
            [
                Some("0.1"),
                None,
                Some("-Infinity"),
                Some("3.4028235e+38"),
                Some("1e-45"),
            ],
        ),
        (
            "b",
            "boolean",
            [
                Some("true"),
                Some("false"),
                None,
                Some("true"),
                Some("false"),
            ],
        ),
        (
            "d",
            "decimal(19,4)",
            [
                Some("1.5000"),
                None,
                Some("-123456789012345.1234"),
                Some("0.0000"),
                Some("-0.0001"),
            ],
        ),
        (
            "d38",
            "decimal(38,10)",
            [
                Some("-1222222222222222222222222222.0123456789"),
                Some("0.5000000000"),
                None,
                Some("1000000000000000000000000000.0000000000"),
                Some("0.0000000000"),
            ],
        ),
        (
            "dt",
            "date",
            [
                Some("1840-12-31"),
                None,
                Some("9999-12-31"),
                Some("1970-01-01"),
                Some("0001-01-01"),
            ],
        ),
        (
            "ts",
            "timestamp(us)",
            [
                Some("9999-12-31T23:59:59.999999"),
                None,
                Some("1840-12-31T00:00:00"),
                Some("1969-12-31T23:59:59.5"),
                Some("2024-02-29T12:00:00.00012"),
            ],
        ),
        (
            "tz",
            "timestamp(us, UTC)",
            [
                Some("2024-01-02T03:04:05.123Z"),
                None,
                Some("0001-01-01T00:00:00Z"),
                Some("1840-12-31T23:59:59.999999Z"),
                Some("1970-01-01T00:00:00Z"),
            ],
        ),
        (
            "tm",
            "time(ns)",
            [
                Some("00:02:03.456789012"),
                None,
                Some("00:00:00"),
                Some("23:59:59.999999999"),
                Some("00:00:00.000001"),
            ],
        ),
        (
            "s",
            "string",
            [
                Some("a"),
                Some(""),
                None,
                Some("Zoë 😀\r\n\"q\","),
                Some("null"),
            ],
        ),
        (
            "bin",
            "binary",
            [Some("00ff"), Some(""), None, Some("deadbeef"), Some("00")],
        ),
    ];
    let columns: Vec<(String, Option<String>)> = expected
        .iter()
        .map(|(name, t, _)| (name.to_string(), Some(t.to_string())))
        .collect();
    assert_eq!(pyarrow.columns, columns);
    for (i, row) in pyarrow.rows.iter().enumerate() {
        let want: Vec<Option<String>> = expected
            .iter()
            .map(|(_, _, values)| values[i].map(str::to_owned))
            .collect();
        assert_eq!(row, &want, "row {i}");
    }
    assert_eq!(pyarrow.rows.len(), 5);

    // Milliseconds, a zone other than UTC, Arrow's small string, int32, microsecond times.
    let (pyarrow, duckdb) = &views[1];
    let types = |view: &common::output::ParquetView| -> Vec<String> {
        view.columns
            .iter()
            .map(|(_, t)| t.clone().expect("a type"))
            .collect()
    };
    assert_eq!(
        types(pyarrow),
        [
            "timestamp(ms)",
            "timestamp(us, UTC) (arrow timestamp[us, tz=Europe/Paris], a zone other than UTC)",
            "string (arrow string, not large_utf8)",
            "int32",
            "time(us)"
        ]
    );
    assert_eq!(
        types(duckdb),
        [
            "timestamp(us)",
            "timestamp(us, UTC)",
            "string",
            "int32",
            "time(us)"
        ],
        "DuckDB reads milliseconds as its microsecond TIMESTAMP: the readers' schemas differ"
    );
    assert_eq!(pyarrow.rows, duckdb.rows);
}

/// The source's text of a value in the canonical form of a Parquet value of the column's type:
/// an instant printed in any time zone as the same instant in UTC, fractions without trailing
/// zeros, decimals with exactly the scale's digits; anything else, or a digit that would be
/// lost, unchanged (so it differs from the Parquet value).
#[test]
fn source_text_takes_the_parquet_form_of_the_same_value() {
    let utc = |text: &str| as_parquet_text("timestamp(us, UTC)", text.to_owned());
    assert_eq!(
        utc("2024-01-02T03:04:05.123+00"),
        "2024-01-02T03:04:05.123Z"
    );
    assert_eq!(utc("2024-01-01T01:30:00.5-03:30"), "2024-01-01T05:00:00.5Z");
    assert_eq!(utc("2024-01-01 00:10:00.000+05:30"), "2023-12-31T18:40:00Z");
    assert_eq!(utc("2024-12-31T23:30:00-01"), "2025-01-01T00:30:00Z");
    assert_eq!(
        utc("2024-03-01T00:59:59.999999+0100"),
        "2024-02-29T23:59:59.999999Z"
    );
    assert_eq!(utc("1840-12-31T23:59:59+00:01:15"), "1840-12-31T23:58:44Z");
    assert_eq!(
        utc("9999-12-31T23:59:59.999999Z"),
        "9999-12-31T23:59:59.999999Z"
    );
    assert_eq!(
        utc("2024-01-02T03:04:05"),
        "2024-01-02T03:04:05",
        "no offset: unchanged"
    );
    assert_eq!(utc("infinity"), "infinity");
    let plain = |t: &str, text: &str| as_parquet_text(t, text.to_owned());
    assert_eq!(
        plain("timestamp(us)", "2024-01-02T03:04:05.1230000"),
        "2024-01-02T03:04:05.123"
    );
    assert_eq!(
        plain("timestamp(us)", "2024-01-02T03:04:05.000"),
        "2024-01-02T03:04:05"
    );
    assert_eq!(plain("time(ns)", "12:34:56.1000000"), "12:34:56.1");
    assert_eq!(plain("decimal(12,2)", "1.5"), "1.50");
    assert_eq!(plain("decimal(12,2)", "3"), "3.00");
    assert_eq!(plain("decimal(12,2)", "-0.00"), "0.00");
    assert_eq!(plain("decimal(12,2)", "1.2300"), "1.23");
    assert_eq!(
        plain("decimal(12,2)", "-1.234"),
        "-1.234",
        "a digit would be lost"
    );
    assert_eq!(plain("decimal(12,2)", "12e3"), "12000.00");
    assert_eq!(plain("decimal(10,5)", "1.25e-3"), "0.00125");
    assert_eq!(plain("decimal(10,5)", ".5"), "0.50000");
    assert_eq!(plain("decimal(18,0)", "-42"), "-42");
    assert_eq!(plain("decimal(12,2)", "NaN"), "NaN");
    assert_eq!(
        plain("string", "2024-01-02T03:04:05.1230000"),
        "2024-01-02T03:04:05.1230000",
        "text stays text"
    );
}

/// The wide (UTF-16) fetch path Windows runs by default, here on Linux: buffers, transcoding,
/// keys and resume points of every table (Unicode notes, composite keys) through real drivers.
#[test]
fn postgres_with_utf16_text_equals_source() {
    check_postgres("csv", "none", "read_committed", "utf16");
    check_postgres("ndjson", "none", "read_committed", "utf16");
}

#[test]
fn sqlite_with_utf16_text_equals_source() {
    check_sqlite("csv", "utf16");
    check_sqlite("ndjson", "utf16");
}

/// The loader's view: every CSV part loads with `COPY ... (FORMAT csv, HEADER)` into a table of
/// the source's shape and equals the source, NULLs and empty strings included. Binary columns
/// load as text (CSV carries them as hex) and are compared with the source's hex.
#[test]
fn csv_output_loads_back_into_postgres_with_copy() {
    let db = common::pg_database("copy_back");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(
        dir.path(),
        sync_config(&db.connection_string(), &out, "csv", "none"),
    );
    common::generate(&config, SCALE);
    let (code, stdout, stderr) = run_sync(&config);
    assert_eq!(code, 0, "sync failed:\n{stdout}\n{stderr}");
    for (table, _) in expected_tables("public") {
        let name = table.trim_start_matches("public.");
        let copy = format!("copy of {name}");
        db.execute(&format!("CREATE TABLE \"{copy}\" (LIKE public.\"{name}\")"));
        // The change columns every row carries; a loader keeps or drops them.
        db.execute(&format!(
            "ALTER TABLE \"{copy}\" ADD COLUMN _ehi_op text NOT NULL, \
             ADD COLUMN _ehi_synced_at timestamptz NOT NULL"
        ));
        let files: TableFiles = read_table(&out.join(&table));
        let names = files.column_names();
        let kinds = files.kinds();
        for (column, kind) in names.iter().zip(&kinds) {
            if kind == "binary" {
                db.execute(&format!(
                    "ALTER TABLE \"{copy}\" ALTER COLUMN \"{column}\" TYPE text"
                ));
            }
        }
        for file in files.manifest["files"].as_array().expect("files") {
            let path = out.join(&table).join(file["name"].as_str().expect("name"));
            let status = Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                ])
                .args(["-d", db.name()])
                .arg("-c")
                .arg(format!(
                    "\\copy \"{copy}\" FROM '{}' (FORMAT csv, HEADER)",
                    path.display()
                ))
                .status()
                .expect("psql runs");
            assert!(status.success(), "\\copy of {}", path.display());
        }
        let original: Vec<String> = names
            .iter()
            .zip(&kinds)
            .map(|(c, k)| {
                if k == "binary" {
                    format!("encode(\"{c}\", 'hex')")
                } else {
                    format!("\"{c}\"")
                }
            })
            .collect();
        let copied: Vec<String> = names.iter().map(|c| format!("\"{c}\"")).collect();
        for (left, right) in [
            (
                format!("SELECT {} FROM public.\"{name}\"", original.join(", ")),
                format!("SELECT {} FROM \"{copy}\"", copied.join(", ")),
            ),
            (
                format!("SELECT {} FROM \"{copy}\"", copied.join(", ")),
                format!("SELECT {} FROM public.\"{name}\"", original.join(", ")),
            ),
        ] {
            let difference = db.query(&format!(
                "SELECT count(*) FROM ({left} EXCEPT ALL {right}) AS d"
            ));
            assert_eq!(
                difference[0][0].as_deref(),
                Some("0"),
                "{table}: {left} EXCEPT ALL {right}"
            );
        }
        let nulls_and_empties = db.query(&format!(
            "SELECT count(*) FROM \"{copy}\" WHERE {} IS NULL",
            copied[0]
        ));
        assert_eq!(
            nulls_and_empties[0][0].as_deref(),
            Some("0"),
            "{table}: key never NULL"
        );
    }
    let empties = db.query(
        "SELECT count(*) FILTER (WHERE value_text = ''), count(*) FILTER (WHERE value_text IS NULL) \
         FROM \"copy of flowsheet_value\"",
    );
    assert_ne!(
        empties[0][0].as_deref(),
        Some("0"),
        "empty strings survive COPY"
    );
    assert_ne!(empties[0][1].as_deref(), Some("0"), "NULLs survive COPY");
}

/// A table that cannot be copied (a value beyond max_value_bytes) fails cleanly, the others
/// finish, and the exit code says "partial failure".
#[test]
fn failing_table_does_not_stop_the_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let connection_string = common::sqlite_database(dir.path());
    let mut config_json = sync_config(&connection_string, &out, "csv", "none");
    config_json["max_value_bytes"] = json!(4096);
    // The demo notes hold values past 4 KiB too; only big_note should fail here.
    config_json["exclude"] = json!(["main.note_text"]);
    let config = common::write_config(dir.path(), config_json);
    common::generate(&config, 20);
    common::execute_on(
        &connection_string,
        "CREATE TABLE big_note (id INTEGER PRIMARY KEY, body TEXT)",
    );
    common::execute_on(
        &connection_string,
        "INSERT INTO big_note VALUES (1, 'short'), (2, replace(hex(zeroblob(3000)), '00', 'xyz'))",
    );
    let (code, stdout, stderr) = run_sync(&config);
    assert_eq!(code, 4, "partial failure expected:\n{stdout}\n{stderr}");
    assert!(stdout.contains("8 tables done, 1 failed"), "{stdout}");
    assert!(
        stdout.contains(
            "FAILED: main.big_note (small): a value in column 'body' is larger than max_value_bytes"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("xyzxyz") && !stderr.contains("xyzxyz"),
        "no row values in messages"
    );
    assert!(!out.join("main.big_note/_manifest.json").exists());
    let patient = read_table(&out.join("main.patient"));
    assert_eq!(patient.rows.len(), 20);
    let validation = std::fs::read_to_string(out.join("_validation.ndjson")).expect("records");
    let failed: Vec<Value> = validation
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|r| r["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["table"], "main.big_note");
}

/// A worker that panics (a bug) fails the table it was reading, like any other error: the other
/// tables finish, the run ends with "partial failure" instead of waiting for the worker for
/// ever, and the next run reads the table.
#[test]
fn a_worker_that_panics_fails_its_table_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let connection_string = common::sqlite_database(dir.path());
    let config = common::write_config(
        dir.path(),
        sync_config(&connection_string, &out, "csv", "none"),
    );
    common::generate(&config, SCALE);
    let env = [("EHI_SYNC_TEST_PANIC_IN_TABLE", "main.encounter")];
    let run = Running::sync_with_env(&config, &env).wait(Duration::from_secs(120));
    assert_eq!(
        run.code, 4,
        "partial failure:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr
            .contains("test hook: a worker panics in main.encounter"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("8 tables done, 1 failed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "FAILED: main.encounter (medium): main.encounter: an internal error of ehi-sync \
             stopped its read"
        ),
        "{}",
        run.stdout
    );
    assert!(!out.join("main.encounter/_manifest.json").exists());

    let again = Running::sync(&config, &[]).wait(Duration::from_secs(120));
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_sqlite_output_equals_source(&connection_string, &out);
}

/// Output files hold PHI: folders 0700, files 0600.
#[cfg(unix)]
#[test]
fn output_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let connection_string = common::sqlite_database(dir.path());
    let config = common::write_config(
        dir.path(),
        sync_config(&connection_string, &out, "ndjson", "none"),
    );
    common::generate(&config, 10);
    let (code, stdout, stderr) = run_sync(&config);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700);
    for entry in walk(&out) {
        let expected = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&entry), expected, "{}", entry.display());
    }
}

/// Every file and folder under `dir` (for the Unix permission check).
#[cfg(unix)]
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

/// SQLite's type affinity lets an INTEGER column hold text and reals, which sqliteodbc turns
/// into NULL or a truncated number without a warning when asked for an integer. Such values
/// arrive as SQLite holds them, in both formats; the integer key stays an integer.
#[test]
fn sqlite_values_outside_their_declared_type_arrive_as_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let connection_string = common::sqlite_database(dir.path());
    common::execute_on(
        &connection_string,
        "CREATE TABLE loose (id INTEGER PRIMARY KEY, n INTEGER, note TEXT)",
    );
    common::execute_on(
        &connection_string,
        "INSERT INTO loose VALUES (1, 5, 'int'), (2, 'abc', 'text'), (3, 1.5, 'real'), \
         (4, NULL, 'null'), (5, -9223372036854775808, 'min')",
    );
    for format in ["csv", "ndjson"] {
        let out = dir.path().join(format!("out-{format}"));
        let config = common::write_config(
            dir.path(),
            sync_config(&connection_string, &out, format, "none"),
        );
        let (code, stdout, stderr) = run_sync(&config);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let folder = out.join("main.loose");
        let part = std::fs::read_dir(&folder)
            .expect("table folder")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == format))
            .expect("a part file");
        let text = std::fs::read_to_string(part).expect("part file");
        let values: Vec<String> = if format == "csv" {
            text.lines()
                .skip(1)
                .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
                .collect()
        } else {
            text.lines()
                .map(|l| {
                    let row: Value = serde_json::from_str(l).expect("JSON row");
                    format!("{},{}", row["id"], row["n"])
                })
                .collect()
        };
        let expected: &[&str] = if format == "csv" {
            &["1,5", "2,abc", "3,1.5", "4,", "5,-9223372036854775808"]
        } else {
            &[
                "1,5",
                "2,\"abc\"",
                "3,1.5",
                "4,null",
                "5,-9223372036854775808",
            ]
        };
        assert_eq!(values, expected, "{format}");
    }
}

/// A value its column's Parquet type cannot hold (PostgreSQL's `infinity` timestamp, outside
/// every calendar) fails that table naming the column, never the value: no file of it is
/// reported done, nothing is written blank, the other table is complete, and CSV still copies it.
#[test]
fn a_value_parquet_cannot_hold_fails_its_table_naming_the_column() {
    let db = common::pg_database("parquet_refused");
    db.execute(
        "CREATE TABLE visit (id int PRIMARY KEY, seen_at timestamp); \
         INSERT INTO visit VALUES (1, '2024-01-02 03:04:05'), (2, 'infinity'), (3, NULL); \
         CREATE TABLE ward (id int PRIMARY KEY, name text); \
         INSERT INTO ward VALUES (1, 'north'), (2, '');",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(
        dir.path(),
        sync_config(&db.connection_string(), &out, "parquet", "default"),
    );
    let (code, stdout, stderr) = run_sync(&config);
    assert_eq!(code, 4, "partial failure:\n{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains(
            "column 'seen_at' holds a value that is not a valid timestamp(us) (its type in the \
             Parquet files); no value was written"
        ),
        "{all}"
    );
    assert!(
        !all.contains("infinity"),
        "no row values in messages: {all}"
    );
    assert!(!out.join("public.visit/_manifest.json").exists());
    let ward = read_table(&out.join("public.ward"));
    assert_eq!(
        ward.rows,
        vec![
            vec![Some("1".to_owned()), Some("north".to_owned())],
            vec![Some("2".to_owned()), Some(String::new())]
        ]
    );
    let validation = std::fs::read_to_string(out.join("_validation.ndjson")).expect("records");
    let visit: Value = validation
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|r| r["table"] == "public.visit")
        .expect("a record of public.visit");
    assert_eq!(visit["status"], "failed");

    let csv_out = dir.path().join("csv");
    let csv = common::write_config(
        dir.path(),
        sync_config(&db.connection_string(), &csv_out, "csv", "none"),
    );
    let (code, stdout, stderr) = run_sync(&csv);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(read_table(&csv_out.join("public.visit")).rows.len(), 3);
}
