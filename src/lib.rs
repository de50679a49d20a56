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
pub mod ddl;
pub mod demo;
mod display;
mod durable;
pub mod error;
mod extract;
pub mod incremental;
pub mod lock;
mod manifest;
pub mod model;
mod plan;
mod progress;
mod retry;
pub mod shutdown;
mod sink;
pub mod source;
mod state;
mod status;
pub mod supervisor;
