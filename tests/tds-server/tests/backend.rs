//! The SQLite backend without the wire: ehi-sync's statements (catalog, sizing, keyset and
//! range reads, change tracking, key scans, session settings) run against the fixtures, with a
//! sink that collects results in memory; types and values are asserted exactly. The catalog
//! statements come from ehi-sync's own constants; the per-table statements are written out in
//! the forms ehi-sync generates (its generators' signatures change with issue 13).

use ehi_sync::incremental::sql::CHANGE_TRACKING_TABLES;
use ehi_sync::model::Dialect;
use ehi_sync::source::catalog::count_sql;
use ehi_sync::source::session::SQLSERVER_SNAPSHOT_STATE_SQL;
use ehi_sync::source::sqlserver::{COLUMNS_SQL, PRIMARY_KEYS_SQL, SIZES_FALLBACK_SQL, SIZES_SQL};
use tds_test_server::backend::fixtures::{self, EVERY_TYPE_COLUMNS, SPECIAL_PATIENT_IDS};
use tds_test_server::backend::{SqliteDatabase, types};
use tds_test_server::model::{
    Backend, BackendFactory, Collation, ColumnMeta, Interrupt, Param, ResultSink, ServerError,
    SqlType, Value,
};

/// A result set as the sink received it.
#[derive(Debug, Default)]
struct ResultSet {
    columns: Vec<ColumnMeta>,
    rows: Vec<Vec<Value>>,
}

/// Collects everything in memory; `stop_after` rows makes it answer ATTENTION.
#[derive(Debug, Default)]
struct Collect {
    sets: Vec<ResultSet>,
    dones: Vec<Option<u64>>,
    stop_after: Option<usize>,
}

impl ResultSink for Collect {
    fn columns(&mut self, columns: &[ColumnMeta]) -> Result<(), Interrupt> {
        self.sets.push(ResultSet {
            columns: columns.to_vec(),
            rows: Vec::new(),
        });
        Ok(())
    }

    fn row(&mut self, values: &[Value]) -> Result<(), Interrupt> {
        let set = self.sets.last_mut().expect("columns before rows");
        assert_eq!(values.len(), set.columns.len(), "one value per column");
        set.rows.push(values.to_vec());
        if self.stop_after.is_some_and(|n| set.rows.len() >= n) {
            return Err(Interrupt::Attention);
        }
        Ok(())
    }

    fn done(&mut self, rows: Option<u64>) -> Result<(), Interrupt> {
        self.dones.push(rows);
        Ok(())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: SqliteDatabase,
}

fn clarity(rows: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = fixtures::clarity(&dir.path().join("clarity.sqlite"), "Clarity", rows).unwrap();
    Fixture { _dir: dir, db }
}

fn every_type() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = fixtures::every_type(&dir.path().join("types.sqlite"), "Types").unwrap();
    Fixture { _dir: dir, db }
}

fn connect(db: &SqliteDatabase) -> Box<dyn Backend> {
    db.open(db.database_name()).unwrap()
}

fn run(backend: &mut dyn Backend, sql: &str, params: &[Param]) -> Collect {
    let mut sink = Collect::default();
    match backend.execute(sql, params, &mut sink) {
        Ok(()) => sink,
        Err(e) => panic!("{sql}\n→ {e:?}"),
    }
}

fn fail(backend: &mut dyn Backend, sql: &str, params: &[Param]) -> ServerError {
    let mut sink = Collect::default();
    match backend.execute(sql, params, &mut sink) {
        Err(Interrupt::Error(e)) => e,
        other => panic!("{sql}\n→ expected an error, got {other:?} with {sink:?}"),
    }
}

