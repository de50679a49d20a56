//! Crash safety: runs killed with SIGKILL at random moments, stopped with SIGTERM, a damaged
//! state file, and two runs on one output folder. After every resume the output must equal an
//! uninterrupted run's: each source row exactly once, manifests describing the files on disk.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::output::assert_postgres_output_equals_source;
use common::running::Running;
use serde_json::{Value, json};

/// Large enough that a run takes a few seconds in a debug build, so kills land mid-run.
const SCALE: u64 = 6000;

/// A small deterministic pseudo-random sequence (no extra crate for a test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Every table of the output equals the source, row for row.
fn assert_output_equals_source(db: &common::PgDatabase, out: &Path) {
    assert_postgres_output_equals_source(db, out, SCALE, &[]);
}

struct Setup {
    db: common::PgDatabase,
    _dir: tempfile::TempDir,
    out: PathBuf,
    config: PathBuf,
}

fn setup(prefix: &str, format: &str) -> Setup {
    let db = common::pg_database(prefix);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let config = common::write_config(
        dir.path(),
        common::small_steps_config(&db.connection_string(), &out, format),
    );
    common::generate(&config, SCALE);
    Setup {
        db,
        _dir: dir,
        out,
        config,
    }
}

/// SIGKILL at random moments of the reading, at least 20 times within one run (kills that
/// land after the process ended do not count), resuming each time; then the output equals the
/// source.
fn kill_and_resume(format: &str, seed: u64) {
    let s = setup(&format!("kill_{format}"), format);
    let mut random = Lcg(seed);
    let mut kills = 0;
    let mut kills_during_checkpoint = 0;
    let mut resumed_runs = 0;
    let started = Instant::now();
    while kills < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "kill loop took too long"
        );
        // Every third kill lands while a state file is being written, exactly there: the
        // debug build's test hook stops between the synced temporary file and its rename.
        let in_checkpoint = kills % 3 == 0;
        let pause_at = format!("_state.json:{}", 1 + random.below(4));
        let mut paused = false;
        let mut run = if in_checkpoint {
            let env = [("EHI_SYNC_TEST_PAUSE_IN_ATOMIC_WRITE", pause_at.as_str())];
            let mut run = Running::sync_with_env(&s.config, &env);
            paused = run.wait_for(
                "test hook: pausing in the atomic write",
                Duration::from_secs(60),
            );
            run
        } else {
            let mut run = Running::sync(&s.config, &[]);
            // Once rows are being read: a random moment within the next 150 ms.
            if run.wait_for("Processing table", Duration::from_secs(60)) {
                std::thread::sleep(Duration::from_millis(random.below(150)));
            }
            run
        };
        if !run.is_running() {
            let finished = run.wait(Duration::from_secs(60));
            assert_eq!(
                finished.code, 0,
                "a run that ended by itself must succeed:\n{}\n{}",
                finished.stdout, finished.stderr
            );
            break;
        }
        run.signal("KILL");
        let killed = run.wait(Duration::from_secs(60));
        if killed.stdout.contains("Resuming run") {
            resumed_runs += 1;
        }
        let state_being_written = s.out.join("._state.json.tmp").exists();
        assert!(
            state_being_written || !paused,
            "killed while the state file was being written, but no temporary state file is there"
        );
        if state_being_written {
            kills_during_checkpoint += 1;
        }
        kills += 1;
    }
    let last = Running::sync(&s.config, &[]).wait(Duration::from_secs(120));
    assert_eq!(last.code, 0, "final run:\n{}\n{}", last.stdout, last.stderr);
    eprintln!(
        "{format}: {kills} kills, {kills_during_checkpoint} while a state file was being \
         written, {resumed_runs} resumed runs killed"
    );
    assert!(
        kills >= 20,
        "only {kills} kills landed before the run finished"
    );
    assert!(
        resumed_runs >= 10,
        "kills must land in resumed runs too ({resumed_runs})"
    );
    assert!(
        kills_during_checkpoint >= 1,
        "no kill landed during a checkpoint write"
    );
    assert_output_equals_source(&s.db, &s.out);
    assert_eq!(common::read_state(&s.out)["finished"], true);
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_exactly_the_source_rows_csv() {
    kill_and_resume("csv", 7);
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_exactly_the_source_rows_ndjson() {
    kill_and_resume("ndjson", 11);
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_exactly_the_source_rows_parquet() {
    kill_and_resume("parquet", 13);
}

/// SIGTERM stops gracefully: exit code 7, a final checkpoint, the lock released; the next run
/// resumes and the output equals the source.
#[test]
fn sigterm_stops_gracefully_and_the_next_run_resumes() {
    let s = setup("sigterm", "csv");
    let mut graceful = 0;
    for delay in [0, 100, 200] {
        let mut run = Running::sync(&s.config, &[]);
        if !run.wait_for("Processing table", Duration::from_secs(60)) {
            break; // finished before the signal
        }
        std::thread::sleep(Duration::from_millis(delay));
        run.signal("TERM");
        let stopped = run.wait(Duration::from_secs(60));
        if stopped.code == 0 {
            break; // it finished before the signal
        }
        stopped.assert_stopped_gracefully();
        assert!(
            stopped.stdout.contains("tables not finished"),
            "{}",
            stopped.stdout
        );
        assert_eq!(common::read_state(&s.out)["finished"], false);
        let status = common::ehi_sync(&["status", "--config", s.config.to_str().expect("path")]);
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(status.contains("stopped before the end"), "{status}");
        graceful += 1;
    }
    assert!(graceful >= 1, "no SIGTERM landed during a run");
    Running::resume(&s.config, Duration::from_secs(120));
    assert_output_equals_source(&s.db, &s.out);
}

/// Every output file under `dir` with a digest of its content. The lock file is not output:
/// a refused run takes and releases it.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    use sha2::Digest;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else if !path.ends_with("_ehi-sync.lock") {
            let digest = sha2::Sha256::digest(std::fs::read(&path).expect("file"));
            files.push((path.clone(), hex::encode(digest)));
        }
    }
    files.sort();
    files
}

