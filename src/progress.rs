//! Live progress: bars on a terminal, plain periodic log lines for scheduled runs (whose output
//! goes to a log file). Driven by the writer thread, which sees every durable row.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::display::{duration, group_digits, rows_per_second};
use crate::model::Tier;

/// How often plain log lines report tables in progress.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

struct TableProgress {
    name: String,
    expected: u64,
    rows: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

pub(crate) struct Progress {
    bars: Option<MultiProgress>,
    active: BTreeMap<usize, TableProgress>,
    last_log: Instant,
}

impl Progress {
    /// Bars when standard error is a terminal, log lines otherwise.
    pub(crate) fn new() -> Progress {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            bars,
            active: BTreeMap::new(),
            last_log: Instant::now(),
        }
    }

    /// `Processing table 5/265: dbo.LABRESULT (medium, 29,123,456 rows)`.
    pub(crate) fn table_started(
        &mut self,
        table: usize,
        position: usize,
        total: usize,
        name: &str,
        tier: Tier,
        expected: u64,
    ) {
        let line = format!(
            "Processing table {position}/{total}: {name} ({tier}, {} rows)",
            group_digits(expected)
        );
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(expected.max(1)));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:30!} [{bar:30}] {human_pos}/{human_len} rows {per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_owned());
            let _ = bars.println(&line);
            bar
        });
        if bar.is_none() {
            log::info!("{line}");
        }
        self.active.insert(
            table,
            TableProgress {
                name: name.to_owned(),
                expected,
                rows: 0,
                started: Instant::now(),
                bar,
            },
        );
    }

    /// A table of an interrupted run carries on from `rows`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn table_resumed(
        &mut self,
        table: usize,
        position: usize,
        total: usize,
        name: &str,
        tier: Tier,
        expected: u64,
        rows: u64,
    ) {
        self.table_started(table, position, total, name, tier, expected);
        self.log(&format!(
            "Resuming {name} after its last checkpoint: {} rows kept",
            group_digits(rows)
        ));
        self.rows(table, rows);
    }

    fn log(&self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => log::info!("{line}"),
        }
    }

    /// Rows durably written so far for `table`.
    pub(crate) fn rows(&mut self, table: usize, rows: u64) {
        if let Some(progress) = self.active.get_mut(&table) {
            progress.rows = rows;
            if let Some(bar) = &progress.bar {
                if rows > bar.length().unwrap_or(0) {
                    bar.set_length(rows);
                }
                bar.set_position(rows);
                bar.set_message(rss_text());
            }
        }
        if self.bars.is_none() && self.last_log.elapsed() >= LOG_INTERVAL {
            self.last_log = Instant::now();
            for progress in self.active.values() {
                log::info!("{}", status_line(progress));
            }
        }
    }

    /// The table is finished (or failed); `summary` is its closing line.
    pub(crate) fn table_finished(&mut self, table: usize, summary: &str) {
        if let Some(bar) = self.active.remove(&table).and_then(|p| p.bar) {
            bar.finish_and_clear();
        }
        self.log(summary);
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

fn status_line(progress: &TableProgress) -> String {
    let rate = rows_per_second(progress.rows, progress.started.elapsed().as_secs_f64());
    let percent = if progress.expected > 0 {
        format!(
            " ({:.1}%)",
            100.0 * progress.rows as f64 / progress.expected as f64
        )
    } else {
        String::new()
    };
    let eta = if rate > 0.0 && progress.expected > progress.rows {
        duration((progress.expected - progress.rows) as f64 / rate)
    } else {
        "-".to_owned()
    };
    format!(
        "{}: {} / {} rows{percent}, {} rows/s, ETA {eta}, {}",
        progress.name,
        group_digits(progress.rows),
        group_digits(progress.expected),
        group_digits(rate.round() as u64),
        rss_text()
    )
}

/// Resident memory of this process, e.g. `RSS 54 MiB`.
pub(crate) fn rss_text() -> String {
    match memory_stats::memory_stats() {
        Some(stats) => format!("RSS {} MiB", stats.physical_mem / (1024 * 1024)),
        None => "RSS unknown".to_owned(),
    }
}
