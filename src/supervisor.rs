//! Crash containment for `sync`. ODBC drivers are native code this program does not control; a
//! segfault or an abort inside one would otherwise end a twelve-hour run. So `sync` starts this
//! same program again with the same arguments plus [`CHILD_FLAG`]: the child runs the sync
//! (today's code path, unchanged) and this process, the supervisor, watches it.
//!
//! - A clean exit (any exit code) is passed through unchanged.
//! - A crash (a signal other than the stop signals, an abort, a Windows exception code, the
//!   out-of-memory killer's SIGKILL) is logged with the tables in progress (from the state file,
//!   never a row value), recorded in [`restarts_path`] for `status`, and the child is started
//!   again after a backoff: it resumes from the last checkpoint like any interrupted run.
//!   After `max_crash_restarts` crashes in a row without progress (the state file's
//!   checkpointed rows did not move), the supervisor gives up with [`exit_code::CRASHED`].
//! - Ctrl+C / SIGTERM / SIGHUP / console events: a terminal or a service manager signals the
//!   whole process group, so the child usually receives the signal itself. The supervisor
//!   relays what it receives over the child's standard input (the first as a graceful stop,
//!   the second as a stop at once), for the case where only the supervisor was signalled; a
//!   relayed request never counts as a second signal in the child. After a stop nothing is
//!   restarted.
//! - The child takes the run lock as an unsupervised run does. The operating system releases
//!   it when the child dies, so a crashed child never blocks its restart; the supervisor starts
//!   a child only after the previous one has been reaped. The lock names the supervisor's pid,
//!   the process an operator should signal.
//! - If the supervisor itself dies, the child stops: on Linux at once (the parent-death
//!   signal, like a kill -9 of an unsupervised run), elsewhere gracefully when its standard
//!   input closes.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::display::group_digits;
use crate::durable;
use crate::error::{Error, Result, exit_code};
use crate::lock;
use crate::manifest;
use crate::shutdown::{REQUEST_STOP, REQUEST_STOP_NOW};
use crate::state::{self, RunState, TableStatus};

/// The hidden `sync` option that makes a process the supervised child; its value is the
/// supervisor's pid.
pub(crate) const CHILD_FLAG: &str = "--supervised-by";

/// The longest wait between two restarts.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// How long a restart waits for the crashed child's lock to be released (immediate on Linux;
/// Windows may take a moment to release the locks of a dead process).
const LOCK_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Crashes kept in the restarts file (the count covers all of them).
const CRASHES_KEPT: usize = 20;

/// Runs `sync` in supervised children until one ends by itself or is stopped; returns the exit
/// code to end with.
pub fn run(config: &Config) -> Result<i32> {
    let program = std::env::current_exe().map_err(|source| Error::Io {
        context: "cannot find this program's own path to start the sync process",
        path: PathBuf::from(std::env::args_os().next().unwrap_or_default()),
        source,
    })?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let state_path = config.state_path.clone();
    let relay = Relay::install()?;
    let base_delay = config.crash_restart_delay;
    let mut crashes_without_progress = 0u32;
    let mut first = true;
    loop {
        let before = Progress::read(&state_path);
        let mut command = Command::new(&program);
        command.args(child_args(&args, first)).stdin(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|source| Error::Io {
            context: "cannot start the sync process",
            path: program.clone(),
            source,
        })?;
        relay.attach(child.stdin.take());
        let status = child.wait().map_err(|source| Error::Io {
            context: "cannot wait for the sync process",
            path: program.clone(),
            source,
        });
        relay.detach();
        first = false;
        let cause = match Ending::of(status?) {
            Ending::Exited(code) | Ending::Stopped(code) => {
                claim_early_crashes(&state_path);
                return Ok(code);
            }
            Ending::Crashed(cause) => cause,
        };
        let after = Progress::read(&state_path);
        let progressed = after.moved_on_from(&before);
        crashes_without_progress = if progressed {
            0
        } else {
            crashes_without_progress + 1
        };
        log::error!(
            "the sync process (pid {}) crashed: {cause}; {}",
            child.id(),
            after.describe()
        );
        let give_up = crashes_without_progress > config.max_crash_restarts;
        let stopping = relay.stop_requested();
        record_crash(
            &state_path,
            after.run_id.as_deref(),
            Crash {
                at: manifest::now_rfc3339(),
                pid: child.id(),
                cause: cause.clone(),
                tables: after.tables.iter().map(|t| t.name.clone()).collect(),
                progress: progressed,
                restarted: !give_up && !stopping,
            },
        );
        if stopping {
            log::warn!(
                "not restarting it: a stop was requested; the next sync resumes from the last \
                 checkpoint"
            );
            return Ok(exit_code::INTERRUPTED);
        }
        if give_up {
            log::error!(
                "the sync process crashed {crashes_without_progress} times in a row without \
                 progress (max_crash_restarts is {}); giving up. The output is intact up to the \
                 last checkpoint and the next sync resumes from there. Such crashes are usually \
                 inside the ODBC driver: check its version and its own log, or run `ehi-sync \
                 sync --no-supervisor` under a debugger. Each attempt checkpoints its first batch \
                 at once, so these crashes came before one batch got through: a smaller \
                 batch_size for the tier lets an attempt keep some rows",
                config.max_crash_restarts
            );
            return Ok(exit_code::CRASHED);
        }
        let delay = backoff(base_delay, crashes_without_progress);
        log::warn!(
            "restarting it in {:.1} s from the last checkpoint ({} of at most {} crashes in a row \
             without progress)",
            delay.as_secs_f64(),
            crashes_without_progress,
            config.max_crash_restarts
        );
        if !relay.sleep(delay) {
            log::warn!(
                "stopped while waiting to restart; the next sync resumes from the last checkpoint"
            );
            return Ok(exit_code::INTERRUPTED);
        }
        wait_for_lock_release(&config.output_dir);
    }
}

