//! The SQLite backend: T-SQL translated to SQLite, `sys.*` catalog views, result types.
//! Built by the backend half; see the crate docs.
