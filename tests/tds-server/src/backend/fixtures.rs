//! Databases for the SQL Server suite and the benchmark: a Clarity-shaped database, a table of
//! every type with its extremes, the benchmark's narrow and wide tables and its tables of one
//! long value each. Each function
//! creates the SQLite file (it must not hold these tables yet) and returns it ready to serve.

use std::path::Path;

use super::types::Timestamp;
use super::{BackendError, ColumnDef, SqliteDatabase};
use crate::model::{SqlType, Value};

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn col(name: &str, ty: &str, nullable: bool) -> ColumnDef {
    ColumnDef::new(name, ty, nullable)
}

/// Text keys that sort differently under different rules, placed among the generated ones:
/// non-ASCII (`Ñ1` right after `N…` in a case-insensitive order), a hyphen, a quote.
pub const SPECIAL_PATIENT_IDS: [&str; 5] = ["Ñ1", "Ñ2", "a-c", "ab", "O'Neil"];

/// A Clarity-shaped database named `database`, with `rows` patients:
///
/// | table | key | rows |
/// |---|---|---|
/// | `PATIENT` | `PAT_ID varchar(18)` | `rows` + 5 special ids ([`SPECIAL_PATIENT_IDS`]) |
/// | `PAT_ENC` | `PAT_ENC_CSN_ID numeric(18,0)` | 3 per patient |
/// | `FLOWSHEET` | `FLO_MEAS_ID varchar(18), MEAS_DATE_REAL float, LINE int` | 4 per patient |
/// | `ORDER_PROC` | `ORDER_PROC_ID numeric(18,0)`, a rowversion, change tracking on | 2 per patient |
/// | `DEVICE` | `DEVICE_GUID uniqueidentifier` | `rows` |
/// | `AUDIT_LOG` | none | `rows` |
/// | `Ünï tàble` | `ID int`, column `Ünï col` | 3 |
/// | `NOTE_TEXT` | `NOTE_ID varchar(18)`, `(max)` columns, one value of 1 MiB | 3 |
pub fn clarity(path: &Path, database: &str, rows: u64) -> Result<SqliteDatabase, BackendError> {
    let db = SqliteDatabase::open(path, database)?;
    db.create_table(
        "dbo",
        "PATIENT",
        &[
            col("PAT_ID", "varchar(18)", false),
            col("PAT_NAME", "nvarchar(200)", true),
            col("BIRTH_DATE", "datetime", true),
            col("SEX_C", "varchar(66)", true),
            col("ZIP", "varchar(60)", true),
        ],
        &["PAT_ID"],
    )?;
    let patient_ids: Vec<String> = (1..=rows)
        .map(|i| format!("Z{i:07}"))
        .chain(SPECIAL_PATIENT_IDS.iter().map(|s| (*s).to_owned()))
        .collect();
    db.insert_rows(
        "dbo",
        "PATIENT",
        patient_ids.iter().enumerate().map(|(i, id)| {
            vec![
                text(id.clone()),
                if i % 7 == 3 {
                    Value::Null
                } else {
                    text(format!("Patiënt Ünïcode {i} 😀"))
                },
                text(format!(
                    "{:04}-{:02}-{:02} 08:30:00.997",
                    1930 + i % 90,
                    1 + i % 12,
                    1 + i % 28
                )),
                text(if i % 2 == 0 { "F" } else { "M" }),
                text(format!("{:05}", 10_000 + i * 37 % 89_999)),
            ]
        }),
    )?;
    db.create_table(
        "dbo",
        "PAT_ENC",
        &[
            col("PAT_ENC_CSN_ID", "numeric(18,0)", false),
            col("PAT_ID", "varchar(18)", false),
            col("CONTACT_DATE", "datetime", true),
            col("ENC_TYPE_C", "varchar(66)", true),
            col("DEPARTMENT_ID", "numeric(18,0)", true),
            col("UPDATE_DATE", "datetime2(7)", true),
        ],
        &["PAT_ENC_CSN_ID"],
    )?;
    db.insert_rows(
        "dbo",
        "PAT_ENC",
        patient_ids.iter().enumerate().flat_map(|(i, id)| {
            (0..3u64).map(move |j| {
                let n = i as u64 * 3 + j;
                vec![
                    text((700_000_000_000 + n * 11).to_string()),
                    text(id.clone()),
                    text(format!("2020-{:02}-{:02} 00:00:00", 1 + n % 12, 1 + n % 28)),
                    text(["101", "50", "3"][(n % 3) as usize]),
                    if n.is_multiple_of(5) {
                        Value::Null
                    } else {
                        text((10_000 + n % 40).to_string())
                    },
                    text(format!(
                        "2024-06-{:02} 12:00:00.{:07}",
                        1 + n % 28,
                        n * 13 % 10_000_000
                    )),
                ]
            })
        }),
    )?;
    db.create_table(
        "dbo",
        "FLOWSHEET",
        &[
            col("FLO_MEAS_ID", "varchar(18)", false),
            col("RECORDED_TIME", "datetime", true),
            col("LINE", "int", false),
            col("MEAS_DATE_REAL", "float", false),
            col("MEAS_VALUE", "varchar(2500)", true),
        ],
        &["FLO_MEAS_ID", "MEAS_DATE_REAL", "LINE"],
    )?;
    db.insert_rows(
        "dbo",
        "FLOWSHEET",
        (0..rows * 4).map(|n| {
            vec![
                text(format!("{}", 1000 + n % 37)),
                text(format!("2021-03-{:02} {:02}:15:00.003", 1 + n % 28, n % 24)),
                Value::Int((n % 3) as i64 + 1),
                // Epic's *_DATE_REAL: days since 1840-12-31 with a time fraction.
                Value::Float(66_000.0 + n as f64 / 7.0),
                if n % 4 == 0 {
                    Value::Null
                } else {
                    text(format!("{}/{}", 100 + n % 60, 60 + n % 40))
                },
            ]
        }),
    )?;
    db.create_table(
        "dbo",
        "ORDER_PROC",
        &[
            col("ORDER_PROC_ID", "numeric(18,0)", false),
            col("PAT_ID", "varchar(18)", true),
            col("ORDER_TIME", "datetime", true),
            col("DESCRIPTION", "varchar(254)", true),
            col("NOTE", "nvarchar(max)", true),
            col("RV", "rowversion", false),
        ],
        &["ORDER_PROC_ID"],
    )?;
    db.insert_rows(
        "dbo",
        "ORDER_PROC",
        patient_ids.iter().enumerate().flat_map(|(i, id)| {
            (0..2u64).map(move |j| {
                let n = i as u64 * 2 + j;
                vec![
                    text((900_000 + n).to_string()),
                    text(id.clone()),
                    text(format!("2022-07-{:02} 09:{:02}:00", 1 + n % 28, n % 60)),
                    text(format!("CBC WITH DIFF – Ñ{n}")),
                    text(format!("Order note {n}: Ünïcödé 😀\nsecond line")),
                    Value::Null,
                ]
            })
        }),
    )?;
    db.enable_change_tracking("dbo", "ORDER_PROC")?;
    db.create_table(
        "dbo",
        "DEVICE",
        &[
            col("DEVICE_GUID", "uniqueidentifier", false),
            col("NAME", "nvarchar(100)", true),
        ],
        &["DEVICE_GUID"],
    )?;
    db.insert_rows(
        "dbo",
        "DEVICE",
        (0..rows).map(|n| {
            let a = (n.wrapping_mul(2_654_435_761)) as u32;
            vec![
                text(format!(
                    "{a:08X}-{:04X}-4{:03X}-8{:03X}-{:012X}",
                    n % 0xFFFF,
                    n % 0xFFF,
                    (n * 7) % 0xFFF,
                    n * 0x1_0001
                )),
                text(format!("Pump {n}")),
            ]
        }),
    )?;
    db.create_table(
        "dbo",
        "AUDIT_LOG",
        &[
            col("EVENT_TIME", "datetime2(7)", true),
            col("USER_ID", "varchar(18)", true),
            col("ACTION", "nvarchar(max)", true),
        ],
        &[],
    )?;
    db.insert_rows(
        "dbo",
        "AUDIT_LOG",
        (0..rows).map(|n| {
            vec![
                text(format!("2023-01-01 00:00:{:02}.{:07}", n % 60, n)),
                text(format!("U{n}")),
                text(format!("viewed chart {n}")),
            ]
        }),
    )?;
    db.create_table(
        "dbo",
        "Ünï tàble",
        &[
            col("ID", "int", false),
            col("Ünï col", "nvarchar(50)", true),
        ],
        &["ID"],
    )?;
    db.insert_rows(
        "dbo",
        "Ünï tàble",
        [
            vec![Value::Int(1), text("Ñandú")],
            vec![Value::Int(2), text("ü€😀")],
            vec![Value::Int(3), Value::Null],
        ],
    )?;
    db.create_table(
        "dbo",
        "NOTE_TEXT",
        &[
            col("NOTE_ID", "varchar(18)", false),
            col("NOTE", "nvarchar(max)", true),
            col("RAW", "varbinary(max)", true),
            col("LEGACY", "varchar(max)", true),
        ],
        &["NOTE_ID"],
    )?;
    let big: String = "Ünïcode note line 😀\n".repeat(1 << 15);
    db.insert_rows(
        "dbo",
        "NOTE_TEXT",
        [
            vec![
                text("N1"),
                text(big),
                Value::Bytes((0..=255u8).cycle().take(1 << 20).collect()),
                text("Ñ€é".repeat(10_000)),
            ],
            vec![text("N2"), text(""), Value::Bytes(Vec::new()), text("")],
            vec![text("N3"), Value::Null, Value::Null, Value::Null],
        ],
    )?;
    Ok(db)
}