/// The child's arguments: ours plus the marker. `--restart` only for the first child: its
/// discard happens before the first database call, so a restarted child must resume instead.
fn child_args(args: &[OsString], first: bool) -> Vec<OsString> {
    args.iter()
        .filter(|a| first || a.as_os_str() != "--restart")
        .cloned()
        .chain([
            OsString::from(CHILD_FLAG),
            OsString::from(std::process::id().to_string()),
        ])
        .collect()
}

/// Linux: the child is killed when the supervisor dies, as an unsupervised run would be.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Elsewhere the child stops gracefully when its standard input closes (`shutdown`).
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// `base`, doubled for each crash in a row without progress after the first, at most
/// [`MAX_DELAY`].
fn backoff(base: Duration, crashes_without_progress: u32) -> Duration {
    let doublings = crashes_without_progress.saturating_sub(1).min(16);
    base.saturating_mul(1 << doublings).min(MAX_DELAY)
}

fn wait_for_lock_release(output_dir: &Path) {
    let started = Instant::now();
    while let Some(holder) = lock::active_run(output_dir) {
        if started.elapsed() > LOCK_RELEASE_WAIT {
            log::warn!(
                "the output folder is still locked (pid {} on {}); starting anyway",
                holder.pid,
                holder.host
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How a child ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// It exited by itself with this code.
    Exited(i32),
    /// A stop signal ended it before its handler was in place; the shell's code for it.
    Stopped(i32),
    /// It crashed; what happened, for the log.
    Crashed(String),
}

impl Ending {
    #[cfg(unix)]
    fn of(status: ExitStatus) -> Ending {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(signal))
                if [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].contains(&signal) =>
            {
                Ending::Stopped(128 + signal)
            }
            (None, Some(signal)) => Ending::Crashed(format!(
                "killed by signal {signal} ({}){}",
                signal_name(signal),
                if status.core_dumped() {
                    ", core dumped"
                } else {
                    ""
                }
            )),
            (None, None) => Ending::Crashed(format!("ended without an exit code ({status})")),
        }
    }

    #[cfg(windows)]
    fn of(status: ExitStatus) -> Ending {
        /// The process was ended by Ctrl+C or a console close before its handler ran.
        const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;
        let Some(code) = status.code() else {
            return Ending::Crashed(format!("ended without an exit code ({status})"));
        };
        // Exception codes are NTSTATUS values of error severity: the top two bits set.
        let ntstatus = code as u32;
        if ntstatus == STATUS_CONTROL_C_EXIT {
            Ending::Stopped(130)
        } else if ntstatus & 0xC000_0000 == 0xC000_0000 {
            Ending::Crashed(format!(
                "ended by exception 0x{ntstatus:08X} ({})",
                exception_name(ntstatus)
            ))
        } else {
            Ending::Exited(code)
        }
    }
}

#[cfg(unix)]
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV, invalid memory access",
        libc::SIGBUS => "SIGBUS, bad memory access",
        libc::SIGABRT => "SIGABRT, aborted",
        libc::SIGILL => "SIGILL, illegal instruction",
        libc::SIGFPE => "SIGFPE, arithmetic error",
        libc::SIGKILL => "SIGKILL; the out-of-memory killer sends it too, see the kernel log",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS, bad system call",
        libc::SIGPIPE => "SIGPIPE, broken pipe",
        libc::SIGXCPU => "SIGXCPU, CPU time limit",
        libc::SIGXFSZ => "SIGXFSZ, file size limit",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "an unexpected signal",
    }
}

