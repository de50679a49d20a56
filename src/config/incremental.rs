//! The `incremental` config object: how later runs find what changed, globally and per table.
//!
//! Read like the rest of the config file (see [`crate::config`]): values leniently (`"15"` or
//! `15`, `"true"` or `true`), strictly checked, every error naming the full key path
//! (`incremental.tables.dbo.PATIENT.detect_deletes`), unknown keys collected as warnings and keys
//! starting with `_` treated as comments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kind;
use super::lenient::{Field, Lenient, Object, Section};
use crate::error::ConfigError;

/// How deleted rows are found on a table read incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DetectDeletes {
    /// Deletes are not looked for.
    None,
    /// Every run streams the table's whole key list and compares it with the previous one.
    KeyScan,
}

/// The `incremental` config object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IncrementalConfig {
    /// Column names tried in order on every table (case-insensitively), e.g. `_LastUpdatedInstant`.
    pub(crate) cursor_columns: Vec<String>,
    /// Timestamp cursors re-read this many minutes before the saved position (default 15).
    pub(crate) lookback_minutes: u32,
    /// Default `None`.
    pub(crate) detect_deletes: DetectDeletes,
    /// Tables with neither change tracking nor a cursor: reload whole each run (true, default) or
    /// skip after the first load (false).
    pub(crate) full_reload: bool,
    /// Append `_ehi_op` and `_ehi_synced_at` to every row of every file (default true).
    pub(crate) change_columns: bool,
    /// Per-table overrides, keyed by `schema.table`.
    pub(crate) tables: Vec<TableOverride>,
}

/// One entry of `incremental.tables`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableOverride {
    /// The key as written in the config: `"dbo.PATIENT"`.
    pub(crate) table: String,
    pub(crate) cursor_column: Option<String>,
    pub(crate) lookback_minutes: Option<u32>,
    pub(crate) detect_deletes: Option<DetectDeletes>,
    pub(crate) full_reload: Option<bool>,
}

/// The settings that apply to one table, overrides resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableIncremental {
    /// The table's own `cursor_column`: it must exist (an error otherwise), where the global
    /// list is only tried.
    pub(crate) cursor_column: Option<String>,
    /// The override's `cursor_column` alone when set, else the global list.
    pub(crate) cursor_columns: Vec<String>,
    pub(crate) lookback_minutes: u32,
    pub(crate) detect_deletes: DetectDeletes,
    pub(crate) full_reload: bool,
}

/// The default `lookback_minutes`.
pub(crate) const DEFAULT_LOOKBACK_MINUTES: u32 = 15;
/// The largest `lookback_minutes`: a week.
pub(crate) const MAX_LOOKBACK_MINUTES: u32 = 7 * 24 * 60;

impl Default for IncrementalConfig {
    fn default() -> Self {
        IncrementalConfig {
            cursor_columns: Vec::new(),
            lookback_minutes: DEFAULT_LOOKBACK_MINUTES,
            detect_deletes: DetectDeletes::None,
            full_reload: true,
            change_columns: true,
            tables: Vec::new(),
        }
    }
}

impl IncrementalConfig {
    /// The settings of `schema.name`: its override (matched case-insensitively, like SQL
    /// Server's default collation) over the global values.
    pub(crate) fn for_table(&self, schema: &str, name: &str) -> TableIncremental {
        let wanted = fold(&format!("{schema}.{name}"));
        let found = self.tables.iter().find(|o| fold(&o.table) == wanted);
        let cursor_column = found.and_then(|o| o.cursor_column.clone());
        TableIncremental {
            cursor_columns: match &cursor_column {
                Some(column) => vec![column.clone()],
                None => self.cursor_columns.clone(),
            },
            cursor_column,
            lookback_minutes: found
                .and_then(|o| o.lookback_minutes)
                .unwrap_or(self.lookback_minutes),
            detect_deletes: found
                .and_then(|o| o.detect_deletes)
                .unwrap_or(self.detect_deletes),
            full_reload: found
                .and_then(|o| o.full_reload)
                .unwrap_or(self.full_reload),
        }
    }