fn single(backend: &mut dyn Backend, sql: &str, params: &[Param]) -> ResultSet {
    let mut c = run(backend, sql, params);
    assert_eq!(c.sets.len(), 1, "{sql}");
    c.sets.remove(0)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn param(name: &str, ty: SqlType, value: Value) -> Param {
    Param {
        name: name.to_owned(),
        ty,
        value,
    }
}

fn nvarchar(n: u16) -> SqlType {
    SqlType::NVarChar { length: Some(n) }
}

fn varchar(n: u16) -> SqlType {
    SqlType::VarChar {
        length: Some(n),
        collation: Collation::default_collation(),
    }
}

fn names(set: &ResultSet) -> Vec<&str> {
    set.columns.iter().map(|c| c.name.as_str()).collect()
}

/// The first column of every row, each a text value.
fn first_texts(set: &ResultSet) -> Vec<String> {
    set.rows
        .iter()
        .map(|r| match &r[0] {
            Value::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

const CLARITY_TABLES: [&str; 8] = [
    "AUDIT_LOG",
    "DEVICE",
    "FLOWSHEET",
    "NOTE_TEXT",
    "ORDER_PROC",
    "PAT_ENC",
    "PATIENT",
    "Ünï tàble",
];

#[test]
fn sizing_statement_reports_real_row_counts_in_sql_server_types() {
    let f = clarity(20);
    let mut b = connect(&f.db);
    let set = single(b.as_mut(), SIZES_SQL, &[]);
    assert_eq!(names(&set), ["schema_name", "table_name", "row_count"]);
    assert_eq!(set.columns[0].ty, nvarchar(128));
    assert_eq!(set.columns[2].ty, SqlType::BigInt);
    let tables: Vec<&Value> = set.rows.iter().map(|r| &r[1]).collect();
    assert_eq!(
        tables,
        CLARITY_TABLES
            .iter()
            .map(|t| text(t))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    let count = |t: &str| {
        set.rows
            .iter()
            .find(|r| r[1] == text(t))
            .map(|r| r[2].clone())
            .unwrap()
    };
    assert_eq!(count("PATIENT"), Value::Int(25));
    assert_eq!(count("PAT_ENC"), Value::Int(75));
    assert_eq!(count("FLOWSHEET"), Value::Int(80));
    assert_eq!(count("AUDIT_LOG"), Value::Int(20));
    assert!(set.rows.iter().all(|r| r[0] == text("dbo")));
}

#[test]
fn sizing_without_view_database_state_fails_as_sql_server_does_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixtures::clarity(&dir.path().join("c.sqlite"), "Clarity", 5)
        .unwrap()
        .deny_view_database_state(true);
    let mut b = connect(&db);
    let e = fail(b.as_mut(), SIZES_SQL, &[]);
    assert_eq!((e.number, e.class, e.state), (300, 14, 1));
    assert_eq!(
        e.message,
        "VIEW DATABASE STATE permission denied in database 'Clarity'."
    );
    let set = single(b.as_mut(), SIZES_FALLBACK_SQL, &[]);
    let patient = set.rows.iter().find(|r| r[1] == text("PATIENT")).unwrap();
    assert_eq!(patient[2], Value::Int(10));
    assert_eq!(set.rows.len(), CLARITY_TABLES.len());
    // Stale statistics: the catalog reports what it is told, the table keeps its rows.
    db.set_catalog_row_count("dbo", "PATIENT", Some(1_000_000))
        .unwrap();
    let set = single(b.as_mut(), SIZES_FALLBACK_SQL, &[]);
    let patient = set.rows.iter().find(|r| r[1] == text("PATIENT")).unwrap();
    assert_eq!(patient[2], Value::Int(1_000_000));
    let count = single(b.as_mut(), "SELECT COUNT_BIG(*) FROM [dbo].[PATIENT]", &[]);
    assert_eq!(count.rows, [vec![Value::Int(10)]]);
    db.set_catalog_row_count("dbo", "PATIENT", None).unwrap();
    let set = single(b.as_mut(), SIZES_FALLBACK_SQL, &[]);
    let patient = set.rows.iter().find(|r| r[1] == text("PATIENT")).unwrap();
    assert_eq!(patient[2], Value::Int(10));
}

#[test]
fn column_catalog_reports_lengths_precision_and_nullability() {
    let f = clarity(3);
    let mut b = connect(&f.db);
    let set = single(b.as_mut(), COLUMNS_SQL, &[]);
    assert_eq!(
        names(&set)[..9],
        [
            "schema_name",
            "table_name",
            "column_id",
            "column_name",
            "type_name",
            "max_length",
            "precision",
            "scale",
            "is_nullable"
        ]
    );
    // CASE … THEN -1 … ELSE c.max_length END: int has the higher precedence, as on SQL Server.
    assert_eq!(set.columns[5].ty, SqlType::Int);
    assert_eq!(set.columns[8].ty, SqlType::Bit);
    let collations = single(
        b.as_mut(),
        "SELECT c.name, c.collation_name FROM sys.columns AS c WHERE c.object_id = \
         OBJECT_ID(N'[dbo].[PATIENT]') ORDER BY c.column_id",
        &[],
    );
    assert_eq!(collations.columns[1].ty, nvarchar(128));
    assert_eq!(
        collations.rows[..3],
        [
            vec![text("PAT_ID"), text(Collation::DEFAULT)],
            vec![text("PAT_NAME"), text(Collation::DEFAULT)],
            vec![text("BIRTH_DATE"), Value::Null]
        ]
    );
    let row = |table: &str, column: &str| -> Vec<Value> {
        set.rows
            .iter()
            .find(|r| r[1] == text(table) && r[3] == text(column))
            .unwrap_or_else(|| panic!("{table}.{column}"))[4..9]
            .to_vec()
    };
    // Issue 13 item 1 adds each text column's collation to the statement.
    if let Some(at) = names(&set).iter().position(|n| *n == "collation_name") {
        let collation = |table: &str, column: &str| {
            set.rows
                .iter()
                .find(|r| r[1] == text(table) && r[3] == text(column))
                .map(|r| r[at].clone())
        };
        assert_eq!(
            collation("PATIENT", "PAT_ID"),
            Some(text(Collation::DEFAULT))
        );
        assert_eq!(
            collation("PATIENT", "PAT_NAME"),
            Some(text(Collation::DEFAULT))
        );
        assert_eq!(collation("PAT_ENC", "PAT_ENC_CSN_ID"), Some(Value::Null));
    }
    assert_eq!(
        row("PAT_ENC", "PAT_ENC_CSN_ID"),
        [
            text("numeric"),
            Value::Int(9),
            Value::Int(18),
            Value::Int(0),
            Value::Int(0)
        ]
    );
    assert_eq!(
        row("PATIENT", "PAT_NAME"),
        [
            text("nvarchar"),
            Value::Int(200),
            Value::Int(0),
            Value::Int(0),
            Value::Int(1)
        ]
    );
    assert_eq!(
        row("PATIENT", "PAT_ID")[..2],
        [text("varchar"), Value::Int(18)]
    );
    assert_eq!(
        row("NOTE_TEXT", "NOTE")[..2],
        [text("nvarchar"), Value::Int(-1)]
    );
    assert_eq!(
        row("ORDER_PROC", "RV")[..2],
        [text("timestamp"), Value::Int(8)]
    );
    assert_eq!(
        row("FLOWSHEET", "MEAS_DATE_REAL")[..3],
        [text("float"), Value::Int(8), Value::Int(53)]
    );
    assert_eq!(
        row("PAT_ENC", "UPDATE_DATE")[..4],
        [
            text("datetime2"),
            Value::Int(8),
            Value::Int(27),
            Value::Int(7)
        ]
    );
    assert_eq!(
        row("Ünï tàble", "Ünï col")[..2],
        [text("nvarchar"), Value::Int(50)]
    );
    // Ordinal order within a table.
    let flowsheet: Vec<&Value> = set
        .rows
        .iter()
        .filter(|r| r[1] == text("FLOWSHEET"))
        .map(|r| &r[2])
        .collect();
    assert_eq!(
        flowsheet,
        [
            &Value::Int(1),
            &Value::Int(2),
            &Value::Int(3),
            &Value::Int(4),
            &Value::Int(5)
        ]
    );
}

#[test]
fn primary_keys_come_in_key_order() {
    let f = clarity(3);
    let mut b = connect(&f.db);
    let set = single(b.as_mut(), PRIMARY_KEYS_SQL, &[]);
    let flowsheet: Vec<(Value, Value)> = set
        .rows
        .iter()
        .filter(|r| r[1] == text("FLOWSHEET"))
        .map(|r| (r[2].clone(), r[3].clone()))
        .collect();
    assert_eq!(
        flowsheet,
        [
            (Value::Int(1), text("FLO_MEAS_ID")),
            (Value::Int(2), text("MEAS_DATE_REAL")),
            (Value::Int(3), text("LINE"))
        ]
    );
    assert_eq!(set.columns[2].ty, SqlType::TinyInt);
    assert!(
        !set.rows.iter().any(|r| r[1] == text("AUDIT_LOG")),
        "no key, no rows"
    );
}

#[test]
fn exact_counts_union_all_with_non_ascii_names() {
    let f = clarity(4);
    let mut b = connect(&f.db);
    let sql = count_sql(
        Dialect::SqlServer,
        &[
            ("dbo".into(), "PATIENT".into()),
            ("dbo".into(), "Ünï tàble".into()),
        ],
    );
    let set = single(b.as_mut(), &sql, &[]);
    assert_eq!(set.columns[2].ty, SqlType::BigInt);
    assert_eq!(
        set.columns[1].ty,
        nvarchar(9),
        "the longer of N'PATIENT' and N'Ünï tàble'"
    );
    assert_eq!(
        set.rows,
        [
            vec![text("dbo"), text("PATIENT"), Value::Int(9)],
            vec![text("dbo"), text("Ünï tàble"), Value::Int(3)]
        ]
    );
}

/// Reads the whole table in keyset chunks as a worker does: every chunk starts after the last
/// key of the one before, bound as a `varchar` parameter; returns the keys in order.
fn keyset_read(b: &mut dyn Backend, chunk: u64) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    loop {
        let (filter, params) = match keys.last() {
            Some(k) => (
                " WHERE (([PAT_ID] > @P1))",
                vec![param("@P1", varchar(18), text(k))],
            ),
            None => ("", Vec::new()),
        };
        let sql = format!(
            "SELECT TOP ({chunk}) [PAT_ID], [PAT_NAME], [BIRTH_DATE], [SEX_C], [ZIP] FROM \
             [dbo].[PATIENT]{filter} ORDER BY [PAT_ID]"
        );
        let set = single(b, &sql, &params);
        if set.rows.is_empty() {
            return keys;
        }
        for row in &set.rows {
            let Value::Text(k) = &row[0] else {
                panic!("{row:?}")
            };
            keys.push(k.clone());
        }
    }
}

#[test]
fn keyset_chunks_read_every_row_once_across_non_ascii_boundaries() {
    let f = clarity(10);
    let mut b = connect(&f.db);
    let keys = keyset_read(b.as_mut(), 3);
    assert_eq!(keys.len(), 15);
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 15, "no key twice: {keys:?}");
    for special in SPECIAL_PATIENT_IDS {
        assert!(keys.contains(&special.to_owned()), "{special}");
    }
    // The order is the column's collation (case-insensitive): 'a-c' < 'ab' < 'N…' < 'Ñ1'.
    let position = |k: &str| keys.iter().position(|x| x == k).unwrap();
    assert!(position("a-c") < position("ab"));
    assert!(position("O'Neil") < position("Z0000001"));
}

#[test]
fn keyset_with_typed_parameters_as_sp_executesql_sends_them() {
    let f = clarity(10);
    let mut b = connect(&f.db);
    let sql = "SELECT TOP (3) [PAT_ID], [PAT_NAME], [BIRTH_DATE] FROM [dbo].[PATIENT] \
               WHERE (([PAT_ID] > @P1)) ORDER BY [PAT_ID]";
    let set = single(
        b.as_mut(),
        sql,
        &[param("@P1", varchar(18), text("Z0000007"))],
    );
    assert_eq!(
        set.columns,
        [
            ColumnMeta {
                name: "PAT_ID".into(),
                ty: varchar(18),
                nullable: false
            },
            ColumnMeta {
                name: "PAT_NAME".into(),
                ty: nvarchar(200),
                nullable: true
            },
            ColumnMeta {
                name: "BIRTH_DATE".into(),
                ty: SqlType::DateTime,
                nullable: true
            },
        ]
    );
    let keys: Vec<&Value> = set.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        keys,
        [&text("Z0000008"), &text("Z0000009"), &text("Z0000010")]
    );
    assert_eq!(set.rows[0][2], text("1937-08-08 08:30:00.997"));
    // The same with an nvarchar parameter (the column's collation still decides).
    let set = single(b.as_mut(), sql, &[param("@P1", nvarchar(18), text("Ñ1"))]);
    assert_eq!(set.rows[0][0], text("Ñ2"));
    // A composite keyset: numeric(18,0) and datetime parameters.
    let sql = "SELECT TOP (2) [PAT_ENC_CSN_ID], [CONTACT_DATE] FROM [dbo].[PAT_ENC] \
               WHERE [PAT_ENC_CSN_ID] > @P1 AND [PAT_ENC_CSN_ID] <= @P2 AND [CONTACT_DATE] >= @P3 \
               ORDER BY [PAT_ENC_CSN_ID]";
    let decimal = SqlType::Decimal {
        precision: 18,
        scale: 0,
    };
    let set = single(
        b.as_mut(),
        sql,
        &[
            param("@P1", decimal.clone(), text("700000000011")),
            param("@P2", decimal.clone(), text("700000000110")),
            param(
                "@P3",
                SqlType::DateTime2 { scale: 3 },
                text("2020-05-01 00:00:00.000"),
            ),
        ],
    );
    assert_eq!(set.columns[0].ty, decimal);
    assert_eq!(
        set.rows,
        [
            vec![text("700000000044"), text("2020-05-05 00:00:00.000")],
            vec![text("700000000055"), text("2020-06-06 00:00:00.000")]
        ]
    );
}

#[test]
fn range_partition_bounds_and_counts() {
    let f = clarity(10);
    let mut b = connect(&f.db);
    let bounds = single(
        b.as_mut(),
        "SELECT MIN([PAT_ENC_CSN_ID]) AS min_key, MAX([PAT_ENC_CSN_ID]) AS max_key FROM \
         [dbo].[PAT_ENC]",
        &[],
    );
    let decimal = SqlType::Decimal {
        precision: 18,
        scale: 0,
    };
    assert_eq!(bounds.columns[0].ty, decimal);
    assert_eq!(names(&bounds), ["min_key", "max_key"]);
    assert_eq!(
        bounds.rows,
        [vec![text("700000000000"), text("700000000484")]]
    );
    let count = single(
        b.as_mut(),
        "SELECT COUNT_BIG(*) AS row_count FROM [dbo].[PAT_ENC]",
        &[],
    );
    assert_eq!(count.columns[0].ty, SqlType::BigInt);
    assert_eq!(count.rows, [vec![Value::Int(45)]]);
    let expected: Vec<Value> = (10..=18)
        .map(|i| text(&(700_000_000_000u64 + i * 11).to_string()))
        .collect();
    // As literals (today's form) and as numeric parameters (issue 13's).
    let literal = single(
        b.as_mut(),
        "SELECT [PAT_ENC_CSN_ID], [PAT_ID] FROM [dbo].[PAT_ENC] WHERE [PAT_ENC_CSN_ID] > \
         700000000100 AND [PAT_ENC_CSN_ID] <= 700000000200 ORDER BY [PAT_ENC_CSN_ID]",
        &[],
    );
    let keys: Vec<Value> = literal.rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(keys, expected);
    let params = [
        param("@P1", decimal.clone(), text("700000000100")),
        param("@P2", decimal.clone(), text("700000000200")),
    ];
    let bound = single(
        b.as_mut(),
        "SELECT [PAT_ENC_CSN_ID], [PAT_ID] FROM [dbo].[PAT_ENC] WHERE [PAT_ENC_CSN_ID] > @P1 \
         AND [PAT_ENC_CSN_ID] <= @P2 ORDER BY [PAT_ENC_CSN_ID]",
        &params,
    );
    assert_eq!(bound.rows, literal.rows);
}

#[test]
fn every_type_reads_back_in_its_own_type_and_canonical_value() {
    let f = every_type();
    let mut b = connect(&f.db);
    let set = single(
        b.as_mut(),
        "SELECT * FROM [dbo].[ALL_TYPES] ORDER BY [ID]",
        &[],
    );
    for ((name, ty), meta) in EVERY_TYPE_COLUMNS.iter().zip(&set.columns) {
        assert_eq!(meta.name, *name);
        assert_eq!(
            meta.ty,
            types::parse_type(ty, Collation::DEFAULT).unwrap(),
            "{name}"
        );
    }
    let expected = fixtures::every_type_rows();
    assert_eq!(set.rows.len(), expected.len());
    for (row, want) in set.rows.iter().zip(&expected) {
        for ((value, want), (name, _)) in row.iter().zip(want).zip(EVERY_TYPE_COLUMNS) {
            match want {
                Some(want) => assert_eq!(value, want, "{name} of row {:?}", row[0]),
                None => assert!(matches!(value, Value::Bytes(b) if b.len() == 8), "{name}"),
            }
        }
    }
}

#[test]
fn casts_converts_and_variant_properties() {
    let f = every_type();
    let mut b = connect(&f.db);
    let set = single(
        b.as_mut(),
        "SELECT SQL_VARIANT_PROPERTY([C_VARIANT], 'BaseType') AS base, \
         CONVERT(nvarchar(4000), [C_VARIANT], 3) AS v, CAST([C_XML] AS NVARCHAR(MAX)) AS [C_XML], \
         CONVERT(varchar(18), [C_BINARY], 1) AS b, TRY_CONVERT(int, [C_VARCHAR]) AS t \
         FROM [dbo].[ALL_TYPES] WHERE [ID] IN (1, 3) ORDER BY [ID]",
        &[],
    );
    assert_eq!(set.columns[1].ty, nvarchar(4000));
    assert_eq!(set.columns[2].ty, SqlType::NVarChar { length: None });
    assert_eq!(set.columns[3].ty, varchar(18));
    assert_eq!(
        set.rows[0],
        [
            Value::Variant(Box::new(nvarchar(4000)), Box::new(text("float"))),
            text("1.0000000000000001E-1"),
            text("<note lang=\"de\">Grüße 😀</note>"),
            text("0x0102030405060708"),
            Value::Null
        ]
    );
    assert_eq!(set.rows[1][1], text("-42"));
    let set = single(
        b.as_mut(),
        "SELECT N'ü€😀' AS t, CAST('Ñ€é' AS varchar(10)) COLLATE SQL_Latin1_General_CP1_CI_AS AS v, \
         DATABASEPROPERTYEX(DB_NAME(), 'Collation') AS c, DB_NAME() AS d",
        &[],
    );
    assert_eq!(
        set.columns[0].ty,
        nvarchar(4),
        "😀 is two UTF-16 code units"
    );
    assert_eq!(set.columns[1].ty, varchar(10));
    assert_eq!(set.columns[2].ty, SqlType::SqlVariant);
    assert_eq!(
        set.rows,
        [vec![
            text("ü€😀"),
            text("Ñ€é"),
            Value::Variant(Box::new(nvarchar(128)), Box::new(text(Collation::DEFAULT))),
            text("Types")
        ]]
    );
}

#[test]
fn session_settings_are_kept_and_each_statement_is_done() {
    let f = clarity(2);
    let mut b = connect(&f.db);
    let c = run(
        b.as_mut(),
        "SET ANSI_NULLS ON SET QUOTED_IDENTIFIER ON; SET TEXTSIZE 2147483647 \
         SET DEADLOCK_PRIORITY LOW SET LOCK_TIMEOUT 30000 \
         SET TRANSACTION ISOLATION LEVEL SNAPSHOT SELECT @@LOCK_TIMEOUT AS lt",
        &[],
    );
    assert_eq!(c.dones, [None, None, None, None, None, None, Some(1)]);
    assert_eq!(c.sets[0].rows, [vec![Value::Int(30000)]]);
    let set = single(
        b.as_mut(),
        "SELECT transaction_isolation_level, deadlock_priority, lock_timeout FROM \
         sys.dm_exec_sessions WHERE session_id = @@SPID",
        &[],
    );
    assert_eq!(
        set.rows,
        [vec![Value::Int(5), Value::Int(-5), Value::Int(30000)]]
    );
    let c = run(
        b.as_mut(),
        "BEGIN TRAN; SELECT @@TRANCOUNT AS n; IF @@TRANCOUNT > 0 COMMIT",
        &[],
    );
    assert_eq!(c.sets[0].rows, [vec![Value::Int(1)]]);
    assert_eq!(c.dones, [None, Some(1), None]);
    let set = single(b.as_mut(), "SELECT @@TRANCOUNT", &[]);
    assert_eq!(set.rows, [vec![Value::Int(0)]]);
    let set = single(b.as_mut(), SQLSERVER_SNAPSHOT_STATE_SQL, &[]);
    assert_eq!(set.rows, [vec![text("ON"), Value::Int(1)]]);
    // How drivers describe a statement before running it: columns only, parameters unbound.
    let c = run(
        b.as_mut(),
        "SET FMTONLY ON SELECT [PAT_ID], [BIRTH_DATE] FROM [dbo].[PATIENT] WHERE [PAT_ID] > @P1 \
         SET FMTONLY OFF",
        &[],
    );
    assert_eq!(c.dones, [None, Some(0), None]);
    assert_eq!(names(&c.sets[0]), ["PAT_ID", "BIRTH_DATE"]);
    assert!(c.sets[0].rows.is_empty());
}

#[test]
fn tables_in_other_schemas_and_datetime_cursors() {
    use tds_test_server::backend::ColumnDef;
    let f = clarity(2);
    f.db.create_table(
        "sales",
        "ORDERS",
        &[
            ColumnDef::new("ID", "bigint", false),
            ColumnDef::new("CHANGED", "datetime", true),
        ],
        &["ID"],
    )
    .unwrap();
    f.db.insert_rows(
        "sales",
        "ORDERS",
        (1..=5).map(|i| vec![Value::Int(i), text(&format!("2026-11-24 0{i}:00:00.123"))]),
    )
    .unwrap();
    let mut b = connect(&f.db);
    let sizes = single(b.as_mut(), SIZES_SQL, &[]);
    assert!(
        sizes
            .rows
            .contains(&vec![text("sales"), text("ORDERS"), Value::Int(5)])
    );
    let filter = "[CHANGED] > DATEADD(MINUTE, -15, CAST(N'2026-11-24 02:00:00.123' AS \
                  datetime2(7))) AND [CHANGED] <= CAST(N'2026-11-24 04:00:00.123' AS datetime2(7))";
    let set = single(
        b.as_mut(),
        &format!("SELECT [ID], [CHANGED] FROM [sales].[ORDERS] WHERE {filter} ORDER BY [ID]"),
        &[],
    );
    let ids: Vec<&Value> = set.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        ids,
        [&Value::Int(2), &Value::Int(3), &Value::Int(4)],
        "lookback of 15 minutes"
    );
    assert_eq!(set.rows[0][1], text("2026-11-24 02:00:00.123"));
    let count = single(
        b.as_mut(),
        &format!("SELECT COUNT_BIG(*) AS row_count FROM [sales].[ORDERS] WHERE {filter}"),
        &[],
    );
    assert_eq!(count.rows, [vec![Value::Int(3)]]);
}

