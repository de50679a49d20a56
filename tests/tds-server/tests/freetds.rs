//! FreeTDS's ODBC driver (Debian `tdsodbc`, registered as `FreeTDS`) against the test server:
//! an independent TDS client reads the fixture back value for value.

mod common;

use odbc_api::Cursor;
use tds_test_server::TlsMode;

use common::{
    DATABASE, PASSWORD, USER, error_at_row, fetch_all, odbc_connect, read_row, read_through_a_cut,
};

fn connect(port: u16, extra: &str) -> Result<odbc_api::Connection<'static>, odbc_api::Error> {
    odbc_connect(&format!(
        "Driver=FreeTDS;Server=127.0.0.1;Port={port};TDS_Version=7.4;ClientCharset=UTF-8;\
         UID={USER};PWD={{{PASSWORD}}};Database={DATABASE};{extra}"
    ))
}

#[test]
fn every_type_reads_back_value_for_value() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "").expect("FreeTDS logs in");
    let mut cursor = conn
        .execute("select every type", (), None)
        .expect("runs")
        .expect("a cursor");
    let binary: Vec<bool> = common::every_type()
        .iter()
        .map(|(c, _)| common::is_binary(&c.ty))
        .collect();
    let mut rows = Vec::new();
    while let Some(mut row) = cursor.next_row().expect("fetches") {
        rows.push(read_row(&mut row, &binary));
    }
    assert_eq!(rows.len(), 2);
    // FreeTDS writes years before 1000 unpadded.
    common::assert_fixture_row(&rows[0], "1-01-01");
    assert!(rows[1].iter().all(Option::is_none), "row 2 is all NULL");
    let login = &server.logins()[0];
    assert_eq!(login.tds_version, 0x7400_0004);
    assert_eq!(login.features, [0x0A], "FreeTDS asks for UTF8_SUPPORT only");
    assert_eq!(login.prelogin_options, [0, 1, 2, 3, 4]);
    assert_eq!(login.packet_size, 4096);
    // OptionFlags3: fExtension | fUnknownCollationHandling.
    assert_eq!(login.option_flags, [0xE0, 0x03, 0x00, 0x18]);
}

/// Against a server that offers TLS: FreeTDS's default (Encryption=request) sends ENCRYPT_OFF
/// (so only LOGIN7 is encrypted), Encryption=off sends ENCRYPT_NOT_SUP (no TLS at all).
#[test]
fn logs_in_against_an_optional_tls_server() {
    for (extra, sent) in [("", 0), ("Encryption=off", 2), ("Encryption=request", 0)] {
        let server = common::start(TlsMode::Optional);
        let conn = connect(server.port(), extra).expect("FreeTDS logs in");
        let mut cursor = conn
            .execute("select ints 1", (), None)
            .expect("runs")
            .expect("a cursor");
        assert!(cursor.next_row().expect("fetches").is_some());
        assert_eq!(server.logins()[0].prelogin_encryption, sent, "{extra}");
    }
}

#[test]
fn logs_in_over_tls_and_refuses_a_wrong_password() {
    let server = common::start(TlsMode::Required);
    let conn = connect(server.port(), "Encryption=require").expect("FreeTDS logs in over TLS");
    let mut cursor = conn
        .execute("select ints 2", (), None)
        .expect("runs")
        .expect("a cursor");
    let mut n = 0;
    while cursor.next_row().expect("fetches").is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
    assert_eq!(
        server.logins()[0].prelogin_encryption,
        1,
        "require sends ENCRYPT_ON"
    );

    let error = odbc_connect(&format!(
        "Driver=FreeTDS;Server=127.0.0.1;Port={};TDS_Version=7.4;UID={USER};PWD=wrong;\
         Database={DATABASE};Encryption=require",
        server.port()
    ))
    .map(drop)
    .expect_err("a wrong password is refused");
    let text = format!("{error:?}");
    // FreeTDS reports 18456 as 42000 (Driver 18: 28000).
    assert!(
        text.contains("State: 42000") && text.contains("Native error: 18456"),
        "{text}"
    );
}