#[cfg(windows)]
fn exception_name(code: u32) -> &'static str {
    match code {
        0xC000_0005 => "access violation",
        0xC000_0006 => "in-page error",
        0xC000_0017 => "out of memory",
        0xC000_001D => "illegal instruction",
        0xC000_0094 => "integer division by zero",
        0xC000_0096 => "privileged instruction",
        0xC000_00FD => "stack overflow",
        0xC000_0374 => "heap corruption",
        0xC000_0409 => "fail-fast abort or stack buffer overrun",
        _ => "unhandled exception",
    }
}

/// What the state file says is durably done, to tell a crash that moved on from one that did
/// not.
#[derive(Debug, Default)]
struct Progress {
    run_id: Option<String>,
    rows: u64,
    tables_done: usize,
    tables: Vec<TableInProgress>,
}

#[derive(Debug)]
struct TableInProgress {
    name: String,
    rows: u64,
    expected: Option<u64>,
}

impl Progress {
    /// An unreadable state file reads as no progress (the child reports it when it starts).
    fn read(state_path: &Path) -> Progress {
        match state::load(&durable::Disk, state_path) {
            Ok(Some(state)) => Progress::of(&state),
            Ok(None) | Err(_) => Progress::default(),
        }
    }

    fn of(state: &RunState) -> Progress {
        Progress {
            run_id: Some(state.run_id.clone()),
            rows: state.tables.iter().map(|t| t.rows).sum(),
            tables_done: state
                .tables
                .iter()
                .filter(|t| t.status == TableStatus::Done)
                .count(),
            tables: state
                .tables
                .iter()
                .filter(|t| t.status == TableStatus::InProgress)
                .map(|t| TableInProgress {
                    name: t.table.clone(),
                    rows: t.rows,
                    expected: t.expected_rows,
                })
                .collect(),
        }
    }

    /// More rows checkpointed or more tables done than `before` (a new run counts from zero).
    fn moved_on_from(&self, before: &Progress) -> bool {
        let (rows, done) = if self.run_id == before.run_id {
            (before.rows, before.tables_done)
        } else {
            (0, 0)
        };
        self.rows > rows || self.tables_done > done
    }
}

impl Progress {
    /// Where the crashed run was, as far as its last checkpoint tells.
    fn describe(&self) -> String {
        if self.run_id.is_none() {
            return "no checkpoint written yet in this run".to_owned();
        }
        if self.tables.is_empty() {
            return "no table in progress at the last checkpoint".to_owned();
        }
        format!(
            "in progress at the last checkpoint: {}",
            describe_tables(&self.tables)
        )
    }
}

