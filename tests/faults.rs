//! Real faults through the real driver: connections cut mid-stream by a TCP proxy, backends
//! terminated by the server, tables locked by another session, and a connection that goes
//! silent. The sync must retry where it failed and still produce exactly the source rows, or
//! fail one table cleanly while the others finish. Every test ends in bounded time.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::output::assert_postgres_output_equals_source;
use common::proxy::FaultProxy;
use common::running::{Finished, Running};
use serde_json::{Value, json};

const SCALE: u64 = 600;

fn config_json(connection_string: &str, output: &Path) -> Value {
    json!({
        "connection_string": connection_string,
        "output_dir": output,
        "small_table_threshold": 200,
        "large_table_threshold": 8000,
        "max_retries": 8,
        "retry_sleep_seconds": 0.05,
        "lock_timeout_seconds": 0.3,
        "stall_timeout_seconds": 3,
        "login_timeout_seconds": 5,
        "fetch_buffer_bytes": 65536,
        "tiers": {
            "small": {"batch_size": 20, "partition_size": 50},
            "medium": {"batch_size": 100, "partition_size": 500},
            "large": {"batch_size": 200, "partition_size": 3000}
        }
    })
}

struct Setup {
    db: common::PgDatabase,
    _dir: tempfile::TempDir,
    out: PathBuf,
    config: PathBuf,
    scale: u64,
}

/// A generated database, and a config whose connection goes through `port` (the proxy's, or
/// PostgreSQL's own).
fn setup(prefix: &str, port: Option<u16>, scale: u64) -> Setup {
    let db = common::pg_database(prefix);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let direct = common::write_config(dir.path(), config_json(&db.connection_string(), &out));
    common::generate(&direct, scale);
    let connection_string = match port {
        // psqlODBC 13.02 crashes (SIGSEGV in SQLFetch) when a link is cut while the answer to
        // a FETCH after the first one arrives; with Fetch above the partition size each
        // partition arrives in its first FETCH, where a cut is a clean 08S01.
        Some(port) => db
            .connection_string()
            .replace("Port=5432;", &format!("Port={port};"))
            .replace("Fetch=2000;", "Fetch=100000;"),
        None => db.connection_string(),
    };
    let config = common::write_config(dir.path(), config_json(&connection_string, &out));
    Setup {
        db,
        _dir: dir,
        out,
        config,
        scale,
    }
}

impl Setup {
    /// Rewrites the config file with `extra` keys on top.
    fn set(&self, extra: Value) {
        let config: Value =
            serde_json::from_slice(&std::fs::read(&self.config).expect("config")).expect("JSON");
        let config = common::with(config, extra);
        std::fs::write(&self.config, serde_json::to_vec(&config).expect("JSON")).expect("write");
    }
}

fn assert_output_equals_source(s: &Setup, skip: &[&str]) {
    assert_postgres_output_equals_source(&s.db, &s.out, s.scale, skip);
}

fn upstream() -> std::net::SocketAddr {
    "127.0.0.1:5432".parse().expect("address")
}

/// The proxy cuts every connection after a random number of bytes, several times per table:
/// each cut is retried on a new connection after the last key written.
#[test]
fn connections_cut_mid_stream_are_retried_and_output_equals_source() {
    let proxy = FaultProxy::start(upstream());
    let s = setup("fault_cut", Some(proxy.port()), SCALE);
    proxy.set_cut_after(Some((150_000, 400_000)));
    let Finished { code, stderr, .. } =
        Running::sync(&s.config, &[]).wait(Duration::from_secs(240));
    assert_eq!(code, 0, "{stderr}");
    let cuts = proxy.connections_cut();
    assert!(cuts >= 5, "only {cuts} connections were cut");
    assert!(
        stderr.contains("the connection was lost [connection_lost] (SQLSTATE 08S01"),
        "{stderr}"
    );
    assert_output_equals_source(&s, &[]);
    eprintln!("{cuts} connections cut");
}

