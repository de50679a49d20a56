//! The configuration file: a JSON object whose values may be strings, numbers or booleans.
//!
//! The specification's configs carry every value as a string (`"threads": "4"`), so each key is
//! read leniently (`"4"` and `4`, `"true"` and `true`) but strictly checked: a wrong value is an
//! error naming the key, the problem and the expected form. Unknown keys are collected as
//! warnings, never silently ignored. Secrets may come from the environment with `${env:NAME}`,
//! so a host need not keep the PHI database's password in a plain file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::model::Compression;
use crate::model::Format;
use crate::model::Isolation;
use crate::model::SqlServerDriver;
use crate::model::Tier;
use incremental::{IncrementalConfig, read_incremental};

pub mod connection_string;
pub mod incremental;
pub mod secrets;

/// The default ODBC driver for SQL Server sources built from the `mssql_*` keys.
pub const DEFAULT_SQLSERVER_DRIVER: &str = "ODBC Driver 18 for SQL Server";

/// A parsed, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceConfig,
    /// Seconds to wait for a login before giving up.
    pub login_timeout_sec: u32,
    /// Upper bound on database connections open at once; caps every tier's thread count.
    pub threads: usize,
    /// Upper bound on every tier's queue size (rows in flight between workers and the writer).
    pub max_queue_size: Option<u64>,
    pub max_retries: u32,
    pub retry_sleep_seconds: f64,
    /// How reads see concurrent writes.
    pub isolation: Isolation,
    /// How long a read waits for a lock before it fails (and is retried); `None` waits.
    pub lock_timeout_ms: Option<u64>,
    /// A statement that delivers no rows for this long is cancelled and retried.
    pub stall_timeout_seconds: u64,
    pub debug: bool,
    pub output_dir: PathBuf,
    pub format: Format,
    pub compression: Compression,
    /// A part file is closed and the next one started once it holds this many bytes.
    pub part_file_max_bytes: u64,
    /// A table (and each of its partitions) starts only with this much free space on the
    /// output file system.
    pub min_free_bytes: Option<u64>,
    /// Memory for one fetch buffer; each worker holds two.
    pub fetch_buffer_bytes: usize,
    /// The ODBC text buffers' encoding (`fetch_text`).
    pub fetch_text: TextEncoding,
    /// The largest single value copied; a larger one fails its table instead of being cut.
    pub max_value_bytes: usize,
    /// The checkpoint file; `output_dir/_state.json` unless set.
    pub state_file: Option<PathBuf>,
    /// `checkpoint_seconds`: a checkpoint is also due this long after the last one once
    /// something new was written; `None` (0): only every `checkpoint_interval` rows.
    pub checkpoint_every: Option<Duration>,
    pub tables: TableFilter,
    pub small_table_threshold: u64,
    pub large_table_threshold: u64,
    pub tiers: Tiers,
    /// How later runs read only what changed (the `incremental` object).
    pub incremental: IncrementalConfig,
    /// Crashes of the sync process in a row without progress the supervisor restarts it after.
    pub max_crash_restarts: u32,
    /// Wait before the first restart after a crash; doubled per further crash without progress.
    pub crash_restart_delay_seconds: f64,
    /// Whether the file holds a password, and who can read it.
    pub secret_at_rest: secrets::SecretAtRest,
    /// Problems that do not stop the run (unknown keys, deprecated spellings).
    pub warnings: Vec<String>,
}

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum SourceConfig {
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
    pub fn secret(&self) -> Option<&str> {
        match self {
            SourceConfig::ConnectionString { secret, .. } => secret.as_deref(),
            SourceConfig::SqlServer(sql) => sql.password.as_deref(),
        }
    }
}