/// The columns of [`every_type`]'s `ALL_TYPES` table, in order (name, SQL Server type).
pub const EVERY_TYPE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "int"),
    ("C_BIGINT", "bigint"),
    ("C_INT", "int"),
    ("C_SMALLINT", "smallint"),
    ("C_TINYINT", "tinyint"),
    ("C_BIT", "bit"),
    ("C_DECIMAL", "decimal(38,10)"),
    ("C_NUMERIC", "numeric(18,0)"),
    ("C_MONEY", "money"),
    ("C_SMALLMONEY", "smallmoney"),
    ("C_FLOAT", "float"),
    ("C_REAL", "real"),
    ("C_DATE", "date"),
    ("C_TIME", "time(7)"),
    ("C_DATETIME", "datetime"),
    ("C_SMALLDATETIME", "smalldatetime"),
    ("C_DATETIME2", "datetime2(7)"),
    ("C_DATETIMEOFFSET", "datetimeoffset(7)"),
    ("C_CHAR", "char(10) COLLATE SQL_Latin1_General_CP1_CI_AS"),
    (
        "C_VARCHAR",
        "varchar(50) COLLATE SQL_Latin1_General_CP1_CI_AS",
    ),
    (
        "C_VARCHAR_MAX",
        "varchar(max) COLLATE SQL_Latin1_General_CP1_CI_AS",
    ),
    ("C_NCHAR", "nchar(10)"),
    ("C_NVARCHAR", "nvarchar(50)"),
    ("C_NVARCHAR_MAX", "nvarchar(max)"),
    ("C_TEXT", "text"),
    ("C_NTEXT", "ntext"),
    ("C_IMAGE", "image"),
    ("C_BINARY", "binary(8)"),
    ("C_VARBINARY_MAX", "varbinary(max)"),
    ("C_GUID", "uniqueidentifier"),
    ("C_XML", "xml"),
    ("C_VARIANT", "sql_variant"),
    ("C_ROWVERSION", "rowversion"),
];

