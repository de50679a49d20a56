//! Synthetic EHR data for the demo and the end-to-end tests (`ehi-sync generate`).
//!
//! No SQL Server runs here, so the demo and the tests need a database with the shapes that make
//! a Caboodle / Clarity copy hard: a narrow table twenty times the patients, notes with newlines,
//! quotes and emoji, a 211-column table, a composite key, a table without a key, names that need
//! quoting, 38-digit decimals, microsecond timestamps, binary with zero bytes, NULL next to ''.
//!
//! Every table is filled by ONE set-based `INSERT ... SELECT` over a number series the server
//! generates (`generate_series` on PostgreSQL, a recursive CTE on SQLite): millions of rows in
//! seconds, no row travels from this program. Values are pseudo-random but deterministic
//! functions of the row number `n`, so two runs at the same scale produce the same rows.

use odbc_api::Connection;

use crate::error::{ConfigError, Result};
use crate::model::Dialect;
use crate::source::Source;

/// The table whose name needs quoting (space, capitals).
pub(crate) const QUOTED_TABLE: &str = "Order Detail";

/// Columns of `wide_table` besides `row_id`: wider than any single fetch buffer guess.
const WIDE_COLUMNS: u32 = 210;

/// Seconds in the ten years all timestamps fall into (from 2010-01-01).
const TEN_YEARS_SECS: u64 = 315_360_000;

/// One table: name, rows per scale, columns, primary key (empty: the table has none).
struct TableDef {
    name: &'static str,
    rows: fn(u64) -> u64,
    columns: fn(&Sql) -> Vec<Col>,
    primary_key: &'static [&'static str],
}

const TABLES: [TableDef; 9] = [
    TableDef {
        name: "patient",
        rows: |s| s,
        columns: patient,
        primary_key: &["patient_id"],
    },
    TableDef {
        name: "encounter",
        rows: |s| 3 * s,
        columns: encounter,
        primary_key: &["encounter_id"],
    },
    TableDef {
        name: "flowsheet_value",
        rows: |s| 20 * s,
        columns: flowsheet_value,
        primary_key: &["fsv_id"],
    },
    TableDef {
        name: "order_proc",
        rows: |s| 2 * s,
        columns: order_proc,
        primary_key: &["order_id"],
    },
    TableDef {
        name: "note_text",
        rows: |s| s.div_ceil(2),
        columns: note_text,
        primary_key: &["note_id"],
    },
    TableDef {
        name: "wide_table",
        rows: |s| (s / 10).max(1),
        columns: wide_table,
        primary_key: &["row_id"],
    },
    TableDef {
        name: "lab_result",
        rows: |s| 4 * s,
        columns: lab_result,
        primary_key: &["order_id", "component_code"],
    },
    TableDef {
        name: "audit_log",
        rows: |s| 2 * s,
        columns: audit_log,
        primary_key: &[],
    },
    TableDef {
        name: QUOTED_TABLE,
        rows: |s| s.div_ceil(5),
        columns: order_detail,
        primary_key: &["select"],
    },
];

/// Each generated table with the exact number of rows `generate` puts into it at `scale`.
pub fn expected_row_counts(scale: u64) -> Vec<(&'static str, u64)> {
    TABLES.iter().map(|t| (t.name, (t.rows)(scale))).collect()
}

/// Every statement `generate` runs, in order, for the tests: per table DROP, CREATE and one
/// INSERT (on PostgreSQL after silencing notices, and followed by ANALYZE). Empty for SQL
/// Server: the generator only fills test databases.
#[cfg(test)]
pub(crate) fn statements(dialect: Dialect, scale: u64) -> Vec<String> {
    let tables = table_statements(dialect, scale)
        .into_iter()
        .flat_map(|t| [t.drop, t.create, t.insert]);
    if dialect == Dialect::Postgres {
        std::iter::once(QUIET.to_owned())
            .chain(tables)
            .chain(std::iter::once(ANALYZE.to_owned()))
            .collect()
    } else {
        tables.collect()
    }
}

