//! Microsoft ODBC Driver 18 for SQL Server against the test server's wire, with the fixed
//! backend of `common`: login and TLS, every type read back value for value, parameters,
//! errors, faults and cancel.

mod common;

use odbc_api::{Cursor, ResultSetMetadata};
use tds_test_server::TlsMode;

use common::{
    DATABASE, PASSWORD, USER, error_at_row, fetch_all, odbc_connect, read_row, read_through_a_cut,
};

fn connection_string(port: u16, extra: &str) -> String {
    format!(
        "Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:127.0.0.1,{port};UID={USER};\
         PWD={{{PASSWORD}}};Database={DATABASE};{extra}"
    )
}

fn connect(port: u16, extra: &str) -> Result<odbc_api::Connection<'static>, odbc_api::Error> {
    odbc_connect(&connection_string(port, extra))
}

#[test]
fn logs_in_without_encryption() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let mut cursor = conn
        .execute("select ints 3", (), None)
        .expect("runs")
        .expect("a cursor");
    let mut n = Vec::new();
    let mut buf = Vec::new();
    while let Some(mut row) = cursor.next_row().expect("fetches") {
        row.get_text(1, &mut buf).expect("reads");
        n.push(String::from_utf8(buf.clone()).expect("utf-8"));
    }
    assert_eq!(n, ["0", "1", "2"]);
    // What Driver 18.6 sends: PRELOGIN VERSION, ENCRYPTION, INSTOPT, THREADID, MARS, TRACEID;
    // LOGIN7 for TDS 7.4 with packet size 0 (the server's choice), OptionFlags1 fUseDB |
    // fDatabase | fSetLang, OptionFlags2 fLanguage | fODBC, OptionFlags3 fExtension, and the
    // features 0x10, SESSIONRECOVERY (0x01), DATACLASSIFICATION (0x09), UTF8_SUPPORT (0x0A),
    // AZURESQLDNSCACHING (0x0B). None is acknowledged: the driver goes on without them.
    let login = &server.logins()[0];
    assert_eq!(login.prelogin_options, [0, 1, 2, 3, 4, 5]);
    assert_eq!(login.prelogin_encryption, 0, "Encrypt=no is ENCRYPT_OFF");
    assert_eq!(login.tds_version, 0x7400_0004);
    assert_eq!(login.packet_size, 0);
    assert_eq!(login.option_flags, [0xE0, 0x03, 0x00, 0x10]);
    assert_eq!(login.features, [0x10, 0x01, 0x09, 0x0A, 0x0B]);
    assert_eq!(login.library, "ODBC");
    assert_eq!(
        (login.user.as_str(), login.database.as_str()),
        (USER, DATABASE)
    );
}

fn query_one(conn: &odbc_api::Connection<'_>, sql: &str) -> Vec<Option<String>> {
    let mut cursor = conn
        .execute(sql, (), None)
        .expect("runs")
        .expect("a cursor");
    let cols = cursor.num_result_cols().expect("columns") as u16;
    let mut row = cursor.next_row().expect("fetches").expect("a row");
    let mut out = Vec::new();
    for c in 1..=cols {
        let mut buf = Vec::new();
        let present = row.get_text(c, &mut buf).expect("reads");
        out.push(present.then(|| String::from_utf8(buf).expect("utf-8")));
    }
    out
}

#[test]
fn logs_in_with_tls_trusting_the_certificate() {
    for tls in [TlsMode::Optional, TlsMode::Required] {
        let server = common::start(tls);
        let conn = connect(server.port(), "Encrypt=yes;TrustServerCertificate=yes")
            .expect("Driver 18 logs in over TLS");
        assert_eq!(query_one(&conn, "select ints 1"), [Some("0".to_owned())]);
        assert_eq!(
            server.logins()[0].prelogin_encryption,
            1,
            "Encrypt=yes sends ENCRYPT_ON"
        );
    }
}

/// Encrypt=no against a server that offers TLS: both sides ENCRYPT_OFF, only LOGIN7 travels
/// inside TLS, and Driver 18 does not validate the certificate.
#[test]
fn encrypt_no_against_an_optional_tls_server_encrypts_the_login_only() {
    let server = common::start(TlsMode::Optional);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    assert_eq!(query_one(&conn, "select ints 1"), [Some("0".to_owned())]);
    assert_eq!(
        server.logins()[0].prelogin_encryption,
        0,
        "Encrypt=no sends ENCRYPT_OFF"
    );
}