/// The rows of `ALL_TYPES` in their canonical [`Value`] forms, as a client must read them back
/// (the rowversion column is set by the database: `None` here).
pub fn every_type_rows() -> Vec<Vec<Option<Value>>> {
    let variant = |ty: SqlType, v: Value| Value::Variant(Box::new(ty), Box::new(v));
    let typical = vec![
        Value::Int(1),
        Value::Int(9_007_199_254_740_993),
        Value::Int(-123_456),
        Value::Int(-32_768),
        Value::Int(255),
        Value::Int(1),
        text("12345678901234567890123456.0123456789"),
        text("123456789012345678"),
        text("-922337203685477.5808"),
        text("214748.3647"),
        Value::Float(0.1),
        Value::Float(f64::from(0.1f32)),
        text("2024-02-29"),
        text("13:45:10.1234567"),
        text("2024-02-29 23:59:59.997"),
        text("2024-02-29 23:59:00"),
        text("2024-02-29 23:59:59.1234567"),
        text("2024-02-29 23:59:59.1234567 +05:30"),
        text("Ñ€é       "),
        text("Ñ€é"),
        text("Ñ€é ".repeat(3000)),
        text("ü€😀      "),
        text("ü€😀"),
        text("ü€😀 ".repeat(3000)),
        text("legacy text Ñ€é"),
        text("legacy ntext ü€😀"),
        Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF]),
        Value::Bytes(vec![1, 2, 3, 4, 5, 6, 7, 8]),
        Value::Bytes((0..=255u8).collect()),
        text("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
        text("<note lang=\"de\">Grüße 😀</note>"),
        variant(SqlType::Float, Value::Float(0.1)),
    ];
    let nulls: Vec<Value> = std::iter::once(Value::Int(2))
        .chain(std::iter::repeat_n(Value::Null, typical.len() - 1))
        .collect();
    let minimum = vec![
        Value::Int(3),
        Value::Int(i64::MIN),
        Value::Int(i64::from(i32::MIN)),
        Value::Int(-32_768),
        Value::Int(0),
        Value::Int(0),
        text("-9999999999999999999999999999.9999999999"),
        text("-999999999999999999"),
        text("-922337203685477.5808"),
        text("-214748.3648"),
        Value::Float(-1.7976931348623157e308),
        Value::Float(f64::from(-3.402_823_5e38_f32)),
        text("0001-01-01"),
        text("00:00:00.0000000"),
        text("1753-01-01 00:00:00.000"),
        text("1900-01-01 00:00:00"),
        text("0001-01-01 00:00:00.0000000"),
        text("0001-01-01 00:00:00.0000000 -14:00"),
        text("          "),
        text(""),
        text(""),
        text("          "),
        text(""),
        text(""),
        text(""),
        text(""),
        Value::Bytes(Vec::new()),
        Value::Bytes(vec![0; 8]),
        Value::Bytes(Vec::new()),
        text("00000000-0000-0000-0000-000000000000"),
        text("<a/>"),
        variant(SqlType::Int, Value::Int(-42)),
    ];
    let maximum = vec![
        Value::Int(4),
        Value::Int(i64::MAX),
        Value::Int(i64::from(i32::MAX)),
        Value::Int(32_767),
        Value::Int(255),
        Value::Int(1),
        text("9999999999999999999999999999.9999999999"),
        text("999999999999999999"),
        text("922337203685477.5807"),
        text("214748.3647"),
        Value::Float(1.7976931348623157e308),
        Value::Float(f64::from(3.402_823_5e38_f32)),
        text("9999-12-31"),
        text("23:59:59.9999999"),
        text("9999-12-31 23:59:59.997"),
        text("2079-06-06 23:59:00"),
        text("9999-12-31 23:59:59.9999999"),
        text("9999-12-31 23:59:59.9999999 +14:00"),
        text("ÿÿÿÿÿÿÿÿÿÿ"),
        text("€".repeat(50)),
        text("Ñ"),
        text("😀😀😀😀😀"),
        text("😀".repeat(25)),
        text("€"),
        text("Ñ"),
        text("😀"),
        Value::Bytes(vec![0xFF; 16]),
        Value::Bytes(vec![0xFF; 8]),
        Value::Bytes(vec![0xFF; 100]),
        text("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"),
        text("<b>ü€😀</b>"),
        variant(
            SqlType::DateTime2 { scale: 7 },
            text("2024-02-29 23:59:59.1234567"),
        ),
    ];
    [typical, nulls, minimum, maximum]
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(Some)
                .chain(std::iter::once(None))
                .collect()
        })
        .collect()
}

