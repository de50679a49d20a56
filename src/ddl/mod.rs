//! `ehi-sync ddl`: the start of a loader (issue 17). From the manifests a sync left in
//! `output_dir` (never from the database) it writes, per table, the `CREATE TABLE` of the
//! table the files load into and the statements that load them, in Snowflake's, PostgreSQL's
//! or DuckDB's SQL, with `-- ` comments for whatever a loader must know.
//!
//! Each column's type holds every value of the files exactly: for Parquet files the type the
//! files declare (`parquet_type`), for CSV and NDJSON the value kind with the source type's
//! precision and scale (`types`). The load statements read the files as ehi-sync writes them
//! (ARCHITECTURE.md, "Output contract"): NULL apart from the empty string, hex (CSV) and base64
//! (NDJSON) binary decoded, the header line skipped, gzip and zstd parts decompressed (`load`).
//! Nothing here reads a part file, so no row value is ever printed.

mod load;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::TableFilter;
use crate::durable::Disk;
use crate::error::{ConfigError, Error, Result};
use crate::manifest::{self, Manifest};
use crate::model::{Dialect, Format, OP_COLUMN, SYNCED_AT_COLUMN};
use types::{Holds, LoaderType};

/// The database a loader creates the tables in (`--dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Snowflake,
    Postgres,
    Duckdb,
}

impl Target {
    /// The product's name, for comments.
    fn name(self) -> &'static str {
        match self {
            Target::Snowflake => "Snowflake",
            Target::Postgres => "PostgreSQL",
            Target::Duckdb => "DuckDB",
        }
    }
}

/// PostgreSQL cuts longer identifiers to this many bytes (NAMEDATALEN - 1).
const POSTGRES_MAX_IDENTIFIER_BYTES: usize = 63;

/// Longest line of the comments, before `-- `.
const COMMENT_WIDTH: usize = 96;

/// A finished table: its folder under `output_dir` and its manifest.
struct TableFolder {
    folder: String,
    manifest: Manifest,
}

/// What `output_dir` holds for a loader.
pub(crate) struct Tables {
    /// `output_dir`, absolute, so the printed paths work from any working folder.
    output_dir: PathBuf,
    /// The selected tables with a manifest, by folder name.
    finished: Vec<TableFolder>,
    /// Folders without a manifest: a table whose load has not finished (or not a table).
    unfinished: Vec<String>,
}

/// Reads the manifest of every table folder under `output_dir` that `filter` selects. None at
/// all is a configuration error: there is nothing to describe until a sync has finished a
/// table.
pub(crate) fn find_tables(output_dir: &Path, filter: &TableFilter) -> Result<Tables> {
    let output_dir = std::path::absolute(output_dir).map_err(|source| Error::Io {
        context: "cannot resolve the output folder",
        path: output_dir.to_owned(),
        source,
    })?;
    let entries = match std::fs::read_dir(&output_dir) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
    .map_err(|source| Error::Io {
        context: "cannot read the output folder",
        path: output_dir.clone(),
        source,
    })?;
    let mut finished = Vec::new();
    let mut unfinished = Vec::new();
    for entry in entries {
        let path = entry.path();
        // Folder names are made from table names by ehi-sync: valid UTF-8 unless someone else
        // put the folder there.
        let Some(folder) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        match manifest::read_manifest(&Disk, &path) {
            Ok(Some(manifest)) if filter.selects(&manifest.schema, &manifest.name) => {
                finished.push(TableFolder { folder, manifest });
            }
            Ok(Some(_)) => {}
            Ok(None) => unfinished.push(folder),
            Err(source) => {
                return Err(Error::Io {
                    context: "cannot read the manifest",
                    path: path.join(manifest::MANIFEST_FILE),
                    source,
                });
            }
        }
    }
    if finished.is_empty() {
        return Err(Error::Config(ConfigError::Other(format!(
            "no table manifest ({}) under '{}' for the tables the config selects: run \
             `ehi-sync sync --config FILE` first; ddl describes the tables a sync has finished",
            manifest::MANIFEST_FILE,
            output_dir.display()
        ))));
    }
    finished.sort_by(|a, b| a.folder.cmp(&b.folder));
    unfinished.sort();
    Ok(Tables {
        output_dir,
        finished,
        unfinished,
    })
}

