//! The work queue a tier's workers share.
//!
//! It starts with one "prepare" item per table in plan order. Preparing a table (exact count,
//! key bounds) yields its partitions, which go to the front of the queue so the tier's workers
//! finish one table before they start the next, and idle workers wait while a table is being
//! prepared instead of leaving early. A table's key scan is held back until every other
//! partition of the table is finished, so its delete rows follow the table's upserts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::model::ReadMode;
use crate::plan::partition::Partition;

pub(crate) enum WorkItem {
    Prepare(usize),
    Partition(Partition),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<WorkItem>,
    /// Prepare items taken but not yet answered: their partitions may still come.
    preparing: usize,
    failed: HashSet<usize>,
    /// Partitions of each table handed in and not yet finished (key scans excluded).
    outstanding: HashMap<usize, usize>,
    /// Key scans waiting for their table's other partitions.
    deferred: HashMap<usize, Partition>,
    /// When each table's first item was handed out, for the tier timeout.
    started: HashMap<usize, Instant>,
    /// How often each table's preparation was abandoned by the watchdog: each counts as a
    /// failed attempt against `max_retries`.
    prepare_abandoned: HashMap<usize, u32>,
    stopped: bool,
}

impl Queue {
    fn add(&mut self, item: WorkItem) {
        match item {
            WorkItem::Partition(p) => {
                if let Some(p) = self.count(p) {
                    self.items.push_back(WorkItem::Partition(p));
                }
            }
            other => self.items.push_back(other),
        }
    }

    /// Counts a data partition as outstanding, or holds a key scan back (returns `None`).
    fn count(&mut self, partition: Partition) -> Option<Partition> {
        if partition.spec.mode == ReadMode::KeyScan {
            self.deferred.insert(partition.table, partition);
            None
        } else {
            *self.outstanding.entry(partition.table).or_default() += 1;
            Some(partition)
        }
    }