/// Encrypt=no against a server that requires TLS (ENCRYPT_REQ): everything is encrypted and
/// Driver 18 validates the certificate, so one from an untrusted CA needs
/// TrustServerCertificate=yes.
#[test]
fn encrypt_no_against_a_tls_required_server_validates_the_certificate() {
    let server = common::start(TlsMode::Required);
    let error = connect(server.port(), "Encrypt=no")
        .map(drop)
        .expect_err("validation fails");
    let text = format!("{error:?}");
    assert!(
        text.contains("08001") && text.contains("certificate verify failed"),
        "{text}"
    );
    let conn =
        connect(server.port(), "Encrypt=no;TrustServerCertificate=yes").expect("Driver 18 logs in");
    assert_eq!(query_one(&conn, "select ints 1"), [Some("0".to_owned())]);
}

/// Encrypt=yes validates the certificate (signed by the untrusted test CA) and fails;
/// ServerCertificate (pinning)
/// does not help there: Driver 18.6 uses it under Encrypt=strict only (see the next test).
#[test]
fn an_untrusted_certificate_fails_validation() {
    let server = common::start(TlsMode::Required);
    let dir = tempfile::tempdir().expect("a temp dir");
    let pem = dir.path().join("server.pem");
    std::fs::write(&pem, server.certificate_pem().expect("a certificate")).expect("writes");
    for extra in [
        "Encrypt=yes;TrustServerCertificate=no".to_owned(),
        format!("Encrypt=yes;ServerCertificate={}", pem.display()),
    ] {
        let error = connect(server.port(), &extra)
            .map(drop)
            .expect_err("the certificate is refused");
        let text = format!("{error:?}");
        assert!(text.contains("08001"), "{extra}: {text}");
        assert!(
            text.contains("certificate verify failed:self-signed certificate in certificate chain"),
            "{extra}: {text}"
        );
    }
}

#[test]
fn a_wrong_password_is_18456_and_28000() {
    let server = common::start(TlsMode::Off);
    let error = odbc_connect(&format!(
        "Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:127.0.0.1,{};UID={USER};\
         PWD=wrong;Database={DATABASE};Encrypt=no",
        server.port()
    ))
    .map(drop)
    .expect_err("a wrong password is refused");
    let text = format!("{error:?}");
    assert!(text.contains("28000"), "{text}");
    assert!(text.contains("18456"), "{text}");
    assert!(text.contains("Login failed for user 'ehi'."), "{text}");
    assert!(
        !text.contains("wrong"),
        "the password is not echoed: {text}"
    );
}

#[test]
fn an_unknown_database_is_4060() {
    let server = common::start(TlsMode::Off);
    let error = odbc_connect(&format!(
        "Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:127.0.0.1,{};UID={USER};\
         PWD={{{PASSWORD}}};Database=nosuch;Encrypt=no",
        server.port()
    ))
    .map(drop)
    .expect_err("an unknown database is refused");
    let text = format!("{error:?}");
    assert!(text.contains("4060"), "{text}");
}

#[test]
fn strict_encryption_with_a_pinned_certificate() {
    let server = common::start(TlsMode::Required);
    let dir = tempfile::tempdir().expect("a temp dir");
    let pem = dir.path().join("server.pem");
    std::fs::write(&pem, server.certificate_pem().expect("a certificate")).expect("writes");
    let conn = connect(
        server.port(),
        &format!("Encrypt=strict;ServerCertificate={}", pem.display()),
    )
    .expect("a pinned certificate is accepted under strict encryption");
    assert_eq!(query_one(&conn, "select ints 1"), [Some("0".to_owned())]);
    // Inside TLS already, Driver 18's PRELOGIN says ENCRYPT_NOT_SUP; LOGIN7 is still TDS 7.4.
    let login = &server.logins()[0];
    assert_eq!(
        (login.prelogin_encryption, login.tds_version),
        (2, 0x7400_0004)
    );
}

#[test]
fn every_type_reads_back_value_for_value() {
    let server = common::start(TlsMode::Off);
    every_type_through(&server, "Encrypt=no");
}