#[test]
fn snapshot_reads_fail_where_the_database_does_not_allow_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixtures::clarity(&dir.path().join("c.sqlite"), "Clarity", 2)
        .unwrap()
        .row_versioning(false, false);
    let mut b = connect(&db);
    let set = single(b.as_mut(), SQLSERVER_SNAPSHOT_STATE_SQL, &[]);
    assert_eq!(set.rows, [vec![text("OFF"), Value::Int(0)]]);
    run(b.as_mut(), "SET TRANSACTION ISOLATION LEVEL SNAPSHOT", &[]);
    let e = fail(b.as_mut(), "SELECT COUNT_BIG(*) FROM [dbo].[PATIENT]", &[]);
    assert_eq!((e.number, e.class), (3952, 16));
}

#[test]
fn errors_are_sql_servers() {
    let f = clarity(2);
    let mut b = connect(&f.db);
    let e = fail(b.as_mut(), "SELECT [X] FROM [dbo].[NOPE]", &[]);
    assert_eq!(
        (e.number, e.class, e.message.as_str()),
        (208, 16, "Invalid object name 'dbo.NOPE'.")
    );
    let e = fail(b.as_mut(), "SELECT [NOPE] FROM [dbo].[PATIENT]", &[]);
    assert_eq!(
        (e.number, e.message.as_str()),
        (207, "Invalid column name 'NOPE'.")
    );
    let e = fail(
        b.as_mut(),
        "SELECT [PAT_ID] FROM [dbo].[PATIENT] WHERE [PAT_ID] > @P9",
        &[],
    );
    assert_eq!(e.number, 137);
    let e = fail(
        b.as_mut(),
        "SELECT [PAT_ID] FROM [dbo].[PATIENT] ORDER BY [PAT_ID] OFFSET 5 ROWS",
        &[],
    );
    assert_eq!(e.number, 102);
    assert!(e.message.contains("OFFSET"), "{}", e.message);
    let e = fail(b.as_mut(), "SET ANSI_NULLS MAYBE", &[]);
    assert_eq!(e.number, 195);
    let e = f.db.open("Other").err().unwrap();
    assert_eq!((e.number, e.class), (4060, 11));
    assert_eq!(
        e.message,
        "Cannot open database \"Other\" requested by the login. The login failed."
    );
}

