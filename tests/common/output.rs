//! Reading what `ehi-sync sync` wrote and comparing it, value by value, with the source.
//!
//! The output is parsed independently of the program (a small RFC 4180 reader that tells NULL
//! from the empty string, serde_json for NDJSON, two Parquet readers nobody here wrote: pyarrow
//! and DuckDB through `read_parquet.py`), and the source is read through the ODBC driver row by
//! row, so a bug in the engine's buffers or encoders cannot hide on both sides.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One table's output: its manifest and every row, as canonical text per column kind, in the
/// order of the manifest's files.
pub struct TableFiles {
    pub manifest: Value,
    pub rows: Vec<Vec<Option<String>>>,
    /// Each row's `_ehi_op` (`upsert` or `delete`) and the run that wrote it.
    pub ops: Vec<String>,
    pub runs: Vec<String>,
}

impl TableFiles {
    pub fn column_names(&self) -> Vec<String> {
        self.columns()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn kinds(&self) -> Vec<String> {
        self.columns()
            .iter()
            .map(|c| c["value_kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Each column's `parquet_type` when the files are Parquet; `None` for other formats.
    pub fn parquet_types(&self) -> Option<Vec<String>> {
        (self.manifest["format"] == "parquet").then(|| {
            self.columns()
                .iter()
                .map(|c| {
                    c["parquet_type"]
                        .as_str()
                        .expect("a Parquet manifest gives each column's parquet_type")
                        .to_owned()
                })
                .collect()
        })
    }

    /// The run that wrote the manifest.
    pub fn run_id(&self) -> String {
        self.manifest["run_id"]
            .as_str()
            .expect("the manifest names its run")
            .to_owned()
    }

    fn columns(&self) -> &Vec<Value> {
        self.manifest["columns"]
            .as_array()
            .expect("manifest lists columns")
    }
}

/// Reads a table folder: checks every file against the manifest (size, sha256, rows) and returns
/// the rows, normalized.
pub fn read_table(folder: &Path) -> TableFiles {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(folder.join("_manifest.json"))
            .unwrap_or_else(|e| panic!("{}: no manifest: {e}", folder.display())),
    )
    .expect("manifest is JSON");
    let format = manifest["format"].as_str().expect("format").to_owned();
    let columns: Vec<(String, String)> = manifest["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                c["value_kind"].as_str().expect("kind").to_owned(),
            )
        })
        .collect();
    let change_columns: Vec<String> = manifest["change_columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|n| n.as_str().expect("change column name").to_owned())
                .collect()
        })
        .unwrap_or_default();
    // Each load's files have the columns of their load (columns may be added or dropped).
    let load_columns = |run: &str| -> Vec<(String, String)> {
        let names = manifest["loads"].as_array().and_then(|loads| {
            loads
                .iter()
                .find(|l| l["run_id"] == run)
                .and_then(|l| l["columns"].as_array())
        });
        match names {
            Some(names) => names
                .iter()
                .map(|n| {
                    let name = n.as_str().expect("column name").to_owned();
                    let kind = columns
                        .iter()
                        .find(|(c, _)| *c == name)
                        .map_or("text".to_owned(), |(_, k)| k.clone());
                    (name, kind)
                })
                .collect(),
            None => columns.clone(),
        }
    };
    let run_id = manifest["run_id"].as_str().expect("run_id").to_owned();
    let files = manifest["files"].as_array().expect("files");
    // Parquet: each file read by both readers, all files of the table in one call per reader.
    let mut parquet_reads = if format == "parquet" {
        check_parquet_columns(&manifest);
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|f| folder.join(f["name"].as_str().expect("file name")))
            .collect();
        read_parquet_files(&paths).into_iter()
    } else {
        Vec::new().into_iter()
    };
    let (mut rows, mut ops, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut this_run_rows = 0;
    for file in files {
        let name = file["name"].as_str().expect("file name");
        let bytes = std::fs::read(folder.join(name)).expect("part file readable");
        assert_eq!(
            file["bytes"].as_u64(),
            Some(bytes.len() as u64),
            "{name}: size in manifest"
        );
        assert_eq!(
            file["sha256"].as_str(),
            Some(hex::encode(Sha256::digest(&bytes)).as_str()),
            "{name}: sha256 in manifest"
        );
        let file_run = file["run_id"].as_str().expect("file run_id").to_owned();
        let mut all_columns = load_columns(&file_run);
        let width = all_columns.len();
        all_columns.extend(
            change_columns
                .iter()
                .map(|n| (n.clone(), "text".to_owned())),
        );
        let file_rows = match format.as_str() {
            "csv" => parse_csv_file(&decompress(name, &bytes), &all_columns),
            "ndjson" => parse_ndjson_file(&decompress(name, &bytes), &all_columns),
            "parquet" => {
                assert!(
                    name.ends_with(".parquet"),
                    "{name}: a Parquet part file is named .parquet (no compression suffix)"
                );
                // The type of each column of this file: the manifest's (a column dropped
                // since has none left to compare with), the change columns' is text.
                let types: Vec<Option<String>> = all_columns
                    .iter()
                    .enumerate()
                    .map(|(i, (column, _))| {
                        if i >= width {
                            return Some("string".to_owned());
                        }
                        manifest["columns"]
                            .as_array()
                            .expect("columns")
                            .iter()
                            .find(|c| c["name"] == column.as_str())
                            .map(|c| c["parquet_type"].as_str().expect("parquet_type").to_owned())
                    })
                    .collect();
                let read = parquet_reads.next().expect("one read per part file");
                let compression = manifest["compression"].as_str().expect("compression");
                parquet_file_rows(name, read, &all_columns, &types, compression)
            }
            other => panic!("unknown format {other}"),
        };
        assert_eq!(
            file["rows"].as_u64(),
            Some(file_rows.len() as u64),
            "{name}: rows in manifest"
        );
        if file_run == run_id {
            this_run_rows += file_rows.len() as u64;
        }
        for mut row in file_rows {
            let change = row.split_off(width);
            if !change_columns.is_empty() {
                let op = change[0].clone().expect("_ehi_op is never NULL");
                assert!(op == "upsert" || op == "delete", "_ehi_op {op}");
                assert!(change[1].is_some(), "_ehi_synced_at is never NULL");
                ops.push(op);
            }
            runs.push(file_run.clone());
            rows.push(row);
        }
    }
    assert_eq!(
        manifest["row_count"].as_u64(),
        Some(this_run_rows),
        "row_count: the rows of the manifest's run"
    );
    TableFiles {
        manifest,
        rows,
        ops,
        runs,
    }
}