/// The statements for every table in `tables`, in `target`'s SQL. `source` is the source
/// database when the state file tells it: SQLite's declared types are only affinities, so its
/// decimals and timestamps are loaded as the text they are.
pub(crate) fn render(target: Target, source: Option<Dialect>, tables: &Tables) -> Result<String> {
    let output_dir = tables.output_dir.to_str().ok_or_else(|| {
        Error::Config(ConfigError::Other(format!(
            "the output folder '{}' is not valid UTF-8, which the printed statements cannot \
             name; use another output_dir",
            tables.output_dir.display()
        )))
    })?;
    let mut out = String::new();
    comment(
        &mut out,
        &format!(
            "Tables of the ehi-sync output in {output_dir}, from each table's {}, for {}.",
            manifest::MANIFEST_FILE,
            target.name()
        ),
    );
    for paragraph in load::preamble(target) {
        comment(&mut out, &paragraph);
    }
    out.push('\n');
    let schemas: BTreeSet<&str> = tables
        .finished
        .iter()
        .map(|t| t.manifest.schema.as_str())
        .collect();
    for schema in schemas {
        out.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote(schema)));
    }
    if let Some(setup) = load::setup(target) {
        out.push_str(&setup);
    }
    for table in &tables.finished {
        out.push('\n');
        render_table(&mut out, target, source, output_dir, table);
    }
    if !tables.unfinished.is_empty() {
        out.push('\n');
        comment(
            &mut out,
            &format!(
                "Not included, without a {}: {} (a table whose load has not finished: the next \
                 sync finishes it; or a folder that is not a table's).",
                manifest::MANIFEST_FILE,
                tables.unfinished.join(", ")
            ),
        );
    }
    Ok(out)
}

/// One column of the table a loader creates.
struct Column {
    name: String,
    holds: Holds,
    loader: LoaderType,
    /// Why the files hold text although the source type is not (`parquet_note`, SQLite).
    source_note: Option<String>,
    not_null: bool,
}

fn render_table(
    out: &mut String,
    target: Target,
    source: Option<Dialect>,
    output_dir: &str,
    table: &TableFolder,
) {
    let manifest = &table.manifest;
    let parquet = manifest.format == Format::Parquet;
    let mut columns: Vec<Column> = manifest
        .columns
        .iter()
        .map(|c| {
            let (holds, source_note) = Holds::of(c, parquet, source);
            Column {
                name: c.name.clone(),
                holds,
                loader: holds.in_target(target),
                source_note,
                not_null: !c.nullable,
            }
        })
        .collect();
    for name in &manifest.change_columns {
        // Parquet files hold both as text, like the rows' other text; CSV and NDJSON hold the
        // run's start as an ISO 8601 instant in UTC.
        let holds = if name == SYNCED_AT_COLUMN && !parquet {
            Holds::TimestampTz {
                digits: Some(3),
                offset: false,
            }
        } else {
            Holds::Text
        };
        columns.push(Column {
            name: name.clone(),
            holds,
            loader: holds.in_target(target),
            source_note: None,
            not_null: true,
        });
    }
    let rows: u64 = manifest.files.iter().map(|f| f.rows).sum();
    let compression = match (manifest.format, manifest.compression.name()) {
        (Format::Parquet, _) | (_, "none") => String::new(),
        (_, name) => format!(", {name}"),
    };
    comment(
        out,
        &format!(
            "{}: {} load of run {}; {} rows in {} ({}{compression}) in folder {}.",
            manifest.table,
            manifest.sync_type,
            manifest.run_id,
            crate::display::group_digits(rows),
            match manifest.files.len() {
                1 => "1 file".to_owned(),
                n => format!("{n} files"),
            },
            manifest.format.name(),
            table.folder
        ),
    );
    for column in &columns {
        let notes: Vec<&str> = [&column.source_note, &column.loader.note]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !notes.is_empty() {
            comment(
                out,
                &format!("{}: {}.", quote(&column.name), notes.join("; ")),
            );
        }
    }
    if target == Target::Postgres {
        let long: Vec<String> = [&manifest.schema, &manifest.name]
            .into_iter()
            .chain(columns.iter().map(|c| &c.name))
            .filter(|name| name.len() > POSTGRES_MAX_IDENTIFIER_BYTES)
            .map(|name| quote(name))
            .collect();
        if !long.is_empty() {
            comment(
                out,
                &format!(
                    "PostgreSQL cuts identifiers to {POSTGRES_MAX_IDENTIFIER_BYTES} bytes: {} \
                     will be cut (and must not collide).",
                    long.join(", ")
                ),
            );
        }
    }
    loader_notes(out, manifest);
    let table_name = format!("{}.{}", quote(&manifest.schema), quote(&manifest.name));
    out.push_str(&create_table(&table_name, manifest, &columns));
    let files: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    if files.is_empty() {
        comment(out, "No files: the table was empty.");
    } else {
        let folder_path = format!("{output_dir}{}{}", std::path::MAIN_SEPARATOR, table.folder);
        load::statements(
            out,
            &load::Load {
                target,
                table: &table_name,
                folder: &table.folder,
                folder_path: &folder_path,
                format: manifest.format,
                compression: manifest.compression,
                files: &files,
                columns: &columns,
            },
        );
    }
}

