//! A full disk on real file systems: small tmpfs mounts (this suite runs as root) that fill up
//! during a data write, a state file write and a manifest write. Each run stops cleanly (exit
//! 1, a message naming the file and the fix, the last checkpoint intact, no half-written state
//! file or manifest); after the mount is grown, the next `sync` resumes and the output equals
//! the source. And `min_free_bytes` stops tables before the disk is full.

#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::output::assert_postgres_output_equals_source;
use common::running::Running;
use serde_json::{Value, json};

const SCALE: u64 = 2000;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

fn mount(args: &[&str]) {
    let output = Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert!(
        output.status.success(),
        "mount {args:?} failed ({}): {} — these tests need root (CI runs as root)",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            dir.to_str().expect("UTF-8 path"),
        ]);
        Tmpfs {
            dir: dir.to_owned(),
        }
    }

    /// Space is freed: the same mount, larger.
    fn grow(&self, size: &str) {
        mount(&[
            "-o",
            &format!("remount,size={size}"),
            self.dir.to_str().expect("UTF-8 path"),
        ]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

struct Setup {
    db: common::PgDatabase,
    dir: tempfile::TempDir,
    out: PathBuf,
}

impl Setup {
    fn new(prefix: &str) -> Setup {
        let db = common::pg_database(prefix);
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        let setup = Setup { db, dir, out };
        common::generate(&setup.config(json!({})), SCALE);
        setup
    }

    /// The config, with `extra` keys on top.
    fn config(&self, extra: Value) -> PathBuf {
        let config = common::small_steps_config(&self.db.connection_string(), &self.out, "csv");
        common::write_config(self.dir.path(), common::with(config, extra))
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn sync(config: &Path) -> Run {
    let output = common::ehi_sync(&["sync", "--config", config.to_str().expect("UTF-8 path")]);
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A state file that a resume can use: whole JSON of the known version, unfinished.
fn assert_checkpoint_readable(state_path: &Path) -> Value {
    let state: Value = serde_json::from_slice(
        &std::fs::read(state_path).expect("the last checkpoint's state file is there"),
    )
    .expect("the state file is whole JSON");
    assert_eq!(state["version"], 1);
    assert_eq!(state["finished"], false);
    let tmp = state_path.with_file_name("._state.json.tmp");
    assert!(!tmp.exists(), "no temporary state file is left behind");
    state
}

fn assert_stopped_for_space(run: &Run, names: &str) {
    assert_eq!(
        run.code, 1,
        "a full disk stops the run with exit 1:\n{}\n{}",
        run.stdout, run.stderr
    );
    for expected in [
        "No space left on device",
        names,
        "free space on the file system holding",
        "run `ehi-sync sync` again to resume",
    ] {
        assert!(
            run.stderr.contains(expected),
            "the message says {expected:?}:\n{}",
            run.stderr
        );
    }
}

fn assert_resumes_exactly(setup: &Setup, config: &Path) {
    Running::resume(config, Duration::from_secs(240));
    assert_postgres_output_equals_source(&setup.db, &setup.out, SCALE, &[]);
}

#[test]
fn disk_full_during_a_data_write_stops_cleanly_and_resumes_exactly() {
    let setup = Setup::new("full_data");
    // The output is about 7 MB, almost all of it part files. The state file lives elsewhere,
    // so the disk fills up in a data write.
    let disk = Tmpfs::mount(&setup.out, "2m");
    let state_path = setup.dir.path().join("_state.json");
    let config = setup.config(json!({ "state_file": state_path }));
    let run = sync(&config);
    assert_stopped_for_space(&run, &format!("{}/public.", setup.out.display()));
    assert!(
        run.stderr.contains(".csv'"),
        "the data file is named:\n{}",
        run.stderr
    );
    assert_checkpoint_readable(&state_path);
    disk.grow("64m");
    assert_resumes_exactly(&setup, &config);
}

#[test]
fn disk_full_during_a_state_file_write_keeps_the_last_checkpoint_and_resumes_exactly() {
    let setup = Setup::new("full_state");
    // The state file grows to about 24 KB; replacing it needs room for the old and the new.
    let state_dir = setup.dir.path().join("state");
    let disk = Tmpfs::mount(&state_dir, "32k");
    let state_path = state_dir.join("_state.json");
    let config = setup.config(json!({ "state_file": state_path }));
    let run = sync(&config);
    assert_stopped_for_space(&run, &state_path.display().to_string());
    let state = assert_checkpoint_readable(&state_path);
    assert!(
        state["tables"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["rows"].as_u64() > Some(0))),
        "the last checkpoint holds rows: the run stopped mid-way"
    );
    disk.grow("1m");
    assert_resumes_exactly(&setup, &config);
}

#[test]
fn disk_full_during_a_manifest_write_leaves_no_manifest_and_resumes_exactly() {
    let setup = Setup::new("full_manifest");
    // wide_table's 200 rows take about 390 KB in two part files; its manifest about 54 KB.
    let folder = setup.out.join("public.wide_table");
    let disk = Tmpfs::mount(&folder, "420k");
    let config = setup.config(json!({}));
    let run = sync(&config);
    let manifest = folder.join("_manifest.json");
    assert_stopped_for_space(&run, &manifest.display().to_string());
    assert!(
        !manifest.exists(),
        "no manifest: a loader does not take the table"
    );
    assert!(
        !folder.join("._manifest.json.tmp").exists(),
        "no half-written manifest is left behind"
    );
    assert_checkpoint_readable(&setup.out.join("_state.json"));
    disk.grow("4m");
    assert_resumes_exactly(&setup, &config);
}

#[test]
fn min_free_bytes_stops_tables_before_the_disk_is_full_and_they_resume() {
    let setup = Setup::new("min_free");
    let disk = Tmpfs::mount(&setup.out, "8m");
    // About 7 MB of output: the tables that start after the first few MB do not start.
    let config = setup.config(json!({ "min_free_bytes": 6 << 20 }));
    let run = sync(&config);
    assert_eq!(
        run.code, 4,
        "tables that did not start fail the run:\n{}\n{}",
        run.stdout, run.stderr
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("bytes are free on the file system holding")
            && all.contains("less than min_free_bytes (6291456)"),
        "the message says the free space and the key:\n{all}"
    );
    let state = assert_checkpoint_readable(&setup.out.join("_state.json"));
    let failed = state["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter(|t| t["status"] == "failed")
        .count();
    assert!(failed > 0, "some tables are recorded as failed");
    disk.grow("64m");
    assert_resumes_exactly(&setup, &config);
}
