//! `ehi-sync generate` against real PostgreSQL and SQLite: exact row counts per table and the
//! values that are easy to damage (emoji, newlines, 38-digit decimals, zero bytes, odd names).

mod common;

use std::path::Path;

use ehi_sync::demo;
use ehi_sync::model::Dialect;
use serde_json::json;

const SCALE: u64 = 50;

/// The single value of a one-row, one-column query.
fn scalar(rows: &[Vec<Option<String>>]) -> Option<String> {
    assert_eq!(rows.len(), 1, "one row expected: {rows:?}");
    rows[0][0].clone()
}

/// Asserts every demo table holds exactly the rows `expected_row_counts` promises.
fn assert_row_counts(query: impl Fn(&str) -> Vec<Vec<Option<String>>>, dialect: Dialect) {
    for (table, expected) in demo::expected_row_counts(SCALE) {
        let sql = format!("SELECT COUNT(*) FROM {}", dialect.quote_identifier(table));
        let count = scalar(&query(&sql)).expect("a count");
        assert_eq!(count, expected.to_string(), "rows in {table}");
    }
}

/// Notes 1 to 3 carry emoji and \n, \r\n with quotes, commas and a tab, and > 10,000 characters.
fn assert_notes(query: impl Fn(&str) -> Vec<Vec<Option<String>>>) {
    let emoji = scalar(&query("SELECT body FROM note_text WHERE note_id = 1")).expect("note 1");
    assert!(
        emoji.contains('😀') && emoji.contains('🏥') && emoji.contains('\n'),
        "{emoji}"
    );
    let crlf = scalar(&query("SELECT body FROM note_text WHERE note_id = 2")).expect("note 2");
    for part in ["\r\n", "\"fine\"", ", ", "\t", "—"] {
        assert!(crlf.contains(part), "{part:?} in {crlf:?}");
    }
    let long = scalar(&query("SELECT body FROM note_text WHERE note_id = 3")).expect("note 3");
    assert!(long.chars().count() > 10_000 && long.ends_with('🏥'));
    assert_eq!(
        scalar(&query("SELECT body FROM note_text WHERE note_id = 4")),
        None
    );
    assert_eq!(
        scalar(&query("SELECT body FROM note_text WHERE note_id = 5")),
        Some(String::new())
    );
}

fn assert_quoted_table(query: impl Fn(&str) -> Vec<Vec<Option<String>>>) {
    let rows = query(
        "SELECT \"select\", \"user\", \"Mixed Case\", \"naïve_col\", \"from\" \
         FROM \"Order Detail\" ORDER BY \"select\"",
    );
    let first: Vec<Option<&str>> = rows[0].iter().map(Option::as_deref).collect();
    assert_eq!(
        first,
        [
            Some("1"),
            Some("mmüller"),
            Some("Line 1"),
            Some("naïve"),
            Some("1")
        ]
    );
}

/// Binary values keep their zero bytes, and NULL stays apart from the empty value.
fn assert_payloads(query: impl Fn(&str) -> Vec<Vec<Option<String>>>, zero_byte_literal: &str) {
    for condition in [
        format!("payload = {zero_byte_literal}"),
        "length(payload) = 0".to_owned(),
        "payload IS NULL".to_owned(),
    ] {
        let count = scalar(&query(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE {condition}"
        )));
        assert_ne!(count.as_deref(), Some("0"), "{condition}");
    }
}

fn config(dir: &Path, connection_string: &str) -> std::path::PathBuf {
    common::write_config(dir, json!({ "connection_string": connection_string }))
}

#[test]
fn generates_exact_rows_and_special_values_in_postgres() {
    let db = common::pg_database("generator");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &db.connection_string());
    // A second run at another scale replaces the first: generate is idempotent.
    common::generate(&config, SCALE + 7);
    common::generate(&config, SCALE);

    let query = |sql: &str| db.query(sql);
    assert_row_counts(query, Dialect::Postgres);
    assert_notes(query);
    assert_quoted_table(query);

    let decimals = db.query(
        "SELECT result_value FROM lab_result \
         WHERE order_id = 1 AND component_code IN ('HGB', 'K') ORDER BY component_code",
    );
    assert_eq!(
        decimals,
        [
            [Some("1000000000000000000000000001.0000007919".to_owned())],
            [Some("-1000000000000000000000000003.0000023757".to_owned())],
        ]
    );
    // ANALYZE ran, so the planner estimate that `plan` reads is exact.
    let estimate =
        scalar(&db.query(
            "SELECT CAST(reltuples AS bigint) FROM pg_class WHERE relname = 'flowsheet_value'",
        ));
    assert_eq!(estimate, Some((20 * SCALE).to_string()));
    let keys = db.query(
        "SELECT a.attname FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indisprimary AND i.indrelid = 'lab_result'::regclass ORDER BY a.attnum",
    );
    assert_eq!(
        keys,
        [
            [Some("order_id".to_owned())],
            [Some("component_code".to_owned())]
        ]
    );
    let wide =
        db.query("SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'wide_table'");
    assert_eq!(scalar(&wide), Some("211".to_owned()));
    assert_payloads(query, "decode('deadbeef00ff', 'hex')");
}

#[test]
fn generates_exact_rows_and_special_values_in_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let connection_string = common::sqlite_database(dir.path());
    let config = config(dir.path(), &connection_string);
    common::generate(&config, SCALE + 7);
    common::generate(&config, SCALE);

    let query = |sql: &str| common::query_on(&connection_string, sql);
    assert_row_counts(query, Dialect::Sqlite);
    assert_notes(query);
    assert_quoted_table(query);

    let wide = query("SELECT COUNT(*) FROM pragma_table_info('wide_table')");
    assert_eq!(scalar(&wide), Some("211".to_owned()));
    let key = query("SELECT name FROM pragma_table_info('lab_result') WHERE pk > 0 ORDER BY pk");
    assert_eq!(
        key,
        [
            [Some("order_id".to_owned())],
            [Some("component_code".to_owned())]
        ]
    );
    assert_payloads(query, "X'DEADBEEF00FF'");
    // Timestamps are text with six fractional digits.
    let created = scalar(&query(
        "SELECT created_at FROM patient WHERE patient_id = 1",
    ));
    assert_eq!(created.map(|t| t.len()), Some(26));
}

#[test]
fn scale_zero_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &common::sqlite_database(dir.path()));
    let output = common::ehi_sync(&[
        "generate",
        "--config",
        config.to_str().expect("UTF-8 path"),
        "--scale",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!dir.path().join("ehr.db").exists());
}
