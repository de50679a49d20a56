//! Crash containment: `sync` runs the copy in a child process and restarts it after a crash.
//! The crashes are real: psqlODBC behind a proxy that cuts connections mid-stream (it may
//! segfault in SQLFetch), and the debug build's `EHI_SYNC_TEST_CRASH_AFTER_ROWS` hook, which
//! raises SIGSEGV (or aborts) in a worker thread once that many rows were sent.
//! Unix: the tests name Unix signals and send them.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::output::{assert_same_rows, read_table, source_rows};
use common::proxy::FaultProxy;
use common::running::{Finished, Running};
use serde_json::{Value, json};

/// A PostgreSQL database with one table `public.t` of `rows` rows, and a folder for the output.
struct Setup {
    db: common::PgDatabase,
    dir: tempfile::TempDir,
    out: PathBuf,
}

fn setup(prefix: &str, rows: u64) -> Setup {
    let db = common::pg_database(prefix);
    db.execute(&format!(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v, g * 0.25 AS n, \
         CASE WHEN g % 7 = 0 THEN NULL ELSE 'x' || g END AS s \
         FROM generate_series(1, {rows}) g"
    ));
    db.execute("ALTER TABLE t ADD PRIMARY KEY (id)");
    db.execute("ANALYZE t");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    Setup { db, dir, out }
}

impl Setup {
    fn config(&self, connection_string: &str, extra: Value) -> PathBuf {
        let config = json!({
            "connection_string": connection_string,
            "output_dir": self.out,
            "include": ["public.t"],
            "retry_sleep_seconds": 0.05,
            "login_timeout_seconds": 5,
            "crash_restart_delay_seconds": 0.1,
        });
        common::write_config(self.dir.path(), common::with(config, extra))
    }

    /// A sync of the table in batches of 200 rows, started and reading (300 ms past its first
    /// table), with its config.
    fn sync_under_way(&self) -> (PathBuf, Running) {
        let config = self.config(
            &self.db.connection_string(),
            json!({"tiers": {"small": {"batch_size": 200, "partition_size": 20000,
                                       "checkpoint_interval": 5000}}}),
        );
        let mut run = Running::sync(&config, &[]);
        assert!(
            run.wait_for("Processing table", Duration::from_secs(60)),
            "the sync ended before it read a row"
        );
        std::thread::sleep(Duration::from_millis(300));
        (config, run)
    }

    fn assert_output_equals_source(&self, rows: usize) {
        let files = read_table(&self.out.join("public.t"));
        assert_eq!(files.rows.len(), rows, "rows in the output");
        let source = source_rows(
            &|sql| self.db.query(sql),
            "public.t",
            &files,
            &|c| format!("\"{c}\""),
            &|c| format!("encode({c}, 'hex')"),
        );
        assert_same_rows("public.t", files.rows, source);
    }

    fn status(&self, config: &Path, json: bool) -> String {
        let config = config.to_str().expect("UTF-8 path");
        let mut args = vec!["status", "--config", config];
        if json {
            args.push("--json");
        }
        let output = common::ehi_sync(&args);
        assert!(output.status.success(), "status: {output:?}");
        String::from_utf8(output.stdout).expect("UTF-8 status")
    }
}

/// Small partitions, batches and checkpoints, so a crash after a few thousand rows still leaves
/// checkpointed progress behind.
fn small_steps() -> Value {
    json!({
        "tiers": {"small": {"batch_size": 500, "partition_size": 5000, "queue_size": 1000,
                            "checkpoint_interval": 2000}}
    })
}

fn crashes_in(stderr: &str) -> usize {
    stderr.matches("the sync process (pid ").count()
}

