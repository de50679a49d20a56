//! The fault-injection proxy itself, against the real PostgreSQL through psqlODBC: traffic
//! passes, cuts and stalls happen when asked, and every test ends in bounded time.
//!
//! psqlODBC 13.02 with `UseDeclareFetch=1` crashes the process (SIGSEGV inside `SQLFetch`)
//! when the link drops part-way through the answer to a FETCH issued after the first batch.
//! A drop during execute (the first batch) or before a later FETCH's answer starts is reported
//! cleanly as 08S01. So the cut tests here place their cut inside the first batch, or while the
//! server is still working on a later one.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::proxy::FaultProxy;
use ehi_sync::error::DbError;
use ehi_sync::source::errors::{ErrorClass, classify};
use odbc_api::{Connection, ConnectionOptions, Cursor};

fn upstream() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5432))
}

/// The database's connection string, pointed at the proxy, with `fetch` rows per batch.
fn through(db: &common::PgDatabase, proxy: &FaultProxy, fetch: u32) -> String {
    let direct = db.connection_string();
    assert!(direct.contains("Port=5432;") && direct.contains("Fetch=2000;"));
    direct
        .replace("Port=5432;", &format!("Port={};", proxy.port()))
        .replace("Fetch=2000;", &format!("Fetch={fetch};"))
}

/// Connects with a 2 s login timeout, so a stalled login cannot hang a test.
fn connect(connection_string: &str) -> Result<Connection<'static>, DbError> {
    let options = ConnectionOptions {
        login_timeout_sec: Some(2),
        packet_size: None,
    };
    odbc_api::environment()
        .and_then(|env| env.connect_with_connection_string(connection_string, options))
        .map_err(|e| DbError::from_odbc(&e, None))
}

/// Executes `sql` and fetches every row; returns the row count.
fn run(connection: &Connection<'_>, sql: &str) -> Result<u64, DbError> {
    let to_db = |e: odbc_api::Error| DbError::from_odbc(&e, None);
    let mut rows = 0;
    if let Some(mut cursor) = connection.execute(sql, (), None).map_err(to_db)? {
        while cursor.next_row().map_err(to_db)?.is_some() {
            rows += 1;
        }
    }
    Ok(rows)
}

fn assert_connection_lost(result: Result<u64, DbError>) {
    let error = result.expect_err("the link is gone: the statement must fail");
    assert_eq!(error.state, "08S01", "{error}");
    assert_eq!(classify(&error), ErrorClass::ConnectionLost, "{error}");
}

/// Runs `sql` on a thread that owns `connection`; the result arrives on the receiver, so the
/// test can wait for it with a deadline instead of blocking in the driver.
fn spawn_query(
    connection: Connection<'static>,
    sql: &'static str,
) -> mpsc::Receiver<Result<u64, DbError>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(run(&connection, sql));
    });
    receiver
}

#[test]
fn a_connection_through_the_proxy_works() {
    let db = common::pg_database("proxy_ok");
    db.execute(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g",
    );
    let proxy = FaultProxy::start(upstream());
    // Fetch=100: fifty FETCH round trips through the proxy.
    let connection = connect(&through(&db, &proxy, 100)).expect("connect through the proxy");
    let rows = run(&connection, "SELECT * FROM t ORDER BY id").expect("query through the proxy");
    assert_eq!(rows, 5000);
    assert_eq!(proxy.connections_cut(), 0);
}

#[test]
fn cut_after_fails_a_long_query_with_a_connection_error() {
    let db = common::pg_database("proxy_cut");
    let proxy = FaultProxy::start(upstream());
    // One batch holds the whole result (~6 MB), so the cut lands inside execute.
    let connection = connect(&through(&db, &proxy, 100_000)).expect("connect");
    proxy.set_cut_after(Some((20_000, 2_000_000)));
    assert_connection_lost(run(
        &connection,
        "SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g",
    ));
    assert_eq!(proxy.connections_cut(), 1);
    // The driver knows the link is gone: the next statement fails at once, without I/O.
    let started = Instant::now();
    let next = run(&connection, "SELECT 1");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_connection_lost(next);
    // New connections are cut too, after their own budget: the login answer is ~400 bytes.
    proxy.set_cut_after(Some((0, 100)));
    let error = connect(&through(&db, &proxy, 100)).expect_err("login is cut");
    assert_eq!(error.state, "08001", "{error}");
    assert_eq!(classify(&error), ErrorClass::ConnectionLost, "{error}");
    assert_eq!(proxy.connections_cut(), 2);
    proxy.set_cut_after(None);
    let connection = connect(&through(&db, &proxy, 100)).expect("connect after the cuts");
    assert_eq!(run(&connection, "SELECT 1").expect("query"), 1);
}

