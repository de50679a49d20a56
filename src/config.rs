//! The configuration file: a JSON object whose values may be strings, numbers or booleans.
//!
//! The file is declared once, as serde structs ([`RawConfig`] and the sections it holds), whose
//! keys read leniently (`"4"` and `4`, `"true"` and `true`; see [`lenient`]); unknown keys are
//! warnings found from the same declaration, never silently ignored. The raw values are then
//! settled once into [`Config`]: every value checked (a wrong one is an error naming the key,
//! the problem and the expected form), converted (durations, non-zero counts) and derived
//! (each tier's settings with the run's caps) here and nowhere else. Secrets may come from the
//! environment with `${env:NAME}`, so a host need not keep the PHI database's password in a
//! plain file.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ConfigError;
use crate::model::{Compression, Format, Isolation, SqlServerDriver, Tier};
use incremental::{IncrementalConfig, RawIncremental};
use lenient::{Field, Lenient, Object, Section};

pub(crate) mod connection_string;
pub(crate) mod incremental;
mod lenient;
pub(crate) mod secrets;

/// The default ODBC driver for SQL Server sources built from the `mssql_*` keys.
pub(crate) const DEFAULT_SQLSERVER_DRIVER: &str = "ODBC Driver 18 for SQL Server";

/// The most rows one fetch may ask for: `batch_size` above it is refused.
pub(crate) const MAX_BATCH_SIZE: usize = 1_000_000;

/// A parsed, validated configuration: the settings the run uses, each settled once.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) source: SourceConfig,
    /// Seconds to wait for a login before giving up.
    pub(crate) login_timeout_sec: u32,
    pub(crate) max_retries: u32,
    /// Base of the exponential backoff between retries (`retry_sleep_seconds`).
    pub(crate) retry_sleep: Duration,
    /// How reads see concurrent writes.
    pub(crate) isolation: Isolation,
    /// How long a read waits for a lock before it fails (and is retried); `None` waits
    /// (`lock_timeout_seconds`: 0).
    pub(crate) lock_timeout: Option<Duration>,
    /// A statement that delivers no rows for this long is cancelled and retried.
    pub(crate) stall_timeout: Duration,
    pub debug: bool,
    pub(crate) output_dir: PathBuf,
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    /// A part file is closed and the next one started once it holds this many bytes.
    pub(crate) part_file_max_bytes: u64,
    /// Parquet: a row group ends once its values take this many bytes in memory (or at a
    /// checkpoint); the writer holds them until then.
    pub(crate) row_group_bytes: usize,
    /// A table (and each of its partitions) starts only with this much free space on the
    /// output file system.
    pub(crate) min_free_bytes: Option<u64>,
    /// The ODBC text buffers' encoding (`fetch_text`).
    pub(crate) fetch_text: TextEncoding,
    /// The largest single value copied; a larger one fails its table instead of being cut.
    pub(crate) max_value_bytes: usize,
    /// The checkpoint file: `state_file`, or `_state.json` in `output_dir`.
    pub(crate) state_path: PathBuf,
    /// `checkpoint_seconds`: a checkpoint is also due this long after the last one once
    /// something new was written; `None` (0): only every `checkpoint_interval` rows.
    pub(crate) checkpoint_every: Option<Duration>,
    pub(crate) tables: TableFilter,
    pub(crate) small_table_threshold: u64,
    pub(crate) large_table_threshold: u64,
    /// Each tier's settings as the run uses them: the `tiers` overrides over the defaults,
    /// threads capped by `threads`, queues by `max_queue_size`, fetches by `fetch_buffer_bytes`.
    pub(crate) tiers: Tiers,
    /// How later runs read only what changed (the `incremental` object).
    pub(crate) incremental: IncrementalConfig,
    /// Crashes of the sync process in a row without progress the supervisor restarts it after.
    pub(crate) max_crash_restarts: u32,
    /// Wait before the first restart after a crash; doubled per further crash without progress.
    pub(crate) crash_restart_delay: Duration,
    /// Whether the file holds a password, and who can read it.
    pub(crate) secret_at_rest: secrets::SecretAtRest,
    /// Problems that do not stop the run (unknown keys, deprecated spellings).
    pub warnings: Vec<String>,
}

/// Where the rows come from.
#[derive(Debug, Clone)]
pub(crate) enum SourceConfig {
    /// A complete ODBC connection string (PostgreSQL, SQLite, FreeTDS, a DSN, ...).
    ConnectionString {
        connection_string: String,
        /// A secret substituted from the environment, scrubbed from every message.
        secret: Option<String>,
    },
    /// Built from the specification's `mssql_*` keys.
    SqlServer(SqlServerConfig),
}

impl SourceConfig {
    /// The password or substituted secret, to scrub from driver messages.
    pub(crate) fn secret(&self) -> Option<&str> {
        match self {
            SourceConfig::ConnectionString { secret, .. } => secret.as_deref(),
            SourceConfig::SqlServer(sql) => sql.password.as_deref(),
        }
    }
}

/// SQL Server connection settings from the `mssql_*` keys.
#[derive(Debug, Clone)]
pub(crate) struct SqlServerConfig {
    pub(crate) driver: String,
    pub(crate) server: String,
    pub(crate) port: Option<u16>,
    pub(crate) database: String,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    /// Windows authentication (or Kerberos on Linux) instead of user and password.
    pub(crate) trusted_connection: bool,
    pub(crate) encrypt: Encrypt,
    pub(crate) trust_server_certificate: bool,
    /// `mssql_cert_server`: the host name the server certificate is issued to.
    pub(crate) host_name_in_certificate: Option<String>,
    /// `cert`: path of the server certificate to pin.
    pub(crate) server_certificate: Option<String>,
    /// `ApplicationIntent=ReadOnly`: read from an Availability Group secondary.
    pub(crate) read_only_intent: bool,
    /// `MultiSubnetFailover=yes`: connect to an Availability Group listener spanning subnets.
    pub(crate) multi_subnet_failover: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Encrypt {
    Yes,
    No,
    Strict,
}

/// How text is fetched: through the narrow ODBC functions as UTF-8, or the wide ones as UTF-16.
/// On Windows the narrow functions use the local code page, which cannot hold every patient
/// name, so UTF-16 is the default there; elsewhere narrow means UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TextEncoding {
    Utf8,
    Utf16,
}

impl TextEncoding {
    pub(crate) const PLATFORM_DEFAULT: TextEncoding = if cfg!(target_os = "windows") {
        TextEncoding::Utf16
    } else {
        TextEncoding::Utf8
    };
}

/// Which tables to copy: `schema.table` glob patterns, matched case-insensitively like SQL
/// Server's default collation.
#[derive(Debug, Clone)]
pub(crate) struct TableFilter {
    pub(crate) include: Vec<String>,
    pub(crate) exclude: Vec<String>,
    include_set: GlobSet,
    exclude_set: GlobSet,
}

impl TableFilter {
    pub(crate) fn new(include: Vec<String>, exclude: Vec<String>) -> Result<Self, ConfigError> {
        let include_set = glob_set("include", &include)?;
        let exclude_set = glob_set("exclude", &exclude)?;
        Ok(TableFilter {
            include,
            exclude,
            include_set,
            exclude_set,
        })
    }

    /// True when `schema.table` is selected.
    pub(crate) fn selects(&self, schema: &str, table: &str) -> bool {
        let name = format!("{schema}.{table}");
        (self.include.is_empty() || self.include_set.is_match(&name))
            && !self.exclude_set.is_match(&name)
    }
}

