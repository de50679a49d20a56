//! Reading what `ehi-sync sync` wrote and comparing it, value by value, with the source.
//!
//! The output is parsed independently of the program (a small RFC 4180 reader that tells NULL
//! from the empty string, serde_json for NDJSON), and the source is read through the ODBC
//! driver row by row, so a bug in the engine's buffers or encoders cannot hide on both sides.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

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
    let (mut rows, mut ops, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut this_run_rows = 0;
    for file in manifest["files"].as_array().expect("files") {
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
        let text = decompress(name, &bytes);
        let file_run = file["run_id"].as_str().expect("file run_id").to_owned();
        let mut all_columns = load_columns(&file_run);
        let width = all_columns.len();
        all_columns.extend(
            change_columns
                .iter()
                .map(|n| (n.clone(), "text".to_owned())),
        );
        let file_rows = match format.as_str() {
            "csv" => parse_csv_file(&text, &all_columns),
            "ndjson" => parse_ndjson_file(&text, &all_columns),
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

#[derive(Clone, Copy, PartialEq)]
pub enum Side {
    Csv,
    Ndjson,
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
            Side::Csv | Side::Source => value.to_ascii_lowercase(),
        },
        _ => value,
    })
}

/// The source's rows of a table, normalized like the output's. `query` runs SQL through ODBC;
/// `hex` wraps a binary column so it reads as hex text.
pub fn source_rows(
    query: &dyn Fn(&str) -> Vec<Vec<Option<String>>>,
    from: &str,
    files: &TableFiles,
    quote: &dyn Fn(&str) -> String,
    hex: &dyn Fn(&str) -> String,
) -> Vec<Vec<Option<String>>> {
    let kinds = files.kinds();
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
                .map(|(value, kind)| normalize(kind, value, Side::Source))
                .collect()
        })
        .collect()
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