#[test]
fn cut_all_ends_live_connections_mid_query_and_idle() {
    let db = common::pg_database("proxy_cut_all");
    let proxy = FaultProxy::start(upstream());
    let idle = connect(&through(&db, &proxy, 100)).expect("connect");
    let busy = connect(&through(&db, &proxy, 100)).expect("connect");
    // Rows 101-200 are the second FETCH; the server sleeps on row 150, so the cut lands while
    // the driver waits for that batch's answer.
    let result = spawn_query(
        busy,
        "SELECT g, CASE WHEN g = 150 THEN pg_sleep(3) END FROM generate_series(1, 300) g",
    );
    std::thread::sleep(Duration::from_millis(500));
    proxy.cut_all();
    let started = Instant::now();
    let result = result
        .recv_timeout(Duration::from_secs(5))
        .expect("the cut ends the query");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_connection_lost(result);
    assert_connection_lost(run(&idle, "SELECT 1"));
    assert_eq!(proxy.connections_cut(), 2);
}

#[test]
fn stalled_link_hangs_a_query_until_cut() {
    let db = common::pg_database("proxy_stall");
    let proxy = FaultProxy::start(upstream());
    let connection = connect(&through(&db, &proxy, 100)).expect("connect");
    run(&connection, "SET statement_timeout = '300ms'").expect("set statement_timeout");
    proxy.set_stalled(true);
    let result = spawn_query(connection, "SELECT pg_sleep(1)");
    // Neither the server's statement_timeout nor anything in the driver ends a silent hang.
    assert!(
        result.recv_timeout(Duration::from_millis(1500)).is_err(),
        "a stalled link must hang the query"
    );
    proxy.cut_all();
    let result = result
        .recv_timeout(Duration::from_secs(5))
        .expect("the cut ends the hang");
    assert_connection_lost(result);
}

#[test]
fn unstalling_delivers_what_was_held() {
    let db = common::pg_database("proxy_unstall");
    let proxy = FaultProxy::start(upstream());
    let connection = connect(&through(&db, &proxy, 100)).expect("connect");
    proxy.set_stalled(true);
    let result = spawn_query(connection, "SELECT g FROM generate_series(1, 250) g");
    assert!(
        result.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing moves while stalled"
    );
    proxy.set_stalled(false);
    let rows = result
        .recv_timeout(Duration::from_secs(5))
        .expect("the query finishes once unstalled")
        .expect("no error: the held bytes were forwarded intact");
    assert_eq!(rows, 250);
    assert_eq!(proxy.connections_cut(), 0);
}

#[test]
fn a_stalled_login_ends_at_the_login_timeout() {
    let db = common::pg_database("proxy_stall_login");
    let proxy = FaultProxy::start(upstream());
    proxy.set_stalled(true);
    let started = Instant::now();
    let error = connect(&through(&db, &proxy, 100)).expect_err("a stalled login fails");
    let elapsed = started.elapsed();
    // psqlODBC passes the login timeout to libpq as connect_timeout, which counts whole
    // seconds from time(): 2 s ends after 1-2 s.
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(error.state, "08001", "{error}");
    assert!(error.message.contains("timeout expired"), "{error}");
    assert_eq!(classify(&error), ErrorClass::ConnectionLost);
}

#[test]
fn dropping_the_proxy_closes_everything_promptly() {
    let db = common::pg_database("proxy_drop");
    let proxy = FaultProxy::start(upstream());
    let port = proxy.port();
    let connection = connect(&through(&db, &proxy, 100)).expect("connect");
    proxy.set_stalled(true);
    let result = spawn_query(connection, "SELECT 1");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drop must not hang"
    );
    let result = result
        .recv_timeout(Duration::from_secs(5))
        .expect("dropping the proxy ends the hang");
    assert_connection_lost(result);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener is closed"
    );
}