/// A database with the table `ALL_TYPES` ([`EVERY_TYPE_COLUMNS`], key `ID`): one typical row
/// (ID 1), one of NULLs (2), the minimum (3) and maximum (4) of every type.
pub fn every_type(path: &Path, database: &str) -> Result<SqliteDatabase, BackendError> {
    let db = SqliteDatabase::open(path, database)?;
    let columns: Vec<ColumnDef> = EVERY_TYPE_COLUMNS
        .iter()
        .map(|(name, ty)| col(name, ty, *name != "ID" && *name != "C_ROWVERSION"))
        .collect();
    db.create_table("dbo", "ALL_TYPES", &columns, &["ID"])?;
    db.insert_rows(
        "dbo",
        "ALL_TYPES",
        every_type_rows()
            .into_iter()
            .map(|row| row.into_iter().map(|v| v.unwrap_or(Value::Null)).collect()),
    )?;
    Ok(db)
}

/// The benchmark's tables, in the shapes `scripts/bench.sh` builds on PostgreSQL:
/// `flowsheet_value` (`narrow_rows`), `flowsheet_value_1m` (its first million) and
/// `wide_table` (`wide_rows` rows, `row_id` and 209 columns cycling eight types), with the
/// same values. A file that already holds them with these row counts is reused as it is.
pub fn bench(
    path: &Path,
    database: &str,
    narrow_rows: u64,
    wide_rows: u64,
) -> Result<SqliteDatabase, BackendError> {
    let db = SqliteDatabase::open(path, database)?;
    // A file built before with the same row counts is used again (10M rows take a while).
    let counts = db.row_counts()?;
    if !counts.is_empty() {
        let count = |t: &str| counts.iter().find(|(n, _)| n == t).map(|(_, c)| *c);
        let wanted = [
            ("flowsheet_value", narrow_rows),
            ("flowsheet_value_1m", narrow_rows.min(1_000_000)),
            ("wide_table", wide_rows),
        ];
        if wanted.iter().all(|(t, rows)| count(t) == Some(*rows)) {
            return Ok(db);
        }
        return Err(BackendError::Invalid(format!(
            "{} holds other tables or row counts than {narrow_rows} narrow and {wide_rows} wide \
             rows (an earlier build with other counts, or one that was interrupted): delete it \
             to build again",
            path.display()
        )));
    }
    let narrow = [
        col("fsv_id", "bigint", false),
        col("encounter_id", "bigint", false),
        col("flo_meas_id", "int", false),
        col("recorded_at", "datetime2(6)", false),
        col("value_num", "float", true),
        col("value_text", "varchar(100)", true),
    ];
    let base = Timestamp::parse("2014-01-01")
        .ok_or_else(|| BackendError::Invalid("bad base date".into()))?;
    let recorded = SqlType::DateTime2 { scale: 6 };
    let narrow_row = |g: u64| -> Vec<Value> {
        let at = base
            .add("second", g as i64 * 3)
            .and_then(|t| t.add("microsecond", (g % 1_000_000) as i64))
            .map_or(Value::Null, |t| text(t.canonical(&recorded)));
        vec![
            Value::Int(g as i64),
            Value::Int(40_000_000 + g as i64 / 25),
            Value::Int(1 + (g as i64 * 7919) % 4000),
            at,
            if g.is_multiple_of(5) {
                Value::Null
            } else {
                Value::Float(((g as u128 * 2_654_435_761) % 2_000_000) as f64 / 100.0)
            },
            match g % 5 {
                0 if g.is_multiple_of(10) => text(""),
                0 => text(format!(
                    "Pt resting comfortably; RR {}, SpO2 {}%",
                    12 + g % 9,
                    90 + g % 10
                )),
                1 => text(format!("{}/{}", 100 + g % 60, 60 + g % 40)),
                _ => Value::Null,
            },
        ]
    };
    for (name, rows) in [
        ("flowsheet_value", narrow_rows),
        ("flowsheet_value_1m", narrow_rows.min(1_000_000)),
    ] {
        db.create_table("dbo", name, &narrow, &["fsv_id"])?;
        db.insert_rows("dbo", name, (1..=rows).map(narrow_row))?;
    }
    const WIDE_TYPES: [&str; 8] = [
        "int",
        "bigint",
        "varchar(40)",
        "numeric(18,4)",
        "datetime2(6)",
        "bit",
        "float",
        "varchar(max)",
    ];
    let mut wide = vec![col("row_id", "bigint", false)];
    for i in 1..=209 {
        wide.push(col(&format!("c{i:03}"), WIDE_TYPES[(i - 1) % 8], true));
    }
    db.create_table("dbo", "wide_table", &wide, &["row_id"])?;
    let wide_base = Timestamp::parse("2018-01-01")
        .ok_or_else(|| BackendError::Invalid("bad base date".into()))?;
    db.insert_rows(
        "dbo",
        "wide_table",
        (1..=wide_rows).map(|g| {
            let mut row = vec![Value::Int(g as i64)];
            for i in 1..=209u64 {
                if (g + i) % 17 == 0 {
                    row.push(Value::Null);
                    continue;
                }
                row.push(match (i - 1) % 8 {
                    0 => Value::Int(((g * i) % 1_000_003) as i64),
                    1 => Value::Int((g * 1000 + i) as i64),
                    2 => text(format!("V{i}-{}", g % 99_991)),
                    3 => {
                        let n = (g * i) % 100_000_000;
                        text(format!("{}.{:04}", n / 10_000, n % 10_000))
                    }
                    4 => wide_base
                        .add("second", (g * 60 + i) as i64)
                        .map_or(Value::Null, |t| text(t.canonical(&recorded))),
                    5 => Value::Int(i64::from((g + i) % 3 == 0)),
                    6 => Value::Float(((g * i) % 1_000_003) as f64 / 7.0),
                    _ => text(format!("Note {i} for row {g}: stable")),
                });
            }
            row
        }),
    )?;
    Ok(db)
}