/// A crash after 7,000 rows in every child: each restart resumes from the last checkpoint and
/// the run ends with exit 0 and exactly the source rows; the log names the signal and the
/// table, and `status` counts the restarts.
#[test]
fn a_crashing_sync_process_is_restarted_until_the_output_is_complete() {
    let rows = 30_000;
    let s = setup("sup_crash", rows);
    let config = s.config(&s.db.connection_string(), small_steps());
    let ended = Running::sync_with_env(&config, &[("EHI_SYNC_TEST_CRASH_AFTER_ROWS", "7000")])
        .wait(Duration::from_secs(300));
    assert_eq!(ended.code, 0, "{}\n{}", ended.stdout, ended.stderr);
    let crashes = crashes_in(&ended.stderr);
    assert!(crashes >= 2, "only {crashes} crashes:\n{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains("crashed: killed by signal 11 (SIGSEGV, invalid memory access)"),
        "{}",
        ended.stderr
    );
    assert!(
        ended
            .stderr
            .contains("; in progress at the last checkpoint: public.t ("),
        "{}",
        ended.stderr
    );
    assert!(
        ended.stderr.contains("restarting it in 0.1 s"),
        "{}",
        ended.stderr
    );
    assert!(ended.stdout.contains("Resuming run"), "{}", ended.stdout);
    s.assert_output_equals_source(rows as usize);
    let status = s.status(&config, false);
    assert!(
        status.contains(&format!("crash restarts:  {crashes} (last crash ")),
        "{status}"
    );
    assert!(status.contains("SIGSEGV"), "{status}");
    let json: Value = serde_json::from_str(&s.status(&config, true)).expect("status JSON");
    assert_eq!(json["restarts"]["restarts"], crashes as u64, "{json}");
    assert_eq!(json["restarts"]["crashes"][0]["tables"][0], "public.t");
    assert_eq!(json["restarts"]["crashes"][0]["progress"], true);
    eprintln!("{crashes} crashes and restarts");
}

/// A child that crashes before any checkpoint, every time: after max_crash_restarts restarts
/// without progress the supervisor gives up with exit 9 and says why.
#[test]
fn crashes_without_progress_stop_after_max_crash_restarts() {
    let s = setup("sup_limit", 20_000);
    let mut extra = small_steps();
    // Four workers' first batches (4 × 500 rows) cannot reach a checkpoint before the abort:
    // by rows only, not at a process's first batch.
    extra["tiers"]["small"]["checkpoint_interval"] = json!(5000);
    extra["checkpoint_seconds"] = json!(0);
    extra["max_crash_restarts"] = json!(2);
    extra["crash_restart_delay_seconds"] = json!(0.05);
    let config = s.config(&s.db.connection_string(), extra);
    let ended = Running::sync_with_env(
        &config,
        &[
            ("EHI_SYNC_TEST_CRASH_AFTER_ROWS", "1"),
            ("EHI_SYNC_TEST_CRASH_WITH", "abort"),
        ],
    )
    .wait(Duration::from_secs(180));
    assert_eq!(ended.code, 9, "{}\n{}", ended.stdout, ended.stderr);
    assert_eq!(crashes_in(&ended.stderr), 3, "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains("crashed: killed by signal 6 (SIGABRT, aborted)"),
        "{}",
        ended.stderr
    );
    assert!(
        ended.stderr.contains(
            "the sync process crashed 3 times in a row without progress (max_crash_restarts \
             is 2); giving up"
        ),
        "{}",
        ended.stderr
    );
    let status = s.status(&config, false);
    assert!(
        status.contains("crash restarts:  2 (last crash "),
        "{status}"
    );
    // The output is resumable: without the crash the next sync finishes it exactly.
    let ended = Running::sync(&config, &[]).wait(Duration::from_secs(180));
    assert_eq!(ended.code, 0, "{}\n{}", ended.stdout, ended.stderr);
    s.assert_output_equals_source(20_000);
    // The crashes came before any checkpoint: the run that wrote the state claims them.
    let status = s.status(&config, false);
    assert!(status.contains(": finished"), "{status}");
    assert!(
        status.contains("crash restarts:  2 (last crash "),
        "{status}"
    );
}

/// A stop while the supervisor waits to restart a crashed sync ends the wait at once: exit 7,
/// nothing restarted.
#[test]
fn sigterm_during_the_restart_backoff_stops_without_restarting() {
    let s = setup("sup_backoff", 20_000);
    let mut extra = small_steps();
    extra["crash_restart_delay_seconds"] = json!(60);
    let config = s.config(&s.db.connection_string(), extra);
    let mut run = Running::sync_with_env(&config, &[("EHI_SYNC_TEST_CRASH_AFTER_ROWS", "1")]);
    assert!(
        run.wait_for("restarting it in 60.0 s", Duration::from_secs(60)),
        "the supervisor ended before it was to restart the crashed sync"
    );
    run.signal("TERM");
    // The stop ends the backoff at once, not after its 60 s.
    let Finished { code, stderr, .. } = run.wait(Duration::from_secs(10));
    assert_eq!(code, 7, "{stderr}");
    assert!(
        stderr.contains("stopped while waiting to restart"),
        "{stderr}"
    );
    assert_eq!(crashes_in(&stderr), 1, "{stderr}");
}