fn decompress(name: &str, bytes: &[u8]) -> String {
    let mut text = String::new();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .expect("gzip");
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(bytes)
            .expect("zstd")
            .read_to_string(&mut text)
            .expect("zstd");
    } else {
        text = String::from_utf8(bytes.to_vec()).expect("UTF-8 output");
    }
    text
}

/// RFC 4180 with CRLF records; `None` for an unquoted empty field (NULL), `Some("")` for `""`.
pub fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut chars = text.chars().peekable();
    let mut field = String::new();
    let mut quoted = false;
    loop {
        match chars.next() {
            None => {
                if !record.is_empty() || !field.is_empty() || quoted {
                    record.push(finish(&mut field, &mut quoted));
                    records.push(std::mem::take(&mut record));
                }
                return records;
            }
            Some('"') if field.is_empty() && !quoted => {
                quoted = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                        None => panic!("unterminated quoted field"),
                    }
                }
            }
            Some(',') => record.push(finish(&mut field, &mut quoted)),
            Some('\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(finish(&mut field, &mut quoted));
                records.push(std::mem::take(&mut record));
            }
            Some(c) => {
                assert!(!quoted, "text after a closing quote");
                field.push(c);
            }
        }
    }
}

fn finish(field: &mut String, quoted: &mut bool) -> Option<String> {
    let value = std::mem::take(field);
    let was_quoted = std::mem::replace(quoted, false);
    (was_quoted || !value.is_empty()).then_some(value)
}

fn parse_csv_file(text: &str, columns: &[(String, String)]) -> Vec<Vec<Option<String>>> {
    let mut records = parse_csv(text).into_iter();
    let header = records.next().expect("every CSV part starts with a header");
    let names: Vec<Option<String>> = columns.iter().map(|(n, _)| Some(n.clone())).collect();
    assert_eq!(header, names, "CSV header");
    records
        .map(|record| {
            assert_eq!(record.len(), columns.len(), "fields per record");
            record
                .into_iter()
                .zip(columns)
                .map(|(value, (_, kind))| normalize(kind, value, Side::Csv))
                .collect()
        })
        .collect()
}