/// The value-size memory tables of `scripts/bench.sh`: for each size N in `megabytes`,
/// `blob_bin_<N>mb` (`id int`, `value varbinary(max)`) and `blob_text_<N>mb` (`id int`,
/// `value nvarchar(max)`), one row each whose value is N × 1,000,000 bytes (for the text, that
/// many ASCII characters: N MB in UTF-8, twice that on the wire). A file that already holds
/// exactly these tables is reused as it is.
pub fn blobs(
    path: &Path,
    database: &str,
    megabytes: &[u64],
) -> Result<SqliteDatabase, BackendError> {
    if megabytes.is_empty() || megabytes.iter().any(|&n| n == 0 || n > 2000) {
        return Err(BackendError::Invalid(format!(
            "blob sizes {megabytes:?}: give one or more sizes from 1 to 2000 MB"
        )));
    }
    let db = SqliteDatabase::open(path, database)?;
    let mut wanted: Vec<(String, u64)> = megabytes
        .iter()
        .flat_map(|n| {
            [
                (format!("blob_bin_{n}mb"), 1),
                (format!("blob_text_{n}mb"), 1),
            ]
        })
        .collect();
    wanted.sort();
    wanted.dedup();
    let counts = db.row_counts()?;
    if !counts.is_empty() {
        if counts == wanted {
            return Ok(db);
        }
        return Err(BackendError::Invalid(format!(
            "{} holds other tables than one row of each of {megabytes:?} MB (an earlier build \
             with other sizes, or one that was interrupted): delete it to build again",
            path.display()
        )));
    }
    const TEXT: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789.";
    let mut sizes = megabytes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        let size = n as usize * 1_000_000;
        let bytes = (0..size).map(|i| (i % 251) as u8).collect();
        let chars = (0..size)
            .map(|i| char::from(TEXT[i % TEXT.len()]))
            .collect();
        for (name, ty, value) in [
            (
                format!("blob_bin_{n}mb"),
                "varbinary(max)",
                Value::Bytes(bytes),
            ),
            (
                format!("blob_text_{n}mb"),
                "nvarchar(max)",
                Value::Text(chars),
            ),
        ] {
            let columns = [col("id", "int", false), col("value", ty, false)];
            db.create_table("dbo", &name, &columns, &["id"])?;
            db.insert_rows("dbo", &name, [vec![Value::Int(1), value]])?;
        }
    }
    Ok(db)
}

