//! `ehi-sync status`: a run's progress from its state file, for an operator checking on a
//! scheduled run nobody watches.

use serde::Serialize;

use crate::display::group_digits;
use crate::model::{Holder, Tier};
use crate::state::{PartitionStatus, RunState, TableStatus};
use crate::supervisor::Restarts;

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) run_id: String,
    /// `running`, `finished` or stopped before the end.
    pub(crate) run: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) holder: Option<Holder>,
    pub(crate) started_at: String,
    pub(crate) last_checkpoint_at: Option<String>,
    pub(crate) tiers: Vec<TierReport>,
    pub(crate) tables: Vec<TableReport>,
    /// Crashes of the sync process the supervisor restarted it after, in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) restarts: Option<Restarts>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TierReport {
    pub(crate) tier: Tier,
    pub(crate) done: usize,
    pub(crate) in_progress: usize,
    pub(crate) failed: usize,
    pub(crate) pending: usize,
    pub(crate) rows_done: u64,
    /// Sum of the exact counts of the tables that have started; pending tables are not
    /// counted yet.
    pub(crate) rows_expected: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct TableReport {
    pub(crate) table: String,
    pub(crate) tier: Tier,
    pub(crate) status: TableStatus,
    pub(crate) rows: u64,
    pub(crate) expected_rows: Option<u64>,
    pub(crate) partitions_done: usize,
    pub(crate) partitions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Report {
    pub(crate) fn new(state: &RunState, run: &str, holder: Option<Holder>) -> Report {
        let tables: Vec<TableReport> = state
            .tables
            .iter()
            .map(|t| TableReport {
                table: t.table.clone(),
                tier: t.tier,
                status: t.status,
                rows: t.rows,
                expected_rows: t.expected_rows,
                partitions_done: t
                    .partitions
                    .iter()
                    .filter(|p| p.status == PartitionStatus::Done)
                    .count(),
                partitions: t.partitions.len(),
                error: t.error.clone(),
            })
            .collect();
        let tiers = Tier::ALL
            .into_iter()
            .map(|tier| {
                let of_tier = || tables.iter().filter(move |t| t.tier == tier);
                let count = |status| of_tier().filter(|t| t.status == status).count();
                TierReport {
                    tier,
                    done: count(TableStatus::Done),
                    in_progress: count(TableStatus::InProgress),
                    failed: count(TableStatus::Failed),
                    pending: count(TableStatus::Pending),
                    rows_done: of_tier().map(|t| t.rows).sum(),
                    rows_expected: of_tier().filter_map(|t| t.expected_rows).sum(),
                }
            })
            .collect();
        Report {
            run_id: state.run_id.clone(),
            run: run.to_owned(),
            holder,
            started_at: state.started_at.clone(),
            last_checkpoint_at: state.last_checkpoint_at.clone(),
            tiers,
            tables,
            restarts: None,
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut text = format!("Run {}: {}\n", self.run_id, self.run);
        if let Some(holder) = &self.holder {
            text.push_str(&format!(
                "  process:         pid {} on {}\n",
                holder.pid, holder.host
            ));
        }
        text.push_str(&format!("  started:         {}\n", self.started_at));
        text.push_str(&format!(
            "  last checkpoint: {}\n",
            self.last_checkpoint_at.as_deref().unwrap_or("none yet")
        ));
        if let Some(restarts) = &self.restarts {
            text.push_str(&render_restarts(restarts));
        }
        text.push_str(&format!(
            "  {:<7} {:>6} {:>12} {:>7} {:>8} {:>16} {:>16}\n",
            "tier", "done", "in progress", "failed", "pending", "rows done", "of expected"
        ));
        for tier in &self.tiers {
            text.push_str(&format!(
                "  {:<7} {:>6} {:>12} {:>7} {:>8} {:>16} {:>16}\n",
                tier.tier.name(),
                tier.done,
                tier.in_progress,
                tier.failed,
                tier.pending,
                group_digits(tier.rows_done),
                group_digits(tier.rows_expected)
            ));
        }
        let active: Vec<&TableReport> = self
            .tables
            .iter()
            .filter(|t| t.status == TableStatus::InProgress)
            .collect();
        if !active.is_empty() {
            text.push_str("In progress:\n");
            for t in active {
                let expected = t.expected_rows.unwrap_or(0);
                let percent = if expected > 0 {
                    format!(" ({:.1}%)", 100.0 * t.rows as f64 / expected as f64)
                } else {
                    String::new()
                };
                text.push_str(&format!(
                    "  {} ({}): {} of {} rows{percent}, {} of {} partitions done\n",
                    t.table,
                    t.tier,
                    group_digits(t.rows),
                    group_digits(expected),
                    t.partitions_done,
                    t.partitions
                ));
            }
        }
        for t in self
            .tables
            .iter()
            .filter(|t| t.status == TableStatus::Failed)
        {
            text.push_str(&format!(
                "Failed: {} ({}): {}\n",
                t.table,
                t.tier,
                t.error.as_deref().unwrap_or("unknown error")
            ));
        }
        text
    }
}

/// `  crash restarts:  2 (last crash <when>: <cause>, in <tables>)`; empty without a crash.
pub(crate) fn render_restarts(restarts: &Restarts) -> String {
    let Some(last) = restarts.crashes.last() else {
        return String::new();
    };
    format!(
        "  crash restarts:  {} (last crash {}: {}{})\n",
        restarts.restarts,
        last.at,
        last.cause,
        if last.tables.is_empty() {
            String::new()
        } else {
            format!(", in {}", last.tables.join(", "))
        }
    )
}