    /// Override keys that name no table of `tables` (schema, name pairs) — for a plan warning.
    /// In config order, as written.
    pub(crate) fn unmatched_overrides(&self, tables: &[(String, String)]) -> Vec<String> {
        let present: Vec<String> = tables
            .iter()
            .map(|(schema, name)| fold(&format!("{schema}.{name}")))
            .collect();
        self.tables
            .iter()
            .filter(|o| !present.contains(&fold(&o.table)))
            .map(|o| o.table.clone())
            .collect()
    }
}

/// Case folding for `schema.table` comparisons.
fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The `incremental` object as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawIncremental {
    cursor_columns: Field<Vec<String>>,
    lookback_minutes: Field<u64>,
    detect_deletes: Field<String>,
    full_reload: Field<bool>,
    change_columns: Field<bool>,
    tables: Field<RawTables>,
}

impl Object for RawIncremental {
    const EXPECTED: &'static str = "{\"cursor_columns\": [\"_LastUpdatedInstant\", ...], \
        \"lookback_minutes\": 15, \"detect_deletes\": \"none\", \"full_reload\": true, \
        \"change_columns\": true, \"tables\": {...}}";
    const NULL_IS_DEFAULT: bool = true;
}

/// One entry of `incremental.tables` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTableOverride {
    cursor_column: Field<String>,
    lookback_minutes: Field<u64>,
    detect_deletes: Field<String>,
    full_reload: Field<bool>,
}

impl Object for RawTableOverride {
    const EXPECTED: &'static str = "";
    const NULL_IS_DEFAULT: bool = false;
}

/// `incremental.tables`: overrides keyed by `schema.table`, in key order.
#[derive(Debug)]
struct RawTables(BTreeMap<String, Field<Section<RawTableOverride>>>);

impl Lenient for RawTables {
    fn expected() -> String {
        "{\"schema.table\": {\"cursor_column\": \"UPDATE_DATE\", ...}, ...}".into()
    }

    fn read(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Object(_) => BTreeMap::deserialize(value)
                .map(|tables| Some(RawTables(tables)))
                .map_err(|e| e.to_string()),
            other => Err(format!("{} is not an object", kind(other))),
        }
    }
}

/// Settles the top-level `incremental` object (`None`: every default).
pub(super) fn settle(
    raw: Option<Section<RawIncremental>>,
    warnings: &mut Vec<String>,
) -> Result<IncrementalConfig, ConfigError> {
    let mut config = IncrementalConfig::default();
    let Some(section) = raw else {
        return Ok(config);
    };
    const PREFIX: &str = "incremental";
    section.warn_unknown(PREFIX, warnings);
    let raw = section.keys;
    if let Some(columns) = raw.cursor_columns.expecting(
        "incremental.cursor_columns",
        "a list of column names such as [\"_LastUpdatedInstant\", \"UPDATE_DATE\"]",
    )? {
        config.cursor_columns = columns;
    }
    if let Some(minutes) = lookback(raw.lookback_minutes, PREFIX)? {
        config.lookback_minutes = minutes;
    }
    if let Some(detect) = detect_deletes(raw.detect_deletes, PREFIX)? {
        config.detect_deletes = detect;
    }
    if let Some(full) = raw.full_reload.get("incremental.full_reload")? {
        config.full_reload = full;
    }
    if let Some(change) = raw.change_columns.get("incremental.change_columns")? {
        config.change_columns = change;
    }
    if let Some(tables) = raw.tables.get("incremental.tables")? {
        config.tables = table_overrides(tables, warnings)?;
    }
    Ok(config)
}

