//! The text self-check at connect: known text read back through the configured driver, with
//! the buffers and decoding table data uses, before any table is read.
//!
//! A process locale, a driver's character set setting or the ODBC text width can turn every
//! non-ASCII patient name into mojibake without a single error. So the server builds known
//! text from bytes (the statement itself is ASCII, the answer does not depend on how the driver
//! sends it): `ü€😀` (Latin-1, the Basic Multilingual Plane and a surrogate pair) and, on SQL
//! Server, a `varchar` in the database's code page. A second column compares the same text
//! written into the statement, which shows whether statement text (table and column names, key
//! bounds) reaches the server intact.

use std::num::NonZeroUsize;

use odbc_api::{Connection, Cursor};

use super::fetch::{BufferPolicy, FetchLayout, views};
use crate::config::FetchLimit;
use crate::error::{ConfigError, Error, Result};
use crate::model::{Cell, Dialect};
use crate::source::Source;
use crate::source::catalog::Column;
use crate::source::types::ValueKind;

/// The text every check reads back.
pub(crate) const PROBE: &str = "ü€😀";

/// The check's statement for `dialect`: `unicode_text` (PROBE built from bytes on the server),
/// `statement_text_intact` (1 when PROBE written in the statement arrived as sent), and on SQL
/// Server `code_page_text` (`Ñé` as `varchar` in the database's default collation) with
/// `code_page_as_unicode` (the same value converted to `nvarchar` on the server).
pub(crate) fn statement(dialect: Dialect) -> String {
    match dialect {
        // nvarchar is UTF-16LE: FC00 ü, AC20 €, 3DD8 00DE 😀 (U+1F600); D100 Ñ, E900 é.
        Dialect::SqlServer => format!(
            "SELECT CAST(0xFC00AC203DD800DE AS NVARCHAR(4)) AS unicode_text, \
             CASE WHEN CAST(N'{PROBE}' AS VARBINARY(8)) = 0xFC00AC203DD800DE THEN 1 ELSE 0 END \
             AS statement_text_intact, \
             CAST(CAST(0xD100E900 AS NVARCHAR(2)) AS VARCHAR(10)) AS code_page_text, \
             CAST(CAST(CAST(0xD100E900 AS NVARCHAR(2)) AS VARCHAR(10)) AS NVARCHAR(10)) \
             AS code_page_as_unicode"
        ),
        Dialect::Postgres => format!(
            "SELECT convert_from(decode('c3bce282acf09f9880', 'hex'), 'UTF8') AS unicode_text, \
             CASE WHEN '{PROBE}' = convert_from(decode('c3bce282acf09f9880', 'hex'), 'UTF8') \
             THEN 1 ELSE 0 END AS statement_text_intact"
        ),
        Dialect::Sqlite => format!(
            "SELECT char(252, 8364, 128512) AS unicode_text, \
             CASE WHEN '{PROBE}' = char(252, 8364, 128512) THEN 1 ELSE 0 END \
             AS statement_text_intact"
        ),
    }
}

/// What the check read, one value per column of [`statement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Readback {
    pub(crate) unicode_text: Option<String>,
    pub(crate) statement_text_intact: Option<i64>,
    pub(crate) code_page_text: Option<String>,
    pub(crate) code_page_as_unicode: Option<String>,
}

/// Runs the check on `connection`; an error names what came back wrong and what to check.
pub(crate) fn run(
    source: &Source,
    connection: &Connection<'_>,
    dialect: Dialect,
    policy: BufferPolicy,
) -> Result<()> {
    let readback = read(source, connection, dialect, policy)?;
    verdict(&readback, policy).map_err(driver_problem)
}

/// A check that fails is the driver's setup to change (driver, locale, `fetch_text`), like a
/// configuration error: retrying will not help.
fn driver_problem(problem: String) -> Error {
    Error::Config(ConfigError::Other(problem))
}