#[test]
fn rows_stream_and_stop_at_attention() {
    let f = clarity(50);
    let mut b = connect(&f.db);
    let mut sink = Collect {
        stop_after: Some(3),
        ..Collect::default()
    };
    let result = b.execute(
        "SELECT [PAT_ID] FROM [dbo].[PATIENT] ORDER BY [PAT_ID]",
        &[],
        &mut sink,
    );
    assert_eq!(result, Err(Interrupt::Attention));
    assert_eq!(sink.sets[0].rows.len(), 3);
    assert!(sink.dones.is_empty());
    // The connection is usable afterwards.
    let set = single(b.as_mut(), "SELECT COUNT(*) AS n FROM [dbo].[PATIENT]", &[]);
    assert_eq!(set.rows, [vec![Value::Int(55)]]);
    assert_eq!(set.columns[0].ty, SqlType::Int);
}

/// The statements of a change tracking load of ORDER_PROC, as ehi-sync writes them.
const CT_BOUND: &str = "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version, \
     CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'[dbo].[ORDER_PROC]')) AS min_valid_version";

fn ct_counts(from: i64, to: i64) -> String {
    format!(
        "SELECT [ct].[SYS_CHANGE_OPERATION] AS operation, COUNT_BIG(*) AS row_count \
         FROM CHANGETABLE(CHANGES [dbo].[ORDER_PROC], {from}) AS [ct] \
         WHERE [ct].[SYS_CHANGE_VERSION] <= {to} GROUP BY [ct].[SYS_CHANGE_OPERATION]"
    )
}

