//! The statements that load a table's part files, per loader and file format. Each reads the
//! files exactly as ehi-sync writes them (ARCHITECTURE.md, "Output contract"):
//!
//! - CSV: a header line, CRLF records, fields quoted with `"` (doubled inside) when they hold
//!   `,` `"` CR or LF, NULL an empty unquoted field and the empty string `""`, binary as
//!   lowercase hex, timestamps ISO 8601 with `T`, booleans `true` / `false`;
//! - NDJSON: one object per line, NULL `null`, decimals as strings, binary as base64;
//! - Parquet: typed columns named as the source's;
//! - gzip / zstd: each part a series of complete gzip members / zstd frames, which is a valid
//!   compressed file.

use super::types::Holds;
use super::{Column, Target, comment, literal, quote};
use crate::model::{Compression, Format};

/// The Snowflake stage the statements read from; the preamble says how files get there.
const STAGE: &str = "ehi_stage";

/// Snowflake's COPY names at most this many files in its FILES list.
const SNOWFLAKE_MAX_FILES: usize = 1000;

/// The temporary table the PostgreSQL statements load through where COPY cannot read the
/// files into the table itself (hex or base64 binary, NDJSON).
const STAGING: &str = "ehi_load";

/// One table's files and the table they load into.
pub(super) struct Load<'a> {
    pub(super) target: Target,
    /// `"schema"."table"`, quoted.
    pub(super) table: &'a str,
    /// The table's folder under `output_dir`.
    pub(super) folder: &'a str,
    /// The folder's absolute path.
    pub(super) folder_path: &'a str,
    pub(super) format: Format,
    pub(super) compression: Compression,
    /// Part file names in the order a loader applies them.
    pub(super) files: &'a [&'a str],
    /// The table's columns, change columns included, in the files' order.
    pub(super) columns: &'a [Column],
}

/// What a reader of the whole output must know first, as comment paragraphs.
pub(super) fn preamble(target: Target) -> Vec<String> {
    match target {
        Target::Snowflake => vec![
            format!(
                "Snowflake: the PUT commands (SnowSQL or another client that runs PUT) copy \
                 each table folder's part files to the stage @{STAGE} under the folder's name, \
                 as they are (AUTO_COMPRESS = FALSE, so the files are what each COPY's \
                 COMPRESSION says); use another stage by replacing @{STAGE}. Snowflake records \
                 a PRIMARY KEY but does not enforce it."
            ),
            "Floats: ehi-sync writes NaN, Infinity and -Infinity as these words; Snowflake's \
             FLOAT reads 'NaN', 'inf' and '-inf'. Snowflake limits the size of a VARCHAR and a \
             BINARY value (16 MB and 8 MB unless larger sizes are enabled): a longer value fails \
             its COPY."
                .into(),
        ],
        Target::Postgres => vec![
            "PostgreSQL: a psql script (psql -1 -v ON_ERROR_STOP=1 -f FILE loads it in one \
             transaction). The \\copy lines are psql commands that read the files on the \
             machine psql runs on; gzip and zstd part files are read through the gzip and zstd \
             programs. COPY FROM a file names the server's files instead and needs the \
             pg_read_server_files role."
                .into(),
        ],
        Target::Duckdb => vec![
            "DuckDB: read_csv, read_json and read_parquet read the files on the machine DuckDB \
             runs on. A CSV line longer than 2,000,000 bytes (a long note) needs a larger \
             max_line_size."
                .into(),
        ],
    }
}

/// What the statements of every table need first: Snowflake's stage (an internal stage in the
/// current schema).
pub(super) fn setup(target: Target) -> Option<String> {
    (target == Target::Snowflake).then(|| format!("CREATE STAGE IF NOT EXISTS {STAGE};\n"))
}

/// Appends the statements that load `load`'s files into its table.
pub(super) fn statements(out: &mut String, load: &Load<'_>) {
    match load.target {
        Target::Snowflake => snowflake(out, load),
        Target::Postgres => postgres(out, load),
        Target::Duckdb => duckdb(out, load),
    }
}

/// The extension of the part files, as the PUT pattern matches them.
fn extension(load: &Load<'_>) -> String {
    match load.format {
        Format::Parquet => "parquet".to_owned(),
        format => format!("{}{}", format.name(), load.compression.extension()),
    }
}