/// SQL Server connection settings from the `mssql_*` keys.
#[derive(Debug, Clone)]
pub struct SqlServerConfig {
    pub driver: String,
    pub server: String,
    pub port: Option<u16>,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Windows authentication (or Kerberos on Linux) instead of user and password.
    pub trusted_connection: bool,
    pub encrypt: Encrypt,
    pub trust_server_certificate: bool,
    /// `mssql_cert_server`: the host name the server certificate is issued to.
    pub host_name_in_certificate: Option<String>,
    /// `cert`: path of the server certificate to pin.
    pub server_certificate: Option<String>,
    /// `ApplicationIntent=ReadOnly`: read from an Availability Group secondary.
    pub read_only_intent: bool,
    /// `MultiSubnetFailover=yes`: connect to an Availability Group listener spanning subnets.
    pub multi_subnet_failover: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encrypt {
    Yes,
    No,
    Strict,
}

/// How text is fetched: through the narrow ODBC functions as UTF-8, or the wide ones as UTF-16.
/// On Windows the narrow functions use the local code page, which cannot hold every patient
/// name, so UTF-16 is the default there; elsewhere narrow means UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextEncoding {
    Utf8,
    Utf16,
}

impl TextEncoding {
    pub const PLATFORM_DEFAULT: TextEncoding = if cfg!(target_os = "windows") {
        TextEncoding::Utf16
    } else {
        TextEncoding::Utf8
    };
}

/// Which tables to copy: `schema.table` glob patterns, matched case-insensitively like SQL
/// Server's default collation.
#[derive(Debug, Clone)]
pub struct TableFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    include_set: GlobSet,
    exclude_set: GlobSet,
}