/// The one streaming change read (issue 13 item 5): keys from CHANGETABLE, the row joined back,
/// the operation as an INT (1 delete, 0 upsert).
const CT_READ: &str = "SELECT [ct].[ORDER_PROC_ID] AS [ORDER_PROC_ID], [t].[PAT_ID] AS [PAT_ID], \
     [t].[NOTE] AS [NOTE], [t].[RV] AS [RV], CAST(CASE WHEN [t].[ORDER_PROC_ID] IS NULL THEN 1 \
     ELSE 0 END AS INT) AS [_ehi_op] FROM CHANGETABLE(CHANGES [dbo].[ORDER_PROC], @P1) AS [ct] \
     LEFT OUTER JOIN [dbo].[ORDER_PROC] AS [t] ON [t].[ORDER_PROC_ID] = [ct].[ORDER_PROC_ID] \
     WHERE [ct].[SYS_CHANGE_VERSION] <= @P2 ORDER BY [ct].[ORDER_PROC_ID]";

#[test]
fn change_tracking_reports_inserts_updates_and_deletes_after_a_version() {
    let f = clarity(3);
    let mut b = connect(&f.db);
    let bound = CT_BOUND;
    let set = single(b.as_mut(), bound, &[]);
    assert_eq!(set.columns[0].ty, SqlType::BigInt);
    assert_eq!(set.rows, [vec![Value::Int(0), Value::Int(0)]]);
    let tracked = single(b.as_mut(), CHANGE_TRACKING_TABLES, &[]);
    assert_eq!(
        tracked.rows,
        [vec![text("dbo"), text("ORDER_PROC"), Value::Int(0)]]
    );

    let key = |n: u64| vec![text(&(900_000 + n).to_string())];
    assert!(
        f.db.update_row("dbo", "ORDER_PROC", &key(1), &[("NOTE", text("changed ü"))])
            .unwrap()
    );
    assert!(f.db.delete_row("dbo", "ORDER_PROC", &key(2)).unwrap());
    f.db.insert_rows(
        "dbo",
        "ORDER_PROC",
        [vec![
            text("999999"),
            text("Z0000001"),
            Value::Null,
            text("new"),
            text("inserted"),
            Value::Null,
        ]],
    )
    .unwrap();
    let now = f.db.change_tracking_version().unwrap();
    assert_eq!(now, 3);
    let set = single(b.as_mut(), bound, &[]);
    assert_eq!(set.rows, [vec![Value::Int(3), Value::Int(0)]]);

    let counts = single(b.as_mut(), &ct_counts(0, now), &[]);
    assert_eq!(counts.columns[0].ty, SqlType::NChar { length: 1 });
    let mut counts = counts.rows;
    counts.sort_by_key(|r| format!("{:?}", r[0]));
    assert_eq!(
        counts,
        [
            vec![text("D"), Value::Int(1)],
            vec![text("I"), Value::Int(1)],
            vec![text("U"), Value::Int(1)]
        ]
    );
    let versions = [
        param("@P1", SqlType::BigInt, Value::Int(0)),
        param("@P2", SqlType::BigInt, Value::Int(now)),
    ];
    let set = single(b.as_mut(), CT_READ, &versions);
    assert_eq!(set.columns[4].ty, SqlType::Int);
    let decimal = SqlType::Decimal {
        precision: 18,
        scale: 0,
    };
    assert_eq!(set.columns[0].ty, decimal);
    let ops: Vec<(Value, Value, Value)> = set
        .rows
        .iter()
        .map(|r| (r[0].clone(), r[2].clone(), r[4].clone()))
        .collect();
    assert_eq!(
        ops,
        [
            (text("900001"), text("changed ü"), Value::Int(0)),
            (text("900002"), Value::Null, Value::Int(1)),
            (text("999999"), text("inserted"), Value::Int(0)),
        ]
    );
    // After version 1 only the later two changes remain.
    let set = single(b.as_mut(), &ct_counts(1, now), &[]);
    assert_eq!(set.rows.len(), 2);
    // Cleanup past version 2: the minimum valid version moves, older change rows are gone.
    f.db.set_min_valid_version("dbo", "ORDER_PROC", 2).unwrap();
    let set = single(b.as_mut(), bound, &[]);
    assert_eq!(set.rows, [vec![Value::Int(3), Value::Int(2)]]);
    let set = single(b.as_mut(), &ct_counts(0, now), &[]);
    assert_eq!(set.rows.len(), 2, "the update at version 1 was cleaned up");
}