/// Silences PostgreSQL's "table does not exist, skipping" notices, which odbc-api would log as
/// warnings on every first run.
const QUIET: &str = "SET client_min_messages = warning";

/// Fills the planner statistics (`pg_class.reltuples`) that `plan` sizes tables with.
const ANALYZE: &str = "ANALYZE";

/// Drops, recreates and fills every demo table on `connection`; returns the rows each INSERT
/// reported. Idempotent: run it again and the tables hold the same rows.
pub(crate) fn generate(
    source: &Source,
    connection: &Connection<'_>,
    dialect: Dialect,
    scale: u64,
) -> Result<Vec<(&'static str, u64)>> {
    if dialect == Dialect::SqlServer {
        return Err(ConfigError::Other(
            "generate supports PostgreSQL and SQLite; this database is SQL Server, and \
             demo tables are never written into a production source"
                .into(),
        )
        .into());
    }
    let mut statement = connection
        .preallocate()
        .map_err(|e| source.db_error("preparing the demo statements", &e))?;
    if dialect == Dialect::Postgres {
        statement
            .execute(&source.sql(QUIET), ())
            .map_err(|e| source.db_error("setting client_min_messages", &e))?;
    }
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in table_statements(dialect, scale) {
        let fail = |e: odbc_api::Error| source.db_error(format!("generating {}", table.name), &e);
        statement
            .execute(&source.sql(&table.drop), ())
            .map_err(fail)?;
        statement
            .execute(&source.sql(&table.create), ())
            .map_err(fail)?;
        statement
            .execute(&source.sql(&table.insert), ())
            .map_err(fail)?;
        let rows = statement.row_count().map_err(fail)?.unwrap_or(0);
        counts.push((table.name, u64::try_from(rows).unwrap_or(u64::MAX)));
    }
    if dialect == Dialect::Postgres {
        statement
            .execute(&source.sql(ANALYZE), ())
            .map_err(|e| source.db_error("analyzing the demo tables", &e))?;
    }
    Ok(counts)
}

/// The three statements that (re)build one table.
struct TableSql {
    name: &'static str,
    drop: String,
    create: String,
    insert: String,
}

fn table_statements(dialect: Dialect, scale: u64) -> Vec<TableSql> {
    if dialect == Dialect::SqlServer {
        return Vec::new();
    }
    let sql = Sql(dialect);
    TABLES
        .iter()
        .map(|table| {
            let columns = (table.columns)(&sql);
            let name = dialect.quote_identifier(table.name);
            let mut definitions: Vec<String> = columns
                .iter()
                .map(|c| {
                    let not_null = if table.primary_key.contains(&c.name.as_str()) {
                        " NOT NULL"
                    } else {
                        ""
                    };
                    let column = dialect.quote_identifier(&c.name);
                    format!("{column} {}{not_null}", c.ty.sql(dialect))
                })
                .collect();
            if !table.primary_key.is_empty() {
                let key: Vec<String> = table
                    .primary_key
                    .iter()
                    .map(|k| dialect.quote_identifier(k))
                    .collect();
                definitions.push(format!("PRIMARY KEY ({})", key.join(", ")));
            }
            let names: Vec<String> = columns
                .iter()
                .map(|c| dialect.quote_identifier(&c.name))
                .collect();
            let values: Vec<&str> = columns.iter().map(|c| c.expr.as_str()).collect();
            TableSql {
                name: table.name,
                drop: format!("DROP TABLE IF EXISTS {name}"),
                create: format!("CREATE TABLE {name} (\n  {}\n)", definitions.join(",\n  ")),
                insert: format!(
                    "INSERT INTO {name} ({})\n{}",
                    names.join(", "),
                    sql.select_series(&values.join(",\n  "), (table.rows)(scale))
                ),
            }
        })
        .collect()
}

/// A column: name, type, and the SQL expression of its value in terms of the row number `n`.
struct Col {
    name: String,
    ty: Type,
    expr: String,
}

fn col(name: &str, ty: Type, expr: impl Into<String>) -> Col {
    Col {
        name: name.to_owned(),
        ty,
        expr: expr.into(),
    }
}