/// `pg_terminate_backend` on the sync's sessions, again and again while it runs.
#[test]
fn terminated_backends_are_retried_and_output_equals_source() {
    // Large enough that the run lasts a few seconds, so several terminations land in it.
    let s = setup("fault_terminate", None, 5 * SCALE);
    let mut run = Running::sync(&s.config, &[]);
    let killer = common::PgDatabase::admin_connection_string();
    let database = s.db.name().to_owned();
    let mut terminated = 0usize;
    let started = Instant::now();
    // Once the tables are being read, a session every 100 ms until five are gone: soon enough
    // to land inside the run, far enough apart that each retry gets somewhere.
    while run.is_running() && !s.out.join("_state.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sync never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while run.is_running() && terminated < 5 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
        let rows = common::query_on(
            &killer,
            &format!(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM \
                 (SELECT pid FROM pg_stat_activity WHERE datname = '{database}' \
                 AND pid <> pg_backend_pid() LIMIT 1) AS one"
            ),
        );
        terminated += rows[0][0]
            .as_deref()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    let Finished { code, stderr, .. } = run.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert!(terminated >= 3, "only {terminated} backends terminated");
    assert!(
        stderr.contains("SQLSTATE 57P01") || stderr.contains("SQLSTATE 08S01"),
        "{stderr}"
    );
    assert_output_equals_source(&s, &[]);
}

/// An exact count of `public.encounter` that blocks: fresh statistics, no lock timeout (the
/// count waits on the lock), a 2 s stall timeout and 2 retries, and the table locked by another
/// session until the returned connection rolls back or drops.
fn block_the_count(s: &Setup) -> odbc_api::Connection<'static> {
    s.db.execute("ANALYZE");
    s.set(json!({"max_retries": 2, "lock_timeout_seconds": 0, "stall_timeout_seconds": 2}));
    lock_encounter(s)
}

/// Another session's open transaction holding an exclusive lock on `public.encounter`; the
/// lock goes when the connection rolls back or drops.
fn lock_encounter(s: &Setup) -> odbc_api::Connection<'static> {
    let connection = common::connect(&s.db.connection_string());
    connection.set_autocommit(false).expect("begin");
    connection
        .execute(
            "LOCK TABLE public.encounter IN ACCESS EXCLUSIVE MODE",
            (),
            None,
        )
        .expect("lock");
    connection
}

/// Another session holds an exclusive lock on a table until the sync has run into it: the
/// sync's read times out on the lock, is retried, and succeeds once the lock is released.
#[test]
fn lock_held_for_a_while_is_waited_out_with_retries() {
    let s = setup("fault_lock_released", None, SCALE);
    let connection = lock_encounter(&s);
    let mut run = Running::sync(&s.config, &[]);
    assert!(run.wait_for(
        "public.encounter: lock wait timed out [lock_timeout] (SQLSTATE 55P03",
        Duration::from_secs(60)
    ));
    connection.rollback().expect("release the lock");
    let Finished { code, stderr, .. } = run.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert_output_equals_source(&s, &[]);
}

/// A lock that is never released: the locked table fails cleanly after its retries, every
/// other table finishes, and the exit code says "partial failure".
#[test]
fn lock_never_released_fails_only_that_table() {
    let s = setup("fault_lock_held", None, SCALE);
    let connection = lock_encounter(&s);
    s.set(json!({"max_retries": 2}));
    let Finished { code, stderr, .. } =
        Running::sync(&s.config, &[]).wait(Duration::from_secs(120));
    connection.rollback().expect("release");
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("public.encounter FAILED: gave up after 2 retries"),
        "{stderr}"
    );
    assert!(stderr.contains("[lock_timeout]"), "{stderr}");
    assert!(!s.out.join("public.encounter/_manifest.json").exists());
    assert_output_equals_source(&s, &["encounter"]);
    let status = common::ehi_sync(&["status", "--config", s.config.to_str().expect("path")]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("Failed: public.encounter (medium): gave up"),
        "{status}"
    );
}

