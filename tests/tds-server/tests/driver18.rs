//! Microsoft ODBC Driver 18 for SQL Server against the test server's wire, with the fixed
//! backend of `common`: login and TLS, every type read back value for value, parameters,
//! errors, faults and cancel.

mod common;

use std::sync::OnceLock;

use odbc_api::{ConnectionOptions, Cursor, Environment};
use tds_test_server::TlsMode;

use common::{DATABASE, PASSWORD, USER};

fn env() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| Environment::new().expect("an ODBC environment"))
}

fn connection_string(port: u16, extra: &str) -> String {
    format!(
        "Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:127.0.0.1,{port};UID={USER};\
         PWD={{{PASSWORD}}};Database={DATABASE};{extra}"
    )
}

fn connect<'e>(port: u16, extra: &str) -> Result<odbc_api::Connection<'e>, odbc_api::Error> {
    env().connect_with_connection_string(
        &connection_string(port, extra),
        ConnectionOptions {
            login_timeout_sec: Some(5),
            ..ConnectionOptions::default()
        },
    )
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
    let login = &server.logins()[0];
    eprintln!("Driver 18 login: {login:?}");
}