/// The column types the demo covers: every common type a copy must carry exactly.
#[derive(Debug, Clone, Copy)]
enum Type {
    BigInt,
    Int,
    SmallInt,
    Char(u32),
    Varchar(u32),
    Text,
    Decimal(u32, u32),
    Double,
    Bool,
    Date,
    Timestamp,
    Binary,
    Uuid,
}

impl Type {
    /// The declared type. SQLite keeps the declared name as written, which is what its
    /// catalog reports and what sqliteodbc maps to ODBC types.
    fn sql(self, dialect: Dialect) -> String {
        let pg = dialect == Dialect::Postgres;
        match self {
            Type::BigInt => "BIGINT".into(),
            Type::Int => "INTEGER".into(),
            Type::SmallInt => "SMALLINT".into(),
            Type::Char(n) => format!("CHAR({n})"),
            Type::Varchar(n) => format!("VARCHAR({n})"),
            Type::Text => "TEXT".into(),
            Type::Decimal(p, s) if pg => format!("NUMERIC({p},{s})"),
            Type::Decimal(p, s) => format!("DECIMAL({p},{s})"),
            Type::Double if pg => "DOUBLE PRECISION".into(),
            Type::Double => "DOUBLE".into(),
            Type::Bool => "BOOLEAN".into(),
            Type::Date => "DATE".into(),
            Type::Timestamp if pg => "TIMESTAMP(6)".into(),
            Type::Timestamp => "TIMESTAMP".into(),
            Type::Binary if pg => "BYTEA".into(),
            Type::Binary => "BLOB".into(),
            Type::Uuid => "UUID".into(),
        }
    }
}

/// Seconds into the ten years, scattered pseudo-randomly by `seed` (an LCG multiplier; the
/// product stays below 2^63 for seeds up to 8 * 10^9).
fn spread(seed: &str) -> String {
    format!("({seed}) * 1103515245 % {TEN_YEARS_SECS}")
}

/// Builds value expressions in the dialect's spelling. All arithmetic is on 64-bit integers
/// (PostgreSQL's series is `bigint`), well inside range for any practical scale.
struct Sql(Dialect);

impl Sql {
    fn pg(&self) -> bool {
        self.0 == Dialect::Postgres
    }

    /// `SELECT values FROM` the series 1..=rows, aliased `n`.
    fn select_series(&self, values: &str, rows: u64) -> String {
        if self.pg() {
            format!("SELECT\n  {values}\nFROM generate_series(CAST(1 AS BIGINT), {rows}) AS g(n)")
        } else {
            // The guard keeps the seed row out when rows is 0.
            format!(
                "WITH RECURSIVE seq(n) AS (SELECT 1 WHERE {rows} >= 1 \
                 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows})\n\
                 SELECT\n  {values}\nFROM seq"
            )
        }
    }

    fn lit(&self, text: &str) -> String {
        self.0.string_literal(text)
    }

    /// `CASE (index) % len WHEN 0 THEN options[0] ...`: picks one SQL expression per row.
    fn case(&self, index: &str, options: &[String]) -> String {
        let branches: String = options
            .iter()
            .enumerate()
            .map(|(i, option)| format!(" WHEN {i} THEN {option}"))
            .collect();
        format!("CASE ({index}) % {}{branches} END", options.len())
    }

    /// Picks one of the string `values` per row.
    fn pick(&self, index: &str, values: &[&str]) -> String {
        let literals: Vec<String> = values.iter().map(|v| self.lit(v)).collect();
        self.case(index, &literals)
    }

    /// A character by code point, to put control characters and emoji into text.
    fn chr(&self, code: u32) -> String {
        if self.pg() {
            format!("chr({code})")
        } else {
            format!("char({code})")
        }
    }

    fn text(&self, expr: &str) -> String {
        format!("CAST({expr} AS TEXT)")
    }