impl TableFilter {
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Result<Self, ConfigError> {
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
    pub fn selects(&self, schema: &str, table: &str) -> bool {
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

/// Processing parameters of one tier (ARCHITECTURE.md, "Tiers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierSettings {
    /// Worker threads, each with its own connection.
    pub threads: usize,
    /// Rows per bulk fetch.
    pub batch_size: usize,
    /// Rows per key-range partition.
    pub partition_size: u64,
    /// Rows in flight between the workers and the writer.
    pub queue_size: u64,
    /// Statement timeout.
    pub timeout_seconds: u64,
    /// Rows between two durable checkpoints.
    pub checkpoint_interval: u64,
    /// Where the expected row count of a full load comes from.
    pub row_counts: RowCounts,
}

/// Where a table's expected row count (the one its validation record checks) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowCounts {
    /// `COUNT_BIG(*)` when the table starts: exact, but a scan of the table (or of its
    /// smallest index) on the server.
    Exact,
    /// The catalog row count read when the tables were sized: free, but an estimate, so a
    /// difference is reported and does not fail the table.
    Catalog,
}

impl RowCounts {
    pub fn name(self) -> &'static str {
        match self {
            RowCounts::Exact => "exact",
            RowCounts::Catalog => "catalog",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tiers {
    pub small: TierSettings,
    pub medium: TierSettings,
    pub large: TierSettings,
}

impl Tiers {
    pub fn get(&self, tier: Tier) -> &TierSettings {
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

impl Default for Tiers {
    fn default() -> Self {
        Tiers {
            small: TierSettings {
                threads: 4,
                batch_size: 5_000,
                partition_size: 50_000,
                queue_size: 10_000,
                timeout_seconds: 3 * 3600,
                checkpoint_interval: 1_000_000,
                row_counts: RowCounts::Exact,
            },
            medium: TierSettings {
                threads: 2,
                batch_size: 2_500,
                partition_size: 25_000,
                queue_size: 5_000,
                timeout_seconds: 6 * 3600,
                checkpoint_interval: 500_000,
                row_counts: RowCounts::Exact,
            },
            large: TierSettings {
                threads: 1,
                batch_size: 1_000,
                partition_size: 5_000,
                queue_size: 1_000,
                timeout_seconds: 12 * 3600,
                checkpoint_interval: 100_000,
                row_counts: RowCounts::Exact,
            },
        }
    }
}

/// Every key this program reads at the top level; anything else draws a warning.
const KNOWN_KEYS: &[&str] = &[
    "connection_string",
    "mssql_driver",
    "mssql_server",
    "mssql_cert_server",
    "mssql_port",
    "mssql_post",
    "mssql_database",
    "mssql_user",
    "mssql_password",
    "mssql_encrypt",
    "mssql_trust_server_certificate",
    "mssql_trusted_connection",
    "mssql_application_intent",
    "mssql_multi_subnet_failover",
    "cert",
    "login_timeout_seconds",
    "threads",
    "max_queue_size",
    "max_retries",
    "retry_sleep_seconds",
    "isolation",
    "lock_timeout_seconds",
    "stall_timeout_seconds",
    "debug",
    "output_dir",
    "format",
    "compression",
    "part_file_max_bytes",
    "min_free_bytes",
    "fetch_buffer_bytes",
    "fetch_text",
    "max_value_bytes",
    "state_file",
    "checkpoint_seconds",
    "include",
    "exclude",
    "small_table_threshold",
    "large_table_threshold",
    "tiers",
    "incremental",
    "max_crash_restarts",
    "crash_restart_delay_seconds",
    "refuse_readable_secrets",
];

const TIER_KEYS: &[&str] = &[
    "threads",
    "batch_size",
    "partition_size",
    "queue_size",
    "timeout_seconds",
    "checkpoint_interval",
    "row_counts",
];

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
    pub fn from_json(
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
        let Value::Object(map) = value else {
            return Err(ConfigError::Other(format!(
                "the config file '{}' must hold one JSON object ({{ \"key\": value, ... }})",
                path.display()
            )));
        };
        let keys = Keys { map: &map, env };
        let mut warnings = Vec::new();

        let unknown: BTreeSet<&str> = map
            .keys()
            .map(String::as_str)
            // Keys starting with `_` are comments (config.example.json documents itself so).
            .filter(|k| !k.starts_with('_') && !KNOWN_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            warnings.push(format!(
                "unknown config keys ignored: {} (see config.example.json for the keys)",
                unknown.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }

        let source = read_source(&keys, &mut warnings)?;

        let threads = keys.usize("threads")?.unwrap_or(4);
        if !(1..=64).contains(&threads) {
            return Err(ConfigError::invalid(
                "threads",
                format!("{threads} is out of range"),
                "the maximum number of database connections, 1 to 64 (default 4)",
            ));
        }
        let max_queue_size = keys.u64("max_queue_size")?;
        if max_queue_size == Some(0) {
            return Err(ConfigError::invalid(
                "max_queue_size",
                "0 would stop every table",
                "a positive number of rows",
            ));
        }
        let small_table_threshold = keys.u64("small_table_threshold")?.unwrap_or(1_000_000);
        let large_table_threshold = keys.u64("large_table_threshold")?.unwrap_or(50_000_000);
        if small_table_threshold > large_table_threshold {
            return Err(ConfigError::invalid(
                "small_table_threshold",
                format!(
                    "{small_table_threshold} is above large_table_threshold ({large_table_threshold})"
                ),
                "small_table_threshold <= large_table_threshold",
            ));
        }
        let retry_sleep_seconds = keys.f64("retry_sleep_seconds")?.unwrap_or(2.0);
        if !(0.0..=3600.0).contains(&retry_sleep_seconds) {
            return Err(ConfigError::invalid(
                "retry_sleep_seconds",
                format!("{retry_sleep_seconds} is out of range"),
                "seconds between 0 and 3600",
            ));
        }
        let format = match keys.string("format")?.as_deref() {
            None => Format::Csv,
            Some(s) if s.eq_ignore_ascii_case("csv") => Format::Csv,
            Some(s) if s.eq_ignore_ascii_case("ndjson") || s.eq_ignore_ascii_case("jsonl") => {
                Format::Ndjson
            }
            Some(other) => {
                return Err(ConfigError::invalid(
                    "format",
                    format!("unknown format '{other}'"),
                    "\"csv\" or \"ndjson\"",
                ));
            }
        };
        let fetch_text = match keys.string("fetch_text")?.as_deref() {
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
        let output_dir = match keys.string("output_dir")? {
            Some(dir) if dir.trim().is_empty() => {
                return Err(ConfigError::invalid(
                    "output_dir",
                    "the folder name is empty",
                    "a folder path for the output files",
                ));
            }
            Some(dir) => base_dir.join(dir),
            None => base_dir.join("ehi-output"),
        };
        let compression = match keys
            .string("compression")?
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("none") => Compression::None,
            Some("gzip" | "gz") => Compression::Gzip,
            Some("zstd" | "zst") => Compression::Zstd,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "compression",
                    format!("unknown compression '{other}'"),
                    "\"none\" (default), \"gzip\" or \"zstd\"",
                ));
            }
        };
        let part_file_max_bytes = keys.u64("part_file_max_bytes")?.unwrap_or(256 << 20);
        if part_file_max_bytes < 1024 {
            return Err(ConfigError::invalid(
                "part_file_max_bytes",
                format!("{part_file_max_bytes} is too small"),
                "at least 1024 bytes (default 268435456, 256 MiB)",
            ));
        }
        let fetch_buffer_bytes = keys.usize("fetch_buffer_bytes")?.unwrap_or(2 << 20);
        if fetch_buffer_bytes < 64 * 1024 {
            return Err(ConfigError::invalid(
                "fetch_buffer_bytes",
                format!("{fetch_buffer_bytes} is too small"),
                "at least 65536 bytes (default 2097152, 2 MiB)",
            ));
        }
        let max_value_bytes = keys.usize("max_value_bytes")?.unwrap_or(2 << 30);
        if max_value_bytes < 4096 {
            return Err(ConfigError::invalid(
                "max_value_bytes",
                format!("{max_value_bytes} is too small"),
                "at least 4096 bytes (default 2147483648, 2 GiB)",
            ));
        }
        let state_file = keys.string("state_file")?.map(|f| base_dir.join(f));
        let checkpoint_every = match keys.f64("checkpoint_seconds")?.unwrap_or(30.0) {
            0.0 => None,
            s if (0.001..=86_400.0).contains(&s) => Some(Duration::from_secs_f64(s)),
            s => {
                return Err(ConfigError::invalid(
                    "checkpoint_seconds",
                    format!("{s} is out of range"),
                    "seconds between 0.001 and 86400, or 0 to checkpoint only every \
                     checkpoint_interval rows (default 30)",
                ));
            }
        };
        let isolation = match keys
            .string("isolation")?
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
        let lock_timeout_ms = match keys.f64("lock_timeout_seconds")?.unwrap_or(60.0) {
            0.0 => None,
            s if (0.001..=86_400.0).contains(&s) => Some((s * 1000.0).round() as u64),
            s => {
                return Err(ConfigError::invalid(
                    "lock_timeout_seconds",
                    format!("{s} is out of range"),
                    "seconds between 0.001 and 86400, or 0 to wait for locks without limit \
                     (default 60)",
                ));
            }
        };
        let stall_timeout_seconds = keys.u64("stall_timeout_seconds")?.unwrap_or(900);
        if stall_timeout_seconds == 0 {
            return Err(ConfigError::invalid(
                "stall_timeout_seconds",
                "0 would cancel every statement",
                "seconds without a fetched batch before a statement is cancelled (default 900)",
            ));
        }
        let tables = TableFilter::new(keys.list("include")?, keys.list("exclude")?)?;
        let login_timeout_sec = keys.u64("login_timeout_seconds")?.unwrap_or(30);
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

        let crash_restart_delay_seconds = keys.f64("crash_restart_delay_seconds")?.unwrap_or(5.0);
        if !(0.0..=3600.0).contains(&crash_restart_delay_seconds) {
            return Err(ConfigError::invalid(
                "crash_restart_delay_seconds",
                format!("{crash_restart_delay_seconds} is out of range"),
                "seconds between 0 and 3600 (default 5)",
            ));
        }
        let secret_at_rest =
            secrets::SecretAtRest::of(&map, keys.bool("refuse_readable_secrets")?.unwrap_or(false));

        Ok(Config {
            source,
            login_timeout_sec,
            threads,
            max_queue_size,
            max_retries: keys.u32("max_retries")?.unwrap_or(5),
            retry_sleep_seconds,
            isolation,
            lock_timeout_ms,
            stall_timeout_seconds,
            debug: keys.bool("debug")?.unwrap_or(false),
            output_dir,
            format,
            fetch_text,
            compression,
            part_file_max_bytes,
            min_free_bytes: keys.u64("min_free_bytes")?,
            fetch_buffer_bytes,
            max_value_bytes,
            state_file,
            checkpoint_every,
            tables,
            small_table_threshold,
            large_table_threshold,
            tiers: read_tiers(&map, &mut warnings)?,
            incremental: read_incremental(map.get("incremental"), &mut warnings)?,
            max_crash_restarts: keys.u32("max_crash_restarts")?.unwrap_or(5),
            crash_restart_delay_seconds,
            secret_at_rest,
            warnings,
        })
    }

    /// The settings a tier runs with: its own, with threads capped by `threads` and the queue by
    /// `max_queue_size`.
    pub fn tier_settings(&self, tier: Tier) -> TierSettings {
        let mut settings = *self.tiers.get(tier);
        settings.threads = settings.threads.min(self.threads);
        if let Some(cap) = self.max_queue_size {
            settings.queue_size = settings.queue_size.min(cap);
        }
        settings
    }

    /// The tier a table of `rows` rows belongs to.
    pub fn tier_for(&self, rows: u64) -> Tier {
        if rows < self.small_table_threshold {
            Tier::Small
        } else if rows < self.large_table_threshold {
            Tier::Medium
        } else {
            Tier::Large
        }
    }
}

fn read_source(keys: &Keys, warnings: &mut Vec<String>) -> Result<SourceConfig, ConfigError> {
    if let Some(raw) = keys.raw_string("connection_string")? {
        if raw.trim().is_empty() {
            return Err(ConfigError::invalid(
                "connection_string",
                "it is empty",
                "a full ODBC connection string such as \"Driver={PostgreSQL Unicode};Server=...\"",
            ));
        }
        let (connection_string, secret) = substitute_env("connection_string", &raw, keys.env)?;
        let ignored: Vec<&str> = keys
            .map
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("mssql_") || *k == "cert")
            .collect();
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

    let server =
        keys.string("mssql_server")?.ok_or_else(|| {
            ConfigError::Missing {
        key: "mssql_server".into(),
        hint: "set mssql_server (with mssql_database, mssql_user, mssql_password) for SQL Server, \
               or connection_string for any other ODBC source"
            .into(),
    }
        })?;
    let database = keys
        .string("mssql_database")?
        .ok_or_else(|| ConfigError::Missing {
            key: "mssql_database".into(),
            hint: "the name of the database to copy, e.g. \"Clarity\"".into(),
        })?;
    let port = match (keys.u64("mssql_port")?, keys.u64("mssql_post")?) {
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
    let trusted_connection = keys.bool("mssql_trusted_connection")?.unwrap_or(false);
    let user = keys.string("mssql_user")?;
    let password = match keys.raw_string("mssql_password")? {
        Some(raw) => Some(substitute_env("mssql_password", &raw, keys.env)?.0),
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
    let encrypt = match keys.string("mssql_encrypt")?.as_deref() {
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
    let read_only_intent = match keys.string("mssql_application_intent")?.as_deref() {
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
        driver: keys
            .string("mssql_driver")?
            .unwrap_or_else(|| DEFAULT_SQLSERVER_DRIVER.to_owned()),
        server,
        port,
        database,
        user,
        password,
        trusted_connection,
        encrypt,
        trust_server_certificate: keys
            .bool("mssql_trust_server_certificate")?
            .unwrap_or(false),
        host_name_in_certificate: keys.string("mssql_cert_server")?,
        server_certificate: keys.string("cert")?.filter(|path| !path.is_empty()),
        read_only_intent,
        multi_subnet_failover: keys.bool("mssql_multi_subnet_failover")?.unwrap_or(false),
    };
    check_driver_capabilities(&config, warnings)?;
    Ok(SourceConfig::SqlServer(config))
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

fn read_tiers(map: &Map<String, Value>, warnings: &mut Vec<String>) -> Result<Tiers, ConfigError> {
    let mut tiers = Tiers::default();
    let Some(value) = map.get("tiers") else {
        return Ok(tiers);
    };
    let Value::Object(by_tier) = value else {
        return Err(ConfigError::invalid(
            "tiers",
            "it is not an object",
            "{\"small\": {\"threads\": 4, \"batch_size\": 5000, ...}, \"medium\": {...}, \"large\": {...}}",
        ));
    };
    for (name, overrides) in by_tier.iter().filter(|(name, _)| !name.starts_with('_')) {
        let Some(tier) = Tier::ALL.into_iter().find(|t| t.name() == name) else {
            return Err(ConfigError::invalid(
                format!("tiers.{name}"),
                "unknown tier",
                "\"small\", \"medium\" or \"large\"",
            ));
        };
        let Value::Object(overrides) = overrides else {
            return Err(ConfigError::invalid(
                format!("tiers.{name}"),
                "it is not an object",
                format!("{{{}}}", TIER_KEYS.join(", ")),
            ));
        };
        let unknown: Vec<&str> = overrides
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with('_') && !TIER_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            warnings.push(format!(
                "unknown keys in tiers.{name} ignored: {} (known: {})",
                unknown.join(", "),
                TIER_KEYS.join(", ")
            ));
        }
        let keys = Keys {
            map: overrides,
            env: &|_| None,
        };
        let prefix = format!("tiers.{name}");
        let settings = tiers.get_mut(tier);
        let positive = |key: &str, value: Option<u64>| -> Result<Option<u64>, ConfigError> {
            match value {
                Some(0) => Err(ConfigError::invalid(
                    format!("{prefix}.{key}"),
                    "0 is not allowed",
                    "a positive number",
                )),
                other => Ok(other),
            }
        };
        if let Some(v) = positive("threads", keys.u64_at(&prefix, "threads")?)? {
            settings.threads = usize::try_from(v).unwrap_or(usize::MAX);
        }
        if let Some(v) = positive("batch_size", keys.u64_at(&prefix, "batch_size")?)? {
            settings.batch_size = usize::try_from(v).unwrap_or(usize::MAX).min(1_000_000);
        }
        if let Some(v) = positive("partition_size", keys.u64_at(&prefix, "partition_size")?)? {
            settings.partition_size = v;
        }
        if let Some(v) = positive("queue_size", keys.u64_at(&prefix, "queue_size")?)? {
            settings.queue_size = v;
        }
        if let Some(v) = positive("timeout_seconds", keys.u64_at(&prefix, "timeout_seconds")?)? {
            settings.timeout_seconds = v;
        }
        if let Some(v) = positive(
            "checkpoint_interval",
            keys.u64_at(&prefix, "checkpoint_interval")?,
        )? {
            settings.checkpoint_interval = v;
        }
        match keys.string("row_counts")?.as_deref() {
            None => {}
            Some("exact") => settings.row_counts = RowCounts::Exact,
            Some("catalog") => settings.row_counts = RowCounts::Catalog,
            Some(other) => {
                return Err(ConfigError::invalid(
                    format!("{prefix}.row_counts"),
                    format!("\"{other}\" is not a way to count rows"),
                    "\"exact\" (COUNT_BIG(*) when the table starts) or \"catalog\" (the catalog's \
                     estimate, no scan)",
                ));
            }
        }
    }
    Ok(tiers)
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

/// Lenient, key-naming readers over one JSON object.
pub(crate) struct Keys<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Keys<'_> {
    /// A string value, or a number/boolean rendered as text. `null` counts as absent.
    fn raw_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ConfigError::invalid(
                key,
                "it is a list or an object",
                "a string",
            )),
        }
    }

    /// Like `raw_string`, trimmed, with empty strings treated as absent (the specification's
    /// configs leave unused keys as "").
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self
            .raw_string(key)?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.u64_named(key, key)
    }

    pub(crate) fn u64_at(&self, prefix: &str, key: &str) -> Result<Option<u64>, ConfigError> {
        self.u64_named(key, &format!("{prefix}.{key}"))
    }

    fn u64_named(&self, key: &str, shown: &str) -> Result<Option<u64>, ConfigError> {
        let expected = "a whole number such as 4 or \"4\"";
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                ConfigError::invalid(shown, format!("{n} is not a whole number >= 0"), expected)
            }),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let digits: String = s.trim().chars().filter(|c| *c != '_').collect();
                digits.parse::<u64>().map(Some).map_err(|_| {
                    ConfigError::invalid(shown, format!("\"{s}\" is not a whole number"), expected)
                })
            }
            Some(other) => Err(ConfigError::invalid(
                shown,
                format!("{} is not a number", kind(other)),
                expected,
            )),
        }
    }

    fn u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        self.u64(key)?
            .map(|v| {
                u32::try_from(v).map_err(|_| {
                    ConfigError::invalid(key, format!("{v} is too large"), "a smaller number")
                })
            })
            .transpose()
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, ConfigError> {
        Ok(self
            .u64(key)?
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX)))
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        let expected = "a number of seconds such as 2 or \"0.5\"";
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    ConfigError::invalid(key, format!("\"{s}\" is not a number"), expected)
                }),
            Some(other) => Err(ConfigError::invalid(
                key,
                format!("{} is not a number", kind(other)),
                expected,
            )),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let expected = "true or false (also \"true\", \"false\", \"yes\", \"no\", \"1\", \"0\")";
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "yes" | "1" | "on" => Ok(Some(true)),
                "false" | "no" | "0" | "off" => Ok(Some(false)),
                _ => Err(ConfigError::invalid(
                    key,
                    format!("\"{s}\" is not a boolean"),
                    expected,
                )),
            },
            Some(other) => Err(ConfigError::invalid(
                key,
                format!("{} is not a boolean", kind(other)),
                expected,
            )),
        }
    }

    /// A list of strings; a single string counts as a one-element list, a comma-separated
    /// string as several (the specification's configs hold lists as strings).
    fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let expected = "a list of \"schema.table\" patterns such as [\"dbo.*\", \"*.PAT_ENC\"]";
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                    other => Err(ConfigError::invalid(
                        key,
                        format!("the list holds {}", kind(other)),
                        expected,
                    )),
                })
                .collect(),
            Some(other) => Err(ConfigError::invalid(
                key,
                format!("{} is not a list", kind(other)),
                expected,
            )),
        }
    }
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
    use crate::model::Format;
    use crate::model::Tier;

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
        assert_eq!(config.threads, 4);
        assert_eq!(config.max_queue_size, Some(10_000));
        assert_eq!(config.max_retries, 5);
        assert_eq!(config.retry_sleep_seconds, 10.0);
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
        assert_eq!(config.threads, 2);
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
        for key in KNOWN_KEYS.iter().filter(|k| **k != "mssql_post") {
            assert!(
                json.get(format!("_{key}")).is_some(),
                "config.example.json does not document '{key}'"
            );
        }
        use super::incremental::{INCREMENTAL_KEYS, TABLE_KEYS};
        let incremental = &json["incremental"];
        for key in INCREMENTAL_KEYS {
            assert!(
                incremental.get(format!("_{key}")).is_some(),
                "config.example.json does not document 'incremental.{key}'"
            );
        }
        for key in TABLE_KEYS {
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
        let small = config.tier_settings(Tier::Small);
        assert_eq!(small.threads, 3, "capped by threads");
        assert_eq!(small.batch_size, 100);
        assert_eq!(small.queue_size, 2000, "capped by max_queue_size");
        assert_eq!(config.tier_settings(Tier::Large).timeout_seconds, 60);
        assert_eq!(config.tier_settings(Tier::Medium), {
            let mut m = Tiers::default().medium;
            m.queue_size = 2000;
            m
        });
        assert_eq!(small.row_counts, RowCounts::Exact);
        let catalog = parse(
            r#"{"connection_string": "DSN=x", "tiers": {"large": {"row_counts": "catalog"}}}"#,
        )
        .unwrap();
        assert_eq!(
            catalog.tier_settings(Tier::Large).row_counts,
            RowCounts::Catalog
        );
        assert_eq!(
            catalog.tier_settings(Tier::Medium).row_counts,
            RowCounts::Exact
        );
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
        assert!(err.to_string().contains("\"csv\" or \"ndjson\""));
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
