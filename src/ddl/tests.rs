//! The generated text, pinned per loader and file format (`golden/`) for a table with every
//! kind of column, and the type mapping's edge cases. PostgreSQL's and DuckDB's statements also
//! run against real output in `tests/ddl.rs`; Snowflake's cannot run here, so its text is pinned.

use std::path::PathBuf;

use super::types::Holds;
use super::*;
use crate::manifest::{ChangeCounts, FileEntry, LoadRecord, ManifestColumn};
use crate::model::{Compression, SyncMode};
use crate::source::catalog::Column as SourceColumn;
use crate::source::types::{ValueKind, parquet_type};

/// A SQL Server column of `source_type` with its declared precision and scale.
fn column(
    name: &str,
    source_type: &str,
    precision: Option<i64>,
    scale: Option<i64>,
    key: Option<usize>,
    format: Format,
) -> ManifestColumn {
    let source = SourceColumn {
        precision,
        scale,
        ..SourceColumn::for_test(name, source_type, key)
    };
    let kind = ValueKind::of(Dialect::SqlServer, &source);
    let column = ManifestColumn::new(&source, kind);
    if format == Format::Parquet {
        let (t, note) = parquet_type(Dialect::SqlServer, &source, kind);
        column.with_parquet(t, note)
    } else {
        column
    }
}

/// `dbo.Order "Detail"`: a composite key, reserved and non-ASCII names, and every kind of
/// value. With `incremental`, a second load of change tracking added files with deletes.
fn manifest(format: Format, compression: Compression, incremental: bool) -> Manifest {
    let c = |name, t, p, s, key| column(name, t, p, s, key, format);
    let columns = vec![
        c("id", "bigint", Some(19), Some(0), Some(1)),
        c("line", "int", Some(10), Some(0), Some(2)),
        c("select", "nvarchar", None, None, None),
        c("naïve_col", "nvarchar", None, None, None),
        c("price", "money", Some(19), Some(4), None),
        c("ratio", "real", Some(24), None, None),
        c("score", "float", Some(53), None, None),
        c("active", "bit", None, None, None),
        c("born", "date", Some(10), Some(0), None),
        c("updated", "datetime2", Some(27), Some(7), None),
        c("seen_at", "datetimeoffset", Some(34), Some(7), None),
        c("at_time", "time", Some(16), Some(7), None),
        c("guid", "uniqueidentifier", None, None, None),
        c("photo", "varbinary", None, None, None),
    ];
    let extension = match format {
        Format::Parquet => "parquet".to_owned(),
        f => format!("{}{}", f.name(), compression.extension()),
    };
    let file = |name: String, run_id: &str| FileEntry {
        name,
        run_id: run_id.into(),
        bytes: 100,
        rows: 2,
        sha256: "00".into(),
    };
    let load = |run_id: &str, sync_type: &str| LoadRecord {
        run_id: run_id.into(),
        sync_type: sync_type.into(),
        position_from: None,
        position_to: None,
        changes: ChangeCounts::default(),
        schema_changes: Vec::new(),
        columns: columns.iter().map(|c| c.name.clone()).collect(),
        finished_at: "t".into(),
    };
    let mut files = vec![
        file(format!("Order \"Detail\"-00001.{extension}"), "r1"),
        file(format!("Order \"Detail\"-00002.{extension}"), "r1"),
    ];
    let mut loads = vec![load("r1", "full")];
    if incremental {
        files.push(file(format!("Order \"Detail\"-r2-00001.{extension}"), "r2"));
        loads.push(load("r2", "incremental"));
    }
    Manifest {
        table: "dbo.Order \"Detail\"".into(),
        schema: "dbo".into(),
        name: "Order \"Detail\"".into(),
        run_id: loads.last().map(|l| l.run_id.clone()).unwrap_or_default(),
        sync_type: loads
            .last()
            .map(|l| l.sync_type.clone())
            .unwrap_or_default(),
        sync_mode: SyncMode::ChangeTracking,
        reason: String::new(),
        format,
        compression,
        started_at: "t".into(),
        finished_at: "t".into(),
        row_count: 2,
        position_from: None,
        position_to: None,
        changes: ChangeCounts::default(),
        primary_key: vec!["id".into(), "line".into()],
        columns,
        change_columns: vec![OP_COLUMN.into(), SYNCED_AT_COLUMN.into()],
        schema_changes: Vec::new(),
        loads,
        files,
    }
}

fn render_one(target: Target, manifest: Manifest) -> String {
    let tables = Tables {
        output_dir: PathBuf::from("/data/out"),
        finished: vec![TableFolder {
            folder: "dbo.Order \"Detail\"".into(),
            manifest,
        }],
        unfinished: vec!["dbo.PAT_ENC".into()],
    };
    render(target, Some(Dialect::SqlServer), &tables).expect("renders")
}

const TARGETS: [Target; 3] = [Target::Snowflake, Target::Postgres, Target::Duckdb];

/// CSV with gzip and an incremental load after the full one; NDJSON with zstd; Parquet.
const FORMATS: [(Format, Compression, bool); 3] = [
    (Format::Csv, Compression::Gzip, true),
    (Format::Ndjson, Compression::Zstd, false),
    (Format::Parquet, Compression::Zstd, false),
];

