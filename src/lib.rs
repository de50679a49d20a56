//! ehi-sync: copies every table of a large SQL Server database through ODBC into CSV or NDJSON
//! files, tier by tier, without OFFSET paging, with bounded memory.
//!
//! Data flow (one module per stage): [`config`] → [`source`] (connect, discover, size) →
//! [`plan`] (tiers, order, partitions) → the commands in [`commands`].

pub mod commands;
pub mod config;
pub mod error;
pub mod plan;
pub mod source;
