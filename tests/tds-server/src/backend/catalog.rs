//! The user tables as the backend knows them, and the `sys.*` / `INFORMATION_SCHEMA` views
//! built from them: SQLite tables in the attached in-memory database `sys`, refreshed before a
//! statement that reads them, so the catalog SQL runs through the same translator.

use rusqlite::{Connection, OptionalExtension, params};

use super::Settings;
use super::types::{
    self, Stored, column_collation, column_facets, quote_ident, storage_declaration, variant_stored,
};
use crate::model::SqlType;

/// A column of a user table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    /// The type's own name as declared (`numeric` and `decimal` are one [`SqlType`]).
    pub type_name: String,
    pub nullable: bool,
}

/// A user table (or a `sys` view, with `schema` "sys").
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// The quoted SQLite name, schema-qualified (`main."PATIENT"`, `sys."tables"`).
    pub sqlite_name: String,
    pub object_id: i64,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .or_else(|| {
                self.columns
                    .iter()
                    .find(|c| c.name.to_lowercase() == name.to_lowercase())
            })
    }
}

/// The user tables, read from the backend's own `_tds_*` tables.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<Table>,
    /// Object ids of the tables with change tracking enabled.
    pub tracked: Vec<i64>,
    /// SQLite's schema version when this was read: a change means tables were added.
    pub schema_version: i64,
}