#[test]
fn min_valid_version_is_null_without_view_change_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixtures::clarity(&dir.path().join("c.sqlite"), "Clarity", 2)
        .unwrap()
        .deny_view_change_tracking(true);
    let mut b = connect(&db);
    let set = single(b.as_mut(), CT_BOUND, &[]);
    assert_eq!(set.rows, [vec![Value::Int(0), Value::Null]]);
    let e = fail(
        b.as_mut(),
        "SELECT [ct].[SYS_CHANGE_VERSION] FROM CHANGETABLE(CHANGES [dbo].[PATIENT], 0) AS [ct]",
        &[],
    );
    assert_eq!(
        (e.number, e.message.as_str()),
        (
            22105,
            "Change tracking is not enabled on table 'dbo.PATIENT'."
        )
    );
}

#[test]
fn rowversion_bumps_on_update_and_min_active_rowversion_is_past_it() {
    let f = clarity(2);
    let mut b = connect(&f.db);
    let read = |b: &mut dyn Backend| {
        single(
            b,
            "SELECT [RV] FROM [dbo].[ORDER_PROC] WHERE [ORDER_PROC_ID] = 900000",
            &[],
        )
        .rows[0][0]
            .clone()
    };
    let before = read(b.as_mut());
    f.db.update_row(
        "dbo",
        "ORDER_PROC",
        &[text("900000")],
        &[("NOTE", text("x"))],
    )
    .unwrap();
    let after = read(b.as_mut());
    let (Value::Bytes(before), Value::Bytes(after)) = (before, after) else {
        panic!()
    };
    assert!(after > before, "{before:?} → {after:?}");
    let sql = "SELECT CONVERT(varchar(18), MIN_ACTIVE_ROWVERSION(), 1) AS upper_bound";
    let set = single(b.as_mut(), sql, &[]);
    assert_eq!(set.columns[0].ty, varchar(18));
    let mut next = after.clone();
    let last = u64::from_be_bytes(next.clone().try_into().unwrap()) + 1;
    next = last.to_be_bytes().to_vec();
    assert_eq!(
        set.rows,
        [vec![Value::Text(format!("0x{}", types::hex(&next)))]]
    );
    let sql = format!(
        "SELECT TOP (1000) [ORDER_PROC_ID], [PAT_ID], [NOTE], [RV] FROM [dbo].[ORDER_PROC] WHERE \
         [RV] >= 0x{} AND [RV] < 0x{} ORDER BY [ORDER_PROC_ID]",
        types::hex(&after),
        types::hex(&next)
    );
    let set = single(b.as_mut(), &sql, &[]);
    assert_eq!(set.rows.len(), 1);
    assert_eq!(set.rows[0][0], text("900000"));
}

#[test]
fn key_scans_in_binary_order() {
    let f = clarity(5);
    let mut b = connect(&f.db);
    let sql = "SELECT [PAT_ID] FROM [dbo].[PATIENT] ORDER BY [PAT_ID] COLLATE \
               Latin1_General_100_BIN2";
    let set = single(b.as_mut(), sql, &[]);
    let keys: Vec<&Value> = set.rows.iter().map(|r| &r[0]).collect();
    // Latin1_General_100_BIN2 on varchar: code-page bytes, upper case before lower, Ñ (0xD1) last.
    assert_eq!(
        keys,
        [
            &text("O'Neil"),
            &text("Z0000001"),
            &text("Z0000002"),
            &text("Z0000003"),
            &text("Z0000004"),
            &text("Z0000005"),
            &text("a-c"),
            &text("ab"),
            &text("Ñ1"),
            &text("Ñ2"),
        ]
    );
    let sql = "SELECT CONVERT(nchar(36), [DEVICE_GUID]) AS [DEVICE_GUID] FROM [dbo].[DEVICE] \
               ORDER BY CONVERT(nchar(36), [DEVICE_GUID]) COLLATE Latin1_General_100_BIN2";
    let set = single(b.as_mut(), sql, &[]);
    assert_eq!(set.columns[0].ty, SqlType::NChar { length: 36 });
    let keys = first_texts(&set);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "binary order of the text form");
}

#[test]
fn guid_keys_order_and_compare_as_sql_server_does() {
    let f = clarity(20);
    let mut b = connect(&f.db);
    let set = single(
        b.as_mut(),
        "SELECT [DEVICE_GUID] FROM [dbo].[DEVICE] ORDER BY [DEVICE_GUID]",
        &[],
    );
    let keys = first_texts(&set);
    for pair in keys.windows(2) {
        assert_eq!(
            types::compare_guid(&pair[0], &pair[1]),
            std::cmp::Ordering::Less
        );
    }
    let after = param(
        "@P1",
        SqlType::UniqueIdentifier,
        text(&keys[9].to_lowercase()),
    );
    let set = single(
        b.as_mut(),
        "SELECT [DEVICE_GUID] FROM [dbo].[DEVICE] WHERE [DEVICE_GUID] > @P1 ORDER BY [DEVICE_GUID]",
        &[after],
    );
    assert_eq!(set.rows.len(), 10);
    assert_eq!(set.rows[0][0], text(&keys[10]));
}