fn table_overrides(
    tables: RawTables,
    warnings: &mut Vec<String>,
) -> Result<Vec<TableOverride>, ConfigError> {
    // Folded name -> the key first seen, to reject keys that differ only in case.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut overrides = Vec::new();
    for (table, settings) in tables.0.into_iter().filter(|(k, _)| !k.starts_with('_')) {
        let prefix = format!("incremental.tables.{table}");
        let valid = table
            .split_once('.')
            .is_some_and(|(schema, name)| !schema.trim().is_empty() && !name.trim().is_empty());
        if !valid {
            return Err(ConfigError::invalid(
                prefix,
                "the table name is not schema.table",
                "a \"schema.table\" name such as \"dbo.PATIENT\"",
            ));
        }
        if let Some(first) = seen.insert(fold(&table), table.clone()) {
            return Err(ConfigError::invalid(
                prefix,
                format!("names the same table as '{first}' (names are compared ignoring case)"),
                "one entry per table",
            ));
        }
        let Some(section) = settings.get(&prefix)? else {
            continue;
        };
        section.warn_unknown(&prefix, warnings);
        let raw = section.keys;
        overrides.push(TableOverride {
            cursor_column: raw.cursor_column.text(&format!("{prefix}.cursor_column"))?,
            lookback_minutes: lookback(raw.lookback_minutes, &prefix)?,
            detect_deletes: detect_deletes(raw.detect_deletes, &prefix)?,
            full_reload: raw.full_reload.get(&format!("{prefix}.full_reload"))?,
            table,
        });
    }
    Ok(overrides)
}

fn lookback(raw: Field<u64>, prefix: &str) -> Result<Option<u32>, ConfigError> {
    let key = format!("{prefix}.lookback_minutes");
    let Some(minutes) = raw.get(&key)? else {
        return Ok(None);
    };
    u32::try_from(minutes)
        .ok()
        .filter(|m| *m <= MAX_LOOKBACK_MINUTES)
        .map(Some)
        .ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!("{minutes} is out of range"),
                format!(
                    "minutes between 0 and {MAX_LOOKBACK_MINUTES} (a week; default \
                     {DEFAULT_LOOKBACK_MINUTES})"
                ),
            )
        })
}