/// SIGTERM to the supervisor alone (not its process group) reaches the sync process: the
/// graceful stop of an unsupervised run, exit 7, no restart; the next sync resumes exactly.
#[test]
fn sigterm_to_the_supervisor_stops_the_sync_gracefully() {
    let rows = 200_000;
    let s = setup("sup_term", rows);
    let (config, run) = s.sync_under_way();
    run.signal("TERM");
    let stopped = run.wait(Duration::from_secs(60));
    stopped.assert_stopped_gracefully();
    assert!(!stopped.stderr.contains("crashed"), "{}", stopped.stderr);
    assert_eq!(common::read_state(&s.out)["finished"], false);
    Running::resume(&config, Duration::from_secs(240));
    s.assert_output_equals_source(rows as usize);
}

/// SIGKILL to the supervisor ends the sync process with it (Linux's parent-death signal), as a
/// kill -9 of an unsupervised run would: the lock is free at once and the next sync resumes.
#[cfg(target_os = "linux")]
#[test]
fn sigkill_to_the_supervisor_ends_the_sync_process_too() {
    let rows = 200_000;
    let s = setup("sup_kill", rows);
    let (config, run) = s.sync_under_way();
    run.signal("KILL");
    let killed = run.wait(Duration::from_secs(30));
    assert_eq!(killed.code, -1, "killed by a signal");
    // The sync process shares the stderr pipe: a graceful stop (its fallback when it outlives
    // the supervisor) would have said so before the pipe closed.
    assert!(
        !killed.stderr.contains("the supervisor has ended")
            && !killed.stderr.contains("stopping after the batches"),
        "{}",
        killed.stderr
    );
    let started = Instant::now();
    while s.status(&config, false).contains(": running") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the sync process outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Running::resume(&config, Duration::from_secs(240));
    s.assert_output_equals_source(rows as usize);
}

/// The acceptance case of the driver crash: psqlODBC with `UseDeclareFetch=1;Fetch=2000`, the
/// default partition sizes, a proxy that cuts the first 12 connections mid-stream, a table of
/// 300,599 rows. psqlODBC may segfault in SQLFetch on such a cut (then the supervisor restarts
/// the sync) or report it as 08S01 (then the worker retries): either way the run ends with
/// exit 0 and the output equals the source, under the default `max_crash_restarts` and
/// checkpoint rules. The small tier checkpoints every 1,000,000 rows, more than the table holds,
/// and a sync process here lives well under `checkpoint_seconds`; what each one keeps is its
/// first batch, checkpointed at once, so a crash after it shows progress. `max_retries` is
/// raised because every one of the 12 cuts may land on the same partition when psqlODBC reports
/// them as 08S01; the short restart delay only keeps the test fast (a restart after progress
/// waits the base delay, 5 s by default).
#[test]
fn twelve_connections_cut_mid_stream_through_psqlodbc_end_with_the_exact_output() {
    let rows = 300_599;
    let s = setup("sup_proxy", rows);
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().expect("address"));
    let through =
        s.db.connection_string()
            .replace("Port=5432;", &format!("Port={};", proxy.port()));
    assert!(
        through.contains("UseDeclareFetch=1;Fetch=2000;"),
        "{through}"
    );
    let config = s.config(
        &through,
        json!({"max_retries": 20, "crash_restart_delay_seconds": 0.01}),
    );
    proxy.cut_first(12, 100_000, 2_000_000);
    let started = Instant::now();
    let run = Running::sync(&config, &[]).wait(Duration::from_secs(480));
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(proxy.connections_cut(), 12, "{}", run.stderr);
    s.assert_output_equals_source(rows as usize);
    let crashes = crashes_in(&run.stderr);
    let mut without_progress = 0;
    if crashes > 0 {
        assert!(run.stderr.contains("SIGSEGV"), "{}", run.stderr);
        let json: Value = serde_json::from_str(&s.status(&config, true)).expect("status JSON");
        assert_eq!(json["restarts"]["restarts"], crashes as u64, "{json}");
        without_progress = json["restarts"]["crashes"]
            .as_array()
            .expect("crashes")
            .iter()
            .filter(|c| c["progress"] == false)
            .count();
    }
    eprintln!(
        "12 connections cut: {crashes} driver crashes ({without_progress} without progress), {} \
         cuts retried as connection errors, {seconds:.1} s",
        run.stderr.matches("SQLSTATE 08S01").count()
    );
}