fn golden(target: Target, format: Format) -> &'static str {
    match (target, format) {
        (Target::Snowflake, Format::Csv) => include_str!("golden/snowflake-csv.sql"),
        (Target::Snowflake, Format::Ndjson) => include_str!("golden/snowflake-ndjson.sql"),
        (Target::Snowflake, Format::Parquet) => include_str!("golden/snowflake-parquet.sql"),
        (Target::Postgres, Format::Csv) => include_str!("golden/postgresql-csv.sql"),
        (Target::Postgres, Format::Ndjson) => include_str!("golden/postgresql-ndjson.sql"),
        (Target::Postgres, Format::Parquet) => include_str!("golden/postgresql-parquet.sql"),
        (Target::Duckdb, Format::Csv) => include_str!("golden/duckdb-csv.sql"),
        (Target::Duckdb, Format::Ndjson) => include_str!("golden/duckdb-ndjson.sql"),
        (Target::Duckdb, Format::Parquet) => include_str!("golden/duckdb-parquet.sql"),
    }
}

#[test]
fn each_dialect_and_format_prints_the_pinned_text() {
    for target in TARGETS {
        for (format, compression, incremental) in FORMATS {
            let text = render_one(target, manifest(format, compression, incremental));
            assert!(
                text == golden(target, format),
                "{} {}: the text differs from src/ddl/golden; it is now:\n{text}",
                target.name(),
                format.name()
            );
        }
    }
}

#[test]
fn types_hold_every_value_or_say_why_not() {
    let sql = |holds: Holds| TARGETS.map(|t| holds.in_target(t).sql);
    let noted = |holds: Holds| TARGETS.map(|t| holds.in_target(t).note.is_some());
    // PostgreSQL's numeric without a precision: exact in PostgreSQL, text elsewhere.
    let unbounded = Holds::Decimal {
        precision: None,
        scale: None,
    };
    assert_eq!(sql(unbounded), ["VARCHAR", "numeric", "VARCHAR"]);
    assert_eq!(noted(unbounded), [true, false, true]);
    let wide = Holds::Decimal {
        precision: Some(50),
        scale: Some(10),
    };
    assert_eq!(sql(wide), ["VARCHAR", "numeric(50,10)", "VARCHAR"]);
    let widest = Holds::Decimal {
        precision: Some(38),
        scale: Some(38),
    };
    assert_eq!(
        sql(widest),
        ["NUMBER(38,38)", "numeric(38,38)", "DECIMAL(38,38)"]
    );
    // PostgreSQL's time allows 24:00:00; Snowflake's TIME does not.
    let pg_time = Holds::Time {
        digits: Some(6),
        hour_24: true,
    };
    assert_eq!(sql(pg_time), ["VARCHAR", "time", "TIME"]);
    assert_eq!(noted(pg_time), [true, false, false]);
    // An instant without its own offset loses nothing in a timestamptz.
    let instant = Holds::TimestampTz {
        digits: Some(6),
        offset: false,
    };
    assert_eq!(
        sql(instant),
        ["TIMESTAMP_TZ(6)", "timestamptz", "TIMESTAMPTZ"]
    );
    assert_eq!(noted(instant), [false, false, false]);
    // Undeclared fractional digits: Snowflake keeps nanoseconds.
    assert_eq!(
        sql(Holds::Timestamp { digits: None }),
        ["TIMESTAMP_NTZ(9)", "timestamp", "TIMESTAMP"]
    );

    // SQLite's declared types are affinities: its decimals and timestamps load as text.
    let sqlite = |t: &str, p, s| {
        let c = ManifestColumn {
            precision: p,
            scale: s,
            ..column("c", "bigint", None, None, None, Format::Csv)
        };
        let kind = ValueKind::of(Dialect::Sqlite, &SourceColumn::for_test("c", t, None));
        let c = ManifestColumn {
            source_type: t.into(),
            value_kind: kind,
            ..c
        };
        let (holds, note) = Holds::of(&c, false, Some(Dialect::Sqlite));
        (holds, note.is_some())
    };
    assert_eq!(sqlite("decimal", Some(10), Some(2)), (Holds::Text, true));
    assert_eq!(sqlite("timestamp", None, None), (Holds::Text, true));
    assert_eq!(sqlite("date", None, None), (Holds::Text, false));
    assert_eq!(sqlite("integer", None, None), (Holds::Integer, false));
    // The same declared decimal from PostgreSQL keeps its precision.
    let pg = ManifestColumn {
        source_type: "numeric".into(),
        value_kind: ValueKind::Decimal,
        precision: Some(10),
        scale: Some(2),
        ..column("c", "bigint", None, None, None, Format::Csv)
    };
    assert_eq!(
        Holds::of(&pg, false, Some(Dialect::Postgres)).0,
        Holds::Decimal {
            precision: Some(10),
            scale: Some(2)
        }
    );
    // Parquet files decide: a UTC instant, whatever the value kind.
    let utc = ManifestColumn {
        source_type: "timestamp with time zone".into(),
        value_kind: ValueKind::Timestamp,
        parquet_type: Some(crate::model::ParquetType::TimestampUtc),
        ..column("c", "bigint", None, None, None, Format::Csv)
    };
    assert_eq!(Holds::of(&utc, true, None).0, instant);
}