    /// `expr` as decimal digits left-padded with zeros to `width`.
    fn pad(&self, expr: &str, width: u32) -> String {
        if self.pg() {
            format!("lpad(CAST({expr} AS TEXT), {width}, '0')")
        } else {
            format!("printf('%0{width}d', {expr})")
        }
    }

    /// `expr` as lower-case hex digits left-padded with zeros to `width`.
    fn hex(&self, expr: &str, width: u32) -> String {
        if self.pg() {
            format!("lpad(to_hex({expr}), {width}, '0')")
        } else {
            format!("printf('%0{width}x', {expr})")
        }
    }

    /// `text` repeated `count` times. SQLite has no repeat(): a zeroblob's hex is `00` per
    /// byte, and each `00` becomes one copy.
    fn repeat(&self, text: &str, count: u32) -> String {
        if self.pg() {
            format!("repeat({}, {count})", self.lit(text))
        } else {
            format!("replace(hex(zeroblob({count})), '00', {})", self.lit(text))
        }
    }

    /// An exact decimal from its text. SQLite stores what fits a double (DECIMAL has NUMERIC
    /// affinity); PostgreSQL keeps all digits.
    fn decimal(&self, text: &str, precision: u32, scale: u32) -> String {
        if self.pg() {
            format!("CAST({text} AS NUMERIC({precision},{scale}))")
        } else {
            text.to_owned()
        }
    }

    /// A date `days` after 1901-01-01 (so many patients are born before 1970).
    fn date(&self, days: &str) -> String {
        if self.pg() {
            format!("DATE '1901-01-01' + CAST({days} AS INTEGER)")
        } else {
            format!("date('1901-01-01', '+' || ({days}) || ' days')")
        }
    }

    /// A timestamp `secs` seconds and `micros` microseconds after 2010-01-01. SQLite stores it
    /// as text `YYYY-MM-DD HH:MM:SS.ffffff`.
    fn timestamp(&self, secs: &str, micros: &str) -> String {
        if self.pg() {
            format!(
                "TIMESTAMP '2010-01-01 00:00:00' + ({secs}) * INTERVAL '1 second' \
                 + ({micros}) * INTERVAL '1 microsecond'"
            )
        } else {
            format!(
                "datetime('2010-01-01 00:00:00', '+' || ({secs}) || ' seconds') \
                 || printf('.%06d', {micros})"
            )
        }
    }

    /// A version-4-shaped UUID derived from `n`; text on SQLite.
    fn uuid(&self, n: &str) -> String {
        let text = [
            self.hex(&format!("{n} * 2654435761 % 4294967296"), 8),
            self.lit("-"),
            self.hex(&format!("{n} % 65536"), 4),
            self.lit("-4"),
            self.hex(&format!("{n} * 7919 % 4096"), 3),
            self.lit("-"),
            self.hex(&format!("32768 + {n} * 104729 % 16384"), 4),
            self.lit("-"),
            self.hex(&format!("{n} * 48271 % 281474976710656"), 12),
        ]
        .join(" || ");
        if self.pg() {
            format!("CAST({text} AS UUID)")
        } else {
            text
        }
    }

    /// A binary literal from hex digits (`""` for the empty value).
    fn blob(&self, hex: &str) -> String {
        if self.pg() {
            format!("decode('{hex}', 'hex')")
        } else {
            format!("X'{hex}'")
        }
    }

    /// `expr`, or NULL on the rows where `condition` holds.
    fn null_if(&self, condition: &str, expr: &str) -> String {
        format!("CASE WHEN {condition} THEN NULL ELSE {expr} END")
    }
}

