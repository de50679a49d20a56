//! The processing plan: tiers by size, order small → large, partitions, estimated durations,
//! printed for people and as JSON for machines.

pub(crate) mod partition;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, TierSettings};
use crate::display::{duration, group_digits, tables};
use crate::model::{
    Compression, CursorKind, Dialect, Format, Isolation, Load, LoadKind, ReadMode, SyncMode, Tier,
};
use crate::plan::partition::ReadChoice;
use crate::source::catalog::Table;
use crate::state::SourceIdentity;

/// Rows per second one connection is assumed to move when no previous run measured it. A
/// deliberately modest figure for SQL Server over a LAN with the Microsoft driver; the plan says
/// when it is used, and a finished run's measured rates replace it.
pub(crate) const DEFAULT_ROWS_PER_SECOND_PER_CONNECTION: f64 = 25_000.0;

/// Fixed cost assumed per table (connect, discovery of bounds, manifest), in seconds.
const SECONDS_PER_TABLE: f64 = 1.0;

/// How many tables of each tier the text plan lists before "... and N more".
const TABLES_SHOWN_PER_TIER: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    pub(crate) dialect: Dialect,
    pub(crate) database: String,
    pub(crate) output_dir: PathBuf,
    pub(crate) format: Format,
    pub(crate) isolation: Isolation,
    pub(crate) tiers: Vec<TierPlan>,
    pub(crate) total_tables: usize,
    pub(crate) total_rows: u64,
    pub(crate) estimated_seconds: f64,
    /// Tables read as one stream (no primary key, or one that cannot be a resume point),
    /// restarted from zero on failure.
    pub(crate) keyless_tables: Vec<String>,
    /// Problems of the incremental settings that do not stop the run.
    pub(crate) warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TierPlan {
    pub(crate) tier: Tier,
    pub(crate) settings: TierSettings,
    /// Smallest first.
    pub(crate) tables: Vec<TablePlan>,
    pub(crate) rows: u64,
    pub(crate) rows_per_second: f64,
    /// `"previous run"` or `"default"`.
    pub(crate) rate_source: &'static str,
    pub(crate) estimated_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TablePlan {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) rows: u64,
    pub(crate) rows_exact: bool,
    pub(crate) partitions: u64,
    pub(crate) primary_key: Vec<String>,
    /// How the table is read: key ranges in parallel, keyset chunks, or one stream.
    pub(crate) read_mode: ReadMode,
    /// Why: "range on integer key", "keyset on composite key", "one stream: no primary key".
    pub(crate) read_reason: String,
    /// Full, incremental or skipped in this run, and why.
    pub(crate) load: Load,
    #[serde(skip)]
    pub(crate) table: Table,
}

impl TablePlan {
    pub(crate) fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Measured throughput per tier from a previous run, rows per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MeasuredRates {
    pub(crate) small: Option<f64>,
    pub(crate) medium: Option<f64>,
    pub(crate) large: Option<f64>,
}

impl MeasuredRates {
    fn get(&self, tier: Tier) -> Option<f64> {
        match tier {
            Tier::Small => self.small,
            Tier::Medium => self.medium,
            Tier::Large => self.large,
        }
    }

    /// Reads the validation records of earlier runs in `output_dir`; missing or unreadable
    /// records simply leave the defaults in place.
    pub(crate) fn from_output_dir(output_dir: &Path) -> MeasuredRates {
        match std::fs::read_to_string(output_dir.join(crate::manifest::VALIDATION_FILE)) {
            Ok(text) => MeasuredRates::from_validation_records(&text),
            Err(_) => MeasuredRates::default(),
        }
    }