#[test]
fn every_type_reads_back_value_for_value_over_tls() {
    let server = common::start(TlsMode::Required);
    every_type_through(&server, "Encrypt=yes;TrustServerCertificate=yes");
}

fn every_type_through(server: &tds_test_server::TestServer, extra: &str) {
    let conn = connect(server.port(), extra).expect("Driver 18 logs in");
    let mut cursor = conn
        .execute("select every type", (), None)
        .expect("runs")
        .expect("a cursor");
    let fixture = common::every_type();
    let binary: Vec<bool> = fixture
        .iter()
        .map(|(c, _)| common::is_binary(&c.ty))
        .collect();
    // (max) types are described with column size 0 (None), text/ntext/image with 2^31-1
    // and 2^30-1.
    let described: Vec<String> = (1..=fixture.len() as u16)
        .map(|i| {
            let mut d = odbc_api::ColumnDescription::default();
            cursor.describe_col(i, &mut d).expect("describes");
            format!("{:?}", d.data_type)
        })
        .collect();
    let other = |t: i16, size: &str, digits: u8| {
        format!(
            "Other {{ data_type: SqlDataType({t}), column_size: {size}, decimal_digits: {digits} }}"
        )
    };
    assert_eq!(
        described[14],
        other(-154, "Some(16)", 7),
        "time(7): SQL_SS_TIME2"
    );
    assert_eq!(
        described[18],
        other(-155, "Some(34)", 7),
        "datetimeoffset(7)"
    );
    assert_eq!(
        described[32],
        other(-11, "Some(36)", 0),
        "uniqueidentifier: SQL_GUID"
    );
    assert_eq!(described[34], other(-150, "Some(8000)", 0), "sql_variant");
    assert_eq!(described[37], "Binary { length: Some(8) }", "rowversion");
    assert_eq!(described[24], "Varchar { length: None }");
    assert_eq!(described[25], "WVarchar { length: None }");
    assert_eq!(described[26], "Varbinary { length: None }");
    assert_eq!(described[27], "LongVarchar { length: Some(2147483647) }");
    assert_eq!(described[28], "WLongVarchar { length: Some(1073741823) }");
    assert_eq!(
        described[33],
        "Other { data_type: SqlDataType(-152), column_size: None, decimal_digits: 0 }"
    );
    let values = {
        let mut row = cursor.next_row().expect("fetches").expect("row 1");
        read_row(&mut row, &binary)
    };
    let nulls = {
        let mut row = cursor.next_row().expect("fetches").expect("row 2");
        read_row(&mut row, &binary)
    };
    assert!(cursor.next_row().expect("fetches").is_none());
    common::assert_fixture_row(&values, "0001-01-01");
    assert!(
        nulls.iter().all(Option::is_none),
        "row 2 is all NULL: {nulls:?}"
    );
}

