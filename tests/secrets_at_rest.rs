//! Secrets at rest: a config file that holds a password in plain text and that other users can
//! read draws a warning with the fix (and a line in `check`), or is refused with
//! `refuse_readable_secrets`. The password itself is never printed.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

const PASSWORD: &str = "Sup3r-S3cret-Pw";

/// A SQLite database with one table, and a config in `dir` whose connection string carries
/// `pwd` (sqliteodbc ignores it), with `mode`.
fn config(dir: &Path, pwd: &str, mode: u32, refuse: bool) -> PathBuf {
    let connection_string = common::sqlite_database(dir);
    common::execute_on(
        &connection_string,
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)",
    );
    common::execute_on(
        &connection_string,
        "INSERT OR REPLACE INTO t VALUES (1, 'a')",
    );
    let mut config = json!({
        "connection_string": format!("{connection_string}Pwd={pwd};"),
        "output_dir": dir.join("out"),
    });
    if refuse {
        config["refuse_readable_secrets"] = json!(true);
    }
    let path = common::write_config(dir, config);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn run(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehi-sync"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("EHI_TEST_PASSWORD", PASSWORD)
        .output()
        .expect("run ehi-sync")
}

fn text(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "the password was printed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn plaintext_password_in_a_world_readable_config_is_warned_about_with_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = config(dir.path(), PASSWORD, 0o644, false);
    let output = run(&["check"], &path);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let warning = format!(
        "the config file '{}' holds a password (connection_string) and users other than its \
         owner can read it (mode 0644); run `chmod 600 {}`, or take the password from the \
         environment with ${{env:NAME}}",
        path.display(),
        path.display()
    );
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "secrets     WARNING: a password in the config file (connection_string) that other \
             users can read (mode 0644): run `chmod 600 {}`",
            path.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("check passed"), "{stdout}");
    // A sync warns once (the supervisor leaves the config's warnings to the sync process).
    let output = run(&["sync"], &path);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stderr.matches(&warning).count(), 1, "{stderr}");
}

#[test]
fn private_config_and_environment_passwords_draw_no_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = config(dir.path(), PASSWORD, 0o600, false);
    let output = run(&["check"], &path);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("holds a password"), "{stderr}");
    assert!(
        stdout.contains(
            "secrets     a password in the config file (connection_string), readable by its \
             owner only (mode 0600)"
        ),
        "{stdout}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let path = config(dir.path(), "${env:EHI_TEST_PASSWORD}", 0o644, true);
    let output = run(&["check"], &path);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("holds a password"), "{stderr}");
    assert!(
        stdout.contains("secrets     no password in the config file"),
        "{stdout}"
    );
}

#[test]
fn refuse_readable_secrets_refuses_a_readable_config_and_accepts_a_private_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = config(dir.path(), PASSWORD, 0o640, true);
    for command in ["check", "sync"] {
        let output = run(&[command], &path);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command}: {stdout}\n{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "the config file '{}' holds a password (connection_string) and users other than \
                 its owner can read it (mode 0640); run `chmod 600 {}`",
                path.display(),
                path.display()
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("Refused: refuse_readable_secrets is true"),
            "{stderr}"
        );
    }
    assert!(
        !dir.path().join("out").exists(),
        "a refused sync wrote output"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let output = run(&["sync"], &path);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
}