/// Connections that go silent mid-run (the proxy holds their sockets open and forwards
/// nothing, like a dead peer): the watchdog cancels the stalled statements, gives up on the
/// connections that cannot even hear the cancel, and new workers with new connections finish
/// the tables from their last written keys. Nothing hangs.
#[test]
fn silent_connections_are_cancelled_abandoned_and_replaced() {
    let proxy = FaultProxy::start(upstream());
    let s = setup("fault_silent", Some(proxy.port()), SCALE);
    let run = Running::sync(&s.config, &[]);
    let started = Instant::now();
    while !run.saw("Processing table 9/9") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the large tier never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.stall_live_connections();
    let Finished { code, stderr, .. } = run.wait(Duration::from_secs(90));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no rows for 3s; cancelling the statement"),
        "{stderr}"
    );
    assert!(
        stderr.contains("abandoning it and reading on with a new connection"),
        "{stderr}"
    );
    assert_output_equals_source(&s, &[]);
}

/// The exact count of a table another session holds locked blocks in execution (no lock
/// timeout: the count waits). The watchdog cancels it like any stalled statement, the count is
/// retried up to `max_retries`, then the table fails with a message naming the count and the
/// setting that avoids it; the other tables finish and no count is left running on the server.
#[test]
fn a_blocked_exact_count_is_cancelled_retried_and_fails_only_its_table() {
    let s = setup("fault_count_blocked", None, SCALE);
    let connection = block_the_count(&s);
    let started = Instant::now();
    let Finished { code, stderr, .. } =
        Running::sync(&s.config, &[]).wait(Duration::from_secs(120));
    let seconds = started.elapsed().as_secs_f64();
    let counts_running = s.db.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND \
         pid <> pg_backend_pid() AND state = 'active' AND query ILIKE '%count(%'",
    );
    connection.rollback().expect("release");
    assert_eq!(code, 4, "{stderr}");
    // psqlODBC may crash after a cancel (seen: glibc's "corrupted double-linked list"); the
    // supervisor then restarts the sync process, whose retry count starts again. So the rounds
    // are counted per process: the one that gave up cancelled the first attempt and two retries.
    let processes: Vec<&str> = stderr.split("crashed: ").collect();
    let cancels = |process: &str| {
        process
            .matches("public.encounter: no rows for 2s; cancelling the statement")
            .count()
    };
    for process in &processes {
        assert!(
            cancels(process) <= 3,
            "at most 3 cancels per process: {stderr}"
        );
    }
    assert_eq!(
        processes.last().map(|last| cancels(last)),
        Some(3),
        "the first attempt and two retries are cancelled: {stderr}"
    );
    assert!(
        stderr.contains(
            "public.encounter FAILED: gave up after 2 retries: taking the exact row count"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("[query_timeout]"), "{stderr}");
    assert!(
        stderr.contains("set tiers.medium.row_counts to \"catalog\""),
        "{stderr}"
    );
    assert_eq!(
        counts_running,
        [[Some("0".to_owned())]],
        "a count is left running"
    );
    assert!(!s.out.join("public.encounter/_manifest.json").exists());
    assert_output_equals_source(&s, &["encounter"]);
    eprintln!("blocked count failed its table after {seconds:.1}s");
}

/// Sequential scans of `table` so far (after every other session of the database has ended,
/// so their statistics are flushed).
fn seq_scans(db: &common::PgDatabase, table: &str) -> u64 {
    let started = Instant::now();
    while db.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND \
         pid <> pg_backend_pid()",
    ) != [[Some("0".to_owned())]]
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sessions linger"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = db.query(&format!(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = '{table}'"
    ));
    rows[0][0]
        .as_deref()
        .and_then(|n| n.parse().ok())
        .expect("seq_scan")
}

fn last_validation(out: &Path, table: &str) -> Value {
    let text = std::fs::read_to_string(out.join("_validation.ndjson")).expect("validation");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .rfind(|v| v["table"] == table)
        .expect("record")
}