fn read(
    source: &Source,
    connection: &Connection<'_>,
    dialect: Dialect,
    policy: BufferPolicy,
) -> Result<Readback> {
    let fail = |e: odbc_api::Error| source.db_error("reading the text self-check", &e);
    let text = |name: &str| Column {
        name: name.into(),
        source_type: "nvarchar".into(),
        length: Some(10),
        precision: None,
        scale: None,
        nullable: true,
        key_position: None,
        collation: None,
    };
    let mut columns = vec![text("unicode_text"), text("statement_text_intact")];
    columns[1].source_type = "int".into();
    let mut kinds = vec![ValueKind::Text, ValueKind::Integer];
    if dialect == Dialect::SqlServer {
        columns.push(text("code_page_text"));
        columns.push(text("code_page_as_unicode"));
        kinds.extend([ValueKind::Text, ValueKind::Text]);
    }
    // One row, whatever its size.
    let one_row = FetchLimit {
        rows: NonZeroUsize::MIN,
        bytes: 0,
    };
    let layout = FetchLayout::new(&columns, &kinds, one_row, policy);
    let sql = statement(dialect);
    let cursor = connection
        .execute(&source.sql(&sql), (), None)
        .map_err(fail)?
        .ok_or_else(|| driver_problem("the text self-check returned no result set".into()))?;
    let mut block = cursor
        .bind_buffer(layout.allocate().map_err(fail)?)
        .map_err(fail)?;
    let batch = block
        .fetch_with_truncation_check(true)
        .map_err(fail)?
        .ok_or_else(|| driver_problem("the text self-check returned no row".into()))?;
    if let Some(missing) = batch.undelivered() {
        let name = |i: usize| columns.get(i).map(|c| c.name.clone());
        return Err(driver_problem(
            missing.describe("the text self-check", &name),
        ));
    }
    let cells = views(batch);
    let text_at = |i: usize| -> Option<String> {
        match cells.get(i)?.cell(0) {
            Cell::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Cell::WideText(units) => Some(String::from_utf16_lossy(units)),
            _ => None,
        }
    };
    // An integer, fetched binary or (SQLite) as text.
    let int_at = |i: usize| match cells.get(i)?.cell(0) {
        Cell::Int(v) => Some(v),
        _ => text_at(i)?.trim().parse().ok(),
    };
    Ok(Readback {
        unicode_text: text_at(0),
        statement_text_intact: int_at(1),
        code_page_text: text_at(2),
        code_page_as_unicode: text_at(3),
    })
}

/// Judges what came back; the message says what was wrong and what to check.
pub(crate) fn verdict(
    readback: &Readback,
    policy: BufferPolicy,
) -> std::result::Result<(), String> {
    let width = if policy.wide_text { "utf16" } else { "utf8" };
    let settings = format!(
        "Check the process locale (LANG, LC_ALL), the driver's character set setting (FreeTDS: \
         ClientCharset=UTF-8; PostgreSQL: the \"PostgreSQL Unicode\" driver) and fetch_text \
         (now \"{width}\"; \"utf16\" reads through the wide ODBC functions)"
    );
    if readback.unicode_text.as_deref() != Some(PROBE) {
        return Err(format!(
            "the text self-check read {} back where the server sent {}: text through this \
             driver and these settings would be mangled, so no table is read. {settings}",
            code_points(readback.unicode_text.as_deref()),
            code_points(Some(PROBE))
        ));
    }
    if readback.code_page_text != readback.code_page_as_unicode {
        return Err(format!(
            "the text self-check read the varchar {} back where the server holds {}: varchar \
             text in the database's code page would be mangled, so no table is read. {settings}",
            code_points(readback.code_page_text.as_deref()),
            code_points(readback.code_page_as_unicode.as_deref())
        ));
    }
    if readback.statement_text_intact != Some(1) {
        return Err(format!(
            "the text self-check found that statement text does not reach the server intact: \
             non-ASCII characters in a statement arrive changed (Microsoft ODBC Driver 18 on \
             Linux reads the statements of the narrow ODBC functions as Latin-1), so table and \
             column names and key bounds with such characters would be wrong. {settings}"
        ));
    }
    Ok(())
}