fn detect_deletes(raw: Field<String>, prefix: &str) -> Result<Option<DetectDeletes>, ConfigError> {
    let key = format!("{prefix}.detect_deletes");
    let Some(value) = raw.text(&key)? else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "none" => Ok(Some(DetectDeletes::None)),
        "key_scan" => Ok(Some(DetectDeletes::KeyScan)),
        _ => Err(ConfigError::invalid(
            key,
            format!("unknown value '{value}'"),
            "\"none\" (default) or \"key_scan\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Settles `value` as the file's `incremental` value (`None`: the key left out).
    fn read_incremental(
        value: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<IncrementalConfig, ConfigError> {
        let raw = match value {
            None => Field::default(),
            Some(value) => Field::<Section<RawIncremental>>::deserialize(value).unwrap(),
        };
        settle(raw.get("incremental")?, warnings)
    }

    fn read(value: Value) -> Result<(IncrementalConfig, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let config = read_incremental(Some(&value), &mut warnings)?;
        Ok((config, warnings))
    }

    fn error(value: Value) -> String {
        read(value).unwrap_err().to_string()
    }

    fn pairs(tables: &[(&str, &str)]) -> Vec<(String, String)> {
        tables
            .iter()
            .map(|(s, t)| (s.to_string(), t.to_string()))
            .collect()
    }

    const FULL: &str = r#"{
        "cursor_columns": ["_LastUpdatedInstant", "UPDATE_DATE", "updated_at"],
        "lookback_minutes": 15,
        "detect_deletes": "none",
        "full_reload": true,
        "change_columns": true,
        "tables": {
            "dbo.PATIENT": {"cursor_column": "UPDATE_DATE", "detect_deletes": "key_scan"},
            "dbo.AUDIT_LOG": {"full_reload": false}
        }
    }"#;

    #[test]
    fn missing_or_null_is_every_default() {
        let mut warnings = Vec::new();
        let config = read_incremental(None, &mut warnings).unwrap();
        assert_eq!(config, IncrementalConfig::default());
        assert_eq!(
            read_incremental(Some(&Value::Null), &mut warnings).unwrap(),
            IncrementalConfig::default()
        );
        assert!(warnings.is_empty());
        let (config, warnings) = read(json!({})).unwrap();
        assert_eq!(config, IncrementalConfig::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn defaults() {
        let config = IncrementalConfig::default();
        assert!(config.cursor_columns.is_empty());
        assert_eq!(config.lookback_minutes, 15);
        assert_eq!(config.detect_deletes, DetectDeletes::None);
        assert!(config.full_reload);
        assert!(config.change_columns);
        assert!(config.tables.is_empty());
        assert_eq!(
            config.for_table("dbo", "PATIENT"),
            TableIncremental {
                cursor_columns: Vec::new(),
                cursor_column: None,
                lookback_minutes: 15,
                detect_deletes: DetectDeletes::None,
                full_reload: true,
            }
        );
    }

    #[test]
    fn full_example_parses() {
        let (config, warnings) = read(serde_json::from_str(FULL).unwrap()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config,
            IncrementalConfig {
                cursor_columns: vec![
                    "_LastUpdatedInstant".into(),
                    "UPDATE_DATE".into(),
                    "updated_at".into()
                ],
                lookback_minutes: 15,
                detect_deletes: DetectDeletes::None,
                full_reload: true,
                change_columns: true,
                tables: vec![
                    TableOverride {
                        table: "dbo.AUDIT_LOG".into(),
                        cursor_column: None,
                        lookback_minutes: None,
                        detect_deletes: None,
                        full_reload: Some(false),
                    },
                    TableOverride {
                        table: "dbo.PATIENT".into(),
                        cursor_column: Some("UPDATE_DATE".into()),
                        lookback_minutes: None,
                        detect_deletes: Some(DetectDeletes::KeyScan),
                        full_reload: None,
                    },
                ],
            }
        );
    }

    #[test]
    fn values_are_read_leniently() {
        let (config, warnings) = read(json!({
            "cursor_columns": "_LastUpdatedInstant",
            "lookback_minutes": "30",
            "detect_deletes": "KEY_SCAN",
            "full_reload": "false",
            "change_columns": 0,
            "tables": {"dbo.X": {"lookback_minutes": "0", "full_reload": "yes",
                                 "detect_deletes": "None", "cursor_column": ""}}
        }))
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.cursor_columns, ["_LastUpdatedInstant"]);
        assert_eq!(config.lookback_minutes, 30);
        assert_eq!(config.detect_deletes, DetectDeletes::KeyScan);
        assert!(!config.full_reload);
        assert!(!config.change_columns);
        let x = &config.tables[0];
        assert_eq!(x.lookback_minutes, Some(0));
        assert_eq!(x.full_reload, Some(true));
        assert_eq!(x.detect_deletes, Some(DetectDeletes::None));
        assert_eq!(x.cursor_column, None, "an empty string is absent");
        let (config, _) =
            read(json!({"cursor_columns": "A, B", "lookback_minutes": 10080})).unwrap();
        assert_eq!(config.cursor_columns, ["A", "B"]);
        assert_eq!(config.lookback_minutes, MAX_LOOKBACK_MINUTES);
        let (config, _) = read(json!({"cursor_columns": []})).unwrap();
        assert!(config.cursor_columns.is_empty());
    }

    #[test]
    fn overrides_resolve_case_insensitively() {
        let (config, _) = read(serde_json::from_str(FULL).unwrap()).unwrap();
        let patient = config.for_table("DBO", "patient");
        assert_eq!(
            patient,
            TableIncremental {
                cursor_columns: vec!["UPDATE_DATE".into()],
                cursor_column: Some("UPDATE_DATE".into()),
                lookback_minutes: 15,
                detect_deletes: DetectDeletes::KeyScan,
                full_reload: true,
            },
            "cursor_column replaces the list; the rest comes from the global values"
        );
        let audit = config.for_table("dbo", "Audit_Log");
        assert_eq!(audit.cursor_columns, config.cursor_columns);
        assert!(!audit.full_reload);
        assert_eq!(audit.detect_deletes, DetectDeletes::None);
        let other = config.for_table("dbo", "PAT_ENC");
        assert_eq!(other.cursor_columns, config.cursor_columns);
        assert!(other.full_reload);
        assert_eq!(other.detect_deletes, DetectDeletes::None);
        assert_eq!(
            config.for_table("lab", "PATIENT").detect_deletes,
            DetectDeletes::None,
            "the schema is part of the match"
        );

        let (config, _) = read(json!({
            "lookback_minutes": 5, "detect_deletes": "key_scan", "full_reload": false,
            "tables": {"Lab.Result": {"lookback_minutes": 60, "detect_deletes": "none",
                                      "full_reload": true}}
        }))
        .unwrap();
        let result = config.for_table("lab", "RESULT");
        assert_eq!(result.lookback_minutes, 60);
        assert_eq!(result.detect_deletes, DetectDeletes::None);
        assert!(result.full_reload);
        assert!(result.cursor_columns.is_empty());
        let other = config.for_table("lab", "ORDER");
        assert_eq!(other.lookback_minutes, 5);
        assert_eq!(other.detect_deletes, DetectDeletes::KeyScan);
        assert!(!other.full_reload);
    }

    #[test]
    fn unmatched_overrides_are_listed_as_written() {
        let (config, _) = read(serde_json::from_str(FULL).unwrap()).unwrap();
        let tables = pairs(&[("DBO", "patient"), ("dbo", "PAT_ENC")]);
        assert_eq!(config.unmatched_overrides(&tables), ["dbo.AUDIT_LOG"]);
        let all = pairs(&[("dbo", "PATIENT"), ("dbo", "audit_log")]);
        assert!(config.unmatched_overrides(&all).is_empty());
        assert_eq!(
            config.unmatched_overrides(&[]),
            ["dbo.AUDIT_LOG", "dbo.PATIENT"]
        );
        assert!(
            IncrementalConfig::default()
                .unmatched_overrides(&tables)
                .is_empty()
        );
    }

    #[test]
    fn unknown_keys_are_warned_with_their_path_and_comments_are_not() {
        let (config, warnings) = read(json!({
            "_about": "a comment",
            "lookback_minute": 5,
            "tables": {
                "_about": "a comment",
                "dbo.PATIENT": {"cursr_column": "UPDATE_DATE", "_cursor_column": "a comment",
                                "change_columns": false}
            }
        }))
        .unwrap();
        assert_eq!(config.lookback_minutes, 15);
        assert_eq!(config.tables.len(), 1, "comments are not tables");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("incremental.lookback_minute"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains(
                "incremental.tables.dbo.PATIENT.change_columns, \
                 incremental.tables.dbo.PATIENT.cursr_column"
            ),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("cursor_column"), "{warnings:?}");
    }

    /// Every error names the full key path, the problem and the expected form.
    #[test]
    fn errors_name_the_key_path() {
        let cases: &[(Value, &str, &str)] = &[
            (json!("yes"), "'incremental'", "is not an object"),
            (
                json!({"cursor_columns": 3}),
                "'incremental.cursor_columns'",
                "a number is not a list",
            ),
            (
                json!({"cursor_columns": ["A", ""]}),
                "'incremental.cursor_columns'",
                "the list holds an empty string",
            ),
            (
                json!({"cursor_columns": ["A", 1]}),
                "'incremental.cursor_columns'",
                "the list holds a number",
            ),
            (
                json!({"lookback_minutes": 10081}),
                "'incremental.lookback_minutes'",
                "10081 is out of range",
            ),
            (
                json!({"lookback_minutes": "soon"}),
                "'incremental.lookback_minutes'",
                "\"soon\" is not a whole number",
            ),
            (
                json!({"lookback_minutes": -1}),
                "'incremental.lookback_minutes'",
                "-1 is not a whole number",
            ),
            (
                json!({"detect_deletes": "scan"}),
                "'incremental.detect_deletes'",
                "unknown value 'scan'",
            ),
            (
                json!({"detect_deletes": ["none"]}),
                "'incremental.detect_deletes'",
                "it is a list or an object",
            ),
            (
                json!({"full_reload": "sometimes"}),
                "'incremental.full_reload'",
                "\"sometimes\" is not a boolean",
            ),
            (
                json!({"change_columns": []}),
                "'incremental.change_columns'",
                "a list is not a boolean",
            ),
            (
                json!({"tables": ["dbo.PATIENT"]}),
                "'incremental.tables'",
                "a list is not an object",
            ),
            (
                json!({"tables": {"PATIENT": {}}}),
                "'incremental.tables.PATIENT'",
                "not schema.table",
            ),
            (
                json!({"tables": {"dbo.": {}}}),
                "'incremental.tables.dbo.'",
                "not schema.table",
            ),
            (
                json!({"tables": {".PATIENT": {}}}),
                "'incremental.tables..PATIENT'",
                "not schema.table",
            ),
            (
                json!({"tables": {"dbo.PATIENT": {}, "DBO.patient": {}}}),
                "'incremental.tables.dbo.PATIENT'",
                "names the same table as 'DBO.patient'",
            ),
            (
                json!({"tables": {"dbo.PATIENT": "UPDATE_DATE"}}),
                "'incremental.tables.dbo.PATIENT'",
                "a string is not an object",
            ),
            (
                json!({"tables": {"dbo.PATIENT": {"cursor_column": ["A"]}}}),
                "'incremental.tables.dbo.PATIENT.cursor_column'",
                "it is a list or an object",
            ),
            (
                json!({"tables": {"dbo.PATIENT": {"lookback_minutes": 99999}}}),
                "'incremental.tables.dbo.PATIENT.lookback_minutes'",
                "99999 is out of range",
            ),
            (
                json!({"tables": {"dbo.PATIENT": {"lookback_minutes": 1.5}}}),
                "'incremental.tables.dbo.PATIENT.lookback_minutes'",
                "1.5 is not a whole number",
            ),
            (
                json!({"tables": {"dbo.PATIENT": {"detect_deletes": "all"}}}),
                "'incremental.tables.dbo.PATIENT.detect_deletes'",
                "unknown value 'all'",
            ),
            (
                json!({"tables": {"dbo.PATIENT": {"full_reload": "maybe"}}}),
                "'incremental.tables.dbo.PATIENT.full_reload'",
                "\"maybe\" is not a boolean",
            ),
        ];
        for (value, key, problem) in cases {
            let text = error(value.clone());
            assert!(text.starts_with(&format!("config key {key}: ")), "{text}");
            assert!(text.contains(problem), "{text}");
            assert!(text.contains("; expected "), "{text}");
        }
        let text = error(json!({"detect_deletes": "scan"}));
        assert!(
            text.contains("\"none\" (default) or \"key_scan\""),
            "{text}"
        );
        let text = error(json!({"lookback_minutes": 20000}));
        assert!(text.contains("between 0 and 10080"), "{text}");
        let text = error(json!({"tables": {"PATIENT": {}}}));
        assert!(text.contains("\"dbo.PATIENT\""), "{text}");
    }

    #[test]
    fn detect_deletes_serializes_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&DetectDeletes::KeyScan).unwrap(),
            "\"key_scan\""
        );
        assert_eq!(
            serde_json::from_str::<DetectDeletes>("\"none\"").unwrap(),
            DetectDeletes::None
        );
    }
}