fn patient(sql: &Sql) -> Vec<Col> {
    let weight = format!(
        "{} || '.' || {}",
        sql.text("2 + n * 7919 % 150"),
        sql.pad("n * 104729 % 10000000000", 10)
    );
    vec![
        col("patient_id", Type::BigInt, "n"),
        col(
            "mrn",
            Type::Varchar(20),
            format!("'MRN' || {}", sql.pad("n", 9)),
        ),
        col(
            "first_name",
            Type::Varchar(50),
            sql.pick(
                "n",
                &[
                    "José", "Zoë", "李", "Øyvind", "Siobhán", "Renée", "Mohammed", "Ana", "Émile",
                    "John",
                ],
            ),
        ),
        col(
            "last_name",
            Type::Varchar(50),
            sql.pick(
                "n",
                &[
                    "Müller",
                    "Øster",
                    "李",
                    "José",
                    "O'Brien",
                    "García",
                    "Nguyễn",
                    "Smith",
                    "Dvořák",
                    "Björk",
                    "Smith, Jr.",
                ],
            ),
        ),
        col("birth_date", Type::Date, sql.date("n * 7919 % 43000")),
        col("sex", Type::Char(1), sql.pick("n", &["F", "M", "U"])),
        col("deceased", Type::Bool, "(n % 23 = 0)"),
        col(
            "weight_kg",
            Type::Decimal(38, 10),
            sql.null_if("n % 29 = 0", &sql.decimal(&weight, 38, 10)),
        ),
        col(
            "created_at",
            Type::Timestamp,
            sql.timestamp(&spread("n"), "1 + n * 104729 % 999999"),
        ),
        col(
            "email",
            Type::Varchar(100),
            sql.null_if(
                "n % 5 = 0",
                &format!("'patient' || {} || '@example.org'", sql.text("n")),
            ),
        ),
        col(
            "language",
            Type::Varchar(30),
            sql.pick(
                "n",
                &[
                    "English",
                    "Español",
                    "中文",
                    "Français",
                    "Tiếng Việt",
                    "العربية",
                ],
            ),
        ),
    ]
}

fn encounter(sql: &Sql) -> Vec<Col> {
    let admit = spread("n");
    vec![
        col("encounter_id", Type::BigInt, "n"),
        col("patient_id", Type::BigInt, "1 + (n - 1) / 3"),
        col(
            "admit_ts",
            Type::Timestamp,
            sql.timestamp(&admit, "n * 104729 % 1000000"),
        ),
        col(
            "discharge_ts",
            Type::Timestamp,
            sql.null_if(
                "n % 10 = 0",
                &sql.timestamp(
                    &format!("{admit} + 3600 + n * 613 % 1209600"),
                    "n * 15485863 % 1000000",
                ),
            ),
        ),
        col(
            "department",
            Type::Varchar(60),
            sql.pick(
                "n",
                &[
                    "Emergency Department",
                    "Cardiology",
                    "Oncology",
                    "Pédiatrie",
                    "ICU",
                    "Labor & Delivery",
                    "Radiology, Imaging",
                ],
            ),
        ),
        col("encounter_type", Type::SmallInt, "1 + n % 7"),
    ]
}

fn flowsheet_value(sql: &Sql) -> Vec<Col> {
    let measures: Vec<String> = [5, 6, 8, 9, 10, 11, 14, 301_070]
        .iter()
        .map(u32::to_string)
        .collect();
    let texts = sql.pick(
        "n / 4",
        &[
            "Alert and oriented",
            "Ø pain",
            "Patient says \"ok\", resting",
            "😀",
            "Refused; family at bedside",
        ],
    );
    vec![
        col("fsv_id", Type::BigInt, "n"),
        // At most 1 + (20S - 1) / 7 <= 3S: every value belongs to a generated encounter.
        col("encounter_id", Type::BigInt, "1 + (n - 1) / 7"),
        col("flo_meas_id", Type::Int, sql.case("n", &measures)),
        col(
            "recorded_at",
            Type::Timestamp,
            sql.timestamp(&spread("n"), "1 + n * 104729 % 999999"),
        ),
        col(
            "value_num",
            Type::Double,
            sql.null_if("n % 4 = 0", "(n * 7919 % 200000 - 50000) / 100.0"),
        ),
        col(
            "value_text",
            Type::Varchar(100),
            format!(
                "CASE n % 4 WHEN 0 THEN {texts} WHEN 1 THEN NULL WHEN 2 THEN '' ELSE 'mmHg' END"
            ),
        ),
    ]
}