/// `row_counts: catalog` sends no count: the keyless table is scanned once (its read) instead
/// of twice (count and read), and the validation record says its expected rows are the
/// catalog's estimate; an estimate that is off is reported, not a failure.
#[test]
fn catalog_row_counts_send_no_count_and_report_an_estimate() {
    let db = common::pg_database("count_catalog");
    db.execute(
        "CREATE TABLE plain AS SELECT g AS n, 'row ' || g AS note FROM generate_series(1, 900) g",
    );
    db.execute("CREATE TABLE keyed (id int PRIMARY KEY, v text)");
    db.execute("INSERT INTO keyed SELECT g, 'v' || g FROM generate_series(1, 500) g");
    db.execute("ANALYZE");
    // The catalog now says 500; the table has 520.
    db.execute("INSERT INTO keyed SELECT g, 'v' || g FROM generate_series(501, 520) g");
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |name: &str, row_counts: &str| -> (PathBuf, Finished) {
        let out = dir.path().join(name);
        let mut config = config_json(&db.connection_string(), &out);
        for tier in ["small", "medium", "large"] {
            config["tiers"][tier]["row_counts"] = json!(row_counts);
        }
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&config).expect("JSON")).expect("write");
        let finished = Running::sync(&path, &[]).wait(Duration::from_secs(60));
        (out, finished)
    };
    let before = seq_scans(&db, "plain");
    let (exact_out, exact) = run("exact", "exact");
    assert_eq!(exact.code, 0, "{}", exact.stderr);
    let after_exact = seq_scans(&db, "plain");
    let (catalog_out, catalog) = run("catalog", "catalog");
    assert_eq!(catalog.code, 0, "{}", catalog.stderr);
    let after_catalog = seq_scans(&db, "plain");
    assert_eq!(after_exact - before, 2, "exact: the count and the read");
    assert_eq!(after_catalog - after_exact, 1, "catalog: the read only");

    let exact_record = last_validation(&exact_out, "public.keyed");
    assert_eq!(exact_record["expected_rows"], 520);
    assert_eq!(exact_record["expected_rows_estimated"], false);
    assert_eq!(exact_record["status"], "ok");
    let record = last_validation(&catalog_out, "public.keyed");
    assert_eq!(record["expected_rows"], 500);
    assert_eq!(record["extracted_rows"], 520);
    assert_eq!(record["difference"], 20);
    assert_eq!(record["expected_rows_estimated"], true);
    assert_eq!(record["status"], "estimate_differs");
    assert!(
        catalog
            .stderr
            .contains("the catalog estimated 500 (row_counts: catalog"),
        "{}",
        catalog.stderr
    );
    let plain = last_validation(&catalog_out, "public.plain");
    assert_eq!(plain["status"], "ok");
    assert_eq!(plain["expected_rows"], 900);
}

/// The connection goes silent while the exact count waits on a lock: the cancel cannot come
/// back, so the watchdog abandons the worker and requeues the table's preparation. That round
/// counts against `max_retries` like a cancelled one: the table fails after its retries
/// instead of being requeued without end, and the other tables finish.
#[test]
fn an_abandoned_count_counts_against_max_retries() {
    let proxy = FaultProxy::start(upstream());
    let s = setup("fault_count_abandoned", Some(proxy.port()), SCALE);
    let connection = block_the_count(&s);
    let mut run = Running::sync(&s.config, &[]);
    // The count starts and blocks on the lock; every live connection goes silent before the
    // watchdog's cancel (2 s later), so the cancel can never come back. (Silencing them after
    // the cancel was logged raced with the cancel's answer on a loaded machine.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s
        .db
        .query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' \
             AND query ILIKE '%count%encounter%'",
        )
        .first()
        .and_then(|row| row.first().cloned().flatten())
        .as_deref()
        != Some("1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the count never blocked on the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.stall_live_connections();
    assert!(run.wait_for(
        "public.encounter: no rows for 2s; cancelling the statement",
        Duration::from_secs(60)
    ));
    let Finished { code, stderr, .. } = run.wait(Duration::from_secs(120));
    connection.rollback().expect("release");
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(
            "public.encounter: the connection did not answer the cancel within 1s; abandoning it"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("public.encounter FAILED: gave up after 2 retries"),
        "{stderr}"
    );
    // psqlODBC may crash in a connection the watchdog abandoned; the supervisor then restarts
    // the sync process, whose retry count starts again. So the rounds are counted per process.
    for process in stderr.split("crashed: ") {
        let cancels = process
            .matches("public.encounter: no rows for 2s; cancelling the statement")
            .count();
        assert!(
            cancels <= 3,
            "an abandoned round counts as an attempt: {cancels} cancels in one sync \
             process\n{stderr}"
        );
    }
    assert!(!s.out.join("public.encounter/_manifest.json").exists());
    assert_output_equals_source(&s, &["encounter"]);
}
