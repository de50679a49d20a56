//! Graceful stop on Ctrl+C, SIGTERM, SIGHUP (and on Windows Ctrl+Break and console close): the
//! first signal stops handing out work, lets workers finish the batch in hand and writes a final
//! checkpoint; a second one exits at once (the last durable checkpoint still stands).
//!
//! Windows ends a process soon after its console is closed, so there the final checkpoint may
//! not be written; the previous one is intact either way.

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code of the immediate stop on a second signal (128 + SIGINT, as shells report it).
const IMMEDIATE_EXIT_CODE: i32 = 130;

/// Set by the first signal; workers and the scheduler poll it.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicBool);

impl StopFlag {
    pub const fn new() -> StopFlag {
        StopFlag(AtomicBool::new(false))
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The process-wide stop flag the signal handler sets.
pub static STOP: StopFlag = StopFlag::new();

/// Installs the handler. Call once, before the run starts.
pub fn install() -> Result<(), String> {
    ctrlc::set_handler(|| {
        if STOP.is_set() {
            // Second signal: the operator wants out now.
            std::process::exit(IMMEDIATE_EXIT_CODE);
        }
        STOP.set();
        eprintln!(
            "ehi-sync: stopping after the batches in hand and a final checkpoint \
             (press Ctrl+C again to stop at once)"
        );
    })
    .map_err(|e| format!("cannot install the Ctrl+C / SIGTERM handler: {e}"))
}
