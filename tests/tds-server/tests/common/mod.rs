//! A fixed backend for the wire tests: a few statements answered from hand-written rows of
//! every SQL Server type, so that clients nobody here wrote read them back value for value.
//! Also the ODBC side the driver tests share: the environment, connecting, reading rows back,
//! and the faults they inject.

#![allow(dead_code)] // each test binary uses its own part

use std::sync::{Arc, OnceLock};

use odbc_api::{ConnectionOptions, Cursor, CursorRow, Environment};
use tds_test_server::{
    Backend, BackendFactory, Collation, ColumnMeta, Fault, Interrupt, Param, ResultSink,
    ServerError, ServerOptions, SqlType, TestServer, TlsMode, Value,
};

pub const USER: &str = "ehi";
pub const PASSWORD: &str = "Ehi-Test-Passw0rd";
pub const DATABASE: &str = "fixture";

/// The test binary's ODBC environment (one per process, as ODBC wants).
pub fn odbc_env() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| Environment::new().expect("an ODBC environment"))
}

/// Connects with `connection_string`, giving up on a login after 5 seconds.
pub fn odbc_connect(
    connection_string: &str,
) -> Result<odbc_api::Connection<'static>, odbc_api::Error> {
    odbc_env().connect_with_connection_string(
        connection_string,
        ConnectionOptions {
            login_timeout_sec: Some(5),
            ..ConnectionOptions::default()
        },
    )
}

/// Reads one row, every column with SQLGetData: the columns `binary` flags as bytes, the rest
/// as text.
pub fn read_row(row: &mut CursorRow<'_>, binary: &[bool]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for (i, &is_binary) in binary.iter().enumerate() {
        let mut buf = Vec::new();
        let col = i as u16 + 1;
        let present = if is_binary {
            row.get_binary(col, &mut buf)
        } else {
            row.get_text(col, &mut buf)
        }
        .unwrap_or_else(|e| panic!("column {col}: {e:?}"));
        out.push(present.then_some(buf));
    }
    out
}

/// Runs `sql` and fetches every row, reading its first column as text: the rows read and the
/// error that stopped them.
pub fn fetch_all(
    conn: &odbc_api::Connection<'_>,
    sql: &str,
    timeout_sec: Option<usize>,
) -> (usize, Option<String>) {
    let mut cursor = match conn.execute(sql, (), timeout_sec) {
        Ok(Some(cursor)) => cursor,
        Ok(None) => return (0, None),
        Err(e) => return (0, Some(format!("{e:?}"))),
    };
    let mut rows = 0;
    let mut buf = Vec::new();
    loop {
        match cursor.next_row() {
            Ok(Some(mut row)) => {
                if let Err(e) = row.get_text(1, &mut buf) {
                    return (rows, Some(format!("{e:?}")));
                }
                rows += 1;
            }
            Ok(None) => return (rows, None),
            Err(e) => return (rows, Some(format!("{e:?}"))),
        }
    }
}

/// A fault: the next `select ints` fails at row 5 with this server error.
pub fn error_at_row(number: i32, state: u8, class: u8, message: &str) -> Fault {
    Fault::ErrorAtRow {
        statement_contains: "ints".to_owned(),
        row: 5,
        error: ServerError::new(number, state, class, message),
        times: 1,
    }
}

/// Reads `select ints 100000` through a link the server cuts at row 5000: some rows arrive,
/// then the fetch fails. Returns the error.
pub fn read_through_a_cut(server: &TestServer, conn: &odbc_api::Connection<'_>) -> String {
    server.add_fault(Fault::CutAtRow {
        statement_contains: "ints".to_owned(),
        row: 5000,
        times: 1,
    });
    let (rows, error) = fetch_all(conn, "select ints 100000", None);
    assert!(rows > 0 && rows <= 5000, "{rows}");
    error.expect("the cut stops the rows")
}

/// Sizes of the long values in the fixture (a few MB each).
pub const VARCHAR_MAX_LEN: usize = 3 * 1024 * 1024;
pub const NVARCHAR_MAX_CHARS: usize = 1024 * 1024;
pub const VARBINARY_MAX_LEN: usize = 3 * 1024 * 1024 + 7;

pub fn start(tls: TlsMode) -> TestServer {
    let options = ServerOptions {
        users: vec![(USER.to_owned(), PASSWORD.to_owned())],
        tls,
        server_name: "tds-test-server".to_owned(),
        port: 0,
    };
    TestServer::start(options, Arc::new(Fixture)).expect("the test server starts")
}

pub struct Fixture;