/// A damaged or foreign state file stops the run with a clear message and changes nothing;
/// `--restart` says what it discards and starts over.
#[test]
fn damaged_state_file_is_refused_without_touching_output() {
    let s = setup("corrupt_state", "ndjson");
    let mut run = Running::sync(&s.config, &[]);
    assert!(run.wait_for("Processing table 4/9", Duration::from_secs(60)));
    run.signal("KILL");
    run.wait(Duration::from_secs(60));
    let state_path = s.out.join("_state.json");
    let state = std::fs::read(&state_path).expect("a checkpoint was written");
    let config = s.config.to_str().expect("path");

    std::fs::write(&state_path, &state[..state.len() / 2]).expect("truncate state");
    let before = snapshot(&s.out);
    let run = common::ehi_sync(&["sync", "--config", config]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("no output was changed"), "{stderr}");
    assert!(stderr.contains("--restart"), "{stderr}");
    assert_eq!(snapshot(&s.out), before, "output changed");

    let mut foreign: Value = serde_json::from_slice(&state).expect("state JSON");
    foreign["version"] = json!(99);
    std::fs::write(&state_path, serde_json::to_vec(&foreign).expect("json")).expect("write");
    let before = snapshot(&s.out);
    let run = common::ehi_sync(&["sync", "--config", config]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("incompatible version"), "{stderr}");
    assert_eq!(snapshot(&s.out), before, "output changed");

    foreign["version"] = json!(1);
    foreign["source"]["database"] = json!("another_db");
    std::fs::write(&state_path, serde_json::to_vec(&foreign).expect("json")).expect("write");
    let run = common::ehi_sync(&["sync", "--config", config]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("belongs to another source"), "{stderr}");

    let restarted = Running::sync(&s.config, &["--restart"]).wait(Duration::from_secs(120));
    assert_eq!(
        restarted.code, 0,
        "{}\n{}",
        restarted.stdout, restarted.stderr
    );
    assert!(
        restarted.stdout.contains("Discarding unfinished run"),
        "{}",
        restarted.stdout
    );
    assert!(
        !restarted.stdout.contains("Resuming run"),
        "{}",
        restarted.stdout
    );
    assert_output_equals_source(&s.db, &s.out);
}

/// A second sync on the same output folder is refused while the first runs; `status` shows
/// the running one. The first is held on a table lock so it is certainly still running.
#[test]
fn second_sync_on_the_same_output_is_refused() {
    let s = setup("two_runs", "csv");
    let holder = std::thread::spawn({
        let connection_string = s.db.connection_string();
        move || {
            // One transaction that holds the lock for two seconds.
            common::execute_on(
                &connection_string,
                "DO $$ BEGIN LOCK TABLE public.patient IN ACCESS EXCLUSIVE MODE; \
                 PERFORM pg_sleep(2); END $$",
            );
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let first = Running::sync(&s.config, &[]);
    std::thread::sleep(Duration::from_millis(700));
    let config = s.config.to_str().expect("path");
    let second = common::ehi_sync(&["sync", "--config", config]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!("another ehi-sync run (pid {}", first.pid())),
        "{stderr}"
    );
    let status = common::ehi_sync(&["status", "--config", config]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains(": running"), "{status}");
    assert!(status.contains(&format!("pid {}", first.pid())), "{status}");
    holder.join().expect("lock holder");
    let done = first.wait(Duration::from_secs(120));
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    assert_output_equals_source(&s.db, &s.out);
}
