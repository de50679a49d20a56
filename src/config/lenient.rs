//! Lenient values for the config file's serde declaration.
//!
//! The specification's configs carry every value as a string (`"threads": "4"`), so a declared
//! key never fails to deserialize: a [`Field`] keeps what the value read as, or the problem with
//! it, and the validation that settles the settings turns the problem into an error naming the
//! key's full path. A [`Section`] is a nested object; it also keeps the keys its declaration does
//! not have, so unknown keys are warned about from the declaration itself.

use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_json::Value;

use super::kind;
use crate::error::ConfigError;

/// How one kind of value is read from whatever JSON the file holds.
pub(crate) trait Lenient: Sized {
    /// The expected form, for the error.
    fn expected() -> String;
    /// The value, `None` when it counts as absent, or the problem with it.
    fn read(value: &Value) -> Result<Option<Self>, String>;
}

/// A declared key: its value, absent, or what is wrong with it.
#[derive(Debug)]
pub(crate) struct Field<T>(Result<Option<T>, String>);

impl<T> Default for Field<T> {
    fn default() -> Self {
        Field(Ok(None))
    }
}

impl<'de, T: Lenient> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(Field(T::read(&value)))
    }
}

impl<T: Lenient> Field<T> {
    /// The value; an error naming `key` (the full path) when it is wrong.
    pub(crate) fn get(self, key: &str) -> Result<Option<T>, ConfigError> {
        self.expecting(key, &T::expected())
    }

    /// Like `get`, with the expected form said for this key.
    pub(crate) fn expecting(self, key: &str, expected: &str) -> Result<Option<T>, ConfigError> {
        self.0
            .map_err(|problem| ConfigError::invalid(key, problem, expected))
    }
}

impl Field<String> {
    /// The text trimmed, empty text counting as absent (the specification's configs leave
    /// unused keys as "").
    pub(crate) fn text(self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self
            .get(key)?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()))
    }
}

/// A whole number: `4` or `"4"` (`"1_000"` too); empty text is absent.
impl Lenient for u64 {
    fn expected() -> String {
        "a whole number such as 4 or \"4\"".into()
    }

    fn read(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{n} is not a whole number >= 0")),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => {
                let digits: String = s.trim().chars().filter(|c| *c != '_').collect();
                digits
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("\"{s}\" is not a whole number"))
            }
            other => Err(format!("{} is not a number", kind(other))),
        }
    }
}

/// A number of seconds: `2`, `0.5` or `"0.5"`; empty text is absent.
impl Lenient for f64 {
    fn expected() -> String {
        "a number of seconds such as 2 or \"0.5\"".into()
    }

    fn read(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Number(n) => Ok(n.as_f64()),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| format!("\"{s}\" is not a number")),
            other => Err(format!("{} is not a number", kind(other))),
        }
    }
}

/// `true`/`false`, `1`/`0`, or the text `"true"`, `"yes"`, `"on"`, `"1"` and their opposites.
impl Lenient for bool {
    fn expected() -> String {
        "true or false (also \"true\", \"false\", \"yes\", \"no\", \"1\", \"0\")".into()
    }

    fn read(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Some(false)),
            Value::Number(n) if n.as_u64() == Some(1) => Ok(Some(true)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "yes" | "1" | "on" => Ok(Some(true)),
                "false" | "no" | "0" | "off" => Ok(Some(false)),
                _ => Err(format!("\"{s}\" is not a boolean")),
            },
            other => Err(format!("{} is not a boolean", kind(other))),
        }
    }
}

/// Text as written; a number or boolean as its text.
impl Lenient for String {
    fn expected() -> String {
        "a string".into()
    }

    fn read(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            _ => Err("it is a list or an object".into()),
        }
    }
}

/// A list of names; one string is a one-element list, a comma-separated string several (the
/// specification's configs hold lists as strings).
impl Lenient for Vec<String> {
    fn expected() -> String {
        "a list of names such as [\"A\", \"B\"]".into()
    }

    fn read(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                    other => Err(format!("the list holds {}", kind(other))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            other => Err(format!("{} is not a list", kind(other))),
        }
    }
}