impl BackendFactory for Fixture {
    fn open(&self, database: &str) -> Result<Box<dyn Backend>, ServerError> {
        if database == DATABASE {
            Ok(Box::new(FixtureBackend))
        } else {
            Err(ServerError::new(
                4060,
                1,
                11,
                format!(
                    "Cannot open database \"{database}\" requested by the login. The login failed."
                ),
            ))
        }
    }
}

fn col(name: &str, ty: SqlType) -> ColumnMeta {
    ColumnMeta {
        name: name.to_owned(),
        ty,
        nullable: true,
    }
}

fn cp1252() -> Collation {
    Collation::default_collation()
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// The long varchar(max) value: CP1252 text with non-ASCII characters throughout.
pub fn varchar_max_value() -> String {
    "Ñ€é-abc|".chars().cycle().take(VARCHAR_MAX_LEN).collect()
}

pub fn nvarchar_max_value() -> String {
    "ü€😀x".chars().cycle().take(NVARCHAR_MAX_CHARS).collect()
}

pub fn varbinary_max_value() -> Vec<u8> {
    (0..VARBINARY_MAX_LEN).map(|i| (i % 251) as u8).collect()
}

/// `mb` MB of bytes for `select huge` (built by copying, fast in a debug build).
pub fn huge_bytes(mb: usize) -> Vec<u8> {
    let len = mb * 1024 * 1024;
    let pattern: Vec<u8> = (0..=252).collect();
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let n = pattern.len().min(len - bytes.len());
        bytes.extend_from_slice(&pattern[..n]);
    }
    bytes
}