#[test]
fn parameters_arrive_with_the_type_the_driver_sent() {
    use odbc_api::parameter::{VarCharSlice, VarWCharBox, WithDataType};
    use odbc_api::{DataType, IntoParameter, sys::Timestamp};
    use tds_test_server::{Param, RequestKind, SqlType, Value};

    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let decimal = WithDataType {
        value: VarCharSlice::new(b"-12345.6789"),
        data_type: DataType::Decimal {
            precision: 38,
            scale: 4,
        },
    };
    let timestamp = WithDataType {
        value: Timestamp {
            year: 2024,
            month: 2,
            day: 29,
            hour: 12,
            minute: 34,
            second: 56,
            fraction: 123_456_700,
        },
        data_type: DataType::Timestamp { precision: 7 },
    };
    let params = (
        &i64::MIN.into_parameter(),
        &VarCharSlice::new("Ñ€é".as_bytes()),
        &VarWCharBox::from_str_slice("ü€😀"),
        &decimal,
        &timestamp,
    );
    let sql = "select params ?, ?, ?, ?, ?";
    let mut cursor = conn
        .execute(sql, params, None)
        .expect("runs")
        .expect("a cursor");
    let mut row = cursor.next_row().expect("fetches").expect("a row");
    let mut buf = Vec::new();
    row.get_text(1, &mut buf).expect("reads");
    assert_eq!(buf, b"5");
    drop(cursor);
    let received = server.received();
    let last = received.last().expect("a request");
    assert_eq!(last.kind, RequestKind::Rpc("sp_executesql".to_owned()));
    assert_eq!(last.sql, "select params @P1, @P2, @P3, @P4, @P5");
    let p = |name: &str, ty: SqlType, value: Value| Param {
        name: name.to_owned(),
        ty,
        value,
    };
    let expected = [
        p("@P1", SqlType::BigInt, Value::Int(i64::MIN)),
        // Narrow text arrives as varchar in the CP1252 collation, converted from UTF-8, and
        // declared with the length of the UTF-8 buffer (7 bytes for 3 characters).
        p(
            "@P2",
            SqlType::VarChar {
                length: Some(7),
                collation: tds_test_server::Collation::default_collation(),
            },
            Value::Text("Ñ€é".to_owned()),
        ),
        p(
            "@P3",
            SqlType::NVarChar { length: Some(4) },
            Value::Text("ü€😀".to_owned()),
        ),
        p(
            "@P4",
            SqlType::Decimal {
                precision: 38,
                scale: 4,
            },
            Value::Text("-12345.6789".to_owned()),
        ),
        p(
            "@P5",
            SqlType::DateTime2 { scale: 7 },
            Value::Text("2024-02-29 12:34:56.1234567".to_owned()),
        ),
    ];
    assert_eq!(last.params, expected);
    assert_eq!(
        last.declarations.as_deref(),
        Some("@P1 bigint,@P2 varchar(7),@P3 nvarchar(4),@P4 decimal(38,4),@P5 datetime2")
    );
}

#[test]
fn a_prepared_statement_rebound_is_prepared_again() {
    use odbc_api::IntoParameter;
    use tds_test_server::RequestKind;

    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let mut prepared = conn.prepare("select params ?").expect("prepares");
    for i in 0..3i32 {
        let mut cursor = prepared
            .execute(&i.into_parameter())
            .expect("runs")
            .expect("a cursor");
        let mut row = cursor.next_row().expect("fetches").expect("a row");
        let mut buf = Vec::new();
        row.get_text(1, &mut buf).expect("reads");
        assert_eq!(buf, b"1");
    }
    drop(prepared);
    let kinds: Vec<(RequestKind, Option<String>)> = server
        .received()
        .into_iter()
        .map(|r| (r.kind, r.declarations))
        .collect();
    // odbc-api binds the parameters again for each execution, and Driver 18 then prepares
    // again each time (sp_prepexec), unpreparing only the last handle.
    let prepexec = (
        RequestKind::Rpc("sp_prepexec".to_owned()),
        Some("@P1 int".to_owned()),
    );
    let unprepare = (RequestKind::Rpc("sp_unprepare".to_owned()), None);
    assert_eq!(
        kinds,
        [prepexec.clone(), prepexec.clone(), prepexec, unprepare]
    );
    let values: Vec<_> = server.received().iter().map(|r| r.params.clone()).collect();
    assert_eq!(values[1][0].value, tds_test_server::Value::Int(1));
    assert_eq!(
        values[3][0].value,
        tds_test_server::Value::Int(3),
        "the last handle"
    );
}

#[test]
fn errors_at_a_row_give_the_sqlstate_and_native_error() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let cases = [
        (
            1205,
            51,
            13,
            "Transaction (Process ID 57) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.",
            "40001",
        ),
        (
            1222,
            56,
            16,
            "Lock request time out period exceeded.",
            "42000",
        ),
        (
            40613,
            1,
            17,
            "Database 'fixture' on server 'tds-test-server' is not currently available.  Please retry the connection later.",
            "42000",
        ),
    ];
    for (number, state, class, message, sqlstate) in cases {
        server.add_fault(error_at_row(number, state, class, message));
        let (rows, error) = fetch_all(&conn, "select ints 100", None);
        let error = error.expect("the fault stops the rows");
        assert_eq!(rows, 5, "{number}");
        assert!(
            error.contains(&format!("State: {sqlstate}")),
            "{number}: {error}"
        );
        assert!(
            error.contains(&format!("Native error: {number}")),
            "{number}: {error}"
        );
        assert!(error.contains(message), "{number}: {error}");
        // The connection goes on.
        assert_eq!(fetch_all(&conn, "select ints 3", None), (3, None));
    }
}