fn parse_ndjson_file(text: &str, columns: &[(String, String)]) -> Vec<Vec<Option<String>>> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "NDJSON ends with a newline"
    );
    text.lines()
        .map(|line| {
            let first_key = format!("{{{}:", serde_json::to_string(&columns[0].0).unwrap());
            assert!(
                line.starts_with(&first_key),
                "keys in column order: {line:.80}"
            );
            let object: BTreeMap<String, Value> = serde_json::from_str(line).expect("JSON object");
            assert_eq!(object.len(), columns.len(), "keys per object");
            columns
                .iter()
                .map(|(name, kind)| {
                    let value = match &object[name] {
                        Value::Null => None,
                        Value::String(s) => {
                            assert!(
                                !matches!(kind.as_str(), "integer" | "boolean"),
                                "{name}: {kind} written as a string"
                            );
                            Some(s.clone())
                        }
                        Value::Number(n) => {
                            assert!(
                                matches!(kind.as_str(), "integer" | "float"),
                                "{name}: {kind} written as a number"
                            );
                            Some(n.to_string())
                        }
                        Value::Bool(b) => Some(b.to_string()),
                        other => panic!("{name}: unexpected JSON value {other}"),
                    };
                    normalize(kind, value, Side::Ndjson)
                })
                .collect()
        })
        .collect()
}

/// The Python script that reads Parquet files with one reader and prints what it saw as JSON:
/// each column's name and type (in the manifest's `parquet_type` words) and every value as
/// canonical text.
const READ_PARQUET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/read_parquet.py");

/// What one reader saw in one Parquet file.
#[derive(Debug, PartialEq)]
pub struct ParquetView {
    /// (name, type) per column, in file order.
    pub columns: Vec<(String, Option<String>)>,
    pub rows: Vec<Vec<Option<String>>>,
    /// The compression codecs of its column chunks (`ZSTD`, `UNCOMPRESSED`, ...), each once.
    pub codecs: Vec<String>,
}

/// Every column of a Parquet manifest has a `parquet_type`; a `parquet_note` says why a column
/// is text, so it comes only with `string`.
fn check_parquet_columns(manifest: &Value) {
    for column in manifest["columns"].as_array().expect("columns") {
        let name = &column["name"];
        let parquet_type = column["parquet_type"]
            .as_str()
            .unwrap_or_else(|| panic!("column {name}: no parquet_type in a Parquet manifest"));
        if let Some(note) = column.get("parquet_note").filter(|n| !n.is_null()) {
            assert!(
                note.as_str().is_some_and(|n| !n.trim().is_empty()),
                "column {name}: parquet_note is a sentence: {note}"
            );
            assert_eq!(
                parquet_type, "string",
                "column {name}: parquet_note explains a fallback to text"
            );
        }
    }
}

/// Reads each file with pyarrow and with DuckDB (one process per reader for all `paths`, the
/// two running at once) and returns both views per file, in the order of `paths`.
pub fn read_parquet_files(paths: &[PathBuf]) -> Vec<(ParquetView, ParquetView)> {
    if paths.is_empty() {
        return Vec::new();
    }
    let spawn = |reader: &str| {
        Command::new("python3")
            .arg(READ_PARQUET)
            .arg(reader)
            .args(paths)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {READ_PARQUET}: {e}"))
    };
    let readers = [("pyarrow", spawn("pyarrow")), ("duckdb", spawn("duckdb"))];
    let [pyarrow, duckdb] = readers.map(|(reader, child)| {
        let output = child.wait_with_output().expect("the Parquet reader ends");
        assert!(
            output.status.success(),
            "{reader} could not read the Parquet files ({}; scripts/setup.sh installs pyarrow \
             and duckdb):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        parse_parquet_views(reader, &output.stdout)
    });
    assert_eq!(pyarrow.len(), paths.len(), "pyarrow: one view per file");
    assert_eq!(duckdb.len(), paths.len(), "duckdb: one view per file");
    pyarrow.into_iter().zip(duckdb).collect()
}

fn parse_parquet_views(reader: &str, json: &[u8]) -> Vec<ParquetView> {
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => panic!("{reader}: a value is text or null, not {other}"),
        }
    };
    let files: Vec<Value> = serde_json::from_slice(json)
        .unwrap_or_else(|e| panic!("{reader}: the reader's output is not a JSON array: {e}"));
    files
        .iter()
        .map(|file| ParquetView {
            columns: file["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().expect("column name").to_owned(),
                        text(&c["type"]),
                    )
                })
                .collect(),
            rows: file["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|row| row.as_array().expect("row").iter().map(text).collect())
                .collect(),
            codecs: file["codecs"]
                .as_array()
                .expect("codecs")
                .iter()
                .map(|c| c.as_str().expect("codec").to_owned())
                .collect(),
        })
        .collect()
}