fn order_proc(sql: &Sql) -> Vec<Col> {
    let price = format!(
        "{} || '.' || {}",
        sql.text("n * 7919 % 100000"),
        sql.pad("n % 100", 2)
    );
    vec![
        col("order_id", Type::BigInt, "n"),
        col("patient_id", Type::BigInt, "1 + (n - 1) / 2"),
        col(
            "proc_code",
            Type::Varchar(20),
            sql.pick(
                "n",
                &[
                    "CBC",
                    "BMP",
                    "LIPID PANEL",
                    "XR CHEST 2V",
                    "MRI BRAIN W/O",
                    "ECG 12-LEAD",
                    "UA W/ MICRO",
                ],
            ),
        ),
        col(
            "ordered_at",
            Type::Timestamp,
            sql.timestamp(&spread("n"), "n * 104729 % 1000000"),
        ),
        col(
            "quantity",
            Type::Int,
            "CASE WHEN n % 97 = 0 THEN -(1 + n % 5) ELSE 1 + n % 5 END",
        ),
        col("price", Type::Decimal(12, 2), sql.decimal(&price, 12, 2)),
        col("order_uuid", Type::Uuid, sql.uuid("n")),
    ]
}

fn note_text(sql: &Sql) -> Vec<Col> {
    let (nl, cr, tab) = (sql.chr(10), sql.chr(13), sql.chr(9));
    let n = sql.text("n");
    let emoji = format!(
        "'Patient ' || {n} || ' seen today 😀' || {nl} || {}",
        sql.lit("Plan: follow up in 🏥 clinic, \"as needed\".")
    );
    let crlf = format!(
        "{} || {cr} || {nl} || {} || {tab} || 'next column' || {cr} || {nl} || {}",
        sql.lit("Line one, with a comma"),
        sql.lit("She said \"fine\", then 'ok'"),
        sql.lit("Dosage: 5 mg, twice daily — Müller")
    );
    let long = format!(
        "'Long note ' || {n} || ':' || {nl} || {} || '🏥'",
        sql.repeat(
            "Patient resting comfortably; vitals stable. Ünïcode ✓ ",
            250
        )
    );
    let plain = format!(
        "'Routine note ' || {n} || {}",
        sql.lit(" — José Müller: no acute distress.")
    );
    vec![
        col("note_id", Type::BigInt, "n"),
        col("encounter_id", Type::BigInt, "3 * n"),
        col(
            "note_type",
            Type::Varchar(30),
            sql.pick(
                "n",
                &[
                    "Progress Note",
                    "H&P",
                    "Discharge Summary",
                    "Nursing Note",
                    "Consult",
                ],
            ),
        ),
        // Notes 1 to 5 show every special case, so even scale 10 has them all.
        col(
            "body",
            Type::Text,
            format!(
                "CASE WHEN n % 97 = 3 THEN {long} WHEN n % 8 = 1 THEN {emoji} \
                 WHEN n % 8 = 2 THEN {crlf} WHEN n % 8 = 4 THEN NULL \
                 WHEN n % 8 = 5 THEN '' ELSE {plain} END"
            ),
        ),
    ]
}

fn wide_table(sql: &Sql) -> Vec<Col> {
    let mut columns = vec![col("row_id", Type::BigInt, "n")];
    for i in 1..=WIDE_COLUMNS {
        let (suffix, ty, expr) = match (i - 1) % 7 {
            0 => ("int", Type::Int, format!("n * {i} % 100000")),
            1 => ("bigint", Type::BigInt, format!("n * 1000003 + {i}")),
            2 => (
                "varchar",
                Type::Varchar(40),
                format!("'w' || {} || '-{i}'", sql.text("n")),
            ),
            3 => (
                "decimal",
                Type::Decimal(18, 4),
                sql.decimal(
                    &format!(
                        "{} || '.' || {}",
                        sql.text("n % 100000"),
                        sql.pad(&format!("n * {i} % 10000"), 4)
                    ),
                    18,
                    4,
                ),
            ),
            4 => (
                "timestamp",
                Type::Timestamp,
                sql.timestamp(
                    &spread(&format!("n * {i}")),
                    &format!("(n + {i}) % 1000000"),
                ),
            ),
            5 => ("bool", Type::Bool, format!("((n + {i}) % 3 = 0)")),
            _ => ("double", Type::Double, format!("n * {i} / 7.0")),
        };
        let name = format!("c{i:03}_{suffix}");
        columns.push(col(
            &name,
            ty,
            sql.null_if(&format!("(n + {i}) % 13 = 0"), &expr),
        ));
    }
    columns
}