#[test]
fn names_are_quoted_and_comments_wrapped() {
    assert_eq!(quote("Order \"Detail\""), "\"Order \"\"Detail\"\"\"");
    assert_eq!(quote("naïve_col"), "\"naïve_col\"");
    assert_eq!(literal("it's"), "'it''s'");
    let mut out = String::new();
    comment(&mut out, &"word ".repeat(30));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("-- ") && l.len() <= 3 + COMMENT_WIDTH)
    );
    // A name with a line break stays inside its comment.
    let mut out = String::new();
    comment(&mut out, "\"a\nb\": note");
    assert_eq!(out, "-- \"a b\": note\n");
}

#[test]
fn postgres_says_which_names_it_cuts() {
    let mut m = manifest(Format::Csv, Compression::None, false);
    m.columns[2].name = "x".repeat(64);
    let text = render_one(Target::Postgres, m.clone());
    assert!(
        text.contains("-- PostgreSQL cuts identifiers to 63 bytes:\n")
            && text.contains(&format!("-- \"{}\" will be cut", "x".repeat(64))),
        "{text}"
    );
    assert!(!render_one(Target::Duckdb, m).contains("cuts identifiers"));
}

#[test]
fn snowflake_names_at_most_1000_files_per_copy() {
    let mut m = manifest(Format::Parquet, Compression::None, false);
    let entry = m.files[0].clone();
    m.files = (0..1001)
        .map(|i| FileEntry {
            name: format!("t-{i:05}.parquet"),
            ..entry.clone()
        })
        .collect();
    let text = render_one(Target::Snowflake, m);
    assert_eq!(text.matches("COPY INTO").count(), 2);
    assert!(text.contains("FILES = ('t-01000.parquet')"), "{text}");
}

#[test]
fn loads_with_other_columns_are_named() {
    let mut m = manifest(Format::Csv, Compression::None, true);
    m.loads[0].columns.pop();
    let text = render_one(Target::Duckdb, m);
    assert!(
        text.contains("-- The files of run r1 have other columns than this table"),
        "{text}"
    );
    let plain = render_one(
        Target::Duckdb,
        manifest(Format::Csv, Compression::None, false),
    );
    assert!(!plain.contains("other columns") && !plain.contains("Incremental loads"));
}

#[test]
fn the_selected_tables_with_a_manifest_are_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let all = TableFilter::new(Vec::new(), Vec::new()).expect("filter");
    for folder in ["dbo.A", "dbo.B", "dbo.C"] {
        std::fs::create_dir(dir.path().join(folder)).expect("folder");
    }
    std::fs::write(dir.path().join("_validation.ndjson"), "").expect("file");
    let mut a = manifest(Format::Csv, Compression::None, false);
    a.schema = "dbo".into();
    a.name = "A".into();
    let b = Manifest {
        name: "B".into(),
        ..a.clone()
    };
    manifest::write_manifest(&Disk, &dir.path().join("dbo.B"), &b).expect("write");
    manifest::write_manifest(&Disk, &dir.path().join("dbo.A"), &a).expect("write");
    let found = find_tables(dir.path(), &all).expect("found");
    let names: Vec<&str> = found.finished.iter().map(|t| t.folder.as_str()).collect();
    assert_eq!(names, ["dbo.A", "dbo.B"]);
    assert_eq!(found.unfinished, ["dbo.C"]);
    assert!(found.output_dir.is_absolute());
    let only_b = TableFilter::new(vec!["dbo.b".into()], Vec::new()).expect("filter");
    let found = find_tables(dir.path(), &only_b).expect("found");
    assert_eq!(found.finished.len(), 1);
    assert_eq!(found.finished[0].manifest.name, "B");

    // Nothing selected, an empty folder, no folder at all: a config error naming the folder.
    let none = TableFilter::new(Vec::new(), vec!["dbo.*".into()]).expect("filter");
    let empty = tempfile::tempdir().expect("temp dir");
    for (path, filter) in [
        (dir.path().to_owned(), &none),
        (empty.path().to_owned(), &all),
        (empty.path().join("missing"), &all),
    ] {
        let Err(e) = find_tables(&path, filter) else {
            panic!("{}: tables found", path.display());
        };
        assert_eq!(e.exit_code(), crate::error::exit_code::CONFIG);
        let message = e.to_string();
        assert!(
            message.contains(&path.display().to_string())
                && message.contains("run `ehi-sync sync --config FILE` first"),
            "{message}"
        );
    }
    // A damaged manifest is named, not skipped.
    std::fs::write(dir.path().join("dbo.C").join(manifest::MANIFEST_FILE), "{").expect("file");
    let Err(e) = find_tables(dir.path(), &all) else {
        panic!("a damaged manifest was read");
    };
    assert!(e.to_string().contains("dbo.C"), "{e}");
}
