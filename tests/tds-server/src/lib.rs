//! A TDS 7.4 test server: Microsoft's wire protocol ([MS-TDS]) in front of a SQLite database
//! that holds tables declared with SQL Server type names, so that Microsoft ODBC Driver 18 and
//! FreeTDS can run ehi-sync's SQL Server code path end to end on a machine without SQL Server.
//!
//! It proves the wire, the drivers and ehi-sync's binding (statement text, parameter types,
//! value encodings, errors, cancel). It does not emulate SQL Server's query semantics,
//! collations or plans.
//!
//! Two halves meet in [`model`]: [`wire`] speaks TDS and calls a [`model::Backend`] per
//! connection; [`backend`] implements it on SQLite (T-SQL translated, `sys.*` catalog views).

pub mod backend;
pub mod model;
pub mod wire;

pub use model::{
    Backend, BackendFactory, Collation, ColumnMeta, Interrupt, Param, ResultSink, ServerError,
    SqlType, Value,
};
pub use wire::{Fault, LoginRecord, Received, RequestKind, ServerOptions, TestServer, TlsMode};