fn lab_result(sql: &Sql) -> Vec<Col> {
    // 28 integer and 10 fractional digits: all 38 digits of DECIMAL(38,10).
    let full = format!(
        "CASE WHEN n % 3 = 0 THEN '-' ELSE '' END || '1' || {} || '.' || {}",
        sql.pad("n", 27),
        sql.pad("n * 7919 % 10000000000", 10)
    );
    let small = format!("{} || '.5'", sql.text("n % 500"));
    let components = ["HGB", "WBC", "PLT", "NA", "K", "CREAT", "GLU", "TROP-I"];
    vec![
        col("order_id", Type::BigInt, "1 + (n - 1) / 4"),
        // Four results per order with four different codes: the key is unique.
        col(
            "component_code",
            Type::Varchar(20),
            sql.pick("((n - 1) % 4) * 2 + ((n - 1) / 4) % 2", &components),
        ),
        col(
            "result_value",
            Type::Decimal(38, 10),
            format!(
                "CASE WHEN n % 9 = 0 THEN NULL WHEN n % 4 = 2 THEN {} ELSE {} END",
                sql.decimal(&small, 38, 10),
                sql.decimal(&full, 38, 10)
            ),
        ),
        col(
            "result_flag",
            Type::Varchar(5),
            sql.pick("n", &["N", "H", "L", "HH", "LL", "A", ""]),
        ),
        col(
            "resulted_at",
            Type::Timestamp,
            sql.timestamp(&spread("n + 1"), "n * 7919 % 1000000"),
        ),
    ]
}

fn audit_log(sql: &Sql) -> Vec<Col> {
    // Every tenth row repeats the row before it: a table without a key may hold duplicates.
    let m = "(n - 1 + (n % 10 + 9) / 10)";
    let payloads: Vec<String> = [
        "00",
        "DEADBEEF00FF",
        "000102030405060708090A0B0C0D0E0F",
        "FFFEFD00FCFB",
        "7B226B223A307D",
    ]
    .iter()
    .map(|hex| sql.blob(hex))
    .collect();
    vec![
        col(
            "event_ts",
            Type::Timestamp,
            sql.timestamp(&spread(m), &format!("{m} * 104729 % 1000000")),
        ),
        col(
            "user_name",
            Type::Varchar(40),
            sql.pick(
                m,
                &[
                    "jdoe",
                    "mmüller",
                    "EPIC\\svc_batch",
                    "nurse.lee",
                    "Dr. O'Neil",
                ],
            ),
        ),
        col(
            "action",
            Type::Varchar(20),
            sql.pick(
                m,
                &["VIEW", "EDIT", "PRINT", "EXPORT", "LOGIN", "BREAK_GLASS"],
            ),
        ),
        col(
            "payload",
            Type::Binary,
            format!(
                "CASE WHEN {m} % 7 = 0 THEN NULL WHEN {m} % 7 = 1 THEN {} ELSE {} END",
                sql.blob(""),
                sql.case(m, &payloads)
            ),
        ),
    ]
}