    /// Sums rows and seconds of successful tables per tier. Each line is a JSON object with
    /// `tier`, `status`, `extracted_rows` and `duration_seconds`.
    pub(crate) fn from_validation_records(text: &str) -> MeasuredRates {
        let mut totals = [(0u64, 0f64); 3];
        for line in text.lines() {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let tier = match record.get("tier").and_then(|t| t.as_str()) {
                Some("small") => 0,
                Some("medium") => 1,
                Some("large") => 2,
                _ => continue,
            };
            if record.get("status").and_then(|s| s.as_str()) != Some("ok") {
                continue;
            }
            let rows = record.get("extracted_rows").and_then(|r| r.as_u64());
            let seconds = record.get("duration_seconds").and_then(|s| s.as_f64());
            if let (Some(rows), Some(seconds)) = (rows, seconds) {
                totals[tier].0 += rows;
                totals[tier].1 += seconds;
            }
        }
        let rate = |(rows, seconds): (u64, f64)| {
            // Too little data says more about fixed costs than throughput.
            (rows >= 10_000 && seconds > 0.0).then(|| rows as f64 / seconds)
        };
        MeasuredRates {
            small: rate(totals[0]),
            medium: rate(totals[1]),
            large: rate(totals[2]),
        }
    }
}

/// Builds the plan: every table gets its tier, tiers are ordered small → large, and tables within
/// a tier smallest first (ties by name, so the order is deterministic).
pub(crate) fn build(
    config: &Config,
    dialect: Dialect,
    database: &str,
    tables: Vec<Table>,
    rates: MeasuredRates,
) -> Plan {
    let total_tables = tables.len();
    let total_rows = tables.iter().map(|t| t.rows).sum();
    let mut keyless_tables = Vec::new();
    let mut tiers: Vec<TierPlan> = Tier::ALL
        .into_iter()
        .map(|tier| {
            let settings = *config.tiers.get(tier);
            let (rows_per_second, rate_source) = match rates.get(tier) {
                Some(rate) => (rate, "previous run"),
                None => (
                    DEFAULT_ROWS_PER_SECOND_PER_CONNECTION * settings.threads.get() as f64,
                    "default",
                ),
            };
            TierPlan {
                tier,
                settings,
                tables: Vec::new(),
                rows: 0,
                rows_per_second,
                rate_source,
                estimated_seconds: 0.0,
            }
        })
        .collect();
    let mut warnings = Vec::new();
    for table in tables {
        let tier = config.tier_for(table.rows);
        let tier_plan = &mut tiers[tier as usize];
        let choice = ReadChoice::of(dialect, &table);
        let partitions = match choice.mode {
            ReadMode::Range => table
                .rows
                .div_ceil(tier_plan.settings.partition_size.get())
                .max(1),
            _ => 1,
        };
        if choice.mode == ReadMode::Stream {
            keyless_tables.push(table.full_name());
            warnings.push(format!(
                "{} is read as {}; a failure restarts it from its first row",
                table.full_name(),
                choice.reason
            ));
        }
        tier_plan.rows += table.rows;
        tier_plan.tables.push(TablePlan {
            schema: table.schema.clone(),
            name: table.name.clone(),
            rows: table.rows,
            rows_exact: table.rows_exact,
            partitions,
            primary_key: table.primary_key.clone(),
            read_mode: choice.mode,
            read_reason: choice.reason,
            load: Load::full_default(),
            table,
        });
    }
    for tier in &mut tiers {
        tier.tables
            .sort_by(|a, b| (a.rows, &a.schema, &a.name).cmp(&(b.rows, &b.schema, &b.name)));
        let parallel_tables = tier.tables.len() as f64 / tier.settings.threads.get() as f64;
        tier.estimated_seconds =
            tier.rows as f64 / tier.rows_per_second + parallel_tables * SECONDS_PER_TABLE;
    }
    let estimated_seconds = tiers.iter().map(|t| t.estimated_seconds).sum();
    Plan {
        dialect,
        database: database.to_owned(),
        output_dir: config.output_dir.clone(),
        format: config.format,
        isolation: config.isolation,
        tiers,
        total_tables,
        total_rows,
        estimated_seconds,
        keyless_tables,
        warnings,
    }
}

impl Plan {
    /// What the output of this plan belongs to, as recorded in the state file.
    pub(crate) fn source_identity(&self, compression: Compression) -> SourceIdentity {
        SourceIdentity {
            dialect: self.dialect,
            database: self.database.clone(),
            format: self.format,
            compression,
        }
    }

    /// The tables in processing order.
    pub(crate) fn tables(&self) -> impl Iterator<Item = (&TierPlan, &TablePlan)> {
        self.tiers
            .iter()
            .flat_map(|tier| tier.tables.iter().map(move |table| (tier, table)))
    }