#[test]
fn histogram_steps_come_from_the_data() {
    let f = clarity(300);
    let mut b = connect(&f.db);
    let sql = "SELECT h.step_number, h.range_high_key, h.range_rows, h.equal_rows \
               FROM sys.stats AS s CROSS APPLY sys.dm_db_stats_histogram(s.object_id, s.stats_id) AS h \
               WHERE s.object_id = OBJECT_ID(N'[dbo].[PATIENT]') ORDER BY h.step_number";
    let set = single(b.as_mut(), sql, &[]);
    assert_eq!(set.columns[1].ty, SqlType::SqlVariant);
    assert_eq!(set.columns[3].ty, SqlType::Real);
    assert!(
        set.rows.len() > 100 && set.rows.len() <= 200,
        "{}",
        set.rows.len()
    );
    let key = |r: &Vec<Value>| match &r[1] {
        Value::Variant(ty, v) => {
            assert_eq!(**ty, varchar(18));
            v.as_ref().clone()
        }
        other => panic!("{other:?}"),
    };
    let keys = keyset_read(b.as_mut(), 1000);
    assert_eq!(key(&set.rows[0]), text(&keys[0]));
    assert_eq!(key(set.rows.last().unwrap()), text(keys.last().unwrap()));
    let total: f64 = set
        .rows
        .iter()
        .map(|r| match (&r[2], &r[3]) {
            (Value::Float(a), Value::Float(b)) => a + b,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(total, 305.0);
}

/// The per-base-type conversion of a `sql_variant` (styles 3, 126, 23, 2, 1), as ehi-sync
/// writes it for issue 13 item 7.
#[test]
fn sql_variant_converted_by_its_base_type() {
    let f = every_type();
    let mut b = connect(&f.db);
    let v = "[C_VARIANT]";
    let text_of = |e: &str, style: Option<u8>| match style {
        Some(s) => format!("CONVERT(NVARCHAR(MAX), {e}, {s})"),
        None => format!("CAST({e} AS NVARCHAR(MAX))"),
    };
    let branches = [
        ("float", text_of(&format!("CAST({v} AS FLOAT)"), Some(3))),
        ("real", text_of(&format!("CAST({v} AS FLOAT)"), Some(3))),
        (
            "datetime",
            text_of(&format!("CAST({v} AS DATETIME)"), Some(126)),
        ),
        (
            "datetime2",
            text_of(&format!("CAST({v} AS DATETIME2(7))"), Some(126)),
        ),
        (
            "datetimeoffset",
            text_of(&format!("CAST({v} AS DATETIMEOFFSET(7))"), Some(126)),
        ),
        ("date", text_of(&format!("CAST({v} AS DATE)"), Some(23))),
        ("time", text_of(&format!("CAST({v} AS TIME(7))"), None)),
        ("money", text_of(&format!("CAST({v} AS MONEY)"), Some(2))),
        (
            "varbinary",
            text_of(&format!("CAST({v} AS VARBINARY(8000))"), Some(1)),
        ),
    ];
    let mut case = format!("CASE CAST(SQL_VARIANT_PROPERTY({v}, 'BaseType') AS NVARCHAR(128))");
    for (base, e) in branches {
        case.push_str(&format!(" WHEN '{base}' THEN {e}"));
    }
    case.push_str(&format!(" ELSE {} END AS {v}", text_of(v, None)));
    let set = single(
        b.as_mut(),
        &format!("SELECT [ID], {case} FROM [dbo].[ALL_TYPES] ORDER BY [ID]"),
        &[],
    );
    assert_eq!(names(&set), ["ID", "C_VARIANT"]);
    assert_eq!(set.columns[1].ty, SqlType::NVarChar { length: None });
    let values: Vec<&Value> = set.rows.iter().map(|r| &r[1]).collect();
    assert_eq!(
        values,
        [
            &text("1.0000000000000001E-1"),
            &Value::Null,
            &text("-42"),
            &text("2024-02-29T23:59:59.1234567")
        ]
    );
}

/// Keyset terms as ehi-sync binds them: `?` markers that the drivers send as `@P1…`, with
/// CASTs where a parameter type alone would not compare right.
#[test]
fn keyset_terms_with_cast_parameters() {
    let f = every_type();
    let mut b = connect(&f.db);
    let sql = "SELECT [ID] FROM [dbo].[ALL_TYPES] WHERE ([C_DATETIMEOFFSET] = CAST(@P1 AS \
               datetimeoffset(7)) AND [C_BIT] = CAST(@P2 AS BIT)) OR ([C_DATETIME2] > @P3 AND \
               [C_FLOAT] >= @P4 AND [C_DECIMAL] > @P5 AND [C_GUID] = @P6) ORDER BY [ID]";
    let params = [
        param(
            "@P1",
            nvarchar(34),
            text("0001-01-01 00:00:00.0000000 -14:00"),
        ),
        param("@P2", SqlType::Int, Value::Int(0)),
        param(
            "@P3",
            SqlType::DateTime2 { scale: 7 },
            text("2024-02-29 23:59:59.1234566"),
        ),
        param("@P4", SqlType::Float, Value::Float(0.1)),
        param(
            "@P5",
            SqlType::Decimal {
                precision: 38,
                scale: 10,
            },
            text("12345678901234567890123456.0123456788"),
        ),
        param(
            "@P6",
            SqlType::UniqueIdentifier,
            text("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        ),
    ];
    let set = single(b.as_mut(), sql, &params);
    // Row 3 by its offset and bit; row 1 by the datetime2, float, decimal and GUID terms.
    assert_eq!(set.rows, [vec![Value::Int(1)], vec![Value::Int(3)]]);
}

#[test]
fn bench_tables_have_the_benchmark_values_and_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.sqlite");
    let db = fixtures::bench(&path, "ehi_bench", 1000, 20).unwrap();
    let mut b = connect(&db);
    let set = single(
        b.as_mut(),
        "SELECT [fsv_id], [encounter_id], [flo_meas_id], [recorded_at], [value_num], [value_text] \
         FROM [dbo].[flowsheet_value] WHERE [fsv_id] IN (1, 5, 10) ORDER BY [fsv_id]",
        &[],
    );
    assert_eq!(set.columns[3].ty, SqlType::DateTime2 { scale: 6 });
    assert_eq!(
        set.rows,
        [
            vec![
                Value::Int(1),
                Value::Int(40_000_000),
                Value::Int(3920),
                text("2014-01-01 00:00:03.000001"),
                Value::Float(4357.61),
                text("101/61")
            ],
            vec![
                Value::Int(5),
                Value::Int(40_000_000),
                Value::Int(3596),
                text("2014-01-01 00:00:15.000005"),
                Value::Null,
                text("Pt resting comfortably; RR 17, SpO2 95%")
            ],
            vec![
                Value::Int(10),
                Value::Int(40_000_000),
                Value::Int(3191),
                text("2014-01-01 00:00:30.000010"),
                Value::Null,
                text("")
            ],
        ]
    );
    let wide = single(
        b.as_mut(),
        "SELECT * FROM [dbo].[wide_table] WHERE [row_id] = 3",
        &[],
    );
    assert_eq!(wide.columns.len(), 210);
    assert_eq!(
        wide.columns[4].ty,
        SqlType::Decimal {
            precision: 18,
            scale: 4
        }
    );
    assert_eq!(
        wide.rows[0][..9],
        [
            Value::Int(3),
            Value::Int(3),
            Value::Int(3002),
            text("V3-3"),
            text("0.0012"),
            text("2018-01-01 00:03:05.000000"),
            Value::Int(1),
            Value::Float(21.0 / 7.0),
            text("Note 8 for row 3: stable"),
        ]
    );
    drop(b);
    drop(db);
    let again = fixtures::bench(&path, "ehi_bench", 1000, 20).unwrap();
    assert_eq!(again.row_counts().unwrap().len(), 3);
    let other = fixtures::bench(&path, "ehi_bench", 2000, 20).err().unwrap();
    assert!(other.to_string().contains("delete it"), "{other}");
}

#[test]
fn fixtures_by_name_for_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixtures::from_spec("clarity:7", &dir.path().join("a.sqlite"), "Clarity").unwrap();
    let counts = db.row_counts().unwrap();
    assert!(counts.contains(&("PATIENT".to_owned(), 12)), "{counts:?}");
    let db = fixtures::from_spec("bench:100:3", &dir.path().join("b.sqlite"), "ehi_bench").unwrap();
    assert_eq!(
        db.row_counts().unwrap(),
        [
            ("flowsheet_value".to_owned(), 100),
            ("flowsheet_value_1m".to_owned(), 100),
            ("wide_table".to_owned(), 3)
        ]
    );
    let e = fixtures::from_spec("clarity:many", &dir.path().join("c.sqlite"), "x")
        .err()
        .unwrap();
    assert!(e.to_string().contains("is not a row count"), "{e}");
    let e = fixtures::from_spec("epic", &dir.path().join("d.sqlite"), "x")
        .err()
        .unwrap();
    assert!(e.to_string().contains("unknown fixture"), "{e}");
}

#[test]
fn blob_tables_hold_one_value_of_each_size_and_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blobs.sqlite");
    let db = fixtures::from_spec("blobs:2,1,2", &path, "ehi_bench").unwrap();
    let names: Vec<String> = db
        .row_counts()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "blob_bin_1mb",
            "blob_bin_2mb",
            "blob_text_1mb",
            "blob_text_2mb"
        ]
    );
    let mut b = connect(&db);
    let bin = single(
        b.as_mut(),
        "SELECT [id], [value] FROM [dbo].[blob_bin_2mb]",
        &[],
    );
    assert_eq!(bin.columns[1].ty, SqlType::VarBinary { length: None });
    let [Value::Int(1), Value::Bytes(bytes)] = &bin.rows[0][..] else {
        panic!(
            "{:?}",
            bin.rows[0]
                .iter()
                .map(std::mem::discriminant)
                .collect::<Vec<_>>()
        );
    };
    assert_eq!(bytes.len(), 2_000_000);
    assert_eq!(bytes[..3], [0, 1, 2]);
    assert_eq!(bytes[251], 0);
    let txt = single(b.as_mut(), "SELECT [value] FROM [dbo].[blob_text_1mb]", &[]);
    assert_eq!(txt.columns[0].ty, SqlType::NVarChar { length: None });
    let Value::Text(chars) = &txt.rows[0][0] else {
        panic!("not text");
    };
    assert_eq!(chars.len(), 1_000_000);
    assert!(chars.starts_with("ABCDEFGHIJKLMNOPQRSTUVWXYZ abc"));
    drop(b);
    drop(db);
    assert_eq!(
        fixtures::from_spec("blobs:1,2", &path, "ehi_bench")
            .unwrap()
            .row_counts()
            .unwrap()
            .len(),
        4
    );
    let other = fixtures::from_spec("blobs:1", &path, "ehi_bench")
        .err()
        .unwrap();
    assert!(other.to_string().contains("delete it"), "{other}");
    let e = fixtures::from_spec("blobs:1,ten", &dir.path().join("x.sqlite"), "x")
        .err()
        .unwrap();
    assert!(e.to_string().contains("is not a list of sizes"), "{e}");
    let e = fixtures::from_spec("blobs:0", &dir.path().join("y.sqlite"), "x")
        .err()
        .unwrap();
    assert!(e.to_string().contains("from 1 to 2000 MB"), "{e}");
}