/// `CREATE TABLE` with every column in the files' order, NOT NULL where the source declares
/// it, and the primary key in its key order.
fn create_table(table_name: &str, manifest: &Manifest, columns: &[Column]) -> String {
    let mut lines: Vec<String> = columns
        .iter()
        .map(|c| {
            let not_null = if c.not_null { " NOT NULL" } else { "" };
            format!("  {} {}{not_null}", quote(&c.name), c.loader.sql)
        })
        .collect();
    let mut key: Vec<(usize, &str)> = manifest
        .columns
        .iter()
        .filter_map(|c| c.key_position.map(|p| (p, c.name.as_str())))
        .collect();
    key.sort();
    if !key.is_empty() {
        let names: Vec<String> = key.iter().map(|(_, name)| quote(name)).collect();
        lines.push(format!("  PRIMARY KEY ({})", names.join(", ")));
    }
    format!("CREATE TABLE {table_name} (\n{}\n);\n", lines.join(",\n"))
}

/// What the files hold beyond plain rows: deletes of incremental loads, and loads with other
/// columns.
fn loader_notes(out: &mut String, manifest: &Manifest) {
    let incremental = manifest.loads.iter().any(|l| l.sync_type == "incremental");
    if incremental && !manifest.change_columns.is_empty() {
        comment(
            out,
            &format!(
                "Incremental loads follow the full one in these files. A row whose {} is \
                 'delete' is a delete to apply by key (its other columns are NULL), not a row \
                 to insert; a key may occur in several files, and the later file wins. The \
                 statements below load every row as it is: point them at a staging table of \
                 this shape without NOT NULL and PRIMARY KEY, then apply its rows by key in \
                 file order.",
                quote(OP_COLUMN)
            ),
        );
    }
    let current: Vec<&str> = manifest.columns.iter().map(|c| c.name.as_str()).collect();
    let other: Vec<&str> = manifest
        .loads
        .iter()
        .filter(|l| {
            l.columns
                .iter()
                .map(String::as_str)
                .ne(current.iter().copied())
        })
        .map(|l| l.run_id.as_str())
        .collect();
    if !other.is_empty() {
        comment(
            out,
            &format!(
                "The files of run {} have other columns than this table (schema changes, see \
                 the manifest's schema_changes); load them by column name, not position.",
                other.join(", ")
            ),
        );
    }
}

/// An identifier as all three loaders quote it: in double quotes, a double quote doubled.
/// Quoted, it keeps its case, spaces and non-ASCII letters (DuckDB matches it without regard
/// to case).
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A string literal: in single quotes, a single quote doubled.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` as `-- ` lines of at most [`COMMENT_WIDTH`] characters (a longer word stays whole).
fn comment(out: &mut String, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > COMMENT_WIDTH {
            out.push_str(&format!("-- {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("-- {line}\n"));
    }
}