/// Builds the fixture a command line names: `clarity[:ROWS]` (default 1000), `every-type`, or
/// `bench[:NARROW_ROWS[:WIDE_ROWS]]` (defaults 10,000,000 and 500,000, as `scripts/bench.sh`),
/// or `blobs[:MB,MB,...]` (default 1,10,100; see [`blobs`]).
pub fn from_spec(spec: &str, path: &Path, database: &str) -> Result<SqliteDatabase, BackendError> {
    let mut parts = spec.split(':');
    let kind = parts.next().unwrap_or_default();
    let mut number = |default: u64| -> Result<u64, BackendError> {
        match parts.next() {
            None => Ok(default),
            Some(n) => n.replace('_', "").parse().map_err(|_| {
                BackendError::Invalid(format!(
                    "fixture {spec:?}: {n:?} is not a row count (e.g. clarity:1000, \
                     bench:10000000:500000)"
                ))
            }),
        }
    };
    match kind {
        "clarity" => clarity(path, database, number(1000)?),
        "every-type" => every_type(path, database),
        "bench" => {
            let narrow = number(10_000_000)?;
            let wide = number(500_000)?;
            bench(path, database, narrow, wide)
        }
        "blobs" => {
            let sizes = match parts.next() {
                None => vec![1, 10, 100],
                Some(list) => list
                    .split(',')
                    .map(|n| n.trim().parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        BackendError::Invalid(format!(
                            "fixture {spec:?}: {list:?} is not a list of sizes in MB (e.g. \
                             blobs:1,10,100)"
                        ))
                    })?,
            };
            blobs(path, database, &sizes)
        }
        other => Err(BackendError::Invalid(format!(
            "unknown fixture {other:?}: use clarity[:ROWS], every-type, \
             bench[:NARROW_ROWS[:WIDE_ROWS]] or blobs[:MB,MB,...]"
        ))),
    }
}