/// A struct of [`Field`]s (every one `#[serde(default)]`) that declares one object of the file.
pub(crate) trait Object: DeserializeOwned {
    /// The expected form, for the error when the value is not an object; empty: the declared
    /// keys in braces.
    const EXPECTED: &'static str;
    /// `null` stands for the object with every default; otherwise it is an error.
    const NULL_IS_DEFAULT: bool;
}

/// A declared object and the keys it holds that the declaration does not. Keys starting with
/// `_` are comments (config.example.json documents itself so) and are neither.
#[derive(Debug)]
pub(crate) struct Section<T> {
    pub(crate) keys: T,
    /// In key order.
    pub(crate) unknown: Vec<String>,
}

impl<T: Object> Lenient for Section<T> {
    fn expected() -> String {
        if T::EXPECTED.is_empty() {
            format!("{{{}}}", declared_keys::<T>().join(", "))
        } else {
            T::EXPECTED.into()
        }
    }

    fn read(value: &Value) -> Result<Option<Self>, String> {
        let map = match value {
            Value::Null if T::NULL_IS_DEFAULT => return Ok(None),
            Value::Object(map) => map,
            other => return Err(format!("{} is not an object", kind(other))),
        };
        let known = declared_keys::<T>();
        let unknown = map
            .keys()
            .filter(|k| !k.starts_with('_') && !known.contains(&k.as_str()))
            .cloned()
            .collect();
        // Cannot fail: every declared key is a `Field`, which takes any value.
        let keys = T::deserialize(value).map_err(|e| e.to_string())?;
        Ok(Some(Section { keys, unknown }))
    }
}

impl<T: Object> Section<T> {
    /// Warns about the unknown keys, named by their path under `prefix`, with the known ones.
    pub(crate) fn warn_unknown(&self, prefix: &str, warnings: &mut Vec<String>) {
        if self.unknown.is_empty() {
            return;
        }
        let unknown: Vec<String> = self
            .unknown
            .iter()
            .map(|k| format!("{prefix}.{k}"))
            .collect();
        warnings.push(format!(
            "unknown config keys ignored: {} (known in {prefix}: {})",
            unknown.join(", "),
            declared_keys::<T>().join(", ")
        ));
    }
}

/// The keys a derived `Deserialize` struct declares, as serde names them: the derive passes
/// them to `deserialize_struct`, which this deserializer records and then stops.
pub(crate) fn declared_keys<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(KeyRecorder {
        keys: &mut keys,
        marker: PhantomData,
    });
    keys
}

struct KeyRecorder<'a, 'de> {
    keys: &'a mut &'static [&'static str],
    marker: PhantomData<&'de ()>,
}

impl<'de> Deserializer<'de> for KeyRecorder<'_, 'de> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.keys = fields;
        Err(de::Error::custom("keys recorded"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(default)]
        count: Field<u64>,
        #[serde(default, rename = "on")]
        _on: Field<bool>,
    }

    impl Object for Sample {
        const EXPECTED: &'static str = "{\"count\": 1}";
        const NULL_IS_DEFAULT: bool = false;
    }

    #[test]
    fn declared_keys_come_from_the_derive() {
        assert_eq!(declared_keys::<Sample>(), ["count", "on"]);
    }

    #[test]
    fn sections_keep_unknown_keys_and_skip_comments() {
        let section = Section::<Sample>::read(&json!({"count": "3", "cuont": 1, "_count": "x"}))
            .unwrap()
            .unwrap();
        assert_eq!(section.unknown, ["cuont"]);
        let mut warnings = Vec::new();
        section.warn_unknown("s", &mut warnings);
        assert_eq!(section.keys.count.get("s.count").unwrap(), Some(3));
        assert_eq!(
            warnings,
            ["unknown config keys ignored: s.cuont (known in s: count, on)"]
        );
        assert_eq!(
            Section::<Sample>::read(&Value::Null).unwrap_err(),
            "null is not an object"
        );
    }

    #[test]
    fn a_wrong_value_is_kept_until_its_key_is_read() {
        let section = Section::<Sample>::read(&json!({"count": "many"}))
            .unwrap()
            .unwrap();
        let error = section.keys.count.get("s.count").unwrap_err().to_string();
        assert_eq!(
            error,
            "config key 's.count': \"many\" is not a whole number; expected a whole number \
             such as 4 or \"4\""
        );
    }
}