fn order_detail(sql: &Sql) -> Vec<Col> {
    vec![
        col("select", Type::Int, "n"),
        col(
            "user",
            Type::Varchar(40),
            sql.pick("n", &["jdoe", "mmüller", "nurse.lee"]),
        ),
        col(
            "Mixed Case",
            Type::Varchar(40),
            format!("'Line ' || {}", sql.text("n")),
        ),
        col(
            "naïve_col",
            Type::Varchar(40),
            sql.null_if("n % 4 = 0", &sql.pick("n", &["café", "naïve", "résumé"])),
        ),
        col("from", Type::SmallInt, "n % 100"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_drop_create_insert_per_table_plus_analyze_on_postgres() {
        let pg = statements(Dialect::Postgres, 10);
        assert_eq!(pg.len(), 3 * TABLES.len() + 2);
        assert_eq!(pg.last().map(String::as_str), Some("ANALYZE"));
        let sqlite = statements(Dialect::Sqlite, 10);
        assert_eq!(sqlite.len(), 3 * TABLES.len());
        assert!(sqlite.iter().all(|s| !s.contains("generate_series")));
        assert!(statements(Dialect::SqlServer, 10).is_empty());
    }

    #[test]
    fn inserts_are_set_based() {
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            let inserts: Vec<String> = statements(dialect, 1000)
                .into_iter()
                .filter(|s| s.starts_with("INSERT"))
                .collect();
            assert_eq!(inserts.len(), TABLES.len());
            let series = match dialect {
                Dialect::Postgres => "generate_series(CAST(1 AS BIGINT), 20000)",
                _ => "WHERE n < 20000)",
            };
            assert!(inserts.iter().any(|s| s.contains(series)), "{dialect:?}");
        }
    }

    #[test]
    fn wide_table_has_more_than_200_columns() {
        let create = statements(Dialect::Sqlite, 10)
            .into_iter()
            .find(|s| s.starts_with("CREATE TABLE \"wide_table\""))
            .expect("wide_table is created");
        // One line per column plus the key line.
        let columns = create.lines().filter(|l| l.starts_with("  \"")).count();
        assert_eq!(columns, 211);
        for ty in [
            "INTEGER",
            "BIGINT",
            "VARCHAR(40)",
            "DECIMAL(18,4)",
            "TIMESTAMP",
            "BOOLEAN",
            "DOUBLE",
        ] {
            assert!(create.contains(&format!(" {ty}")), "{ty}");
        }
    }

    #[test]
    fn names_that_need_quoting_are_quoted() {
        let pg = statements(Dialect::Postgres, 10).join("\n");
        assert!(pg.contains("CREATE TABLE \"Order Detail\""));
        assert!(pg.contains("\"select\" INTEGER NOT NULL"));
        assert!(pg.contains("\"naïve_col\" VARCHAR(40)"));
        assert!(pg.contains("PRIMARY KEY (\"order_id\", \"component_code\")"));
        assert!(pg.contains("'O''Brien'"));
    }

    #[test]
    fn every_common_type_is_declared() {
        let pg = statements(Dialect::Postgres, 1).join("\n");
        for ty in [
            "BIGINT",
            "INTEGER",
            "SMALLINT",
            "NUMERIC(38,10)",
            "DOUBLE PRECISION",
            "BOOLEAN",
            "DATE",
            "TIMESTAMP(6)",
            "VARCHAR(",
            "TEXT",
            "BYTEA",
            "UUID",
        ] {
            assert!(pg.contains(&format!(" {ty}")), "{ty}");
        }
        let sqlite = statements(Dialect::Sqlite, 1).join("\n");
        for ty in [
            "DECIMAL(38,10)",
            "DOUBLE",
            "BLOB",
            "UUID",
            "TIMESTAMP",
            "BOOLEAN",
        ] {
            assert!(sqlite.contains(&format!(" {ty}")), "{ty}");
        }
    }

    #[test]
    fn row_counts_follow_the_scale() {
        let counts = expected_row_counts(10);
        let get = |name: &str| counts.iter().find(|(t, _)| *t == name).map(|(_, n)| *n);
        assert_eq!(get("patient"), Some(10));
        assert_eq!(get("flowsheet_value"), Some(200));
        assert_eq!(get("note_text"), Some(5));
        assert_eq!(get("wide_table"), Some(1));
        assert_eq!(get("Order Detail"), Some(2));
        assert_eq!(
            expected_row_counts(1)
                .iter()
                .find(|(t, _)| *t == "wide_table")
                .map(|c| c.1),
            Some(1)
        );
    }
}