#[test]
fn a_fatal_error_and_a_cut_link_end_the_connection() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    server.add_fault(error_at_row(
        233,
        0,
        20,
        "A transport-level error has occurred when receiving results from the server.",
    ));
    let (rows, error) = fetch_all(&conn, "select ints 100", None);
    let error = error.expect("the fault stops the rows");
    assert_eq!(rows, 5);
    let (_, after) = fetch_all(&conn, "select ints 3", None);
    assert!(
        error.contains("State: 23000") && error.contains("Native error: 233"),
        "{error}"
    );
    assert!(
        after
            .expect("the connection is gone")
            .contains("State: 08S01")
    );

    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    // Cut after some packets went out: the driver has rows, then SQLFetch fails.
    let error = read_through_a_cut(&server, &conn);
    assert!(
        error.contains("State: 08S01") && error.contains("Native error: 10054"),
        "{error}"
    );
}

/// time(7), datetime2(7) at 24:00:00 and a date after 9999-12-31: SQLGetData fails with 22007;
/// a datetime past the day with 22018.
#[test]
fn a_value_the_driver_cannot_convert() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let expected = [
        ("22007", "Invalid time format"),
        ("22007", "Invalid time format"),
        ("22007", "Invalid date format"),
        ("22018", "Invalid character value for cast specification"),
    ];
    for (column, (state, message)) in expected.into_iter().enumerate() {
        server.add_fault(tds_test_server::Fault::BadValueAtRow {
            statement_contains: "bad values".to_owned(),
            row: 1,
            column,
            times: 1,
        });
        let mut cursor = conn
            .execute("select bad values", (), None)
            .expect("runs")
            .expect("a cursor");
        let mut buf = Vec::new();
        let mut row = cursor.next_row().expect("row 1").expect("row 1");
        row.get_text(1, &mut buf).expect("row 1 converts");
        let second = cursor.next_row();
        let error = match second {
            Ok(Some(mut row)) => row
                .get_text(column as u16 + 1, &mut buf)
                .map(|_| String::from_utf8_lossy(&buf).into_owned()),
            Ok(None) => Ok("no row".to_owned()),
            Err(e) => Err(e),
        };
        let error = format!("{:?}", error.expect_err("the value does not convert"));
        assert!(
            error.contains(&format!("State: {state}")) && error.contains(message),
            "column {column}: {error}"
        );
    }
}

#[test]
fn a_query_timeout_sends_attention_while_the_server_stalls() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    server.add_fault(tds_test_server::Fault::StallAtRow {
        statement_contains: "ints".to_owned(),
        row: 0,
        duration: std::time::Duration::from_secs(2),
        times: 1,
    });
    let started = std::time::Instant::now();
    let (rows, error) = fetch_all(&conn, "select ints 200000", Some(1));
    // Driver 18 sends ATTENTION after 1 s and waits for DONE_ATTN, which comes when the stall
    // ends and the server, streaming again, notices the ATTENTION.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    let error = error.expect("the timeout stops the statement");
    assert_eq!(rows, 0);
    assert!(
        error.contains("State: HYT00") && error.contains("Query timeout expired"),
        "{error}"
    );
    let attention = server.received().pop().expect("a request");
    assert_eq!(attention.kind, tds_test_server::RequestKind::Attention);
    assert_eq!(
        attention.sql, "select ints 200000",
        "noticed while the rows streamed"
    );
    // The connection goes on after the ATTENTION was acknowledged.
    assert_eq!(fetch_all(&conn, "select ints 3", None), (3, None));
}

#[test]
fn a_login_error_fault_refuses_the_login() {
    let server = common::start(TlsMode::Off);
    server.add_fault(tds_test_server::Fault::LoginError {
        error: tds_test_server::ServerError::new(
            4060,
            1,
            11,
            "Cannot open database \"fixture\" requested by the login. The login failed.",
        ),
        times: 1,
    });
    let error = connect(server.port(), "Encrypt=no")
        .map(drop)
        .expect_err("refused");
    let text = format!("{error:?}");
    eprintln!("login fault: {text}");
    assert!(text.contains("Native error: 4060"), "{text}");
    connect(server.port(), "Encrypt=no").expect("the next login succeeds");
}

