//! ehi-sync: copies every table of a large SQL Server database through ODBC into CSV or NDJSON
//! files, tier by tier, without OFFSET paging, with bounded memory.
//!
//! Data flow (one module per stage): [`config`] → [`source`] (connect, discover, size) →
//! [`plan`] (tiers, order, partitions) → [`extract`] (tier pools of workers) → [`sink`] (the one
//! writer: part files, checkpoints in [`state`], manifests in [`manifest`]) with [`progress`].
//!
//! ARCHITECTURE.md (repository root) has the module map, what each module may import, and the
//! durability rules.

pub mod commands;
pub mod config;
pub mod demo;
pub mod display;
pub mod durable;
pub mod error;
pub mod extract;
pub mod incremental;
pub mod lock;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod progress;
pub mod retry;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod status;
pub mod supervisor;
