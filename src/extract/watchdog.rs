//! The watchdog: no worker waits on the database forever.
//!
//! Each worker shares a [`WorkerSlot`] with the watchdog: the statement it is running, when it
//! last received rows, and the work in hand with the last key it sent. A statement with no rows
//! for `stall_timeout` is cancelled (`SQLCancel` from the watchdog thread, which ODBC allows);
//! the driver then fails the fetch and the worker's retry path resumes after the last key. A
//! worker that does not come back after the cancel (blocked in a read on a connection that went
//! silent, which a cancel cannot reach) is abandoned: its work goes back to the queue and a new
//! worker with a new connection takes it. The abandoned thread exits by itself if the driver
//! ever returns, without sending anything more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use odbc_api::Connection;
use parking_lot::Mutex;

use super::scheduler::Scheduler;
use crate::plan::partition::Partition;

/// What a worker holds.
#[derive(Debug, Clone)]
pub(crate) enum InHand {
    Prepare(usize),
    /// The partition with `after` kept at the last key sent to the writer.
    Partition(Partition),
}

/// A raw ODBC statement handle, registered while a statement runs so the watchdog can cancel
/// it, with the connection it runs on. A cancel holds that connection until `SQLCancel`
/// returns: the driver's cancel works through the connection (psqlODBC sends it over a
/// connection of its own, which can take a while), and the cancelled worker, whose call fails
/// at once, would otherwise drop the connection for its retry while the cancel still uses it.
#[derive(Clone)]
pub(crate) struct StatementHandle {
    handle: odbc_api::sys::HStmt,
    connection: Arc<Connection<'static>>,
}

// SAFETY: ODBC statement handles may be used from any thread, and SQLCancel is specified to be
// called from another thread than the one executing. The handle is only used under the slot's
// mutex while the worker has it registered; the worker unregisters it (under the same mutex)
// before the statement is freed. The connection is `Send` itself.
unsafe impl Send for StatementHandle {}

impl std::fmt::Debug for StatementHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StatementHandle")
            .field(&self.handle)
            .finish()
    }
}

impl StatementHandle {
    pub(crate) fn new(
        handle: odbc_api::sys::HStmt,
        connection: Arc<Connection<'static>>,
    ) -> StatementHandle {
        StatementHandle { handle, connection }
    }

    /// A method, so that a closure captures the whole handle (sendable, and holding the
    /// connection for as long as the closure lives), not its raw field.
    fn raw(&self) -> odbc_api::sys::HStmt {
        self.handle
    }
}

#[derive(Debug)]
pub(crate) struct SlotState {
    pub(crate) abandoned: bool,
    /// A statement is running (or being opened) on the worker's connection.
    pub(crate) busy: bool,
    /// Its handle, when the worker could take it; catalog queries run without one and can only
    /// be abandoned, not cancelled.
    pub(crate) statement: Option<StatementHandle>,
    pub(crate) last_progress: Instant,
    pub(crate) cancelled_at: Option<Instant>,
    pub(crate) in_hand: Option<InHand>,
    /// Table of the work in hand, for messages.
    pub(crate) table_name: String,
}

/// State shared by one worker and the watchdog.
#[derive(Debug)]
pub(crate) struct WorkerSlot {
    pub(crate) state: Mutex<SlotState>,
}

impl WorkerSlot {
    pub(crate) fn new() -> Arc<WorkerSlot> {
        Arc::new(WorkerSlot {
            state: Mutex::new(SlotState {
                abandoned: false,
                busy: false,
                statement: None,
                last_progress: Instant::now(),
                cancelled_at: None,
                in_hand: None,
                table_name: String::new(),
            }),
        })
    }
}

/// Calls `SQLCancel` on a thread of its own: a driver's cancel may itself wait on the network
/// (psqlODBC opens a new connection for it), and the watchdog must never wait with it.
fn cancel(statement: StatementHandle) {
    let spawned = std::thread::Builder::new()
        .name("cancel".into())
        .spawn(move || {
            // SAFETY: the handle was registered when the cancel was decided, so its statement
            // was alive; SQLCancel is thread-safe by the ODBC specification, and the driver
            // manager rejects a handle freed in the meantime (SQL_INVALID_HANDLE).
            let result = unsafe { odbc_api::sys::SQLCancel(statement.raw()) };
            if result != odbc_api::sys::SqlReturn::SUCCESS {
                log::debug!("SQLCancel returned {result:?}");
            }
            // Only now may the connection go (this may be its last holder).
            drop(statement.connection);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a thread to cancel a stalled statement: {e}");
    }
}

/// What the watchdog did to a worker, for the coordinator that replaces abandoned ones.
pub(crate) enum WatchdogEvent {
    Abandoned,
}

pub(crate) struct Watchdog {
    pub(crate) slots: Arc<Mutex<Vec<Arc<WorkerSlot>>>>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) stall_timeout: Duration,
    /// Closed (its sender dropped) when the tier ends: wakes the watchdog at once.
    pub(crate) done: crossbeam_channel::Receiver<()>,
    pub(crate) events: crossbeam_channel::Sender<WatchdogEvent>,
}

impl Watchdog {
    /// How long a cancelled statement has to come back before its worker is abandoned.
    fn grace(&self) -> Duration {
        (self.stall_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Checks every slot about four times per stall timeout until `done` closes.
    pub(crate) fn run(self) {
        let tick =
            (self.stall_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = self.done.recv_timeout(tick) {
            let slots: Vec<Arc<WorkerSlot>> = self.slots.lock().clone();
            for slot in slots {
                self.check(&slot);
            }
        }
    }

    fn check(&self, slot: &WorkerSlot) {
        // A worker holding its slot is sending to the writer, not stuck in the driver.
        let Some(mut state) = slot.state.try_lock() else {
            return;
        };
        if state.abandoned || !state.busy {
            return;
        }
        match state.cancelled_at {
            None if state.last_progress.elapsed() >= self.stall_timeout => {
                log::warn!(
                    "{}: no rows for {}s; cancelling the statement (it is retried after the \
                     last key written)",
                    state.table_name,
                    self.stall_timeout.as_secs()
                );
                if let Some(statement) = state.statement.clone() {
                    cancel(statement);
                }
                state.cancelled_at = Some(Instant::now());
            }
            Some(at) if at.elapsed() >= self.grace() => {
                log::error!(
                    "{}: the connection did not answer the cancel within {}s; abandoning it \
                     and reading on with a new connection",
                    state.table_name,
                    self.grace().as_secs()
                );
                state.abandoned = true;
                state.busy = false;
                state.statement = None;
                match state.in_hand.take() {
                    Some(InHand::Partition(partition)) => self.scheduler.requeue(partition),
                    Some(InHand::Prepare(table)) => self.scheduler.requeue_prepare(table),
                    None => {}
                }
                let _ = self.events.send(WatchdogEvent::Abandoned);
            }
            _ => {}
        }
    }
}