/// Issue 13 item 1 as the server shows it: a `varchar` key compared with an `nvarchar` value is
/// compared by the collation's Unicode rules (hyphen ignored), not by the code-page rules its
/// ORDER BY uses, so the row after `a-c` in key order is skipped; a `varchar` value keeps it.
#[test]
fn varchar_keys_compared_with_nvarchar_lose_the_row_after_a_hyphen() {
    let f = clarity(3);
    let mut b = connect(&f.db);
    let order = single(
        b.as_mut(),
        "SELECT [PAT_ID] FROM [dbo].[PATIENT] ORDER BY [PAT_ID]",
        &[],
    );
    let keys: Vec<&Value> = order.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(keys[..2], [&text("a-c"), &text("ab")]);
    let next =
        "SELECT TOP (1) [PAT_ID] FROM [dbo].[PATIENT] WHERE [PAT_ID] > @P1 ORDER BY [PAT_ID]";
    let set = single(b.as_mut(), next, &[param("@P1", varchar(18), text("a-c"))]);
    assert_eq!(set.rows, [vec![text("ab")]]);
    let set = single(b.as_mut(), next, &[param("@P1", nvarchar(18), text("a-c"))]);
    assert_eq!(
        set.rows,
        [vec![text("O'Neil")]],
        "'ab' < N'a-c' by Unicode rules"
    );
    let literal =
        "SELECT TOP (1) [PAT_ID] FROM [dbo].[PATIENT] WHERE [PAT_ID] > N'a-c' ORDER BY [PAT_ID]";
    assert_eq!(
        single(b.as_mut(), literal, &[]).rows,
        [vec![text("O'Neil")]]
    );
    let typed = "SELECT TOP (1) [PAT_ID] FROM [dbo].[PATIENT] WHERE [PAT_ID] > \
                 CAST(@P1 AS varchar(18)) COLLATE SQL_Latin1_General_CP1_CI_AS ORDER BY [PAT_ID]";
    let set = single(
        b.as_mut(),
        typed,
        &[param("@P1", nvarchar(18), text("a-c"))],
    );
    assert_eq!(set.rows, [vec![text("ab")]]);
}

#[test]
fn writes_made_directly_in_sqlite_are_change_tracked_too() {
    let f = clarity(2);
    let mut b = connect(&f.db);
    f.db.execute_sqlite(
        "UPDATE \"ORDER_PROC\" SET \"NOTE\" = 'raw' WHERE \"ORDER_PROC_ID\" = '900003'",
    )
    .unwrap();
    let set = single(b.as_mut(), &ct_counts(0, 10), &[]);
    assert_eq!(set.rows, [vec![text("U"), Value::Int(1)]]);
}

#[test]
fn trailing_spaces_do_not_count_in_comparisons() {
    let f = every_type();
    let mut b = connect(&f.db);
    for sql in [
        "SELECT [ID] FROM [dbo].[ALL_TYPES] WHERE [C_CHAR] = @P1",
        "SELECT [ID] FROM [dbo].[ALL_TYPES] WHERE [C_CHAR] COLLATE Latin1_General_100_BIN2 = @P1",
        "SELECT [ID] FROM [dbo].[ALL_TYPES] WHERE [C_NCHAR] = N'ü€😀'",
    ] {
        let p = [param("@P1", varchar(10), text("Ñ€é"))];
        let set = single(b.as_mut(), sql, &p);
        assert_eq!(set.rows, [vec![Value::Int(1)]], "{sql}");
    }
}

#[test]
fn common_table_expressions() {
    let f = clarity(5);
    let mut b = connect(&f.db);
    let set = single(
        b.as_mut(),
        "WITH enc (pat, n) AS (SELECT [PAT_ID], COUNT_BIG(*) FROM [dbo].[PAT_ENC] GROUP BY [PAT_ID]) \
         SELECT TOP (2) p.[PAT_ID], e.n FROM [dbo].[PATIENT] AS p JOIN enc AS e ON e.pat = p.[PAT_ID] \
         WHERE p.[PAT_ID] > @P1 ORDER BY p.[PAT_ID]",
        &[param("@P1", varchar(18), text("Z0000003"))],
    );
    assert_eq!(set.columns[1].ty, SqlType::BigInt);
    assert_eq!(names(&set), ["PAT_ID", "n"]);
    assert_eq!(
        set.rows,
        [
            vec![text("Z0000004"), Value::Int(3)],
            vec![text("Z0000005"), Value::Int(3)]
        ]
    );
}