/// Every type: (column, value in row 1). Row 2 is all NULL.
pub fn every_type() -> Vec<(ColumnMeta, Value)> {
    vec![
        (col("c_bigint_min", SqlType::BigInt), Value::Int(i64::MIN)),
        (col("c_bigint_max", SqlType::BigInt), Value::Int(i64::MAX)),
        (col("c_int", SqlType::Int), Value::Int(i64::from(i32::MIN))),
        (col("c_smallint", SqlType::SmallInt), Value::Int(-32768)),
        (col("c_tinyint", SqlType::TinyInt), Value::Int(255)),
        (col("c_bit", SqlType::Bit), Value::Int(1)),
        (
            col(
                "c_decimal",
                SqlType::Decimal {
                    precision: 38,
                    scale: 10,
                },
            ),
            text("-9999999999999999999999999999.9999999999"),
        ),
        (
            col(
                "c_numeric",
                SqlType::Decimal {
                    precision: 18,
                    scale: 4,
                },
            ),
            text("12345678901234.5678"),
        ),
        (
            col("c_money", SqlType::Money),
            text("-922337203685477.5808"),
        ),
        (
            col("c_smallmoney", SqlType::SmallMoney),
            text("214748.3647"),
        ),
        (
            col("c_float", SqlType::Float),
            Value::Float(-1.2345678901234567e-300),
        ),
        (
            col("c_real", SqlType::Real),
            Value::Float(f64::from(3.4028235e38f32)),
        ),
        (col("c_date_min", SqlType::Date), text("0001-01-01")),
        (col("c_date_max", SqlType::Date), text("9999-12-31")),
        (
            col("c_time", SqlType::Time { scale: 7 }),
            text("23:59:59.9999999"),
        ),
        (
            col("c_datetime", SqlType::DateTime),
            text("2024-02-29 23:59:59.997"),
        ),
        (
            col("c_smalldatetime", SqlType::SmallDateTime),
            text("2079-06-06 23:59:00"),
        ),
        (
            col("c_datetime2", SqlType::DateTime2 { scale: 7 }),
            text("9999-12-31 23:59:59.9999999"),
        ),
        (
            col("c_dto_plus", SqlType::DateTimeOffset { scale: 7 }),
            text("2024-01-01 01:30:00.1234567 +05:30"),
        ),
        (
            col("c_dto_minus", SqlType::DateTimeOffset { scale: 7 }),
            text("2000-06-15 12:00:00.0000000 -08:00"),
        ),
        (
            col(
                "c_char",
                SqlType::Char {
                    length: 10,
                    collation: cp1252(),
                },
            ),
            text("Ñ€é"),
        ),
        (
            col(
                "c_varchar",
                SqlType::VarChar {
                    length: Some(50),
                    collation: cp1252(),
                },
            ),
            text("Ñ€é abc"),
        ),
        (col("c_nchar", SqlType::NChar { length: 5 }), text("ü€😀")),
        (
            col("c_nvarchar", SqlType::NVarChar { length: Some(50) }),
            text("ü€😀"),
        ),
        (
            col(
                "c_varchar_max",
                SqlType::VarChar {
                    length: None,
                    collation: cp1252(),
                },
            ),
            Value::Text(varchar_max_value()),
        ),
        (
            col("c_nvarchar_max", SqlType::NVarChar { length: None }),
            Value::Text(nvarchar_max_value()),
        ),
        (
            col("c_varbinary_max", SqlType::VarBinary { length: None }),
            Value::Bytes(varbinary_max_value()),
        ),
        (
            col(
                "c_text",
                SqlType::Text {
                    collation: cp1252(),
                },
            ),
            text("Ñ€é text"),
        ),
        (col("c_ntext", SqlType::NText), text("ü€😀 ntext")),
        (
            col("c_image", SqlType::Image),
            Value::Bytes(vec![0, 1, 2, 0xFF]),
        ),
        (
            col("c_binary", SqlType::Binary { length: 4 }),
            Value::Bytes(vec![1, 2, 3]),
        ),
        (
            col("c_varbinary", SqlType::VarBinary { length: Some(10) }),
            Value::Bytes(vec![0xDE, 0xAD]),
        ),
        (
            col("c_guid", SqlType::UniqueIdentifier),
            text("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
        ),
        (col("c_xml", SqlType::Xml), text("<a b=\"ü\">€</a>")),
        (
            col("c_variant_int", SqlType::SqlVariant),
            Value::Variant(Box::new(SqlType::Int), Box::new(Value::Int(42))),
        ),
        (
            col("c_variant_float", SqlType::SqlVariant),
            Value::Variant(Box::new(SqlType::Float), Box::new(Value::Float(1.5))),
        ),
        (
            col("c_variant_datetime", SqlType::SqlVariant),
            Value::Variant(
                Box::new(SqlType::DateTime),
                Box::new(text("2024-01-02 03:04:05.007")),
            ),
        ),
        (
            col("c_rowversion", SqlType::RowVersion),
            Value::Bytes(vec![0, 0, 0, 0, 0, 0, 0x07, 0xD1]),
        ),
    ]
}

/// Statements the fixture answers (by prefix):
/// - `select every type`: the row of [`every_type`], then a row of NULLs;
/// - `select ints N`: N rows of one int column 0..N;
/// - `select params`: one row, the parameters' count;
/// - `select two`: two result sets;
/// - `select bad values`: two rows of time, datetime2, date, datetime;
/// - `select huge MB`: one varbinary(max) of MB megabytes;
/// - `select utf8`: varchar in a UTF-8 collation and in Latin1_General_BIN2;
/// - `set ...`: nothing (DONE without a count);
/// - anything else: Msg 208.
pub struct FixtureBackend;

impl Backend for FixtureBackend {
    fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        sink: &mut dyn ResultSink,
    ) -> Result<(), Interrupt> {
        let lower = sql.to_lowercase();
        if lower.starts_with("select every type") {
            let (columns, values): (Vec<ColumnMeta>, Vec<Value>) = every_type().into_iter().unzip();
            sink.columns(&columns)?;
            sink.row(&values)?;
            sink.row(&vec![Value::Null; columns.len()])?;
            sink.done(Some(2))
        } else if let Some(n) = lower.strip_prefix("select ints ") {
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| ServerError::syntax("select ints N"))?;
            sink.columns(&[col("n", SqlType::Int)])?;
            for i in 0..n {
                sink.row(&[Value::Int(i as i64)])?;
            }
            sink.done(Some(n))
        } else if lower.starts_with("select params") || lower.contains("?") || lower.contains("@p1")
        {
            sink.columns(&[col("count", SqlType::Int)])?;
            sink.row(&[Value::Int(params.len() as i64)])?;
            sink.done(Some(1))
        } else if lower.starts_with("select two") {
            sink.columns(&[col("a", SqlType::Int)])?;
            sink.row(&[Value::Int(1)])?;
            sink.done(Some(1))?;
            sink.columns(&[col("b", SqlType::NVarChar { length: Some(10) })])?;
            sink.row(&[text("zwei")])?;
            sink.row(&[text("deux")])?;
            sink.done(Some(2))
        } else if let Some(mb) = lower.strip_prefix("select huge ") {
            let mb: usize = mb
                .trim()
                .parse()
                .map_err(|_| ServerError::syntax("select huge MB"))?;
            sink.columns(&[col("b", SqlType::VarBinary { length: None })])?;
            sink.row(&[Value::Bytes(huge_bytes(mb))])?;
            sink.done(Some(1))
        } else if lower.starts_with("select utf8") {
            let utf8 = Collation("Latin1_General_100_CI_AS_SC_UTF8".to_owned());
            let bin2 = Collation("Latin1_General_BIN2".to_owned());
            sink.columns(&[
                col(
                    "utf8",
                    SqlType::VarChar {
                        length: Some(20),
                        collation: utf8,
                    },
                ),
                col(
                    "bin2",
                    SqlType::VarChar {
                        length: Some(20),
                        collation: bin2,
                    },
                ),
            ])?;
            sink.row(&[text("Ñ€😀"), text("Ñ€é")])?;
            sink.done(Some(1))
        } else if lower.starts_with("set ") {
            sink.done(None)
        } else if lower.starts_with("select bad values") {
            sink.columns(&[
                col("t", SqlType::Time { scale: 7 }),
                col("d2", SqlType::DateTime2 { scale: 7 }),
                col("d", SqlType::Date),
                col("dt", SqlType::DateTime),
            ])?;
            for day in 1..=2 {
                sink.row(&[
                    text("01:00:00"),
                    text(&format!("2024-01-0{day} 00:00:00")),
                    text(&format!("2024-01-0{day}")),
                    text(&format!("2024-01-0{day} 00:00:00")),
                ])?;
            }
            sink.done(Some(2))
        } else {
            Err(ServerError::invalid_object(sql).into())
        }
    }
}