fn snowflake(out: &mut String, load: &Load<'_>) {
    let location = format!("@{STAGE}/{}/", load.folder);
    // `file:///data/out/...` on Unix, `file://C:\out\...` on Windows.
    let local = format!(
        "file://{}{}*.{}",
        load.folder_path,
        std::path::MAIN_SEPARATOR,
        extension(load)
    );
    out.push_str(&format!(
        "PUT {} {} AUTO_COMPRESS = FALSE OVERWRITE = TRUE;\n",
        literal(&local),
        literal(&location)
    ));
    let compression = match load.compression {
        Compression::None => "NONE",
        Compression::Gzip => "GZIP",
        Compression::Zstd => "ZSTD",
    };
    // CREATE FILE FORMAT's options (https://docs.snowflake.com/en/sql-reference/sql/create-file-format).
    // NULL_IF = () everywhere: its default, \N, would turn a text value '\N' into NULL.
    let (columns, file_format, by_name) = match load.format {
        // FIELD_OPTIONALLY_ENCLOSED_BY = '"' reads a quoted field as the text between the
        // quotes, so "" is the empty string, while EMPTY_FIELD_AS_NULL = TRUE makes an empty
        // unquoted field (two successive delimiters) NULL: "Data unloading considerations",
        // "Empty strings and NULL values"
        // (https://docs.snowflake.com/en/user-guide/data-unload-considerations). Unquoted
        // fields hold backslashes as they are, so ESCAPE_UNENCLOSED_FIELD (default \) is NONE.
        // CRLF ends a record with the default RECORD_DELIMITER (newline, CRLF included).
        Format::Csv => (
            format!(
                " ({})",
                load.columns
                    .iter()
                    .map(|c| quote(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            vec![
                "TYPE = CSV".to_owned(),
                format!("COMPRESSION = {compression}"),
                "SKIP_HEADER = 1".into(),
                "FIELD_DELIMITER = ','".into(),
                "FIELD_OPTIONALLY_ENCLOSED_BY = '\"'".into(),
                "ESCAPE = NONE".into(),
                "ESCAPE_UNENCLOSED_FIELD = NONE".into(),
                "EMPTY_FIELD_AS_NULL = TRUE".into(),
                "NULL_IF = ()".into(),
                "BINARY_FORMAT = HEX".into(),
                "ENCODING = 'UTF8'".into(),
                "ERROR_ON_COLUMN_COUNT_MISMATCH = TRUE".into(),
            ],
            false,
        ),
        // A JSON null loads as NULL; base64 strings load into BINARY columns.
        Format::Ndjson => (
            String::new(),
            vec![
                "TYPE = JSON".to_owned(),
                format!("COMPRESSION = {compression}"),
                "BINARY_FORMAT = BASE64".into(),
                "NULL_IF = ()".into(),
            ],
            true,
        ),
        // USE_LOGICAL_TYPE reads DECIMAL, DATE, TIMESTAMP and TIME as such; BINARY_AS_TEXT =
        // FALSE keeps binary columns (no logical type) bytes instead of reading them as UTF-8.
        Format::Parquet => (
            String::new(),
            vec![
                "TYPE = PARQUET".to_owned(),
                "USE_LOGICAL_TYPE = TRUE".into(),
                "BINARY_AS_TEXT = FALSE".into(),
                "NULL_IF = ()".into(),
            ],
            true,
        ),
    };
    for files in load.files.chunks(SNOWFLAKE_MAX_FILES) {
        let files: Vec<String> = files.iter().map(|f| literal(f)).collect();
        out.push_str(&format!(
            "COPY INTO {}{columns}\n  FROM {}\n  FILES = ({})\n  FILE_FORMAT = (\n    {}\n  )\n",
            load.table,
            literal(&location),
            files.join(", "),
            file_format.join("\n    ")
        ));
        if by_name {
            out.push_str("  MATCH_BY_COLUMN_NAME = CASE_SENSITIVE\n");
        }
        out.push_str("  ON_ERROR = ABORT_STATEMENT;\n");
    }
}

fn postgres(out: &mut String, load: &Load<'_>) {
    let names: Vec<String> = load.columns.iter().map(|c| quote(&c.name)).collect();
    let names = names.join(", ");
    // CSV format: "NULL ... an unquoted empty string", while a quoted empty string is an empty
    // string (https://www.postgresql.org/docs/current/sql-copy.html, "CSV Format"). HEADER
    // skips the header line; CRLF and LF both end a line.
    let csv = "FORMAT csv, HEADER true, NULL '', ENCODING 'UTF8'";
    let has_binary = load.columns.iter().any(|c| c.holds == Holds::Binary);
    match load.format {
        Format::Csv if !has_binary => {
            for file in load.files {
                out.push_str(&format!(
                    "\\copy {} ({names}) FROM {} WITH ({csv})\n",
                    load.table,
                    copy_source(load, file)
                ));
            }
        }
        // bytea reads hex only with a \x prefix: the hex goes through a text column and
        // decode().
        Format::Csv => {
            let staging: Vec<String> = load
                .columns
                .iter()
                .map(|c| {
                    let sql = if c.holds == Holds::Binary {
                        "text"
                    } else {
                        c.loader.sql.as_str()
                    };
                    format!("{} {sql}", quote(&c.name))
                })
                .collect();
            out.push_str(&format!(
                "CREATE TEMP TABLE {} ({});\n",
                quote(STAGING),
                staging.join(", ")
            ));
            for file in load.files {
                out.push_str(&format!(
                    "\\copy {} FROM {} WITH ({csv})\n",
                    quote(STAGING),
                    copy_source(load, file)
                ));
            }
            let values: Vec<String> = load
                .columns
                .iter()
                .map(|c| match c.holds {
                    Holds::Binary => format!("decode({}, 'hex')", quote(&c.name)),
                    _ => quote(&c.name),
                })
                .collect();
            out.push_str(&format!(
                "INSERT INTO {} ({names}) SELECT {} FROM {};\nDROP TABLE {};\n",
                load.table,
                values.join(", "),
                quote(STAGING),
                quote(STAGING)
            ));
        }
        // Each line whole into a jsonb column: csv format with quote and delimiter bytes that
        // JSON text never holds raw (the text format would undo JSON's backslash escapes).
        Format::Ndjson => {
            out.push_str(&format!(
                "CREATE TEMP TABLE {} (\"doc\" jsonb);\n",
                quote(STAGING)
            ));
            for file in load.files {
                out.push_str(&format!(
                    "\\copy {} (\"doc\") FROM {} WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER \
                     E'\\x02', ENCODING 'UTF8')\n",
                    quote(STAGING),
                    copy_source(load, file)
                ));
            }
            let values: Vec<String> = load
                .columns
                .iter()
                .map(|c| {
                    let field = format!("\"doc\"->>{}", literal(&c.name));
                    match c.holds {
                        Holds::Binary => format!("decode({field}, 'base64')"),
                        Holds::Text => field,
                        _ => format!("({field})::{}", c.loader.sql),
                    }
                })
                .collect();
            out.push_str(&format!(
                "INSERT INTO {} ({names})\nSELECT {}\nFROM {};\nDROP TABLE {};\n",
                load.table,
                values.join(",\n  "),
                quote(STAGING),
                quote(STAGING)
            ));
        }
        Format::Parquet => comment(
            out,
            "PostgreSQL reads no Parquet by itself: load these files through DuckDB or a \
             Parquet extension, or sync with \"format\": \"csv\" for \\copy.",
        ),
    }
}

/// What `\copy` reads a part file from: the file, or the program that decompresses it.
fn copy_source(load: &Load<'_>, file: &str) -> String {
    let path = format!("{}{}{file}", load.folder_path, std::path::MAIN_SEPARATOR);
    let program = match load.compression {
        Compression::None => return literal(&path),
        Compression::Gzip => "gzip -dc",
        Compression::Zstd => "zstd -dcq",
    };
    // A POSIX shell word: in single quotes, a single quote as '\''.
    let word = format!("'{}'", path.replace('\'', r"'\''"));
    format!("PROGRAM {}", literal(&format!("{program} {word}")))
}

fn duckdb(out: &mut String, load: &Load<'_>) {
    let names: Vec<String> = load.columns.iter().map(|c| quote(&c.name)).collect();
    let paths: Vec<String> = load
        .files
        .iter()
        .map(|f| {
            literal(&format!(
                "{}{}{f}",
                load.folder_path,
                std::path::MAIN_SEPARATOR
            ))
        })
        .collect();
    let paths = format!("[{}]", paths.join(", "));
    // The types read_csv and read_json parse the fields into: the table's, with binary read as
    // its text and decoded in the SELECT.
    let types: Vec<String> = load
        .columns
        .iter()
        .map(|c| {
            let sql = if c.holds == Holds::Binary {
                "VARCHAR"
            } else {
                c.loader.sql.as_str()
            };
            format!("{}: {}", literal(&c.name), literal(sql))
        })
        .collect();
    let types = format!("{{{}}}", types.join(", "));
    let compression = load.compression.name();
    let (decode, reader) = match load.format {
        // allow_quoted_nulls = false: a quoted field never matches nullstr, so "" is the empty
        // string and only the empty unquoted field is NULL (read_csv's parameters,
        // https://duckdb.org/docs/stable/data/csv/overview: allow_quoted_nulls defaults to
        // true). auto_detect = false: no sniffing, the dialect is known.
        Format::Csv => (
            Some("unhex"),
            format!(
                "read_csv({paths}, header = true, delim = ',', quote = '\"', escape = '\"', \
                 new_line = '\\r\\n', nullstr = '', allow_quoted_nulls = false, \
                 auto_detect = false, compression = '{compression}', columns = {types})"
            ),
        ),
        Format::Ndjson => (
            Some("from_base64"),
            format!(
                "read_json({paths}, format = 'newline_delimited', \
                 compression = '{compression}', columns = {types})"
            ),
        ),
        Format::Parquet => (None, format!("read_parquet({paths})")),
    };
    let values: Vec<String> = load
        .columns
        .iter()
        .map(|c| match (c.holds, decode) {
            (Holds::Binary, Some(decode)) => format!("{decode}({})", quote(&c.name)),
            _ => quote(&c.name),
        })
        .collect();
    out.push_str(&format!(
        "INSERT INTO {} ({})\nSELECT {}\nFROM {reader};\n",
        load.table,
        names.join(", "),
        values.join(", ")
    ));
}