    /// The plan as printed before a run and by `ehi-sync plan`.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let format = self.format.name();
        let _ = writeln!(out, "Processing plan");
        let _ = writeln!(
            out,
            "  database: {} ({})",
            self.database,
            self.dialect.name()
        );
        let _ = writeln!(out, "  reads:    {} isolation", self.isolation.name());
        let _ = writeln!(out, "  output:   {} ({format})", self.output_dir.display());
        let _ = writeln!(
            out,
            "  tables:   {} with {} rows",
            group_digits(self.total_tables as u64),
            group_digits(self.total_rows)
        );
        for tier in &self.tiers {
            render_tier(&mut out, tier);
        }
        if !self.keyless_tables.is_empty() {
            let _ = writeln!(
                out,
                "\nTables read as one stream ({}): each is restarted from its first row if it \
                 fails:",
                self.keyless_tables.len()
            );
            for name in &self.keyless_tables {
                let _ = writeln!(out, "  {name}");
            }
        }
        render_loads(&mut out, self);
        render_summary(&mut out, self);
        out
    }
}

/// What each table's load is: incremental ones with their mode and position, full and skipped
/// ones grouped by reason, and every schema change.
fn render_loads(out: &mut String, plan: &Plan) {
    let tables: Vec<&TablePlan> = plan.tables().map(|(_, t)| t).collect();
    let count = |kind| tables.iter().filter(|t| t.load.kind == kind).count() as u64;
    let _ = writeln!(
        out,
        "\nLoads: {} incremental, {} full, {} skipped",
        group_digits(count(LoadKind::Incremental)),
        group_digits(count(LoadKind::Full)),
        group_digits(count(LoadKind::Skip))
    );
    let incremental: Vec<&&TablePlan> = tables
        .iter()
        .filter(|t| t.load.kind == LoadKind::Incremental)
        .collect();
    for table in incremental.iter().take(TABLES_SHOWN_PER_TIER) {
        let load = &table.load;
        let mut line = format!(
            "  incremental  {}: {} after {}",
            table.full_name(),
            load.mode.describe(),
            load.from.as_deref().unwrap_or("the start")
        );
        if matches!(
            load.mode,
            SyncMode::Cursor {
                kind: CursorKind::Timestamp,
                ..
            }
        ) {
            line.push_str(&format!(" less {} min lookback", load.lookback_minutes));
        }
        if load.key_scan {
            line.push_str(", deletes by key scan");
        }
        if load.snapshot {
            line.push_str(", in snapshot isolation");
        }
        let _ = writeln!(out, "{line}");
    }
    if incremental.len() > TABLES_SHOWN_PER_TIER {
        let _ = writeln!(
            out,
            "  ... and {} more incremental",
            incremental.len() - TABLES_SHOWN_PER_TIER
        );
    }
    let mut groups: Vec<(LoadKind, &str, Vec<String>)> = Vec::new();
    for table in tables
        .iter()
        .filter(|t| t.load.kind != LoadKind::Incremental)
    {
        let key = (table.load.kind, table.load.reason.as_str());
        match groups.iter_mut().find(|(k, r, _)| (*k, *r) == key) {
            Some((_, _, names)) => names.push(table.full_name()),
            None => groups.push((key.0, key.1, vec![table.full_name()])),
        }
    }
    for (kind, reason, names) in groups {
        let shown: Vec<&str> = names
            .iter()
            .take(TABLES_SHOWN_PER_TIER)
            .map(String::as_str)
            .collect();
        let more = names.len().saturating_sub(TABLES_SHOWN_PER_TIER);
        let _ = writeln!(
            out,
            "  {:<11}  {reason}: {}{}",
            kind.name(),
            shown.join(", "),
            if more > 0 {
                format!(" ... and {more} more")
            } else {
                String::new()
            }
        );
    }
    let changed: Vec<&&TablePlan> = tables
        .iter()
        .filter(|t| !t.load.schema_changes.is_empty())
        .collect();
    if !changed.is_empty() {
        let _ = writeln!(out, "\nSchema changes since the previous load:");
        for table in changed {
            let changes: Vec<String> = table
                .load
                .schema_changes
                .iter()
                .map(|c| c.describe())
                .collect();
            let _ = writeln!(out, "  {}: {}", table.full_name(), changes.join("; "));
        }
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
}

fn render_tier(out: &mut String, tier: &TierPlan) {
    let upper = tier.tier.name().to_ascii_uppercase();
    let _ = writeln!(out);
    if tier.tables.is_empty() {
        let _ = writeln!(out, "{upper} tier: no tables");
        return;
    }
    let s = &tier.settings;
    let _ = writeln!(
        out,
        "{upper} tier: {}, {} rows",
        tables(tier.tables.len()),
        group_digits(tier.rows)
    );
    let _ = writeln!(
        out,
        "  threads {} | batch {} rows | partition {} rows | queue {} rows | timeout {} | \
         checkpoint every {} rows",
        s.threads,
        group_digits(s.fetch.rows.get() as u64),
        group_digits(s.partition_size.get()),
        group_digits(s.queue_size.get()),
        duration(s.timeout_seconds as f64),
        group_digits(s.checkpoint_interval)
    );
    let _ = writeln!(out, "  {:>15}  {:>10}  table", "rows", "partitions");
    for table in tier.tables.iter().take(TABLES_SHOWN_PER_TIER) {
        let _ = writeln!(
            out,
            "  {:>15}  {:>10}  {}  ({})",
            group_digits(table.rows),
            group_digits(table.partitions),
            table.full_name(),
            table.read_reason
        );
    }
    if tier.tables.len() > TABLES_SHOWN_PER_TIER {
        let _ = writeln!(
            out,
            "  ... and {} more",
            tier.tables.len() - TABLES_SHOWN_PER_TIER
        );
    }
}

fn render_summary(out: &mut String, plan: &Plan) {
    let percent = |part: f64, whole: f64| {
        if whole > 0.0 {
            format!("{:.1}%", 100.0 * part / whole)
        } else {
            "-".to_owned()
        }
    };
    let _ = writeln!(out, "\nSummary");
    let _ = writeln!(
        out,
        "  {:<7} {:>7} {:>7} {:>16} {:>7} {:>12}  rate (rows/s)",
        "tier", "tables", "%", "rows", "%", "est. time"
    );
    for tier in &plan.tiers {
        let _ = writeln!(
            out,
            "  {:<7} {:>7} {:>7} {:>16} {:>7} {:>12}  {} ({})",
            tier.tier.name(),
            group_digits(tier.tables.len() as u64),
            percent(tier.tables.len() as f64, plan.total_tables as f64),
            group_digits(tier.rows),
            percent(tier.rows as f64, plan.total_rows as f64),
            duration(tier.estimated_seconds),
            group_digits(tier.rows_per_second.round() as u64),
            tier.rate_source
        );
    }
    let _ = writeln!(
        out,
        "  {:<7} {:>7} {:>7} {:>16} {:>7} {:>12}",
        "total",
        group_digits(plan.total_tables as u64),
        "",
        group_digits(plan.total_rows),
        "",
        duration(plan.estimated_seconds)
    );
    if plan.tiers.iter().any(|t| t.rate_source == "default") {
        let _ = writeln!(
            out,
            "  Default rates assume {} rows/s per connection; a finished run's measured rates \
             are used next time.",
            group_digits(DEFAULT_ROWS_PER_SECOND_PER_CONNECTION as u64)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::catalog::Column;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let json = format!(
            r#"{{"connection_string": "DSN=x", "small_table_threshold": 100,
                "large_table_threshold": 1000 {extra}}}"#
        );
        Config::from_json(&json, Path::new("c.json"), Path::new("/out"), &|_| None).unwrap()
    }

    fn table(name: &str, rows: u64, key: &[&str]) -> Table {
        Table {
            schema: "dbo".into(),
            name: name.into(),
            columns: ["id", "a", "b"]
                .into_iter()
                .map(|column| Column::for_test(column, "bigint", Some(1)))
                .collect(),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            rows,
            rows_exact: true,
        }
    }

    fn sample_plan() -> Plan {
        let tables = vec![
            table("BIG", 5_000, &["id"]),
            table("MID_B", 500, &["id"]),
            table("MID_A", 500, &["a", "b"]),
            table("TINY", 3, &["id"]),
            table("AUDIT", 150, &[]),
            table("EMPTY", 0, &["id"]),
        ];
        build(
            &config(""),
            Dialect::Postgres,
            "ehr",
            tables,
            MeasuredRates::default(),
        )
    }

    #[test]
    fn tiers_and_order() {
        let plan = sample_plan();
        let order: Vec<(Tier, String)> = plan
            .tables()
            .map(|(tier, table)| (tier.tier, table.name.clone()))
            .collect();
        assert_eq!(
            order,
            [
                (Tier::Small, "EMPTY".to_owned()),
                (Tier::Small, "TINY".into()),
                (Tier::Medium, "AUDIT".into()),
                (Tier::Medium, "MID_A".into()),
                (Tier::Medium, "MID_B".into()),
                (Tier::Large, "BIG".into()),
            ]
        );
        assert_eq!(plan.total_rows, 6_153);
        assert_eq!(plan.keyless_tables, ["dbo.AUDIT"]);
        assert_eq!(
            plan.warnings,
            [
                "dbo.AUDIT is read as one stream: no primary key; a failure restarts it from its \
              first row"
            ]
        );
    }

    #[test]
    fn partitions_follow_tier_partition_size() {
        let plan = build(
            &config(r#", "tiers": {"large": {"partition_size": 1000}}"#),
            Dialect::Postgres,
            "ehr",
            vec![table("BIG", 5_001, &["id"]), table("NOKEY", 5_000, &[])],
            MeasuredRates::default(),
        );
        let large = &plan.tiers[2];
        assert_eq!(large.tables[0].name, "NOKEY");
        assert_eq!(large.tables[0].partitions, 1);
        assert_eq!(large.tables[1].partitions, 6);
    }

    #[test]
    fn rendered_plan_lists_tiers_and_summary() {
        let text = sample_plan().render();
        assert!(text.contains("SMALL tier: 2 tables, 3 rows"), "{text}");
        assert!(text.contains("MEDIUM tier: 3 tables, 1,150 rows"), "{text}");
        assert!(text.contains("LARGE tier: 1 table, 5,000 rows"), "{text}");
        assert!(
            text.contains("threads 4 | batch 5,000 rows | partition 50,000 rows"),
            "{text}"
        );
        assert!(
            text.contains("dbo.AUDIT  (one stream: no primary key)"),
            "{text}"
        );
        assert!(text.contains("dbo.BIG  (range on integer key)"), "{text}");
        assert!(
            text.contains("dbo.MID_A  (range on integer composite key)"),
            "{text}"
        );
        assert!(text.contains("Tables read as one stream (1)"), "{text}");
        assert!(text.contains("total"), "{text}");
        assert!(
            text.contains("Default rates assume 25,000 rows/s"),
            "{text}"
        );
        assert!(
            text.contains("reads:    read_committed isolation"),
            "{text}"
        );
    }

    #[test]
    fn long_tiers_are_shortened() {
        let tables = (0..25)
            .map(|i| table(&format!("T{i:02}"), i, &["id"]))
            .collect();
        let plan = build(
            &config(""),
            Dialect::Postgres,
            "ehr",
            tables,
            MeasuredRates::default(),
        );
        let text = plan.render();
        assert!(text.contains("... and 15 more"), "{text}");
        assert!(
            text.contains("dbo.T09") && !text.contains("dbo.T10"),
            "{text}"
        );
    }

    #[test]
    fn measured_rates_from_validation_records() {
        let records = concat!(
            r#"{"tier":"small","status":"ok","extracted_rows":30000,"duration_seconds":2.0}"#,
            "\n",
            r#"{"tier":"small","status":"ok","extracted_rows":10000,"duration_seconds":2.0}"#,
            "\n",
            r#"{"tier":"medium","status":"failed","extracted_rows":90000,"duration_seconds":1.0}"#,
            "\nnot json\n",
            r#"{"tier":"large","status":"ok","extracted_rows":50,"duration_seconds":1.0}"#,
        );
        let rates = MeasuredRates::from_validation_records(records);
        assert_eq!(rates.small, Some(10_000.0));
        assert_eq!(rates.medium, None);
        assert_eq!(rates.large, None, "too few rows to measure");
        let plan = build(
            &config(""),
            Dialect::Postgres,
            "ehr",
            vec![table("T", 50, &["id"])],
            rates,
        );
        assert_eq!(plan.tiers[0].rate_source, "previous run");
        assert_eq!(plan.tiers[1].rate_source, "default");
    }

    #[test]
    fn json_plan_has_every_table() {
        let json = serde_json::to_value(sample_plan()).unwrap();
        assert_eq!(json["total_tables"], 6);
        assert_eq!(json["tiers"][1]["tables"][0]["name"], "AUDIT");
        assert_eq!(json["tiers"][1]["tier"], "medium");
        assert_eq!(json["tiers"][0]["settings"]["batch_size"], 5000);
    }
}