fn glob_set(key: &str, patterns: &[String]) -> Result<GlobSet, ConfigError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .case_insensitive(true)
            .literal_separator(false)
            .build()
            .map_err(|e| {
                ConfigError::invalid(
                    key,
                    format!("pattern '{pattern}' is not a valid glob ({})", e.kind()),
                    "a 'schema.table' pattern such as \"dbo.*\" or \"*.PAT_*\"",
                )
            })?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| ConfigError::Other(format!("config key '{key}': {e}")))
}

/// How many rows one fetch asks for: the tier's `batch_size`, or fewer when that many rows
/// would not fit the `fetch_buffer_bytes` budget (the shape of odbc2parquet's
/// `BatchSizeLimit`, with both limits always set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct FetchLimit {
    #[serde(rename = "batch_size")]
    pub(crate) rows: NonZeroUsize,
    /// `fetch_buffer_bytes`: at least 64 KiB.
    #[serde(rename = "fetch_buffer_bytes")]
    pub(crate) bytes: usize,
}

impl FetchLimit {
    /// Rows per fetch for rows of `bytes_per_row`. At least one: a row over the budget is
    /// fetched alone (its long values grow their buffers or are read in pieces).
    pub(crate) fn rows_for(self, bytes_per_row: usize) -> usize {
        (self.bytes / bytes_per_row.max(1)).clamp(1, self.rows.get())
    }
}

/// Processing parameters of one tier (ARCHITECTURE.md, "Tiers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct TierSettings {
    /// Worker threads, each with its own connection.
    pub(crate) threads: NonZeroUsize,
    /// Rows and bytes per bulk fetch.
    #[serde(flatten)]
    pub(crate) fetch: FetchLimit,
    /// Rows per key-range partition.
    pub(crate) partition_size: NonZeroU64,
    /// Rows in flight between the workers and the writer.
    pub(crate) queue_size: NonZeroU64,
    /// Statement timeout.
    pub(crate) timeout_seconds: u64,
    /// Rows between two durable checkpoints.
    pub(crate) checkpoint_interval: u64,
    /// Where the expected row count of a full load comes from.
    pub(crate) row_counts: RowCounts,
}

impl TierSettings {
    /// The capacity in chunks of the channel from the workers to the writer. A chunk holds at
    /// most one fetch (`fetch.rows` rows), so the channel never holds more than `queue_size`
    /// rows; a queue smaller than one fetch hands each chunk straight to the writer (0: a
    /// rendezvous channel).
    pub(crate) fn queue_chunks(&self) -> usize {
        let chunks = self.queue_size.get() / self.fetch.rows.get() as u64;
        usize::try_from(chunks).unwrap_or(usize::MAX)
    }
}

/// Where a table's expected row count (the one its validation record checks) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RowCounts {
    /// `COUNT_BIG(*)` when the table starts: exact, but a scan of the table (or of its
    /// smallest index) on the server.
    Exact,
    /// The catalog row count read when the tables were sized: free, but an estimate, so a
    /// difference is reported and does not fail the table.
    Catalog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Tiers {
    pub(crate) small: TierSettings,
    pub(crate) medium: TierSettings,
    pub(crate) large: TierSettings,
}

impl Tiers {
    pub(crate) fn get(&self, tier: Tier) -> &TierSettings {
        match tier {
            Tier::Small => &self.small,
            Tier::Medium => &self.medium,
            Tier::Large => &self.large,
        }
    }

    fn get_mut(&mut self, tier: Tier) -> &mut TierSettings {
        match tier {
            Tier::Small => &mut self.small,
            Tier::Medium => &mut self.medium,
            Tier::Large => &mut self.large,
        }
    }
}

/// `fetch_buffer_bytes` when the file does not set it: 2 MiB.
const DEFAULT_FETCH_BUFFER_BYTES: usize = 2 << 20;

/// Parquet row groups of 8 MiB of values: the 210-column wide table stays under 128 MiB of peak
/// RSS with every driver (its row groups hold about 3,000 rows; a narrow table's about 90,000).
const DEFAULT_ROW_GROUP_BYTES: usize = 8 << 20;

impl Default for Tiers {
    fn default() -> Self {
        let settings = |threads: usize,
                        batch_size: usize,
                        partition_size: u64,
                        queue_size: u64,
                        hours: u64,
                        checkpoint_interval: u64| TierSettings {
            threads: NonZeroUsize::new(threads).expect("a default is positive"),
            fetch: FetchLimit {
                rows: NonZeroUsize::new(batch_size).expect("a default is positive"),
                bytes: DEFAULT_FETCH_BUFFER_BYTES,
            },
            partition_size: NonZeroU64::new(partition_size).expect("a default is positive"),
            queue_size: NonZeroU64::new(queue_size).expect("a default is positive"),
            timeout_seconds: hours * 3600,
            checkpoint_interval,
            row_counts: RowCounts::Exact,
        };
        Tiers {
            small: settings(4, 5_000, 50_000, 10_000, 3, 1_000_000),
            medium: settings(2, 2_500, 25_000, 5_000, 6, 500_000),
            large: settings(1, 1_000, 5_000, 1_000, 12, 100_000),
        }
    }
}

/// The config file as written: every top-level key this program reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    connection_string: Field<String>,
    mssql_driver: Field<String>,
    mssql_server: Field<String>,
    mssql_cert_server: Field<String>,
    mssql_port: Field<u64>,
    /// The specification's misspelling of `mssql_port`, read with a warning.
    mssql_post: Field<u64>,
    mssql_database: Field<String>,
    mssql_user: Field<String>,
    mssql_password: Field<String>,
    mssql_encrypt: Field<String>,
    mssql_trust_server_certificate: Field<bool>,
    mssql_trusted_connection: Field<bool>,
    mssql_application_intent: Field<String>,
    mssql_multi_subnet_failover: Field<bool>,
    cert: Field<String>,
    login_timeout_seconds: Field<u64>,
    threads: Field<u64>,
    max_queue_size: Field<u64>,
    max_retries: Field<u64>,
    retry_sleep_seconds: Field<f64>,
    isolation: Field<String>,
    lock_timeout_seconds: Field<f64>,
    stall_timeout_seconds: Field<u64>,
    debug: Field<bool>,
    output_dir: Field<String>,
    format: Field<String>,
    compression: Field<String>,
    part_file_max_bytes: Field<u64>,
    row_group_bytes: Field<u64>,
    min_free_bytes: Field<u64>,
    fetch_buffer_bytes: Field<u64>,
    fetch_text: Field<String>,
    max_value_bytes: Field<u64>,
    state_file: Field<String>,
    checkpoint_seconds: Field<f64>,
    include: Field<Vec<String>>,
    exclude: Field<Vec<String>>,
    small_table_threshold: Field<u64>,
    large_table_threshold: Field<u64>,
    tiers: Field<Section<RawTiers>>,
    incremental: Field<Section<RawIncremental>>,
    max_crash_restarts: Field<u64>,
    crash_restart_delay_seconds: Field<f64>,
    refuse_readable_secrets: Field<bool>,
}

impl Object for RawConfig {
    const EXPECTED: &'static str = "one JSON object ({ \"key\": value, ... })";
    const NULL_IS_DEFAULT: bool = false;
}

/// The `tiers` object: overrides per tier.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTiers {
    small: Field<Section<RawTier>>,
    medium: Field<Section<RawTier>>,
    large: Field<Section<RawTier>>,
}

impl Object for RawTiers {
    const EXPECTED: &'static str = "{\"small\": {\"threads\": 4, \"batch_size\": 5000, ...}, \
                                    \"medium\": {...}, \"large\": {...}}";
    const NULL_IS_DEFAULT: bool = false;
}