/// Runs `tests/python/driver18_odbc.py` (pyodbc: `pip install pyodbc`) and parses its JSON.
fn pyodbc(args: &[&str]) -> serde_json::Value {
    pyodbc_with_env(args, &[])
}

fn pyodbc_with_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/driver18_odbc.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "driver18_odbc.py failed (pyodbc installed? pip install pyodbc): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Statement text with non-ASCII characters: intact through the wide SQLExecDirectW (pyodbc, and
/// odbc-api, which the workspace builds with its `wide` feature), read as Latin-1 by Driver 18
/// through the narrow SQLExecDirect (unixODBC's `isql`, a narrow client).
#[test]
fn non_ascii_statement_text_is_intact_only_through_the_wide_functions() {
    let server = common::start(TlsMode::Off);
    let sql = "select params 'Ñ€é ü😀' as [Ünï col]";
    let out = pyodbc(&["wide", &connection_string(server.port(), "Encrypt=no"), sql]);
    assert_eq!(out["value"], "0");
    assert_eq!(server.received().pop().expect("a request").sql, sql);

    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    fetch_all(&conn, sql, None);
    assert_eq!(server.received().pop().expect("a request").sql, sql);

    let mut isql = std::process::Command::new("isql")
        .args(["-b", "-k", &connection_string(server.port(), "Encrypt=no")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unixODBC's isql runs (Debian package unixodbc)");
    {
        use std::io::Write;
        let mut stdin = isql.stdin.take().expect("stdin");
        writeln!(stdin, "{sql}").expect("statement to isql");
    }
    let output = isql.wait_with_output().expect("isql ends");
    assert!(
        output.status.success(),
        "isql: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    // isql also ends the connection with requests of its own: the statement is the last one
    // with text.
    let narrow = server
        .received()
        .into_iter()
        .rev()
        .find(|r| r.sql.starts_with("select params"))
        .expect("the statement")
        .sql;
    assert_eq!(
        narrow, "select params 'Ã\u{91}â\u{82}¬Ã© Ã¼ð\u{9f}\u{98}\u{80}' as [Ã\u{9c}nÃ¯ col]",
        "the UTF-8 bytes, each read as one Latin-1 character"
    );
}

/// SQLCancel from another thread while rows stream: Driver 18 sends ATTENTION, the server
/// stops at a row boundary and answers DONE_ATTN, the fetch fails with HY008 (or HY010, by
/// timing) and the connection goes on.
#[test]
fn sqlcancel_while_rows_stream() {
    for (tls, extra) in [
        (TlsMode::Off, "Encrypt=no"),
        (TlsMode::Required, "Encrypt=yes;TrustServerCertificate=yes"),
    ] {
        let server = common::start(tls);
        let out = pyodbc(&["cancel", &connection_string(server.port(), extra)]);
        // HY008 when the cancel lands inside SQLFetch; HY010 when it lands between two fetches
        // (SQLCancel then acts as SQLFreeStmt(SQL_CLOSE) and the next fetch has no cursor).
        let state = out["state"].as_str().unwrap_or_default();
        assert!(state == "HY008" || state == "HY010", "{extra}: {out}");
        let rows = out["rows"].as_u64().expect("rows");
        assert!(
            rows < 5_000_000,
            "{extra}: the cancel stopped the stream: {rows}"
        );
        assert_eq!(out["after"], 3, "{extra}: the connection goes on");
        let stopped: Vec<String> = server
            .received()
            .into_iter()
            .filter(|r| r.kind == tds_test_server::RequestKind::Attention)
            .map(|r| r.sql)
            .collect();
        assert_eq!(
            stopped,
            ["select ints 5000000"],
            "{extra}: the ATTENTION stopped the stream"
        );
    }
}

/// A 100 MB value streams as PLP chunks, packet by packet, and arrives whole (text of
/// (max) types takes the same path, with a few MB in `every_type`).
#[test]
fn values_of_100_mb_arrive_whole() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let started = std::time::Instant::now();
    let mut cursor = conn
        .execute("select huge 100", (), None)
        .expect("runs")
        .expect("a cursor");
    let mut row = cursor.next_row().expect("fetches").expect("a row");
    let mut bytes = Vec::new();
    assert!(row.get_binary(1, &mut bytes).expect("reads"));
    eprintln!("100 MB in {:?}", started.elapsed());
    assert!(
        bytes == common::huge_bytes(100),
        "varbinary(max) of 100 MB differs"
    );
}

#[test]
fn several_result_sets_and_a_backend_error() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let cursor = conn
        .execute("select two", (), None)
        .expect("runs")
        .expect("a cursor");
    let mut sets = Vec::new();
    let mut next = Some(cursor);
    while let Some(mut cursor) = next {
        let mut values = Vec::new();
        let mut buf = Vec::new();
        while let Some(mut row) = cursor.next_row().expect("fetches") {
            row.get_text(1, &mut buf).expect("reads");
            values.push(String::from_utf8(buf.clone()).expect("utf-8"));
        }
        sets.push(values);
        next = cursor.more_results().expect("more results");
    }
    assert_eq!(sets, [vec!["1"], vec!["zwei", "deux"]]);

    let (_, error) = fetch_all(&conn, "select from nowhere", None);
    let error = error.expect("Msg 208");
    assert!(
        error.contains("State: 42S02") && error.contains("Native error: 208"),
        "{error}"
    );
    assert_eq!(fetch_all(&conn, "select ints 2", None), (2, None));
}

/// SQLPrepare then SQLNumResultCols/SQLDescribeCol: Driver 18 sends sp_prepare and reads the
/// COLMETADATA it returns; SQLExecute then runs the handle with sp_execute.
#[test]
fn a_prepared_statement_is_described_before_it_runs() {
    use tds_test_server::RequestKind;

    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let mut prepared = conn.prepare("select ints 3").expect("prepares");
    assert_eq!(prepared.num_result_cols().expect("described"), 1);
    let mut d = odbc_api::ColumnDescription::default();
    prepared.describe_col(1, &mut d).expect("describes");
    assert_eq!(d.name_to_string().expect("a name"), "n");
    let mut cursor = prepared.execute(()).expect("runs").expect("a cursor");
    let mut rows = 0;
    while cursor.next_row().expect("fetches").is_some() {
        rows += 1;
    }
    assert_eq!(rows, 3);
    drop(cursor);
    drop(prepared);
    let kinds: Vec<RequestKind> = server.received().into_iter().map(|r| r.kind).collect();
    let rpc = |name: &str| RequestKind::Rpc(name.to_owned());
    assert_eq!(
        kinds,
        [rpc("sp_prepare"), rpc("sp_execute"), rpc("sp_unprepare")]
    );
}

/// Autocommit off: Driver 18 begins a transaction with a transaction manager request, commits
/// with "commit and begin the next", and rolls that one back when autocommit goes on again.
#[test]
fn autocommit_off_is_transaction_manager_requests() {
    use tds_test_server::RequestKind;

    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    conn.set_autocommit(false).expect("autocommit off");
    assert_eq!(fetch_all(&conn, "select ints 2", None), (2, None));
    conn.commit().expect("commits");
    conn.set_autocommit(true).expect("autocommit on");
    let received: Vec<(RequestKind, String)> = server
        .received()
        .into_iter()
        .map(|r| (r.kind, r.sql))
        .collect();
    let tm = |sql: &str| (RequestKind::Transaction, sql.to_owned());
    assert_eq!(
        received,
        [
            tm("BEGIN TRANSACTION"),
            (RequestKind::Batch, "select ints 2".to_owned()),
            tm("COMMIT TRANSACTION; BEGIN TRANSACTION"),
            tm("ROLLBACK TRANSACTION"),
        ]
    );
}

#[test]
fn varchar_in_other_collations() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    // UTF-8 collated varchar is decoded as UTF-8 although UTF8_SUPPORT was not acknowledged.
    let row = query_one(&conn, "select utf8");
    assert_eq!(row, [Some("Ñ€😀".to_owned()), Some("Ñ€é".to_owned())]);
}