/// Whether a fixture column is read with SQLGetData as bytes (else as text).
pub fn is_binary(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Binary { .. } | SqlType::VarBinary { .. } | SqlType::Image | SqlType::RowVersion
    )
}

/// Asserts row 1 of `select every type` as a driver returned it (text as UTF-8, binary types
/// as bytes). `date_min` is how the driver writes 0001-01-01 (FreeTDS: `1-01-01`).
pub fn assert_fixture_row(values: &[Option<Vec<u8>>], date_min: &str) {
    let fixture = every_type();
    assert_eq!(values.len(), fixture.len());
    let text = |i: usize| String::from_utf8(values[i].clone().expect("not NULL")).expect("utf-8");
    let expected_text = [
        "-9223372036854775808",
        "9223372036854775807",
        "-2147483648",
        "-32768",
        "255",
        "1",
        "-9999999999999999999999999999.9999999999",
        "12345678901234.5678",
        "-922337203685477.5808",
        "214748.3647",
    ];
    for (i, expected) in expected_text.iter().enumerate() {
        assert_eq!(text(i), *expected, "{}", fixture[i].0.name);
    }
    assert_eq!(
        text(10).parse::<f64>().expect("a float"),
        -1.2345678901234567e-300
    );
    assert_eq!(text(11).parse::<f32>().expect("a real"), 3.4028235e38f32);
    let expected_text = [
        date_min,
        "9999-12-31",
        "23:59:59.9999999",
        "2024-02-29 23:59:59.997",
        "2079-06-06 23:59:00",
        "9999-12-31 23:59:59.9999999",
        "2024-01-01 01:30:00.1234567 +05:30",
        "2000-06-15 12:00:00.0000000 -08:00",
        "Ñ€é       ",
        "Ñ€é abc",
        "ü€😀 ",
        "ü€😀",
    ];
    for (i, expected) in expected_text.iter().enumerate() {
        assert_eq!(text(12 + i), *expected, "{}", fixture[12 + i].0.name);
    }
    assert!(text(24) == varchar_max_value(), "varchar(max) differs");
    assert!(text(25) == nvarchar_max_value(), "nvarchar(max) differs");
    assert!(
        values[26].as_deref() == Some(&varbinary_max_value()[..]),
        "varbinary(max)"
    );
    assert_eq!(text(27), "Ñ€é text");
    assert_eq!(text(28), "ü€😀 ntext");
    assert_eq!(values[29].as_deref(), Some(&[0, 1, 2, 0xFF][..]));
    assert_eq!(
        values[30].as_deref(),
        Some(&[1, 2, 3, 0][..]),
        "binary(4) is zero-padded"
    );
    assert_eq!(values[31].as_deref(), Some(&[0xDE, 0xAD][..]));
    assert_eq!(text(32), "6F9619FF-8B86-D011-B42D-00C04FC964FF");
    assert_eq!(text(33), "<a b=\"ü\">€</a>");
    assert_eq!(text(34), "42");
    assert_eq!(text(35), "1.5");
    assert_eq!(text(36), "2024-01-02 03:04:05.007");
    assert_eq!(
        values[37].as_deref(),
        Some(&[0, 0, 0, 0, 0, 0, 0x07, 0xD1][..])
    );
}