/// One tier's overrides; any key left out keeps the tier's default.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTier {
    threads: Field<u64>,
    batch_size: Field<u64>,
    partition_size: Field<u64>,
    queue_size: Field<u64>,
    timeout_seconds: Field<u64>,
    checkpoint_interval: Field<u64>,
    row_counts: Field<String>,
}

impl Object for RawTier {
    const EXPECTED: &'static str = "";
    const NULL_IS_DEFAULT: bool = false;
}

impl Config {
    /// Reads and validates a config file. Relative paths in it (`output_dir`) are resolved
    /// against the file's folder, because a scheduled task's working folder is rarely the
    /// operator's.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let mut config = Config::from_json(&text, path, base, &|name| std::env::var(name).ok())?;
        secrets::check_file(path, &mut config)?;
        Ok(config)
    }

    /// Parses config text. `env` looks up environment variables (injected for tests).
    pub(crate) fn from_json(
        text: &str,
        path: &Path,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let not_an_object = || {
            ConfigError::Other(format!(
                "the config file '{}' must hold one JSON object ({{ \"key\": value, ... }})",
                path.display()
            ))
        };
        let Value::Object(map) = &value else {
            return Err(not_an_object());
        };
        let Ok(Some(file)) = Section::<RawConfig>::read(&value) else {
            return Err(not_an_object());
        };
        let mut warnings = Vec::new();
        if !file.unknown.is_empty() {
            warnings.push(format!(
                "unknown config keys ignored: {} (see config.example.json for the keys)",
                file.unknown.join(", ")
            ));
        }
        let mut raw = file.keys;
        let ignored: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("mssql_") || *k == "cert")
            .collect();
        let source = settle_source(&mut raw, &ignored, env, &mut warnings)?;

        let threads = raw.threads.get("threads")?.unwrap_or(4);
        let threads = NonZeroUsize::new(usize::try_from(threads).unwrap_or(0))
            .filter(|t| t.get() <= 64)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "threads",
                    format!("{threads} is out of range"),
                    "the maximum number of database connections, 1 to 64 (default 4)",
                )
            })?;
        let max_queue_size = match raw.max_queue_size.get("max_queue_size")? {
            None => None,
            Some(rows) => Some(NonZeroU64::new(rows).ok_or_else(|| {
                ConfigError::invalid(
                    "max_queue_size",
                    "0 would stop every table",
                    "a positive number of rows",
                )
            })?),
        };
        let small_table_threshold = raw
            .small_table_threshold
            .get("small_table_threshold")?
            .unwrap_or(1_000_000);
        let large_table_threshold = raw
            .large_table_threshold
            .get("large_table_threshold")?
            .unwrap_or(50_000_000);
        if small_table_threshold > large_table_threshold {
            return Err(ConfigError::invalid(
                "small_table_threshold",
                format!(
                    "{small_table_threshold} is above large_table_threshold ({large_table_threshold})"
                ),
                "small_table_threshold <= large_table_threshold",
            ));
        }
        let retry_sleep = seconds(
            raw.retry_sleep_seconds,
            "retry_sleep_seconds",
            2.0,
            "seconds between 0 and 3600",
        )?;
        let format = match raw.format.text("format")?.as_deref() {
            None => Format::Csv,
            Some(s) if s.eq_ignore_ascii_case("csv") => Format::Csv,
            Some(s) if s.eq_ignore_ascii_case("ndjson") || s.eq_ignore_ascii_case("jsonl") => {
                Format::Ndjson
            }
            Some(s) if s.eq_ignore_ascii_case("parquet") => Format::Parquet,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "format",
                    format!("unknown format '{other}'"),
                    "\"csv\", \"ndjson\" or \"parquet\"",
                ));
            }
        };
        let fetch_text = match raw.fetch_text.text("fetch_text")?.as_deref() {
            None => TextEncoding::PLATFORM_DEFAULT,
            Some(s) if s.eq_ignore_ascii_case("utf8") || s.eq_ignore_ascii_case("utf-8") => {
                TextEncoding::Utf8
            }
            Some(s) if s.eq_ignore_ascii_case("utf16") || s.eq_ignore_ascii_case("utf-16") => {
                TextEncoding::Utf16
            }
            Some(other) => {
                return Err(ConfigError::invalid(
                    "fetch_text",
                    format!("unknown text encoding '{other}'"),
                    "\"utf16\" (the wide ODBC functions; the default on Windows) or \"utf8\" \
                     (the narrow ones; the default elsewhere)",
                ));
            }
        };
        let output_dir = match raw.output_dir.text("output_dir")? {
            Some(dir) => base_dir.join(dir),
            None => base_dir.join("ehi-output"),
        };
        let compression = match raw
            .compression
            .text("compression")?
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            // Parquet files are compressed inside; compression is what makes them worth it.
            None if format == Format::Parquet => Compression::Zstd,
            None | Some("none") => Compression::None,
            Some("gzip" | "gz") => Compression::Gzip,
            Some("zstd" | "zst") => Compression::Zstd,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "compression",
                    format!("unknown compression '{other}'"),
                    "\"none\" (the default for CSV and NDJSON), \"gzip\" or \"zstd\" (the \
                     default for Parquet)",
                ));
            }
        };
        let part_file_max_bytes = raw
            .part_file_max_bytes
            .get("part_file_max_bytes")?
            .unwrap_or(256 << 20);
        if part_file_max_bytes < 1024 {
            return Err(ConfigError::invalid(
                "part_file_max_bytes",
                format!("{part_file_max_bytes} is too small"),
                "at least 1024 bytes (default 268435456, 256 MiB)",
            ));
        }
        let row_group_bytes = bytes_at_least(
            raw.row_group_bytes,
            "row_group_bytes",
            DEFAULT_ROW_GROUP_BYTES,
            1 << 20,
            "at least 1048576 bytes (1 MiB; default 8388608, 8 MiB)",
        )?;
        let fetch_buffer_bytes = bytes_at_least(
            raw.fetch_buffer_bytes,
            "fetch_buffer_bytes",
            DEFAULT_FETCH_BUFFER_BYTES,
            64 * 1024,
            "at least 65536 bytes (default 2097152, 2 MiB)",
        )?;
        let max_value_bytes = bytes_at_least(
            raw.max_value_bytes,
            "max_value_bytes",
            2 << 30,
            4096,
            "at least 4096 bytes (default 2147483648, 2 GiB)",
        )?;
        let state_path = match raw.state_file.text("state_file")? {
            Some(file) => base_dir.join(file),
            None => output_dir.join(crate::model::STATE_FILE),
        };
        let checkpoint_every = optional_seconds(
            raw.checkpoint_seconds,
            "checkpoint_seconds",
            30.0,
            "seconds between 0.001 and 86400, or 0 to checkpoint only every \
             checkpoint_interval rows (default 30)",
        )?;
        let isolation = match raw
            .isolation
            .text("isolation")?
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("read_committed") => Isolation::ReadCommitted,
            Some("snapshot") => Isolation::Snapshot,
            Some("read_uncommitted") => Isolation::ReadUncommitted,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "isolation",
                    format!("unknown isolation level '{other}'"),
                    "\"read_committed\" (default), \"snapshot\" or \"read_uncommitted\"",
                ));
            }
        };
        let lock_timeout = optional_seconds(
            raw.lock_timeout_seconds,
            "lock_timeout_seconds",
            60.0,
            "seconds between 0.001 and 86400, or 0 to wait for locks without limit \
             (default 60)",
        )?;
        let stall_timeout_seconds = raw
            .stall_timeout_seconds
            .get("stall_timeout_seconds")?
            .unwrap_or(900);
        if stall_timeout_seconds == 0 {
            return Err(ConfigError::invalid(
                "stall_timeout_seconds",
                "0 would cancel every statement",
                "seconds without a fetched batch before a statement is cancelled (default 900)",
            ));
        }
        let patterns = "a list of \"schema.table\" patterns such as [\"dbo.*\", \"*.PAT_ENC\"]";
        let tables = TableFilter::new(
            raw.include
                .expecting("include", patterns)?
                .unwrap_or_default(),
            raw.exclude
                .expecting("exclude", patterns)?
                .unwrap_or_default(),
        )?;
        let login_timeout_sec = raw
            .login_timeout_seconds
            .get("login_timeout_seconds")?
            .unwrap_or(30);
        let login_timeout_sec = u32::try_from(login_timeout_sec)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "login_timeout_seconds",
                    format!("{login_timeout_sec} is out of range"),
                    "a positive number of seconds (default 30)",
                )
            })?;
        let crash_restart_delay = seconds(
            raw.crash_restart_delay_seconds,
            "crash_restart_delay_seconds",
            5.0,
            "seconds between 0 and 3600 (default 5)",
        )?;
        let secret_at_rest = secrets::SecretAtRest::of(
            map,
            raw.refuse_readable_secrets
                .get("refuse_readable_secrets")?
                .unwrap_or(false),
        );
        let caps = Caps {
            threads,
            max_queue_size,
            fetch_buffer_bytes,
        };
        let tiers = settle_tiers(raw.tiers.get("tiers")?, caps, &mut warnings)?;

        Ok(Config {
            source,
            login_timeout_sec,
            max_retries: count(raw.max_retries, "max_retries", 5)?,
            retry_sleep,
            isolation,
            lock_timeout,
            stall_timeout: Duration::from_secs(stall_timeout_seconds),
            debug: raw.debug.get("debug")?.unwrap_or(false),
            output_dir,
            format,
            fetch_text,
            compression,
            part_file_max_bytes,
            row_group_bytes,
            min_free_bytes: raw.min_free_bytes.get("min_free_bytes")?,
            max_value_bytes,
            state_path,
            checkpoint_every,
            tables,
            small_table_threshold,
            large_table_threshold,
            tiers,
            incremental: incremental::settle(raw.incremental.get("incremental")?, &mut warnings)?,
            max_crash_restarts: count(raw.max_crash_restarts, "max_crash_restarts", 5)?,
            crash_restart_delay,
            secret_at_rest,
            warnings,
        })
    }

    /// The tier a table of `rows` rows belongs to.
    pub(crate) fn tier_for(&self, rows: u64) -> Tier {
        if rows < self.small_table_threshold {
            Tier::Small
        } else if rows < self.large_table_threshold {
            Tier::Medium
        } else {
            Tier::Large
        }
    }
}