    /// Queues the key scans whose tables have no partition left to read.
    fn release_ready(&mut self) {
        let ready: Vec<usize> = self
            .deferred
            .keys()
            .copied()
            .filter(|t| self.outstanding.get(t).copied().unwrap_or(0) == 0)
            .collect();
        for table in ready {
            if let Some(p) = self.deferred.remove(&table) {
                self.items.push_front(WorkItem::Partition(p));
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Scheduler {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Scheduler {
    pub(crate) fn new(items: impl IntoIterator<Item = WorkItem>) -> Scheduler {
        let mut queue = Queue::default();
        for item in items {
            queue.add(item);
        }
        queue.release_ready();
        Scheduler {
            queue: Mutex::new(queue),
            changed: Condvar::new(),
        }
    }

    /// The next item, waiting while tables are being prepared; `None` when the tier is done or
    /// stopped.
    pub(crate) fn next(&self) -> Option<WorkItem> {
        let mut queue = self.queue.lock();
        loop {
            if queue.stopped {
                return None;
            }
            match queue.items.pop_front() {
                Some(WorkItem::Partition(p)) if queue.failed.contains(&p.table) => continue,
                Some(item) => {
                    let table = match &item {
                        WorkItem::Prepare(table) => {
                            queue.preparing += 1;
                            *table
                        }
                        WorkItem::Partition(p) => p.table,
                    };
                    queue.started.entry(table).or_insert_with(Instant::now);
                    return Some(item);
                }
                None if queue.preparing == 0 && queue.deferred.is_empty() => return None,
                None => self.changed.wait(&mut queue),
            }
        }
    }

    /// Answers a prepare item with the table's partitions (none if it failed).
    pub(crate) fn prepared(&self, partitions: Vec<Partition>) {
        let mut queue = self.queue.lock();
        queue.preparing = queue.preparing.saturating_sub(1);
        let mut front = VecDeque::new();
        for partition in partitions {
            if let Some(p) = queue.count(partition) {
                front.push_back(WorkItem::Partition(p));
            }
        }
        while let Some(item) = front.pop_back() {
            queue.items.push_front(item);
        }
        queue.release_ready();
        self.changed.notify_all();
    }

    /// A partition (not a key scan) of `table` is read to its end.
    pub(crate) fn partition_finished(&self, table: usize) {
        let mut queue = self.queue.lock();
        if let Some(n) = queue.outstanding.get_mut(&table) {
            *n = n.saturating_sub(1);
        }
        queue.release_ready();
        self.changed.notify_all();
    }

    /// Puts a partition back at the front, to be resumed by whichever worker is free.
    pub(crate) fn requeue(&self, partition: Partition) {
        let mut queue = self.queue.lock();
        queue.items.push_front(WorkItem::Partition(partition));
        self.changed.notify_all();
    }

    /// Puts a table whose preparation was abandoned back at the front, counting the attempt.
    pub(crate) fn requeue_prepare(&self, table: usize) {
        let mut queue = self.queue.lock();
        *queue.prepare_abandoned.entry(table).or_default() += 1;
        queue.preparing = queue.preparing.saturating_sub(1);
        queue.items.push_front(WorkItem::Prepare(table));
        self.changed.notify_all();
    }

    /// How many attempts to prepare `table` the watchdog abandoned.
    pub(crate) fn prepare_abandons(&self, table: usize) -> u32 {
        self.queue
            .lock()
            .prepare_abandoned
            .get(&table)
            .copied()
            .unwrap_or(0)
    }

    /// How long ago the table's first item was handed out.
    pub(crate) fn table_elapsed(&self, table: usize) -> Option<Duration> {
        self.queue.lock().started.get(&table).map(|t| t.elapsed())
    }

    /// No more partitions of `table` are handed out.
    pub(crate) fn fail_table(&self, table: usize) {
        let mut queue = self.queue.lock();
        queue.failed.insert(table);
        queue.deferred.remove(&table);
        self.changed.notify_all();
    }

    pub(crate) fn is_failed(&self, table: usize) -> bool {
        self.queue.lock().failed.contains(&table)
    }

    /// Stops handing out work (graceful shutdown, or every worker lost its connection).
    pub(crate) fn stop(&self) {
        self.queue.lock().stopped = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReadMode;
    use crate::plan::partition::whole_table;

    fn partition(table: usize) -> Partition {
        Partition {
            table,
            spec: whole_table(ReadMode::Stream).remove(0),
            after: None,
        }
    }

    #[test]
    fn partitions_of_a_prepared_table_come_first() {
        let scheduler = Scheduler::new([WorkItem::Prepare(0), WorkItem::Prepare(1)]);
        assert!(matches!(scheduler.next(), Some(WorkItem::Prepare(0))));
        scheduler.prepared(vec![partition(0), partition(0)]);
        assert!(matches!(scheduler.next(), Some(WorkItem::Partition(p)) if p.table == 0));
        assert!(matches!(scheduler.next(), Some(WorkItem::Partition(p)) if p.table == 0));
        assert!(matches!(scheduler.next(), Some(WorkItem::Prepare(1))));
        scheduler.prepared(Vec::new());
        assert!(scheduler.next().is_none());
    }

    #[test]
    fn idle_worker_waits_for_a_table_being_prepared() {
        let scheduler = Scheduler::new([WorkItem::Prepare(0)]);
        assert!(matches!(scheduler.next(), Some(WorkItem::Prepare(0))));
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| scheduler.next().map(|_| ()));
            std::thread::sleep(std::time::Duration::from_millis(50));
            scheduler.prepared(vec![partition(0)]);
            assert_eq!(waiting.join().unwrap(), Some(()));
        });
    }

    fn key_scan(table: usize) -> Partition {
        Partition {
            table,
            spec: whole_table(ReadMode::KeyScan).remove(0),
            after: None,
        }
    }

    #[test]
    fn key_scan_waits_for_the_tables_other_partitions() {
        let scheduler = Scheduler::new([WorkItem::Prepare(0)]);
        scheduler.next();
        scheduler.prepared(vec![partition(0), partition(0), key_scan(0)]);
        let first = scheduler.next();
        let second = scheduler.next();
        assert!(matches!(&first, Some(WorkItem::Partition(p)) if p.spec.mode == ReadMode::Stream));
        assert!(matches!(&second, Some(WorkItem::Partition(p)) if p.spec.mode == ReadMode::Stream));
        std::thread::scope(|scope| {
            // An idle worker waits for the key scan instead of leaving.
            let waiting = scope.spawn(|| match scheduler.next() {
                Some(WorkItem::Partition(p)) => Some(p.spec.mode),
                _ => None,
            });
            scheduler.partition_finished(0);
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiting.is_finished(), "one partition is still being read");
            scheduler.partition_finished(0);
            assert_eq!(waiting.join().unwrap(), Some(ReadMode::KeyScan));
        });
        assert!(scheduler.next().is_none());
    }

    #[test]
    fn resumed_key_scan_alone_is_ready_and_stop_releases_waiters() {
        let scheduler = Scheduler::new([WorkItem::Partition(key_scan(3))]);
        assert!(matches!(scheduler.next(), Some(WorkItem::Partition(p)) if p.table == 3));
        let scheduler = Scheduler::new([
            WorkItem::Partition(partition(1)),
            WorkItem::Partition(key_scan(1)),
        ]);
        assert!(scheduler.next().is_some());
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| scheduler.next().is_none());
            std::thread::sleep(std::time::Duration::from_millis(50));
            scheduler.stop();
            assert!(
                waiting.join().unwrap(),
                "a stopped run hands out nothing more"
            );
        });
    }

    #[test]
    fn abandoned_preparations_are_counted_per_table() {
        let scheduler = Scheduler::new([WorkItem::Prepare(0), WorkItem::Prepare(1)]);
        assert!(matches!(scheduler.next(), Some(WorkItem::Prepare(0))));
        scheduler.requeue_prepare(0);
        assert!(matches!(scheduler.next(), Some(WorkItem::Prepare(0))));
        scheduler.requeue_prepare(0);
        assert_eq!(scheduler.prepare_abandons(0), 2);
        assert_eq!(scheduler.prepare_abandons(1), 0);
        assert!(matches!(scheduler.next(), Some(WorkItem::Prepare(0))));
    }

    #[test]
    fn failed_tables_are_skipped_and_stop_ends_the_queue() {
        let scheduler = Scheduler::new([WorkItem::Prepare(0), WorkItem::Prepare(1)]);
        scheduler.next();
        scheduler.prepared(vec![partition(0), partition(0)]);
        scheduler.fail_table(0);
        assert!(scheduler.is_failed(0));
        assert!(matches!(scheduler.next(), Some(WorkItem::Prepare(1))));
        scheduler.stop();
        assert!(scheduler.next().is_none());
    }
}