/// `cut_all` drops live connections: the next statement fails with 08S01, a new connection
/// works; dropping the server closes the rest.
#[test]
fn cut_all_drops_live_connections() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    assert_eq!(fetch_all(&conn, "select ints 1", None), (1, None));
    server.cut_all();
    let (_, error) = fetch_all(&conn, "select ints 1", None);
    let error = error.expect("the connection is gone");
    assert!(error.contains("State: 08S01"), "{error}");
    let again = connect(server.port(), "Encrypt=no").expect("a new connection");
    assert_eq!(fetch_all(&again, "select ints 2", None), (2, None));
    drop(server);
    let (_, error) = fetch_all(&again, "select ints 1", None);
    assert!(error.expect("the server is gone").contains("State: 08S01"));
}

/// `{call name(?)}` is an RPC by name; the backend sees `EXEC name` with the parameters.
#[test]
fn an_odbc_call_is_an_rpc_by_name() {
    use odbc_api::IntoParameter;
    use tds_test_server::{RequestKind, Value};

    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    let result = conn.execute("{call dbo.some_proc(?)}", &42i32.into_parameter(), None);
    let error = format!(
        "{:?}",
        result.map(drop).expect_err("the fixture has no procedures")
    );
    assert!(error.contains("Native error: 208"), "{error}");
    let last = server.received().pop().expect("a request");
    assert_eq!(last.kind, RequestKind::Rpc("dbo.some_proc".to_owned()));
    assert_eq!(last.sql, "EXEC dbo.some_proc");
    assert_eq!(last.params.len(), 1);
    assert_eq!(last.params[0].value, Value::Int(42));
}