impl Catalog {
    pub fn load(connection: &Connection, collation: &str) -> rusqlite::Result<Catalog> {
        let schema_version: i64 =
            connection.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        let mut statement = connection.prepare(
            "SELECT schema_name, table_name, sqlite_name, object_id, primary_key FROM _tds_tables \
             ORDER BY schema_name, table_name",
        )?;
        let mut tables: Vec<Table> = statement
            .query_map([], |r| {
                let key: String = r.get(4)?;
                Ok(Table {
                    schema: r.get(0)?,
                    name: r.get(1)?,
                    sqlite_name: format!("main.{}", quote_ident(&r.get::<_, String>(2)?)),
                    object_id: r.get(3)?,
                    columns: Vec::new(),
                    primary_key: key
                        .split('\u{1}')
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut columns = connection.prepare(
            "SELECT column_name, type_text, is_nullable FROM _tds_columns WHERE schema_name = ?1 \
             AND table_name = ?2 ORDER BY column_id",
        )?;
        for table in &mut tables {
            let rows = columns.query_map(params![table.schema, table.name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })?;
            for row in rows {
                let (name, text, nullable) = row?;
                let Some(ty) = types::parse_type(&text, collation) else {
                    continue;
                };
                let type_name = text
                    .split(['(', ' '])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                table.columns.push(Column {
                    name,
                    ty,
                    type_name,
                    nullable,
                });
            }
        }
        let tracked = connection
            .prepare("SELECT object_id FROM _tds_ct_tables")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Catalog {
            tables,
            tracked,
            schema_version,
        })
    }

    /// A user table by schema and name, compared as SQL Server's case-insensitive catalog does.
    pub fn find(&self, schema: &str, name: &str) -> Option<&Table> {
        let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
        self.tables
            .iter()
            .find(|t| same(&t.schema, schema) && same(&t.name, name))
    }

    /// Schema names and ids: `dbo` is 1, the system schemas 2–4, user schemas from 5 by name.
    pub fn schemas(&self) -> Vec<(i64, String)> {
        let mut out = vec![
            (1, "dbo".to_owned()),
            (2, "guest".to_owned()),
            (3, "INFORMATION_SCHEMA".to_owned()),
            (4, "sys".to_owned()),
        ];
        let mut user: Vec<String> = self
            .tables
            .iter()
            .map(|t| t.schema.clone())
            .filter(|s| !s.eq_ignore_ascii_case("dbo"))
            .collect();
        user.sort();
        user.dedup();
        for (i, s) in user.into_iter().enumerate() {
            out.push((5 + i as i64, s));
        }
        out
    }

    pub fn schema_id(&self, schema: &str) -> Option<i64> {
        self.schemas()
            .into_iter()
            .find(|(_, s)| s.eq_ignore_ascii_case(schema))
            .map(|(id, _)| id)
    }
}

/// A catalog view: its name in `sys` (or `INFORMATION_SCHEMA.X`) and its columns with SQL
/// Server's types.
pub struct View {
    pub name: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

const OBJECT_COLUMNS: &[(&str, &str)] = &[
    ("name", "sysname"),
    ("object_id", "int"),
    ("principal_id", "int"),
    ("schema_id", "int"),
    ("parent_object_id", "int"),
    ("type", "char(2)"),
    ("type_desc", "nvarchar(60)"),
    ("create_date", "datetime"),
    ("modify_date", "datetime"),
    ("is_ms_shipped", "bit"),
    ("is_published", "bit"),
    ("is_schema_published", "bit"),
];

pub const VIEWS: &[View] = &[
    View {
        name: "schemas",
        columns: &[
            ("name", "sysname"),
            ("schema_id", "int"),
            ("principal_id", "int"),
        ],
    },
    View {
        name: "tables",
        columns: &[
            ("name", "sysname"),
            ("object_id", "int"),
            ("principal_id", "int"),
            ("schema_id", "int"),
            ("parent_object_id", "int"),
            ("type", "char(2)"),
            ("type_desc", "nvarchar(60)"),
            ("create_date", "datetime"),
            ("modify_date", "datetime"),
            ("is_ms_shipped", "bit"),
            ("is_published", "bit"),
            ("is_schema_published", "bit"),
            ("lob_data_space_id", "int"),
            ("is_tracked_by_cdc", "bit"),
            ("temporal_type", "tinyint"),
            ("is_memory_optimized", "bit"),
            ("is_external", "bit"),
        ],
    },
    View {
        name: "objects",
        columns: OBJECT_COLUMNS,
    },
    View {
        name: "columns",
        columns: &[
            ("object_id", "int"),
            ("name", "sysname"),
            ("column_id", "int"),
            ("system_type_id", "tinyint"),
            ("user_type_id", "int"),
            ("max_length", "smallint"),
            ("precision", "tinyint"),
            ("scale", "tinyint"),
            ("collation_name", "sysname"),
            ("is_nullable", "bit"),
            ("is_ansi_padded", "bit"),
            ("is_rowguidcol", "bit"),
            ("is_identity", "bit"),
            ("is_computed", "bit"),
            ("is_sparse", "bit"),
            ("is_hidden", "bit"),
        ],
    },
    View {
        name: "types",
        columns: &[
            ("name", "sysname"),
            ("system_type_id", "tinyint"),
            ("user_type_id", "int"),
            ("schema_id", "int"),
            ("principal_id", "int"),
            ("max_length", "smallint"),
            ("precision", "tinyint"),
            ("scale", "tinyint"),
            ("collation_name", "sysname"),
            ("is_nullable", "bit"),
            ("is_user_defined", "bit"),
            ("is_assembly_type", "bit"),
            ("default_object_id", "int"),
            ("rule_object_id", "int"),
            ("is_table_type", "bit"),
        ],
    },
    View {
        name: "indexes",
        columns: &[
            ("object_id", "int"),
            ("name", "sysname"),
            ("index_id", "int"),
            ("type", "tinyint"),
            ("type_desc", "nvarchar(60)"),
            ("is_unique", "bit"),
            ("data_space_id", "int"),
            ("is_primary_key", "bit"),
            ("is_unique_constraint", "bit"),
            ("is_disabled", "bit"),
            ("has_filter", "bit"),
        ],
    },
    View {
        name: "index_columns",
        columns: &[
            ("object_id", "int"),
            ("index_id", "int"),
            ("index_column_id", "int"),
            ("column_id", "int"),
            ("key_ordinal", "tinyint"),
            ("partition_ordinal", "tinyint"),
            ("is_descending_key", "bit"),
            ("is_included_column", "bit"),
        ],
    },
    View {
        name: "partitions",
        columns: &[
            ("partition_id", "bigint"),
            ("object_id", "int"),
            ("index_id", "int"),
            ("partition_number", "int"),
            ("hobt_id", "bigint"),
            ("rows", "bigint"),
            ("data_compression", "tinyint"),
            ("data_compression_desc", "nvarchar(60)"),
        ],
    },
    View {
        name: "dm_db_partition_stats",
        columns: &[
            ("partition_id", "bigint"),
            ("object_id", "int"),
            ("index_id", "int"),
            ("partition_number", "int"),
            ("in_row_data_page_count", "bigint"),
            ("used_page_count", "bigint"),
            ("reserved_page_count", "bigint"),
            ("row_count", "bigint"),
        ],
    },
    View {
        name: "databases",
        columns: &[
            ("name", "sysname"),
            ("database_id", "int"),
            ("create_date", "datetime"),
            ("compatibility_level", "tinyint"),
            ("collation_name", "sysname"),
            ("is_read_only", "bit"),
            ("state", "tinyint"),
            ("state_desc", "nvarchar(60)"),
            ("snapshot_isolation_state", "tinyint"),
            ("snapshot_isolation_state_desc", "nvarchar(60)"),
            ("is_read_committed_snapshot_on", "bit"),
            ("recovery_model_desc", "nvarchar(60)"),
        ],
    },
    View {
        name: "change_tracking_tables",
        columns: &[
            ("object_id", "int"),
            ("is_track_columns_updated_on", "bit"),
            ("min_valid_version", "bigint"),
            ("begin_version", "bigint"),
            ("cleanup_version", "bigint"),
        ],
    },
    View {
        name: "change_tracking_databases",
        columns: &[
            ("database_id", "int"),
            ("is_auto_cleanup_on", "bit"),
            ("retention_period", "int"),
            ("retention_period_units_desc", "nvarchar(60)"),
        ],
    },
    View {
        name: "stats",
        columns: &[
            ("object_id", "int"),
            ("name", "sysname"),
            ("stats_id", "int"),
            ("auto_created", "bit"),
            ("user_created", "bit"),
            ("no_recompute", "bit"),
            ("has_filter", "bit"),
            ("is_temporary", "bit"),
            ("is_incremental", "bit"),
        ],
    },
    View {
        name: "stats_columns",
        columns: &[
            ("object_id", "int"),
            ("stats_id", "int"),
            ("stats_column_id", "int"),
            ("column_id", "int"),
        ],
    },
    View {
        name: "dm_db_stats_histogram",
        columns: &[
            ("object_id", "int"),
            ("stats_id", "int"),
            ("step_number", "int"),
            ("range_high_key", "sql_variant"),
            ("range_rows", "real"),
            ("equal_rows", "real"),
            ("distinct_range_rows", "bigint"),
            ("average_range_rows", "real"),
        ],
    },
    View {
        name: "dm_db_stats_properties",
        columns: &[
            ("object_id", "int"),
            ("stats_id", "int"),
            ("last_updated", "datetime2(7)"),
            ("rows", "bigint"),
            ("rows_sampled", "bigint"),
            ("steps", "int"),
            ("unfiltered_rows", "bigint"),
            ("modification_counter", "bigint"),
        ],
    },
    View {
        name: "dm_exec_sessions",
        columns: &[
            ("session_id", "smallint"),
            ("login_name", "nvarchar(128)"),
            ("database_id", "smallint"),
            ("transaction_isolation_level", "smallint"),
            ("lock_timeout", "int"),
            ("deadlock_priority", "int"),
            ("text_size", "int"),
            ("language", "nvarchar(128)"),
            ("date_format", "nvarchar(3)"),
            ("quoted_identifier", "bit"),
            ("arithabort", "bit"),
            ("ansi_nulls", "bit"),
            ("ansi_padding", "bit"),
            ("ansi_warnings", "bit"),
            ("concat_null_yields_null", "bit"),
        ],
    },
    View {
        name: "INFORMATION_SCHEMA.TABLES",
        columns: &[
            ("TABLE_CATALOG", "nvarchar(128)"),
            ("TABLE_SCHEMA", "nvarchar(128)"),
            ("TABLE_NAME", "sysname"),
            ("TABLE_TYPE", "varchar(10)"),
        ],
    },
    View {
        name: "INFORMATION_SCHEMA.COLUMNS",
        columns: &[
            ("TABLE_CATALOG", "nvarchar(128)"),
            ("TABLE_SCHEMA", "nvarchar(128)"),
            ("TABLE_NAME", "sysname"),
            ("COLUMN_NAME", "sysname"),
            ("ORDINAL_POSITION", "int"),
            ("IS_NULLABLE", "varchar(3)"),
            ("DATA_TYPE", "nvarchar(128)"),
            ("CHARACTER_MAXIMUM_LENGTH", "int"),
            ("NUMERIC_PRECISION", "tinyint"),
            ("NUMERIC_SCALE", "int"),
            ("DATETIME_PRECISION", "smallint"),
            ("COLLATION_NAME", "sysname"),
        ],
    },
];

/// The catalog view called `name` in schema `schema` (`sys` or `INFORMATION_SCHEMA`).
pub fn view(schema: &str, name: &str) -> Option<&'static View> {
    let full = if schema.eq_ignore_ascii_case("sys") {
        name.to_lowercase()
    } else {
        format!("INFORMATION_SCHEMA.{}", name.to_uppercase())
    };
    VIEWS.iter().find(|v| v.name.eq_ignore_ascii_case(&full))
}

/// The view as a [`Table`] for the translator.
pub fn view_table(view: &View, collation: &str) -> Table {
    Table {
        schema: "sys".to_owned(),
        name: view.name.to_owned(),
        sqlite_name: format!("sys.{}", quote_ident(view.name)),
        object_id: 0,
        columns: view
            .columns
            .iter()
            .map(|(name, ty)| Column {
                name: (*name).to_owned(),
                ty: types::parse_type(ty, collation).unwrap_or(SqlType::Int),
                type_name: (*ty).to_owned(),
                nullable: true,
            })
            .collect(),
        primary_key: Vec::new(),
    }
}

/// Creates the empty catalog views in the attached database `sys`.
pub fn create_views(connection: &Connection, collation: &str) -> rusqlite::Result<()> {
    connection.execute_batch("ATTACH DATABASE ':memory:' AS sys")?;
    for view in VIEWS {
        let columns: Vec<String> = view
            .columns
            .iter()
            .map(|(name, ty)| {
                let ty = types::parse_type(ty, collation).unwrap_or(SqlType::Int);
                format!(
                    "{} {}",
                    quote_ident(name),
                    storage_declaration(&ty, collation)
                )
            })
            .collect();
        connection.execute_batch(&format!(
            "CREATE TABLE sys.{} ({})",
            quote_ident(view.name),
            columns.join(", ")
        ))?;
    }
    Ok(())
}

/// What the session view reports about the current connection.
pub struct SessionFacts<'a> {
    pub spid: i64,
    pub login: &'a str,
    pub isolation_level: i64,
    pub lock_timeout: i64,
    pub deadlock_priority: i64,
    pub text_size: i64,
    pub language: &'a str,
    pub date_format: &'a str,
    pub option: &'a dyn Fn(&str) -> bool,
}

/// The system types `sys.types` lists: name, system_type_id, user_type_id.
const SYSTEM_TYPES: &[(&str, i64, i64)] = &[
    ("image", 34, 34),
    ("text", 35, 35),
    ("uniqueidentifier", 36, 36),
    ("date", 40, 40),
    ("time", 41, 41),
    ("datetime2", 42, 42),
    ("datetimeoffset", 43, 43),
    ("tinyint", 48, 48),
    ("smallint", 52, 52),
    ("int", 56, 56),
    ("smalldatetime", 58, 58),
    ("real", 59, 59),
    ("money", 60, 60),
    ("datetime", 61, 61),
    ("float", 62, 62),
    ("sql_variant", 98, 98),
    ("ntext", 99, 99),
    ("bit", 104, 104),
    ("decimal", 106, 106),
    ("numeric", 108, 108),
    ("smallmoney", 122, 122),
    ("bigint", 127, 127),
    ("varbinary", 165, 165),
    ("varchar", 167, 167),
    ("binary", 173, 173),
    ("char", 175, 175),
    ("timestamp", 189, 189),
    ("nvarchar", 231, 231),
    ("nchar", 239, 239),
    ("xml", 241, 241),
    ("sysname", 231, 256),
];

/// The (system_type_id, user_type_id) of a declared type name.
pub fn type_ids(type_name: &str, ty: &SqlType) -> (i64, i64) {
    let name = match type_name {
        "rowversion" => "timestamp",
        "integer" => "int",
        "dec" => "decimal",
        "character" => "char",
        other => other,
    };
    SYSTEM_TYPES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or_else(
            || {
                let id = types::system_type_id(ty);
                (id, id)
            },
            |(_, s, u)| (*s, *u),
        )
}

/// The name of a table's clustered primary key index.
pub fn primary_key_name(table: &Table) -> String {
    format!("PK_{}", table.name)
}

/// Refills the views a statement reads. `histogram_tables` limits the (costly) histograms to
/// the tables the statement names, or all keyed tables when `None`.
pub fn refresh(
    connection: &Connection,
    views: &[&str],
    catalog: &Catalog,
    settings: &Settings,
    session: &SessionFacts<'_>,
    histogram_tables: Option<&[i64]>,
) -> rusqlite::Result<()> {
    for name in views {
        let rows = view_rows(
            connection,
            name,
            catalog,
            settings,
            session,
            histogram_tables,
        )?;
        let Some(view) = VIEWS.iter().find(|v| v.name == *name) else {
            continue;
        };
        connection.execute_batch(&format!("DELETE FROM sys.{}", quote_ident(view.name)))?;
        let placeholders: Vec<String> = (1..=view.columns.len()).map(|i| format!("?{i}")).collect();
        let mut insert = connection.prepare(&format!(
            "INSERT INTO sys.{} VALUES ({})",
            quote_ident(view.name),
            placeholders.join(", ")
        ))?;
        for row in rows {
            insert.execute(rusqlite::params_from_iter(row.iter()))?;
        }
    }
    Ok(())
}

fn int(i: i64) -> Stored {
    Stored::Integer(i)
}

fn text(t: &str) -> Stored {
    Stored::Text(t.to_owned())
}

fn opt_text(t: Option<String>) -> Stored {
    t.map_or(Stored::Null, Stored::Text)
}

const CREATED: &str = "2024-01-01 00:00:00.0000000";

fn row_count(connection: &Connection, table: &Table) -> rusqlite::Result<i64> {
    connection.query_row(
        &format!("SELECT COUNT(*) FROM {}", table.sqlite_name),
        [],
        |r| r.get(0),
    )
}

fn view_rows(
    connection: &Connection,
    name: &str,
    catalog: &Catalog,
    settings: &Settings,
    session: &SessionFacts<'_>,
    histogram_tables: Option<&[i64]>,
) -> rusqlite::Result<Vec<Vec<Stored>>> {
    let schema_id = |t: &Table| catalog.schema_id(&t.schema).unwrap_or(1);
    let collation = settings.collation.as_str();
    let mut rows = Vec::new();
    match name {
        "schemas" => {
            for (id, schema) in catalog.schemas() {
                rows.push(vec![text(&schema), int(id), int(1)]);
            }
        }
        "tables" | "objects" => {
            for t in &catalog.tables {
                let mut row = vec![
                    text(&t.name),
                    int(t.object_id),
                    Stored::Null,
                    int(schema_id(t)),
                    int(0),
                    text("U "),
                    text("USER_TABLE"),
                    text(CREATED),
                    text(CREATED),
                    int(0),
                    int(0),
                    int(0),
                ];
                if name == "tables" {
                    row.extend([int(0), int(0), int(0), int(0), int(0)]);
                }
                rows.push(row);
            }
        }
        "columns" => {
            for t in &catalog.tables {
                for (i, c) in t.columns.iter().enumerate() {
                    let (max_length, precision, scale) = column_facets(&c.ty);
                    let (system_type_id, user_type_id) = type_ids(&c.type_name, &c.ty);
                    rows.push(vec![
                        int(t.object_id),
                        text(&c.name),
                        int(i as i64 + 1),
                        int(system_type_id),
                        int(user_type_id),
                        int(max_length),
                        int(precision),
                        int(scale),
                        opt_text(column_collation(&c.ty, collation)),
                        int(i64::from(c.nullable)),
                        int(1),
                        int(0),
                        int(0),
                        int(0),
                        int(0),
                        int(0),
                    ]);
                }
            }
        }
        "types" => {
            for (type_name, system_type_id, user_type_id) in SYSTEM_TYPES {
                let ty = types::parse_type(type_name, collation).unwrap_or(SqlType::Int);
                let (mut max_length, precision, scale) = column_facets(&ty);
                match *type_name {
                    "varchar" | "char" | "binary" | "varbinary" | "nvarchar" | "nchar" => {
                        max_length = 8000
                    }
                    "sysname" => max_length = 256,
                    "decimal" | "numeric" => max_length = 17,
                    _ => {}
                }
                let (precision, scale) = match *type_name {
                    "decimal" | "numeric" => (38, 38),
                    _ => (precision, scale),
                };
                rows.push(vec![
                    text(type_name),
                    int(*system_type_id),
                    int(*user_type_id),
                    int(4),
                    Stored::Null,
                    int(max_length),
                    int(precision),
                    int(scale),
                    opt_text(column_collation(&ty, collation)),
                    int(i64::from(*type_name != "sysname")),
                    int(0),
                    int(0),
                    int(0),
                    int(0),
                    int(0),
                ]);
            }
        }
        "indexes" => {
            for t in &catalog.tables {
                let keyed = !t.primary_key.is_empty();
                rows.push(vec![
                    int(t.object_id),
                    if keyed {
                        text(&primary_key_name(t))
                    } else {
                        Stored::Null
                    },
                    int(i64::from(keyed)),
                    int(i64::from(keyed)),
                    text(if keyed { "CLUSTERED" } else { "HEAP" }),
                    int(i64::from(keyed)),
                    int(1),
                    int(i64::from(keyed)),
                    int(0),
                    int(0),
                    int(0),
                ]);
            }
        }
        "index_columns" | "stats_columns" => {
            for t in &catalog.tables {
                for (ordinal, key) in t.primary_key.iter().enumerate() {
                    let column_id = t
                        .columns
                        .iter()
                        .position(|c| c.name == *key)
                        .map_or(0, |p| p as i64 + 1);
                    let ordinal = ordinal as i64 + 1;
                    rows.push(if name == "index_columns" {
                        vec![
                            int(t.object_id),
                            int(1),
                            int(ordinal),
                            int(column_id),
                            int(ordinal),
                            int(0),
                            int(0),
                            int(0),
                        ]
                    } else {
                        vec![int(t.object_id), int(1), int(ordinal), int(column_id)]
                    });
                }
            }
        }
        "partitions" | "dm_db_partition_stats" => {
            for t in &catalog.tables {
                let index_id = i64::from(!t.primary_key.is_empty());
                let stale: Option<i64> = connection
                    .query_row(
                        "SELECT row_count FROM main._tds_catalog_rows WHERE object_id = ?1",
                        [t.object_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let count = match stale {
                    Some(count) => count,
                    None => row_count(connection, t)?,
                };
                let partition_id = t.object_id * 65_536 + index_id;
                rows.push(if name == "partitions" {
                    vec![
                        int(partition_id),
                        int(t.object_id),
                        int(index_id),
                        int(1),
                        int(partition_id),
                        int(count),
                        int(0),
                        text("NONE"),
                    ]
                } else {
                    let pages = count / 50 + 1;
                    vec![
                        int(partition_id),
                        int(t.object_id),
                        int(index_id),
                        int(1),
                        int(pages),
                        int(pages),
                        int(pages),
                        int(count),
                    ]
                });
            }
        }
        "databases" => {
            let system = [("master", 1), ("tempdb", 2), ("model", 3), ("msdb", 4)];
            for (db, id) in system {
                rows.push(database_row(db, id, collation, false, false));
            }
            rows.push(database_row(
                &settings.database_name,
                5,
                collation,
                settings.allow_snapshot_isolation,
                settings.read_committed_snapshot,
            ));
        }
        "change_tracking_tables" => {
            let mut statement = connection.prepare(
                "SELECT object_id, min_valid_version, begin_version FROM main._tds_ct_tables",
            )?;
            let found = statement.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for entry in found {
                let (id, min_valid, begin) = entry?;
                rows.push(vec![
                    int(id),
                    int(0),
                    int(min_valid),
                    int(begin),
                    int(min_valid),
                ]);
            }
        }
        "change_tracking_databases" => {
            let on: i64 = connection.query_row(
                "SELECT COUNT(*) FROM main._tds_state WHERE name = 'change_tracking'",
                [],
                |r| r.get(0),
            )?;
            if on > 0 {
                rows.push(vec![int(5), int(1), int(2), text("DAYS")]);
            }
        }
        "stats" => {
            for t in catalog.tables.iter().filter(|t| !t.primary_key.is_empty()) {
                rows.push(vec![
                    int(t.object_id),
                    text(&primary_key_name(t)),
                    int(1),
                    int(0),
                    int(0),
                    int(0),
                    int(0),
                    int(0),
                    int(0),
                ]);
            }
        }
        "dm_db_stats_histogram" | "dm_db_stats_properties" => {
            for t in catalog.tables.iter().filter(|t| !t.primary_key.is_empty()) {
                if histogram_tables.is_some_and(|ids| !ids.contains(&t.object_id)) {
                    continue;
                }
                let steps = histogram(connection, t)?;
                if name == "dm_db_stats_histogram" {
                    rows.extend(steps);
                } else {
                    let count = row_count(connection, t)?;
                    rows.push(vec![
                        int(t.object_id),
                        int(1),
                        text(CREATED),
                        int(count),
                        int(count),
                        int(steps.len() as i64),
                        int(count),
                        int(0),
                    ]);
                }
            }
        }
        "dm_exec_sessions" => {
            let flag = |o: &str| int(i64::from((session.option)(o)));
            rows.push(vec![
                int(session.spid),
                text(session.login),
                int(5),
                int(session.isolation_level),
                int(session.lock_timeout),
                int(session.deadlock_priority),
                int(session.text_size),
                text(session.language),
                text(session.date_format),
                flag("quoted_identifier"),
                flag("arithabort"),
                flag("ansi_nulls"),
                flag("ansi_padding"),
                flag("ansi_warnings"),
                flag("concat_null_yields_null"),
            ]);
        }
        "INFORMATION_SCHEMA.TABLES" => {
            for t in &catalog.tables {
                rows.push(vec![
                    text(&settings.database_name),
                    text(&t.schema),
                    text(&t.name),
                    text("BASE TABLE"),
                ]);
            }
        }
        "INFORMATION_SCHEMA.COLUMNS" => {
            for t in &catalog.tables {
                for (i, c) in t.columns.iter().enumerate() {
                    let (max_length, precision, scale) = column_facets(&c.ty);
                    let chars = match &c.ty {
                        SqlType::NChar { .. } | SqlType::NVarChar { .. } if max_length > 0 => {
                            int(max_length / 2)
                        }
                        ty if types::is_character(ty)
                            || matches!(ty, SqlType::Binary { .. } | SqlType::VarBinary { .. }) =>
                        {
                            int(max_length)
                        }
                        _ => Stored::Null,
                    };
                    let numeric = matches!(
                        c.ty,
                        SqlType::TinyInt
                            | SqlType::SmallInt
                            | SqlType::Int
                            | SqlType::BigInt
                            | SqlType::Decimal { .. }
                            | SqlType::Money
                            | SqlType::SmallMoney
                            | SqlType::Float
                            | SqlType::Real
                    );
                    rows.push(vec![
                        text(&settings.database_name),
                        text(&t.schema),
                        text(&t.name),
                        text(&c.name),
                        int(i as i64 + 1),
                        text(if c.nullable { "YES" } else { "NO" }),
                        text(&c.type_name),
                        chars,
                        if numeric {
                            int(precision)
                        } else {
                            Stored::Null
                        },
                        if numeric { int(scale) } else { Stored::Null },
                        if types::is_temporal(&c.ty) {
                            int(scale)
                        } else {
                            Stored::Null
                        },
                        opt_text(column_collation(&c.ty, collation)),
                    ]);
                }
            }
        }
        _ => {}
    }
    Ok(rows)
}

fn database_row(name: &str, id: i64, collation: &str, snapshot: bool, rcsi: bool) -> Vec<Stored> {
    vec![
        text(name),
        int(id),
        text(CREATED),
        int(160),
        text(collation),
        int(0),
        int(0),
        text("ONLINE"),
        int(i64::from(snapshot)),
        text(if snapshot { "ON" } else { "OFF" }),
        int(i64::from(rcsi)),
        text("FULL"),
    ]
}

/// The statistics histogram of a table's leading key column from its real data, at most 200
/// steps as SQL Server builds them: each step's high key with its own row count, and the rows
/// and distinct values between it and the step before.
fn histogram(connection: &Connection, table: &Table) -> rusqlite::Result<Vec<Vec<Stored>>> {
    let Some(leading) = table.primary_key.first().and_then(|k| table.column(k)) else {
        return Ok(Vec::new());
    };
    let total = row_count(connection, table)?;
    let column = quote_ident(&leading.name);
    let mut statement = connection.prepare(&format!(
        "SELECT {column}, COUNT(*) FROM {} GROUP BY {column} ORDER BY {column}",
        table.sqlite_name
    ))?;
    let mut rows = statement.query([])?;
    let per_step = (total / 199).max(1);
    let mut steps: Vec<Vec<Stored>> = Vec::new();
    let (mut range_rows, mut distinct) = (0i64, 0i64);
    let mut pending: Option<(Stored, i64)> = None;
    let step = |key: Stored, equal: i64, range_rows: i64, distinct: i64, n: usize| {
        let average = if distinct > 0 {
            range_rows as f64 / distinct as f64
        } else {
            1.0
        };
        vec![
            int(table.object_id),
            int(1),
            int(n as i64 + 1),
            variant_stored(&leading.ty, &key),
            Stored::Real(range_rows as f64),
            Stored::Real(equal as f64),
            int(distinct),
            Stored::Real(average),
        ]
    };
    while let Some(row) = rows.next()? {
        let key = Stored::from_ref(row.get_ref(0)?);
        let count: i64 = row.get(1)?;
        if matches!(key, Stored::Null) {
            continue;
        }
        if let Some((previous, previous_count)) = pending.take() {
            if steps.is_empty() || range_rows + previous_count >= per_step {
                steps.push(step(
                    previous,
                    previous_count,
                    range_rows,
                    distinct,
                    steps.len(),
                ));
                range_rows = 0;
                distinct = 0;
            } else {
                range_rows += previous_count;
                distinct += 1;
            }
        }
        pending = Some((key, count));
        if steps.len() >= 199 {
            break;
        }
    }
    // The highest key always closes the histogram.
    let last: Option<(Stored, i64)> = match pending {
        Some(p) => {
            let mut last = p;
            while let Some(row) = rows.next()? {
                range_rows += last.1;
                distinct += 1;
                last = (Stored::from_ref(row.get_ref(0)?), row.get(1)?);
            }
            Some(last)
        }
        None => None,
    };
    if let Some((key, count)) = last {
        steps.push(step(key, count, range_rows, distinct, steps.len()));
    }
    Ok(steps)
}