/// The rows of one Parquet file, normalized: both readers must see the manifest's columns and
/// types (`types`, `None` where the manifest has none to compare with), the manifest's
/// `compression` inside the file, and the same values.
fn parquet_file_rows(
    name: &str,
    (pyarrow, duckdb): (ParquetView, ParquetView),
    columns: &[(String, String)],
    types: &[Option<String>],
    compression: &str,
) -> Vec<Vec<Option<String>>> {
    let codec = match compression {
        "none" => "UNCOMPRESSED",
        "zstd" => "ZSTD",
        "gzip" => "GZIP",
        other => panic!("{name}: unknown compression {other} in the manifest"),
    };
    for (reader, view) in [("pyarrow", &pyarrow), ("DuckDB", &duckdb)] {
        assert!(
            view.codecs == [codec] || view.codecs.is_empty() && view.rows.is_empty(),
            "{name}: the manifest's compression {compression} is {codec} inside the file; \
             {reader} reads {:?}",
            view.codecs
        );
        let seen: Vec<(String, Option<String>)> = view
            .columns
            .iter()
            .zip(types)
            .map(|((column, seen), expected)| {
                // Nothing to compare with: only the name is checked.
                (column.clone(), expected.as_ref().and(seen.clone()))
            })
            .collect();
        let expected: Vec<(String, Option<String>)> = columns
            .iter()
            .zip(types)
            .map(|((column, _), t)| (column.clone(), t.clone()))
            .collect();
        assert_eq!(
            view.columns.len(),
            columns.len(),
            "{name}: columns {reader} reads: {:?}",
            view.columns
        );
        assert_eq!(
            seen, expected,
            "{name}: the schema {reader} reads vs the manifest"
        );
    }
    assert_eq!(
        pyarrow.rows.len(),
        duckdb.rows.len(),
        "{name}: rows pyarrow and DuckDB read"
    );
    for (i, (a, d)) in pyarrow.rows.iter().zip(&duckdb.rows).enumerate() {
        assert_eq!(a, d, "{name}: row {i} as pyarrow and as DuckDB read it");
    }
    pyarrow
        .rows
        .into_iter()
        .map(|row| {
            assert_eq!(row.len(), columns.len(), "{name}: values per row");
            row.into_iter()
                .zip(columns)
                .map(|(value, (_, kind))| normalize(kind, value, Side::Parquet))
                .collect()
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
pub enum Side {
    Csv,
    Ndjson,
    /// Canonical text from `read_parquet.py` (binary as lowercase hex).
    Parquet,
    /// Read from the database (binary already selected as hex).
    Source,
}

/// Canonical text of a value of `kind`, whichever side it was read from.
pub fn normalize(kind: &str, value: Option<String>, side: Side) -> Option<String> {
    let value = value?;
    Some(match kind {
        "integer" => value
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("integer expected, got {value:.40}"))
            .to_string(),
        "float" => match value.parse::<f64>() {
            Ok(v) => format!("{v:?}"),
            Err(_) => value,
        },
        "boolean" => match value.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => "true".into(),
            "0" | "f" | "false" => "false".into(),
            _ => value,
        },
        "timestamp" if value.len() > 10 && value.as_bytes()[10] == b' ' => {
            format!("{}T{}", &value[..10], &value[11..])
        }
        "binary" => match side {
            Side::Ndjson => hex::encode(
                base64::engine::general_purpose::STANDARD
                    .decode(&value)
                    .expect("base64"),
            ),
            Side::Csv | Side::Parquet | Side::Source => value.to_ascii_lowercase(),
        },
        _ => value,
    })
}

/// The source's rows of a table, normalized like the output's. `query` runs SQL through ODBC;
/// `hex` wraps a binary column so it reads as hex text. For Parquet output each value is then
/// put in the canonical text of the column's `parquet_type` (see [`as_parquet_text`]).
pub fn source_rows(
    query: &dyn Fn(&str) -> Vec<Vec<Option<String>>>,
    from: &str,
    files: &TableFiles,
    quote: &dyn Fn(&str) -> String,
    hex: &dyn Fn(&str) -> String,
) -> Vec<Vec<Option<String>>> {
    let kinds = files.kinds();
    let parquet_types = files.parquet_types();
    let select: Vec<String> = files
        .column_names()
        .iter()
        .zip(&kinds)
        .map(|(name, kind)| {
            if kind == "binary" {
                hex(&quote(name))
            } else {
                quote(name)
            }
        })
        .collect();
    query(&format!("SELECT {} FROM {from}", select.join(", ")))
        .into_iter()
        .map(|row| {
            row.into_iter()
                .zip(&kinds)
                .enumerate()
                .map(|(i, (value, kind))| {
                    let value = normalize(kind, value, Side::Source);
                    match &parquet_types {
                        Some(types) => value.map(|v| as_parquet_text(&types[i], v)),
                        None => value,
                    }
                })
                .collect()
        })
        .collect()
}

/// The source's normalized text of a value in the canonical text `read_parquet.py` gives a
/// Parquet value of `parquet_type`, where the two spell the same value differently:
/// - `timestamp(us, UTC)`: the source prints an instant in its session's time zone
///   (`2024-01-02T05:04:05.5+02`, `...+05:30`); Parquet holds it in UTC, printed with `Z`. The
///   source's text is turned into the same instant in UTC (`2024-01-02T03:04:05.5Z`).
/// - `timestamp(us)`, `time(ns)`: trailing zeros of the fraction dropped (SQL Server prints
///   all of `datetime2`'s digits, `.1230000`; PostgreSQL drops them itself).
/// - `decimal(P,S)`: exactly S fraction digits (a numeric's text without a typmod, or SQLite's
///   `1.5` in a DECIMAL(10,2) column, `1.50`).
///
/// A text that does not parse, or would lose a digit, stays as it is: it then differs from any
/// Parquet value and the comparison fails, as it must.
pub fn as_parquet_text(parquet_type: &str, text: String) -> String {
    let converted = match parquet_type {
        "timestamp(us, UTC)" => utc_text(&text),
        "timestamp(us)" | "time(ns)" => Some(trim_fraction(&text)),
        t if t.starts_with("decimal(") => t
            .trim_end_matches(')')
            .split(',')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .and_then(|scale| decimal_with_scale(&text, scale)),
        _ => None,
    };
    converted.unwrap_or(text)
}

/// `…SS.120` -> `…SS.12`, `…SS.000` -> `…SS` (the first fraction only; what follows stays).
fn trim_fraction(text: &str) -> String {
    let Some(dot) = text.find('.') else {
        return text.to_owned();
    };
    let rest = &text[dot + 1..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let fraction = rest[..digits].trim_end_matches('0');
    let dot_and_fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    format!("{}{dot_and_fraction}{}", &text[..dot], &rest[digits..])
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f]` followed by `Z` or a UTC offset (`+HH`, `+HH:MM`, `+HH:MM:SS`,
/// `+HHMM`): the same instant in UTC, `YYYY-MM-DDTHH:MM:SS[.f]Z` (fraction without trailing
/// zeros). `None` without an offset or for any other shape.
pub fn utc_text(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = &text[19..];
    let mut fraction = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        fraction = after_dot[..digits].trim_end_matches('0');
        rest = &after_dot[digits..];
    }
    let offset_seconds = if rest == "Z" {
        0
    } else {
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let offset = &rest[1..];
        let parts: Vec<&str> = if offset.contains(':') {
            offset.split(':').collect()
        } else {
            offset
                .as_bytes()
                .chunks(2)
                .map(|c| std::str::from_utf8(c).ok())
                .collect::<Option<_>>()?
        };
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        let mut seconds = 0;
        for (part, unit) in parts.iter().zip([3600, 60, 1]) {
            seconds += unit * part.parse::<i64>().ok()?;
        }
        sign * seconds
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    let utc = local - offset_seconds;
    let (days, within) = (utc.div_euclid(86400), utc.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    let dot_and_fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{dot_and_fraction}Z",
        within / 3600,
        within % 3600 / 60,
        within % 60
    ))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A decimal's text (`-12.5`, `3`, `1.25e-3`, `.5`) with exactly `scale` fraction digits and no
/// exponent; `None` if it is no decimal or has a non-zero digit past `scale`. Zero has no sign.
pub fn decimal_with_scale(text: &str, scale: usize) -> Option<String> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(e) => (&unsigned[..e], unsigned[e + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // digits × 10^point_shift, as one digit string and the number of fraction digits in it.
    let mut digits = format!("{whole}{fraction}");
    let mut fraction_digits = i64::try_from(fraction.len()).ok()? - exponent;
    let scale = i64::try_from(scale).ok()?;
    if fraction_digits > scale {
        let extra = usize::try_from(fraction_digits - scale).ok()?;
        if extra > digits.len() {
            digits.insert_str(0, &"0".repeat(extra - digits.len()));
        }
        let kept = digits.len() - extra;
        if digits[kept..].bytes().any(|c| c != b'0') {
            return None;
        }
        digits.truncate(kept);
        fraction_digits = scale;
    }
    digits.push_str(&"0".repeat(usize::try_from(scale - fraction_digits).ok()?));
    let scale = usize::try_from(scale).ok()?;
    if digits.len() <= scale {
        digits.insert_str(0, &"0".repeat(scale + 1 - digits.len()));
    }
    let split = digits.len() - scale;
    let whole = digits[..split].trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let sign = if negative && digits.bytes().any(|c| c != b'0') {
        "-"
    } else {
        ""
    };
    Some(if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{}", &digits[split..])
    })
}

/// Asserts the two row multisets are equal, naming the first difference by position only.
pub fn assert_same_rows(
    table: &str,
    mut output: Vec<Vec<Option<String>>>,
    mut source: Vec<Vec<Option<String>>>,
) {
    assert_eq!(output.len(), source.len(), "{table}: row count");
    output.sort();
    source.sort();
    for (i, (o, s)) in output.iter().zip(&source).enumerate() {
        assert_eq!(o, s, "{table}: sorted row {i} differs");
    }
}

/// Every generated table (but `skip`) in `out` equals the PostgreSQL source, row for row, with
/// the row counts `generate` puts in at `scale`.
pub fn assert_postgres_output_equals_source(
    db: &super::PgDatabase,
    out: &Path,
    scale: u64,
    skip: &[&str],
) {
    for (name, rows) in ehi_sync::demo::expected_row_counts(scale) {
        if skip.contains(&name) {
            continue;
        }
        let table = format!("public.{name}");
        let files = read_table(&out.join(&table));
        assert_eq!(files.rows.len() as u64, rows, "{table}: rows");
        let source = source_rows(
            &|sql| db.query(sql),
            &format!("public.\"{name}\""),
            &files,
            &|c| format!("\"{}\"", c.replace('"', "\"\"")),
            &|c| format!("encode({c}, 'hex')"),
        );
        assert_same_rows(&table, files.rows, source);
    }
}

/// What a loader ends up with: the table's files applied in manifest order to an empty table,
/// upserts replacing the row with their key, deletes removing it.
pub fn apply_changes(files: &TableFiles) -> Vec<Vec<Option<String>>> {
    let mut key: Vec<(u64, usize)> = files.manifest["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c["key_position"].as_u64().map(|p| (p, i)))
        .collect();
    key.sort();
    assert!(!key.is_empty(), "applying changes needs a key");
    let mut table = BTreeMap::new();
    for (row, op) in files.rows.iter().zip(&files.ops) {
        let k: Vec<Option<String>> = key.iter().map(|&(_, i)| row[i].clone()).collect();
        if op == "delete" {
            table.remove(&k);
        } else {
            table.insert(k, row.clone());
        }
    }
    table.into_values().collect()
}