/// A number of bytes of at least `min` that fits in memory (`usize`).
fn bytes_at_least(
    raw: Field<u64>,
    key: &str,
    default: usize,
    min: usize,
    expected: &str,
) -> Result<usize, ConfigError> {
    let Some(bytes) = raw.get(key)? else {
        return Ok(default);
    };
    match usize::try_from(bytes) {
        Ok(bytes) if bytes >= min => Ok(bytes),
        Ok(_) => Err(ConfigError::invalid(
            key,
            format!("{bytes} is too small"),
            expected,
        )),
        Err(_) => Err(ConfigError::invalid(
            key,
            format!("{bytes} is too large"),
            expected,
        )),
    }
}

/// A whole number that fits a `u32` (`max_retries`, `max_crash_restarts`).
fn count(raw: Field<u64>, key: &str, default: u32) -> Result<u32, ConfigError> {
    let Some(value) = raw.get(key)? else {
        return Ok(default);
    };
    u32::try_from(value)
        .map_err(|_| ConfigError::invalid(key, format!("{value} is too large"), "a smaller number"))
}

/// Seconds between 0 and an hour.
fn seconds(
    raw: Field<f64>,
    key: &str,
    default: f64,
    expected: &str,
) -> Result<Duration, ConfigError> {
    let seconds = raw.get(key)?.unwrap_or(default);
    if !(0.0..=3600.0).contains(&seconds) {
        return Err(ConfigError::invalid(
            key,
            format!("{seconds} is out of range"),
            expected,
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Seconds between a millisecond and a day, or 0 for none; rounded to whole milliseconds.
fn optional_seconds(
    raw: Field<f64>,
    key: &str,
    default: f64,
    expected: &str,
) -> Result<Option<Duration>, ConfigError> {
    match raw.get(key)?.unwrap_or(default) {
        0.0 => Ok(None),
        s if (0.001..=86_400.0).contains(&s) => {
            Ok(Some(Duration::from_millis((s * 1000.0).round() as u64)))
        }
        s => Err(ConfigError::invalid(
            key,
            format!("{s} is out of range"),
            expected,
        )),
    }
}

/// The run-wide limits every tier's settings are held to.
#[derive(Clone, Copy)]
struct Caps {
    threads: NonZeroUsize,
    max_queue_size: Option<NonZeroU64>,
    fetch_buffer_bytes: usize,
}

fn settle_source(
    raw: &mut RawConfig,
    ignored: &[&str],
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<SourceConfig, ConfigError> {
    if let Some(raw) = std::mem::take(&mut raw.connection_string).get("connection_string")? {
        if raw.trim().is_empty() {
            return Err(ConfigError::invalid(
                "connection_string",
                "it is empty",
                "a full ODBC connection string such as \"Driver={PostgreSQL Unicode};Server=...\"",
            ));
        }
        let (connection_string, secret) = substitute_env("connection_string", &raw, env)?;
        if !ignored.is_empty() {
            warnings.push(format!(
                "connection_string is set, so these keys are ignored: {}",
                ignored.join(", ")
            ));
        }
        return Ok(SourceConfig::ConnectionString {
            connection_string,
            secret,
        });
    }

    let server = take(&mut raw.mssql_server)
        .text("mssql_server")?
        .ok_or_else(|| ConfigError::Missing {
            key: "mssql_server".into(),
            hint: "set mssql_server (with mssql_database, mssql_user, mssql_password) for SQL \
                   Server, or connection_string for any other ODBC source"
                .into(),
        })?;
    let database = take(&mut raw.mssql_database)
        .text("mssql_database")?
        .ok_or_else(|| ConfigError::Missing {
            key: "mssql_database".into(),
            hint: "the name of the database to copy, e.g. \"Clarity\"".into(),
        })?;
    let port = match (
        take(&mut raw.mssql_port).get("mssql_port")?,
        take(&mut raw.mssql_post).get("mssql_post")?,
    ) {
        (Some(port), _) => Some(("mssql_port", port)),
        (None, Some(port)) => {
            warnings.push(
                "config key 'mssql_post' is read as 'mssql_port'; please rename it".to_owned(),
            );
            Some(("mssql_post", port))
        }
        (None, None) => None,
    };
    let port = port
        .map(|(key, port)| {
            u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
                ConfigError::invalid(key, format!("{port} is not a TCP port"), "1 to 65535")
            })
        })
        .transpose()?;
    let trusted_connection = take(&mut raw.mssql_trusted_connection)
        .get("mssql_trusted_connection")?
        .unwrap_or(false);
    let user = take(&mut raw.mssql_user).text("mssql_user")?;
    let password = match take(&mut raw.mssql_password).get("mssql_password")? {
        Some(raw) => Some(substitute_env("mssql_password", &raw, env)?.0),
        None => None,
    };
    if !trusted_connection && user.is_none() {
        return Err(ConfigError::Missing {
            key: "mssql_user".into(),
            hint: "give mssql_user and mssql_password, or set mssql_trusted_connection to true \
                   for Windows authentication"
                .into(),
        });
    }
    if !trusted_connection && password.is_none() {
        return Err(ConfigError::Missing {
            key: "mssql_password".into(),
            hint: "give the password, preferably from the environment: \
                   \"mssql_password\": \"${env:EHI_SYNC_PASSWORD}\""
                .into(),
        });
    }
    let encrypt = match take(&mut raw.mssql_encrypt).text("mssql_encrypt")? {
        None => Encrypt::Yes,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "mandatory" => Encrypt::Yes,
            "no" | "false" | "optional" => Encrypt::No,
            "strict" => Encrypt::Strict,
            _ => {
                return Err(ConfigError::invalid(
                    "mssql_encrypt",
                    format!("unknown value '{s}'"),
                    "\"yes\" (default), \"strict\" or \"no\"",
                ));
            }
        },
    };
    let read_only_intent = match take(&mut raw.mssql_application_intent)
        .text("mssql_application_intent")?
        .as_deref()
    {
        None => false,
        Some(s) if s.eq_ignore_ascii_case("readonly") => true,
        Some(s) if s.eq_ignore_ascii_case("readwrite") => false,
        Some(s) => {
            return Err(ConfigError::invalid(
                "mssql_application_intent",
                format!("unknown value '{s}'"),
                "\"ReadOnly\" (read from an Availability Group secondary) or \"ReadWrite\"",
            ));
        }
    };
    let config = SqlServerConfig {
        driver: take(&mut raw.mssql_driver)
            .text("mssql_driver")?
            .unwrap_or_else(|| DEFAULT_SQLSERVER_DRIVER.to_owned()),
        server,
        port,
        database,
        user,
        password,
        trusted_connection,
        encrypt,
        trust_server_certificate: take(&mut raw.mssql_trust_server_certificate)
            .get("mssql_trust_server_certificate")?
            .unwrap_or(false),
        host_name_in_certificate: take(&mut raw.mssql_cert_server).text("mssql_cert_server")?,
        server_certificate: take(&mut raw.cert).text("cert")?,
        read_only_intent,
        multi_subnet_failover: take(&mut raw.mssql_multi_subnet_failover)
            .get("mssql_multi_subnet_failover")?
            .unwrap_or(false),
    };
    check_driver_capabilities(&config, warnings)?;
    Ok(SourceConfig::SqlServer(config))
}

fn take<T>(field: &mut Field<T>) -> Field<T> {
    std::mem::take(field)
}

/// Refuses settings the configured driver would reject or silently not apply ("DSN and
/// Connection String Keywords and Attributes" lists the driver version of each keyword; FreeTDS
/// has no connection string keyword for a CA file, only `ca file` in freetds.conf).
fn check_driver_capabilities(
    config: &SqlServerConfig,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let driver = &config.driver;
    match SqlServerDriver::from_name(driver) {
        SqlServerDriver::Microsoft { major } if major < 18 => {
            let needs = |key: &str, keyword: &str, version: &str| {
                ConfigError::invalid(
                    key,
                    format!(
                        "{keyword} needs Microsoft ODBC Driver {version} or later, and mssql_driver is '{driver}'"
                    ),
                    format!(
                        "mssql_driver \"ODBC Driver 18 for SQL Server\" (install Driver 18), or remove {key}"
                    ),
                )
            };
            if config.host_name_in_certificate.is_some() {
                return Err(needs("mssql_cert_server", "HostNameInCertificate", "18.0"));
            }
            if config.server_certificate.is_some() {
                return Err(needs("cert", "ServerCertificate", "18.1"));
            }
            if config.encrypt == Encrypt::Strict {
                return Err(needs("mssql_encrypt", "Encrypt=strict (TDS 8.0)", "18.0"));
            }
        }
        SqlServerDriver::Microsoft { .. } => {}
        SqlServerDriver::FreeTds => {
            let unsupported = |key: &str, what: &str| {
                ConfigError::invalid(
                    key,
                    format!("FreeTDS has no connection string keyword for {what}"),
                    format!("mssql_driver \"ODBC Driver 18 for SQL Server\", or remove {key}"),
                )
            };
            if config.host_name_in_certificate.is_some() {
                return Err(unsupported(
                    "mssql_cert_server",
                    "the certificate's host name",
                ));
            }
            if config.server_certificate.is_some() {
                return Err(unsupported("cert", "a pinned server certificate"));
            }
            if config.encrypt == Encrypt::Strict {
                return Err(unsupported("mssql_encrypt", "Encrypt=strict (TDS 8.0)"));
            }
            if config.encrypt != Encrypt::No && !config.trust_server_certificate {
                return Err(ConfigError::invalid(
                    "mssql_trust_server_certificate",
                    "it is false, but FreeTDS encrypts without validating the server \
                     certificate unless `ca file` is set in freetds.conf, which a connection \
                     string cannot set",
                    "mssql_driver \"ODBC Driver 18 for SQL Server\" (validates the certificate); \
                     or a connection_string with Servername=<a freetds.conf entry that sets \
                     `ca file`>; or mssql_trust_server_certificate: true to accept an encrypted \
                     connection without certificate validation",
                ));
            }
            if config.multi_subnet_failover {
                warnings.push(
                    "mssql_multi_subnet_failover is not a FreeTDS keyword and is not sent; \
                     FreeTDS tries each address of the listener's name in turn"
                        .to_owned(),
                );
            }
        }
    }
    Ok(())
}

/// The `tiers` overrides over the defaults, held to the run's caps.
fn settle_tiers(
    raw: Option<Section<RawTiers>>,
    caps: Caps,
    warnings: &mut Vec<String>,
) -> Result<Tiers, ConfigError> {
    let mut tiers = Tiers::default();
    if let Some(section) = raw {
        if let Some(name) = section.unknown.first() {
            return Err(ConfigError::invalid(
                format!("tiers.{name}"),
                "unknown tier",
                "\"small\", \"medium\" or \"large\"",
            ));
        }
        let RawTiers {
            small,
            medium,
            large,
        } = section.keys;
        for (tier, raw) in [
            (Tier::Small, small),
            (Tier::Medium, medium),
            (Tier::Large, large),
        ] {
            let prefix = format!("tiers.{tier}");
            if let Some(section) = raw.get(&prefix)? {
                section.warn_unknown(&prefix, warnings);
                override_tier(tiers.get_mut(tier), section.keys, &prefix)?;
            }
        }
    }
    for tier in Tier::ALL {
        let settings = tiers.get_mut(tier);
        settings.threads = settings.threads.min(caps.threads);
        if let Some(cap) = caps.max_queue_size {
            settings.queue_size = settings.queue_size.min(cap);
        }
        settings.fetch.bytes = caps.fetch_buffer_bytes;
    }
    Ok(tiers)
}

fn override_tier(
    settings: &mut TierSettings,
    raw: RawTier,
    prefix: &str,
) -> Result<(), ConfigError> {
    let positive = |raw: Field<u64>, key: &str| -> Result<Option<NonZeroU64>, ConfigError> {
        let key = format!("{prefix}.{key}");
        match raw.get(&key)? {
            None => Ok(None),
            Some(value) => NonZeroU64::new(value)
                .map(Some)
                .ok_or_else(|| ConfigError::invalid(key, "0 is not allowed", "a positive number")),
        }
    };
    if let Some(threads) = positive(raw.threads, "threads")? {
        settings.threads = NonZeroUsize::try_from(threads).map_err(|_| {
            ConfigError::invalid(
                format!("{prefix}.threads"),
                format!("{threads} is out of range"),
                "a positive number of threads, capped by the top-level threads",
            )
        })?;
    }
    if let Some(rows) = positive(raw.batch_size, "batch_size")? {
        settings.fetch.rows = NonZeroUsize::try_from(rows)
            .ok()
            .filter(|rows| rows.get() <= MAX_BATCH_SIZE)
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("{prefix}.batch_size"),
                    format!("{rows} is out of range"),
                    format!("rows per fetch, 1 to {MAX_BATCH_SIZE}"),
                )
            })?;
    }
    if let Some(rows) = positive(raw.partition_size, "partition_size")? {
        settings.partition_size = rows;
    }
    if let Some(rows) = positive(raw.queue_size, "queue_size")? {
        settings.queue_size = rows;
    }
    if let Some(seconds) = positive(raw.timeout_seconds, "timeout_seconds")? {
        settings.timeout_seconds = seconds.get();
    }
    if let Some(rows) = positive(raw.checkpoint_interval, "checkpoint_interval")? {
        settings.checkpoint_interval = rows.get();
    }
    let key = format!("{prefix}.row_counts");
    match raw.row_counts.text(&key)?.as_deref() {
        None => {}
        Some("exact") => settings.row_counts = RowCounts::Exact,
        Some("catalog") => settings.row_counts = RowCounts::Catalog,
        Some(other) => {
            return Err(ConfigError::invalid(
                key,
                format!("\"{other}\" is not a way to count rows"),
                "\"exact\" (COUNT_BIG(*) when the table starts) or \"catalog\" (the catalog's \
                 estimate, no scan)",
            ));
        }
    }
    Ok(())
}