#[test]
fn parameters_arrive_with_the_type_freetds_sent() {
    use odbc_api::IntoParameter;
    use odbc_api::parameter::{VarCharSlice, VarWCharBox};

    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "").expect("FreeTDS logs in");
    let params = (
        &i64::MAX.into_parameter(),
        &VarCharSlice::new("Ñ€é".as_bytes()),
        &VarWCharBox::from_str_slice("ü€😀"),
    );
    let cursor = conn
        .execute("select params ?, ?, ?", params, None)
        .expect("runs");
    drop(cursor);
    let received = server.received();
    // FreeTDS sends sp_executesql with named parameters, then an ATTENTION when the cursor is
    // dropped before its end.
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[1].kind, tds_test_server::RequestKind::Attention);
    let last = &received[0];
    assert_eq!(
        last.declarations.as_deref(),
        Some("@P1 BIGINT,@P2 VARCHAR(7),@P3 NVARCHAR(4)")
    );
    let values: Vec<_> = last.params.iter().map(|p| p.value.clone()).collect();
    assert_eq!(
        values,
        [
            tds_test_server::Value::Int(i64::MAX),
            tds_test_server::Value::Text("Ñ€é".to_owned()),
            tds_test_server::Value::Text("ü€😀".to_owned()),
        ]
    );
}

#[test]
fn a_deadlock_and_a_cut_link_as_freetds_reports_them() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "").expect("FreeTDS logs in");
    server.add_fault(error_at_row(
        1205,
        51,
        13,
        "Transaction (Process ID 57) was deadlocked.",
    ));
    let (rows, error) = fetch_all(&conn, "select ints 100", None);
    let error = error.expect("the deadlock stops the rows");
    assert_eq!(rows, 5);
    // FreeTDS reports the deadlock victim as 42000 (Driver 18: 40001): classify by the native
    // error.
    assert!(
        error.contains("State: 42000") && error.contains("Native error: 1205"),
        "{error}"
    );
    assert_eq!(fetch_all(&conn, "select ints 3", None), (3, None));

    let error = read_through_a_cut(&server, &conn);
    // FreeTDS's first diagnostic record for a cut link is a warning state: 01000, native
    // 20017 "Unexpected EOF from the server" (Driver 18: 08S01 / 10054).
    assert!(
        error.contains("State: 01000")
            && error.contains("Native error: 20017")
            && error.contains("Unexpected EOF from the server"),
        "{error}"
    );
}

#[test]
fn varchar_in_other_collations() {
    let server = common::start(TlsMode::Off);
    let conn = connect(server.port(), "").expect("FreeTDS logs in");
    let mut cursor = conn
        .execute("select utf8", (), None)
        .expect("runs")
        .expect("a cursor");
    let mut row = cursor.next_row().expect("fetches").expect("a row");
    let mut values = Vec::new();
    for col in 1..=2 {
        let mut buf = Vec::new();
        row.get_text(col, &mut buf).expect("reads");
        values.push(String::from_utf8(buf).expect("utf-8"));
    }
    assert_eq!(values, ["Ñ€😀", "Ñ€é"]);
}

/// Encryption=require encrypts without validating: FreeTDS 1.3 takes no CA file from the ODBC
/// connection string (`CAFile`, `ca file` are ignored; only freetds.conf sets one), so a
/// certificate no CA vouches for is accepted.
#[test]
fn encryption_require_does_not_validate_the_certificate() {
    let server = common::start(TlsMode::Required);
    let dir = tempfile::tempdir().expect("a temp dir");
    // Not the CA that signed the server's certificate.
    let wrong_ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, server.certificate_pem().expect("a certificate")).expect("writes");
    for key in ["CAFile", "ca file"] {
        let extra = format!("Encryption=require;{key}={}", wrong_ca.display());
        connect(server.port(), &extra).unwrap_or_else(|e| panic!("{extra}: {e:?}"));
    }
    assert!(server.logins().iter().all(|l| l.prelogin_encryption == 1));
}