/// Text as its code points (`U+00FC U+20AC U+1F600`): unambiguous in any terminal and never a
/// row value (only the check's own text is shown).
fn code_points(text: Option<&str>) -> String {
    match text {
        None => "NULL".to_owned(),
        Some(text) => {
            let points: Vec<String> = text
                .chars()
                .map(|c| format!("U+{:04X}", c as u32))
                .collect();
            format!("'{}'", points.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tsql_test::parse;

    fn policy(wide_text: bool) -> BufferPolicy {
        BufferPolicy {
            max_value_bytes: 1 << 16,
            floats_as_text: false,
            wide_text,
            loose_integers_as_text: false,
        }
    }

    fn intact() -> Readback {
        Readback {
            unicode_text: Some(PROBE.into()),
            statement_text_intact: Some(1),
            code_page_text: Some("Ñé".into()),
            code_page_as_unicode: Some("Ñé".into()),
        }
    }

    #[test]
    fn sqlserver_statement_is_pinned() {
        let sql = statement(Dialect::SqlServer);
        assert_eq!(
            sql,
            "SELECT CAST(0xFC00AC203DD800DE AS NVARCHAR(4)) AS unicode_text, \
             CASE WHEN CAST(N'ü€😀' AS VARBINARY(8)) = 0xFC00AC203DD800DE THEN 1 ELSE 0 END \
             AS statement_text_intact, \
             CAST(CAST(0xD100E900 AS NVARCHAR(2)) AS VARCHAR(10)) AS code_page_text, \
             CAST(CAST(CAST(0xD100E900 AS NVARCHAR(2)) AS VARCHAR(10)) AS NVARCHAR(10)) \
             AS code_page_as_unicode"
        );
        // sqlparser prints T-SQL's binary constants (0x…) as X'…'.
        let rendered = sql
            .replace("0xFC00AC203DD800DE", "X'FC00AC203DD800DE'")
            .replace("0xD100E900", "X'D100E900'");
        assert_eq!(parse(&sql), rendered);
    }

    #[test]
    fn verdicts_name_what_came_back_and_what_to_check() {
        assert_eq!(verdict(&intact(), policy(false)), Ok(()));
        let mut latin1 = intact();
        latin1.unicode_text = Some("Ã¼â‚¬".into());
        let message = verdict(&latin1, policy(false)).unwrap_err();
        assert!(
            message.starts_with(
                "the text self-check read 'U+00C3 U+00BC U+00E2 U+201A U+00AC' back where the \
                 server sent 'U+00FC U+20AC U+1F600'"
            ),
            "{message}"
        );
        assert!(message.contains("LANG, LC_ALL"), "{message}");
        assert!(message.contains("fetch_text (now \"utf8\""), "{message}");
        let mut code_page = intact();
        code_page.code_page_text = Some("??".into());
        let message = verdict(&code_page, policy(true)).unwrap_err();
        assert!(message.contains("varchar 'U+003F U+003F'"), "{message}");
        // A code page without Ñ and é holds '??' on the server too: nothing was mangled.
        let mut cyrillic = intact();
        cyrillic.code_page_text = Some("??".into());
        cyrillic.code_page_as_unicode = Some("??".into());
        assert_eq!(verdict(&cyrillic, policy(false)), Ok(()));
        let mut statement = intact();
        statement.statement_text_intact = Some(0);
        let message = verdict(&statement, policy(false)).unwrap_err();
        assert!(message.contains("statement text does not reach the server intact"));
    }

    fn sqlite_source(dir: &std::path::Path) -> Source {
        let config = serde_json::json!({
            "connection_string": format!(
                "Driver={{SQLite3}};Database={};StepAPI=1",
                dir.join("check.db").display()
            )
        });
        let config = crate::config::Config::from_json(
            &config.to_string(),
            &dir.join("config.json"),
            dir,
            &|_| None,
        )
        .expect("config");
        Source::from_config(&config)
    }

    #[test]
    fn sqlite_text_comes_back_intact_in_both_widths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = sqlite_source(dir.path());
        let connection = source.connect().expect("connect");
        for wide in [false, true] {
            let readback = read(&source, &connection, Dialect::Sqlite, policy(wide)).expect("read");
            assert_eq!(readback.unicode_text.as_deref(), Some(PROBE), "wide {wide}");
            assert_eq!(readback.statement_text_intact, Some(1), "wide {wide}");
            run(&source, &connection, Dialect::Sqlite, policy(wide)).expect("intact");
        }
    }
}