/// Replaces every `${env:NAME}` in `value` with the variable's value. Returns the result and the
/// substituted text (the secret to scrub from messages), if any.
fn substitute_env(
    key: &str,
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Option<String>), ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut secret: Option<String> = None;
    let mut rest = value;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::invalid(
                key,
                "'${env:' is not closed with '}'",
                "${env:VARIABLE_NAME}",
            ));
        };
        let name = &after[..end];
        let valid_name =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(ConfigError::invalid(
                key,
                format!("'{name}' is not an environment variable name"),
                "${env:VARIABLE_NAME} with letters, digits and '_'",
            ));
        }
        let found = env(name).ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!("environment variable {name} is not set"),
                format!("{name} set in the environment of the scheduled task"),
            )
        })?;
        out.push_str(&found);
        secret = Some(found);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, secret))
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(s) if s.is_empty() => "an empty string",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Format, Tier};

    fn parse(json: &str) -> Result<Config, ConfigError> {
        parse_with_env(json, &[])
    }

    fn parse_with_env(json: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Config::from_json(json, Path::new("cfg.json"), Path::new("/base"), &env)
    }

    const SPEC: &str = r#"{
        "mssql_server": "sql01.hospital.local", "mssql_cert_server": "sql01.hospital.local",
        "mssql_port": "1433", "mssql_database": "Clarity", "mssql_user": "ehi",
        "mssql_password": "s3cret", "cert": "/etc/ssl/sql01.pem", "threads": "4",
        "max_queue_size": "10000", "max_retries": "5", "retry_sleep_seconds": "10",
        "debug": "false"
    }"#;

    #[test]
    fn specification_config_with_string_values() {
        let config = parse(SPEC).unwrap();
        let SourceConfig::SqlServer(sql) = &config.source else {
            panic!("expected a SQL Server source");
        };
        assert_eq!(sql.server, "sql01.hospital.local");
        assert_eq!(sql.port, Some(1433));
        assert_eq!(sql.database, "Clarity");
        assert_eq!(sql.password.as_deref(), Some("s3cret"));
        assert_eq!(sql.encrypt, Encrypt::Yes);
        assert_eq!(sql.driver, DEFAULT_SQLSERVER_DRIVER);
        assert_eq!(config.tiers.small.threads.get(), 4);
        assert_eq!(config.tiers.small.queue_size.get(), 10_000);
        assert_eq!(config.max_retries, 5);
        assert_eq!(config.retry_sleep, Duration::from_secs(10));
        assert!(!config.debug);
        assert_eq!(config.format, Format::Csv);
        assert_eq!(config.output_dir, Path::new("/base/ehi-output"));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn numbers_and_booleans_as_json_values() {
        let config = parse(
            r#"{"connection_string": "DSN=x", "threads": 2, "debug": true, "max_retries": 0}"#,
        )
        .unwrap();
        assert_eq!(config.tiers.small.threads.get(), 2, "capped by threads");
        assert!(config.debug);
        assert_eq!(config.max_retries, 0);
    }

    #[test]
    fn misspelled_port_key_is_accepted_with_warning() {
        let json = SPEC.replace("\"mssql_port\"", "\"mssql_post\"");
        let config = parse(&json).unwrap();
        let SourceConfig::SqlServer(sql) = &config.source else {
            panic!("expected a SQL Server source");
        };
        assert_eq!(sql.port, Some(1433));
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].contains("mssql_post"));
    }

    #[test]
    fn example_config_documents_every_key_and_parses_cleanly() {
        let text = include_str!("../config.example.json");
        let config = parse_with_env(text, &[("EHI_SYNC_PASSWORD", "pw")]).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.tiers, Tiers::default());
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let declared = lenient::declared_keys::<RawConfig>();
        assert!(declared.contains(&"threads") && declared.contains(&"incremental"));
        for key in declared.iter().filter(|k| **k != "mssql_post") {
            assert!(
                json.get(format!("_{key}")).is_some(),
                "config.example.json does not document '{key}'"
            );
        }
        for tier in lenient::declared_keys::<RawTiers>() {
            assert!(
                json["tiers"].get(tier).is_some(),
                "config.example.json does not show tiers.{tier}"
            );
        }
        let tier_help = json["tiers"]["_about"].as_str().unwrap_or_default();
        for key in lenient::declared_keys::<RawTier>() {
            assert!(
                tier_help.contains(&format!("{key}:")),
                "config.example.json does not document 'tiers.<tier>.{key}'"
            );
        }
        let incremental = &json["incremental"];
        for key in lenient::declared_keys::<RawIncremental>() {
            assert!(
                incremental.get(format!("_{key}")).is_some(),
                "config.example.json does not document 'incremental.{key}'"
            );
        }
        for key in lenient::declared_keys::<incremental::RawTableOverride>() {
            assert!(
                incremental["tables"].get(format!("_{key}")).is_some(),
                "config.example.json does not document 'incremental.tables.<schema.table>.{key}'"
            );
        }
        let example = &config.incremental;
        assert_eq!(
            example.cursor_columns,
            ["_LastUpdatedInstant", "UPDATE_DATE"]
        );
        assert_eq!(example.tables.len(), 1);
    }

    #[test]
    fn incremental_object_is_read_with_the_rest() {
        let config = parse(r#"{"connection_string": "DSN=x"}"#).unwrap();
        assert_eq!(config.incremental, IncrementalConfig::default());
        let config = parse(
            r#"{"connection_string": "DSN=x", "incremental": {"lookback_minutes": "30",
                "tables": {"dbo.PATIENT": {"cursor_column": "UPDATE_DATE", "cursr": 1}}}}"#,
        )
        .unwrap();
        assert_eq!(config.incremental.lookback_minutes, 30);
        assert_eq!(
            config
                .incremental
                .for_table("dbo", "patient")
                .cursor_columns,
            ["UPDATE_DATE"]
        );
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(
            config.warnings[0].contains("incremental.tables.dbo.PATIENT.cursr"),
            "{:?}",
            config.warnings
        );
        let err =
            parse(r#"{"connection_string": "DSN=x", "incremental": {"detect_deletes": "always"}}"#)
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("'incremental.detect_deletes': unknown value 'always'"),
            "{err}"
        );
    }

    #[test]
    fn underscore_keys_are_comments() {
        let config =
            parse(r#"{"connection_string": "DSN=x", "_threads": "explained here"}"#).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn unknown_keys_are_named_in_a_warning() {
        let config =
            parse(r#"{"connection_string": "DSN=x", "treads": 4, "ouput_dir": "x"}"#).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].contains("ouput_dir, treads"));
    }

    #[test]
    fn min_free_bytes_is_optional_and_a_whole_number() {
        let none = parse(r#"{"connection_string": "DSN=x"}"#).unwrap();
        assert_eq!(none.min_free_bytes, None);
        let set =
            parse(r#"{"connection_string": "DSN=x", "min_free_bytes": "1073741824"}"#).unwrap();
        assert_eq!(set.min_free_bytes, Some(1 << 30));
        let err = parse(r#"{"connection_string": "DSN=x", "min_free_bytes": "1 GB"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'min_free_bytes'"), "{err}");
    }

    #[test]
    fn bad_thread_count_names_key_and_form() {
        let err = parse(r#"{"connection_string": "DSN=x", "threads": "lots"}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'threads'"), "{text}");
        assert!(text.contains("\"lots\" is not a whole number"), "{text}");
        assert!(text.contains("expected a whole number"), "{text}");
        let err = parse(r#"{"connection_string": "DSN=x", "threads": 0}"#).unwrap_err();
        assert!(err.to_string().contains("out of range"));
    }

    #[test]
    fn missing_server_key_says_what_to_set() {
        let err = parse(r#"{"mssql_database": "Clarity"}"#).unwrap_err();
        assert!(err.to_string().contains("'mssql_server' is required"));
    }

    /// The SPEC config with `extra` keys merged in (overriding).
    fn spec_with(extra: &str) -> String {
        SPEC.replace(r#""mssql_cert_server": "sql01.hospital.local","#, "")
            .replace(r#""cert": "/etc/ssl/sql01.pem","#, "")
            .replacen('{', &format!("{{ {extra},"), 1)
    }

    #[test]
    fn driver17_refuses_keywords_it_does_not_know() {
        let driver17 = r#""mssql_driver": "ODBC Driver 17 for SQL Server""#;
        assert!(parse(&spec_with(driver17)).is_ok());
        for (extra, key, keyword) in [
            (
                r#""mssql_cert_server": "sql01""#,
                "mssql_cert_server",
                "HostNameInCertificate needs Microsoft ODBC Driver 18.0",
            ),
            (
                r#""cert": "/etc/ssl/sql01.pem""#,
                "cert",
                "ServerCertificate needs Microsoft ODBC Driver 18.1",
            ),
            (
                r#""mssql_encrypt": "strict""#,
                "mssql_encrypt",
                "Encrypt=strict (TDS 8.0) needs Microsoft ODBC Driver 18.0",
            ),
        ] {
            let err = parse(&spec_with(&format!("{driver17}, {extra}")))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("config key '{key}'")), "{err}");
            assert!(err.contains(keyword), "{err}");
            assert!(err.contains("ODBC Driver 18 for SQL Server"), "{err}");
            let driver18 = parse(&spec_with(extra));
            assert!(driver18.is_ok(), "{extra}: {driver18:?}");
        }
    }

    #[test]
    fn freetds_refuses_certificate_validation_it_would_not_do() {
        let freetds = r#""mssql_driver": "FreeTDS""#;
        let err = parse(&spec_with(freetds)).unwrap_err().to_string();
        assert!(
            err.starts_with("config key 'mssql_trust_server_certificate'"),
            "{err}"
        );
        assert!(
            err.contains("without validating the server certificate"),
            "{err}"
        );
        assert!(err.contains("ca file"), "{err}");
        let trusted = spec_with(&format!(
            "{freetds}, \"mssql_trust_server_certificate\": true"
        ));
        assert!(parse(&trusted).is_ok());
        let unencrypted = spec_with(&format!("{freetds}, \"mssql_encrypt\": \"no\""));
        assert!(parse(&unencrypted).is_ok());
        let pinned = spec_with(&format!(
            "{freetds}, \"mssql_trust_server_certificate\": true, \"cert\": \"/c.pem\""
        ));
        assert!(
            parse(&pinned)
                .unwrap_err()
                .to_string()
                .contains("config key 'cert'")
        );
    }

    #[test]
    fn availability_group_listener_keys() {
        let config = parse(&spec_with(
            r#""mssql_application_intent": "ReadOnly", "mssql_multi_subnet_failover": true"#,
        ))
        .unwrap();
        let SourceConfig::SqlServer(sql) = &config.source else {
            panic!("expected a SQL Server source");
        };
        assert!(sql.read_only_intent && sql.multi_subnet_failover);
    }

    #[test]
    fn password_from_environment() {
        let json = SPEC.replace("s3cret", "${env:EHI_PW}");
        let config = parse_with_env(&json, &[("EHI_PW", "from-env")]).unwrap();
        assert_eq!(config.source.secret(), Some("from-env"));
        let err = parse(&json).unwrap_err().to_string();
        assert!(
            err.contains("environment variable EHI_PW is not set"),
            "{err}"
        );
        assert!(err.contains("'mssql_password'"), "{err}");
    }

    #[test]
    fn connection_string_substitution_keeps_secret_for_scrubbing() {
        let config = parse_with_env(
            r#"{"connection_string": "Driver={PostgreSQL Unicode};Pwd=${env:PGPW};"}"#,
            &[("PGPW", "pa$$")],
        )
        .unwrap();
        let SourceConfig::ConnectionString {
            connection_string,
            secret,
        } = &config.source
        else {
            panic!("expected a connection string source");
        };
        assert_eq!(connection_string, "Driver={PostgreSQL Unicode};Pwd=pa$$;");
        assert_eq!(secret.as_deref(), Some("pa$$"));
    }

    #[test]
    fn tier_overrides_and_caps() {
        let config = parse(
            r#"{"connection_string": "DSN=x", "threads": 3, "max_queue_size": 2000,
                "tiers": {"small": {"threads": "8", "batch_size": 100}, "large": {"timeout_seconds": 60}}}"#,
        )
        .unwrap();
        let small = config.tiers.small;
        assert_eq!(small.threads.get(), 3, "capped by threads");
        assert_eq!(small.fetch.rows.get(), 100);
        assert_eq!(small.queue_size.get(), 2000, "capped by max_queue_size");
        assert_eq!(config.tiers.large.timeout_seconds, 60);
        assert_eq!(config.tiers.medium, {
            let mut m = Tiers::default().medium;
            m.queue_size = NonZeroU64::new(2000).unwrap();
            m
        });
        assert_eq!(small.row_counts, RowCounts::Exact);
        let catalog = parse(
            r#"{"connection_string": "DSN=x", "tiers": {"large": {"row_counts": "catalog"}}}"#,
        )
        .unwrap();
        assert_eq!(catalog.tiers.large.row_counts, RowCounts::Catalog);
        assert_eq!(catalog.tiers.medium.row_counts, RowCounts::Exact);
        let err = parse(
            r#"{"connection_string": "DSN=x", "tiers": {"large": {"row_counts": "estimate"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tiers.large.row_counts"), "{err}");
        assert!(err.contains("\"catalog\""), "{err}");
        let err = parse(r#"{"connection_string": "DSN=x", "tiers": {"huge": {}}}"#).unwrap_err();
        assert!(err.to_string().contains("tiers.huge"));
        let err = parse(r#"{"connection_string": "DSN=x", "tiers": {"small": {"batch_size": 0}}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("tiers.small.batch_size"));
    }

    #[test]
    fn batch_size_out_of_range_is_an_error_not_a_clamp() {
        let batch = |rows: &str| {
            parse(&format!(
                r#"{{"connection_string": "DSN=x", "tiers": {{"medium": {{"batch_size": {rows}}}}}}}"#
            ))
        };
        assert_eq!(
            batch("1000000").unwrap().tiers.medium.fetch.rows.get(),
            MAX_BATCH_SIZE
        );
        let err = batch("\"1000001\"").unwrap_err().to_string();
        assert_eq!(
            err,
            "config key 'tiers.medium.batch_size': 1000001 is out of range; expected rows per \
             fetch, 1 to 1000000"
        );
    }

    #[test]
    fn fetch_limit_holds_rows_and_bytes_together() {
        let config = parse(
            r#"{"connection_string": "DSN=x", "fetch_buffer_bytes": "65536",
                "tiers": {"small": {"batch_size": 1000}}}"#,
        )
        .unwrap();
        let limit = config.tiers.small.fetch;
        assert_eq!((limit.rows.get(), limit.bytes), (1000, 65536));
        assert_eq!(config.tiers.large.fetch.bytes, 65536, "every tier's");
        assert_eq!(limit.rows_for(8), 1000, "the rows limit");
        assert_eq!(limit.rows_for(256), 256, "the bytes limit");
        assert_eq!(limit.rows_for(1 << 20), 1, "a row over the budget alone");
        let err = parse(r#"{"connection_string": "DSN=x", "fetch_buffer_bytes": 1024}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config key 'fetch_buffer_bytes': 1024 is too small"),
            "{err}"
        );
    }

    #[test]
    fn the_queue_holds_at_most_queue_size_rows() {
        let settings = |queue: u64, batch: u64| {
            let json = format!(
                r#"{{"connection_string": "DSN=x",
                    "tiers": {{"small": {{"queue_size": {queue}, "batch_size": {batch}}}}}}}"#
            );
            parse(&json).unwrap().tiers.small
        };
        assert_eq!(settings(10_000, 5_000).queue_chunks(), 2);
        assert_eq!(settings(10_000, 3_000).queue_chunks(), 3);
        assert_eq!(
            settings(2_000, 2_500).queue_chunks(),
            0,
            "a fetch larger than the queue goes straight to the writer"
        );
    }

    #[test]
    fn lock_timeout_is_settled_in_seconds_to_whole_milliseconds() {
        let timeout = |extra: &str| {
            parse(&format!(r#"{{"connection_string": "DSN=x"{extra}}}"#))
                .unwrap()
                .lock_timeout
        };
        assert_eq!(timeout(""), Some(Duration::from_secs(60)));
        assert_eq!(
            timeout(r#", "lock_timeout_seconds": "2.5""#),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            timeout(r#", "lock_timeout_seconds": 0.0015"#),
            Some(Duration::from_millis(2)),
            "rounded to whole milliseconds"
        );
        assert_eq!(
            timeout(r#", "lock_timeout_seconds": 0"#),
            None,
            "0 waits for ever"
        );
    }

    #[test]
    fn tiers_by_threshold() {
        let config = parse(
            r#"{"connection_string": "DSN=x", "small_table_threshold": 10, "large_table_threshold": "100"}"#,
        )
        .unwrap();
        assert_eq!(config.tier_for(9), Tier::Small);
        assert_eq!(config.tier_for(10), Tier::Medium);
        assert_eq!(config.tier_for(99), Tier::Medium);
        assert_eq!(config.tier_for(100), Tier::Large);
        let err = parse(
            r#"{"connection_string": "DSN=x", "small_table_threshold": 100, "large_table_threshold": 10}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("small_table_threshold"));
    }

    #[test]
    fn include_and_exclude_globs_match_case_insensitively() {
        let config = parse(
            r#"{"connection_string": "DSN=x", "include": ["dbo.PAT*", "lab.*"], "exclude": "dbo.PAT_TMP"}"#,
        )
        .unwrap();
        assert!(config.tables.selects("dbo", "patient"));
        assert!(config.tables.selects("LAB", "result"));
        assert!(!config.tables.selects("dbo", "pat_tmp"));
        assert!(!config.tables.selects("dbo", "encounter"));
        let err = parse(r#"{"connection_string": "DSN=x", "include": ["dbo.[x"]}"#).unwrap_err();
        assert!(err.to_string().contains("'include'"));
    }

    #[test]
    fn invalid_json_reports_position() {
        let err = parse("{\n \"threads\": 4,\n}").unwrap_err().to_string();
        assert!(err.contains("not valid JSON (line 3"), "{err}");
    }

    #[test]
    fn fetch_text_encoding() {
        let fetch = |value: &str| {
            parse(&format!(
                r#"{{"connection_string": "DSN=x", "fetch_text": "{value}"}}"#
            ))
            .map(|c| c.fetch_text)
        };
        assert_eq!(fetch("utf16").unwrap(), TextEncoding::Utf16);
        assert_eq!(fetch("UTF-8").unwrap(), TextEncoding::Utf8);
        let err = fetch("latin1").unwrap_err().to_string();
        assert!(err.starts_with("config key 'fetch_text'"), "{err}");
        let default = parse(r#"{"connection_string": "DSN=x"}"#).unwrap();
        assert_eq!(
            default.fetch_text,
            if cfg!(windows) {
                TextEncoding::Utf16
            } else {
                TextEncoding::Utf8
            }
        );
    }

    #[test]
    fn format_values() {
        let config = parse(r#"{"connection_string": "DSN=x", "format": "NDJSON"}"#).unwrap();
        assert_eq!(config.format, Format::Ndjson);
        let err = parse(r#"{"connection_string": "DSN=x", "format": "xml"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"csv\", \"ndjson\" or \"parquet\"")
        );
        // Parquet is compressed with zstd unless told otherwise; the text formats are not.
        let parquet = parse(r#"{"connection_string": "DSN=x", "format": "Parquet"}"#).unwrap();
        assert_eq!(
            (parquet.format, parquet.compression),
            (Format::Parquet, Compression::Zstd)
        );
        let plain =
            parse(r#"{"connection_string": "DSN=x", "format": "parquet", "compression": "none"}"#)
                .unwrap();
        assert_eq!(plain.compression, Compression::None);
        assert_eq!(config.compression, Compression::None);
        assert_eq!(parquet.row_group_bytes, 8 << 20);
        let larger =
            parse(r#"{"connection_string": "DSN=x", "row_group_bytes": "64_000_000"}"#).unwrap();
        assert_eq!(larger.row_group_bytes, 64_000_000);
        let err = parse(r#"{"connection_string": "DSN=x", "row_group_bytes": 1000}"#).unwrap_err();
        assert!(
            err.to_string().contains("row_group_bytes")
                && err.to_string().contains("at least 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn checkpoint_seconds_defaults_to_30_and_0_turns_the_time_rule_off() {
        let every = |extra: &str| {
            parse(&format!(r#"{{"connection_string": "DSN=x"{extra}}}"#))
                .map(|c| c.checkpoint_every)
        };
        assert_eq!(every("").unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(
            every(r#", "checkpoint_seconds": "0.5""#).unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(every(r#", "checkpoint_seconds": 0"#).unwrap(), None);
        for wrong in ["-1", "100000"] {
            let error = every(&format!(r#", "checkpoint_seconds": {wrong}"#))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("checkpoint_seconds") && error.contains("between 0.001 and 86400"),
                "{error}"
            );
        }
    }
}