fn describe_tables(tables: &[TableInProgress]) -> String {
    tables
        .iter()
        .map(|t| match t.expected {
            Some(expected) => format!(
                "{} ({} of {} rows checkpointed)",
                t.name,
                group_digits(t.rows),
                group_digits(expected)
            ),
            None => format!("{} ({} rows checkpointed)", t.name, group_digits(t.rows)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The crashes of one run, next to its state file (`status` shows them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Restarts {
    /// The run the crashes belong to; `None` when a child crashed before writing a state.
    pub(crate) run_id: Option<String>,
    /// Crashes the supervisor restarted the sync after, over every `sync` of this run.
    pub(crate) restarts: u32,
    /// The latest crashes, oldest first.
    pub(crate) crashes: Vec<Crash>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Crash {
    pub(crate) at: String,
    pub(crate) pid: u32,
    pub(crate) cause: String,
    /// Tables in progress at the last checkpoint.
    pub(crate) tables: Vec<String>,
    /// The crashed child had moved the checkpoint on.
    pub(crate) progress: bool,
    pub(crate) restarted: bool,
}

/// `_state.json` → `_state.restarts.json`, in the same folder.
pub(crate) fn restarts_path(state_path: &Path) -> PathBuf {
    let stem = state_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    state_path.with_file_name(format!("{stem}.restarts.json"))
}

/// The restarts recorded for run `run_id`, if any; `None` for the crashes of a run that has not
/// written its state file yet.
pub(crate) fn restarts_of(state_path: &Path, run_id: Option<&str>) -> Option<Restarts> {
    read_restarts(state_path).filter(|r| r.run_id.as_deref() == run_id)
}

fn read_restarts(state_path: &Path) -> Option<Restarts> {
    let bytes = std::fs::read(restarts_path(state_path)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Crashes before the run's first checkpoint were recorded without a run id: they belong to the
/// run whose state file the last child wrote.
fn claim_early_crashes(state_path: &Path) {
    let Some(mut record) = read_restarts(state_path).filter(|r| r.run_id.is_none()) else {
        return;
    };
    let Ok(Some(state)) = state::load(&durable::Disk, state_path) else {
        return;
    };
    record.run_id = Some(state.run_id);
    write_restarts(state_path, &record);
}

/// Adds `crash` to the run's record and writes it atomically. A record that cannot be written
/// is only a warning: it must not stop the restart.
fn record_crash(state_path: &Path, run_id: Option<&str>, crash: Crash) {
    // Crashes before the first checkpoint (no run id yet) belong to the run that follows.
    let mut record = read_restarts(state_path)
        .filter(|r| r.run_id.is_none() || r.run_id.as_deref() == run_id)
        .unwrap_or_default();
    record.run_id = run_id.map(str::to_owned);
    if crash.restarted {
        record.restarts += 1;
    }
    record.crashes.push(crash);
    let excess = record.crashes.len().saturating_sub(CRASHES_KEPT);
    record.crashes.drain(..excess);
    write_restarts(state_path, &record);
}

fn write_restarts(state_path: &Path, record: &Restarts) {
    let path = restarts_path(state_path);
    let written = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::other)
        .and_then(|json| durable::write_atomically(&durable::Disk, &path, &json));
    if let Err(e) = written {
        log::warn!("cannot record the crash in '{}': {e}", path.display());
    }
}

/// Stop requests from the signal handler, relayed to the child's standard input.
struct Relay {
    state: Mutex<RelayState>,
    stopped: Condvar,
}

#[derive(Default)]
struct RelayState {
    child: Option<ChildStdin>,
    signals: u32,
}

impl Relay {
    fn install() -> Result<Arc<Relay>> {
        let relay = Arc::new(Relay {
            state: Mutex::new(RelayState::default()),
            stopped: Condvar::new(),
        });
        let handler = Arc::clone(&relay);
        ctrlc::set_handler(move || handler.signalled()).map_err(|e| {
            Error::Internal(format!(
                "cannot install the Ctrl+C / SIGTERM handler of the supervisor: {e}"
            ))
        })?;
        Ok(relay)
    }

    fn lock(&self) -> MutexGuard<'_, RelayState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signalled(&self) {
        let mut state = self.lock();
        state.signals += 1;
        let request = if state.signals == 1 {
            REQUEST_STOP
        } else {
            REQUEST_STOP_NOW
        };
        if let Some(stdin) = state.child.as_mut() {
            // The child may be gone already; its exit says what happened.
            let _ = stdin.write_all(&[request]).and_then(|()| stdin.flush());
        }
        self.stopped.notify_all();
    }

    /// Hands the new child's standard input to the relay, with the requests it missed.
    fn attach(&self, stdin: Option<ChildStdin>) {
        let mut state = self.lock();
        state.child = stdin;
        let missed: &[u8] = match state.signals {
            0 => &[],
            1 => &[REQUEST_STOP],
            _ => &[REQUEST_STOP, REQUEST_STOP_NOW],
        };
        if let Some(stdin) = state.child.as_mut()
            && !missed.is_empty()
        {
            let _ = stdin.write_all(missed).and_then(|()| stdin.flush());
        }
    }

    /// Closes the pipe of a child that has ended.
    fn detach(&self) {
        self.lock().child = None;
    }

    fn stop_requested(&self) -> bool {
        self.lock().signals > 0
    }

    /// Waits `delay`; false when a stop was requested meanwhile.
    fn sleep(&self, delay: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .stopped
            .wait_timeout_while(state, delay, |s| s.signals == 0)
            .unwrap_or_else(|p| p.into_inner());
        state.signals == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarted_children_resume_instead_of_discarding_again() {
        let args: Vec<OsString> = ["sync", "--config", "c.json", "--restart"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let pid = std::process::id().to_string();
        let first = child_args(&args, true);
        assert_eq!(
            first,
            ["sync", "--config", "c.json", "--restart", CHILD_FLAG, &pid]
        );
        let later = child_args(&args, false);
        assert_eq!(later, ["sync", "--config", "c.json", CHILD_FLAG, &pid]);
    }

    #[test]
    fn backoff_doubles_per_crash_without_progress_up_to_the_cap() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 0), base);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
        assert_eq!(backoff(base, 9), MAX_DELAY);
        assert_eq!(backoff(base, u32::MAX), MAX_DELAY);
    }

    #[test]
    fn progress_is_more_rows_or_tables_done_in_the_same_run() {
        let at = |run: &str, rows, done| Progress {
            run_id: Some(run.to_owned()),
            rows,
            tables_done: done,
            tables: Vec::new(),
        };
        assert!(at("a", 10, 0).moved_on_from(&at("a", 5, 0)));
        assert!(at("a", 5, 1).moved_on_from(&at("a", 5, 0)));
        assert!(!at("a", 5, 0).moved_on_from(&at("a", 5, 0)));
        // A table without a key restarted from its first row: fewer rows is no progress.
        assert!(!at("a", 3, 0).moved_on_from(&at("a", 5, 0)));
        assert!(!at("b", 0, 0).moved_on_from(&Progress::default()));
        assert!(at("b", 1, 0).moved_on_from(&at("a", 5, 2)));
    }

    #[test]
    fn restarts_file_sits_next_to_the_state_file() {
        assert_eq!(
            restarts_path(Path::new("/out/_state.json")),
            Path::new("/out/_state.restarts.json")
        );
    }

    #[cfg(windows)]
    #[test]
    fn exception_codes_are_crashes_and_a_ctrl_c_exit_is_a_stop() {
        use std::os::windows::process::ExitStatusExt;
        assert_eq!(Ending::of(ExitStatus::from_raw(7)), Ending::Exited(7));
        assert_eq!(
            Ending::of(ExitStatus::from_raw(0xC000_013A)),
            Ending::Stopped(130)
        );
        assert_eq!(
            Ending::of(ExitStatus::from_raw(0xC000_0005)),
            Ending::Crashed("ended by exception 0xC0000005 (access violation)".into())
        );
        assert_eq!(
            Ending::of(ExitStatus::from_raw(0xC000_0409)),
            Ending::Crashed(
                "ended by exception 0xC0000409 (fail-fast abort or stack buffer overrun)".into()
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn exits_pass_through_stop_signals_stop_and_other_signals_are_crashes() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(Ending::of(ExitStatus::from_raw(7 << 8)), Ending::Exited(7));
        assert_eq!(Ending::of(ExitStatus::from_raw(0)), Ending::Exited(0));
        assert_eq!(
            Ending::of(ExitStatus::from_raw(libc::SIGTERM)),
            Ending::Stopped(128 + libc::SIGTERM)
        );
        assert_eq!(
            Ending::of(ExitStatus::from_raw(libc::SIGSEGV | 0x80)),
            Ending::Crashed(
                "killed by signal 11 (SIGSEGV, invalid memory access), core dumped".into()
            )
        );
        assert_eq!(
            Ending::of(ExitStatus::from_raw(libc::SIGABRT)),
            Ending::Crashed("killed by signal 6 (SIGABRT, aborted)".into())
        );
    }
}
