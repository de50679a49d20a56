//! One run per output folder: an OS file lock on `output_dir/_ehi-sync.lock`, held for the
//! whole run.
//!
//! The operating system releases the lock when the process dies, however it dies (kill -9,
//! power cut), so a crashed run never blocks the next one; the file's content (pid, host, start)
//! only tells the next run whom it takes over from. The file is emptied, not deleted, on exit:
//! deleting it could let two runs lock two different files of the same name.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::LockError;
use crate::model::Holder;

pub(crate) const LOCK_FILE: &str = "_ehi-sync.lock";

/// The supervisor of this process, when it runs as a supervised sync child.
static SUPERVISOR_PID: OnceLock<u32> = OnceLock::new();

/// Marks this process as the child of supervisor `pid`.
pub fn set_supervised_by(pid: u32) {
    let _ = SUPERVISOR_PID.set(pid);
}

/// The pid a run lock names: the supervisor's in a supervised child, else this process's.
pub(crate) fn run_pid() -> u32 {
    SUPERVISOR_PID
        .get()
        .copied()
        .unwrap_or_else(std::process::id)
}

/// The held lock; released when dropped.
#[derive(Debug)]
pub(crate) struct RunLock {
    file: File,
    /// Who held the lock before, if that run ended without releasing it (a crash).
    pub(crate) taken_over_from: Option<Holder>,
}

impl RunLock {
    /// Takes the lock on `dir`, retrying briefly (a `status` command may hold it for an
    /// instant while it checks whether a run is active).
    pub(crate) fn acquire(dir: &Path, started_at: &str) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = open(&path).map_err(io)?;
        let mut attempts = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < 10 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        dir: dir.to_owned(),
                        holder: read_holder(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let taken_over_from = read_holder(&mut file);
        let holder = Holder {
            // A supervised sync names its supervisor: the process to signal to stop the run.
            pid: run_pid(),
            host: host_name(),
            started_at: started_at.to_owned(),
        };
        let json = serde_json::to_vec(&holder).map_err(|e| io(std::io::Error::other(e)))?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(RunLock {
            file,
            taken_over_from,
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Best effort: the OS releases the lock at exit in any case.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The holder of a run in progress on `dir`, or `None` when no run holds the lock.
pub(crate) fn active_run(dir: &Path) -> Option<Holder> {
    let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(read_holder(&mut file).unwrap_or(Holder {
            pid: 0,
            host: "unknown".into(),
            started_at: "unknown".into(),
        })),
        Err(TryLockError::Error(_)) => None,
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn host_name() -> String {
    ["HOSTNAME", "COMPUTERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Holder;

    #[test]
    fn second_lock_is_refused_and_released_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "t1").unwrap();
        assert!(first.taken_over_from.is_none());
        let active = active_run(dir.path()).expect("a run holds the lock");
        assert_eq!(active.pid, std::process::id());
        let err = RunLock::acquire(dir.path(), "t2").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("another ehi-sync run (pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(active_run(dir.path()).is_none());
        let second = RunLock::acquire(dir.path(), "t3").unwrap();
        assert!(
            second.taken_over_from.is_none(),
            "a clean exit leaves no holder"
        );
    }

    #[test]
    fn lock_of_a_dead_run_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let stale = Holder {
            pid: 999_999,
            host: "h".into(),
            started_at: "yesterday".into(),
        };
        std::fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_vec(&stale).unwrap(),
        )
        .unwrap();
        let lock = RunLock::acquire(dir.path(), "now").unwrap();
        assert_eq!(lock.taken_over_from.as_ref().map(|h| h.pid), Some(999_999));
    }
}