/// A stall without a query timeout: the rows arrive, late.
#[test]
fn a_stall_delays_the_rows() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "Encrypt=no").expect("Driver 18 logs in");
    server.add_fault(tds_test_server::Fault::StallAtRow {
        statement_contains: "ints".to_owned(),
        row: 2,
        duration: std::time::Duration::from_millis(800),
        times: 1,
    });
    let started = std::time::Instant::now();
    assert_eq!(fetch_all(&conn, "select ints 5", None), (5, None));
    assert!(started.elapsed() >= std::time::Duration::from_millis(800));
    let started = std::time::Instant::now();
    assert_eq!(fetch_all(&conn, "select ints 5", None), (5, None));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "fired once"
    );
}

/// With the test CA as its trust store (OpenSSL's SSL_CERT_FILE, in a child process) Driver 18
/// validates the certificate like a real server's: Encrypt=yes with TrustServerCertificate=no
/// succeeds for Server=localhost, fails the host name check for 127.0.0.1 unless
/// HostNameInCertificate=localhost. Surprise: Server=localhost with HostNameInCertificate naming
/// another host still succeeds (Driver 18.6 accepts the server name too).
#[test]
fn a_trusted_ca_validates_the_certificate_and_its_host_name() {
    let server = common::start(TlsMode::Required);
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_certificate_pem().expect("a CA")).expect("writes");
    let port = server.port();
    let login = format!(
        "UID={USER};PWD={{{PASSWORD}}};Database={DATABASE};Encrypt=yes;TrustServerCertificate=no"
    );
    let driver = "Driver={ODBC Driver 18 for SQL Server}";
    let host_mismatch = Some("certificate verify failed:subject name does not match host name");
    let cases = [
        ("localhost", "", None),
        ("127.0.0.1", "", host_mismatch),
        ("127.0.0.1", ";HostNameInCertificate=localhost", None),
        (
            "127.0.0.1",
            ";HostNameInCertificate=other.example",
            host_mismatch,
        ),
        ("localhost", ";HostNameInCertificate=other.example", None),
    ];
    for (host, extra, failure) in cases {
        let case = format!("{driver};Server=tcp:{host},{port};{login}{extra}");
        let out = pyodbc_with_env(&["connect", &case], &[("SSL_CERT_FILE", &ca)]);
        match failure {
            None => assert_eq!(out["ok"], true, "{host}{extra}: {out}"),
            Some(message) => {
                assert_eq!(out["state"], "08001", "{host}{extra}: {out}");
                let text = out["message"].as_str().unwrap_or_default();
                assert!(text.contains(message), "{host}{extra}: {out}");
            }
        }
    }
    // Without the CA, the same connection fails: the chain is not trusted.
    let case = format!("{driver};Server=tcp:localhost,{port};{login}");
    let out = pyodbc(&["connect", &case]);
    assert_eq!(out["ok"], false, "{out}");
}
