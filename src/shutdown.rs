//! Graceful stop on Ctrl+C, SIGTERM, SIGHUP (and on Windows Ctrl+Break and console close): the
//! first signal stops handing out work, lets workers finish the batch in hand and writes a final
//! checkpoint; a second one exits at once (the last durable checkpoint still stands).
//!
//! Windows ends a process soon after its console is closed, so there the final checkpoint may
//! not be written; the previous one is intact either way.
//!
//! A supervised sync (see `supervisor`) also takes stop requests from its supervisor on
//! standard input; they stop it like a signal but are never counted as one, because the
//! signal that made the supervisor relay a request usually reached this process too.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Stop requests a supervisor writes to its sync child's standard input.
pub(crate) const REQUEST_STOP: u8 = b's';
pub(crate) const REQUEST_STOP_NOW: u8 = b'n';

/// Exit code of the immediate stop on a second signal (128 + SIGINT, as shells report it).
const IMMEDIATE_EXIT_CODE: i32 = 130;

/// Set by the first signal; workers and the scheduler poll it.
#[derive(Debug, Default)]
pub(crate) struct StopFlag(AtomicBool);

impl StopFlag {
    pub(crate) const fn new() -> StopFlag {
        StopFlag(AtomicBool::new(false))
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The process-wide stop flag the signal handler sets.
pub(crate) static STOP: StopFlag = StopFlag::new();

/// Signals received; the second one stops at once.
static SIGNALS: AtomicU32 = AtomicU32::new(0);

/// Installs the handler. Call once, before the run starts.
pub(crate) fn install() -> Result<(), String> {
    ctrlc::set_handler(|| {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) > 0 {
            // Second signal: the operator wants out now.
            std::process::exit(IMMEDIATE_EXIT_CODE);
        }
        stop_gracefully();
    })
    .map_err(|e| format!("cannot install the Ctrl+C / SIGTERM handler: {e}"))
}

fn stop_gracefully() {
    if !STOP.is_set() {
        STOP.set();
        eprintln!(
            "ehi-sync: stopping after the batches in hand and a final checkpoint \
             (press Ctrl+C again to stop at once)"
        );
    }
}

/// How long a sync child whose supervisor vanished waits for the parent-death signal.
const PARENT_DEATH_SIGNAL_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Follows the supervisor's stop requests on standard input, on a thread of its own. When the
/// input ends (the supervisor is gone, and nobody would restart or report this run) the run
/// stops gracefully.
pub fn follow_supervisor() -> Result<(), String> {
    std::thread::Builder::new()
        .name("supervisor requests".into())
        .spawn(|| {
            let mut stdin = std::io::stdin().lock();
            let mut request = [0u8; 1];
            loop {
                match stdin.read(&mut request) {
                    Ok(1) if request[0] == REQUEST_STOP_NOW => {
                        std::process::exit(IMMEDIATE_EXIT_CODE)
                    }
                    Ok(1) if request[0] == REQUEST_STOP => stop_gracefully(),
                    Ok(1) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(_) | Err(_) => {
                        // A supervisor killed outright closes this pipe a moment before the
                        // kernel delivers the parent-death signal (Linux) that ends this
                        // process too: give that signal the moment instead of starting a
                        // graceful stop it would cut short.
                        std::thread::sleep(PARENT_DEATH_SIGNAL_WAIT);
                        if !STOP.is_set() {
                            eprintln!("ehi-sync: the supervisor has ended");
                        }
                        stop_gracefully();
                        return;
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the thread that follows the supervisor: {e}"))
}
