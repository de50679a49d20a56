//! A primary key value and the state file's form of it; how a key column's values are compared
//! and bound is in `source::key`.

use serde::{Deserialize, Serialize};

/// The rows of a key range: `lower < key[0] <= upper`, either bound open when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyRange {
    pub(crate) lower_exclusive: Option<i64>,
    pub(crate) upper_inclusive: Option<i64>,
}

impl KeyRange {
    pub(crate) const ALL: KeyRange = KeyRange {
        lower_exclusive: None,
        upper_inclusive: None,
    };
}

/// One key column's value, typed so it can be compared and bound exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredKey", into = "StoredKey")]
pub(crate) enum KeyValue {
    Int(i64),
    /// An exact numeric as the server printed it (`-12.50`), never through a float.
    Decimal(String),
    /// The bits of an `f64`; a `real` key holds the widened `f32`, which narrows back exactly.
    Float(u64),
    Timestamp(Timestamp),
    Date(Date),
    /// Text, and values only the server can order (uniqueidentifier, time, datetimeoffset).
    Text(String),
    Binary(Vec<u8>),
}

/// A date and time of day to the nanosecond, ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp {
    pub(crate) date: Date,
    pub(crate) hour: u16,
    pub(crate) minute: u16,
    pub(crate) second: u16,
    pub(crate) nanos: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date {
    pub(crate) year: i16,
    pub(crate) month: u16,
    pub(crate) day: u16,
}

impl Date {
    /// `2024-01-31`; also FreeTDS's unpadded years (`1-01-01`).
    pub(crate) fn parse(text: &str) -> Option<Date> {
        let mut parts = text.trim().splitn(3, '-');
        let year = parts.next()?.parse::<i16>().ok()?;
        let month = parts.next()?.parse::<u16>().ok()?;
        let day = parts.next()?.parse::<u16>().ok()?;
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(Date { year, month, day })
    }
}

impl Timestamp {
    /// `2024-01-31 23:59:59.1234567` or with `T`; the fraction has up to 9 digits.
    pub(crate) fn parse(text: &str) -> Option<Timestamp> {
        let text = text.trim();
        let (date, time) = text.split_once([' ', 'T']).unwrap_or((text, "00:00:00"));
        let date = Date::parse(date)?;
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let mut parts = clock.splitn(3, ':');
        let hour = parts.next()?.parse::<u16>().ok()?;
        let minute = parts.next()?.parse::<u16>().ok()?;
        let second = parts.next().unwrap_or("0").parse::<u16>().ok()?;
        if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<9}").parse::<u32>().ok()?
        };
        (hour < 24 && minute < 60 && second < 62).then_some(Timestamp {
            date,
            hour,
            minute,
            second,
            nanos,
        })
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}T{:02}:{:02}:{:02}.{:09}",
            self.date, self.hour, self.minute, self.second, self.nanos
        )
    }
}

impl KeyValue {
    /// The value as text: digits, the shortest exact float, ISO 8601, hex for binary.
    pub(crate) fn to_text(&self) -> String {
        match self {
            KeyValue::Int(v) => v.to_string(),
            KeyValue::Decimal(text) | KeyValue::Text(text) => text.clone(),
            KeyValue::Float(bits) => ryu::Buffer::new().format(f64::from_bits(*bits)).to_owned(),
            KeyValue::Timestamp(ts) => ts.to_string(),
            KeyValue::Date(date) => date.to_string(),
            KeyValue::Binary(bytes) => hex::encode(bytes),
        }
    }
}

/// The state file's form of a key value. Integers and text are plain JSON as in earlier
/// versions (whose states still read: `source::key::KeyType::conform` gives them their type), the other
/// types a one-key object naming the type.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredKey {
    Int(i64),
    Text(String),
    Typed(TypedKey),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TypedKey {
    Decimal(String),
    /// The f64 bits in hex: exact, and NaN and infinities too.
    FloatBits(String),
    Timestamp(String),
    Date(String),
    Hex(String),
}

impl From<KeyValue> for StoredKey {
    fn from(value: KeyValue) -> StoredKey {
        match value {
            KeyValue::Int(v) => StoredKey::Int(v),
            KeyValue::Text(text) => StoredKey::Text(text),
            KeyValue::Decimal(text) => StoredKey::Typed(TypedKey::Decimal(text)),
            KeyValue::Float(bits) => StoredKey::Typed(TypedKey::FloatBits(format!("{bits:016x}"))),
            KeyValue::Timestamp(ts) => StoredKey::Typed(TypedKey::Timestamp(ts.to_string())),
            KeyValue::Date(date) => StoredKey::Typed(TypedKey::Date(date.to_string())),
            KeyValue::Binary(bytes) => StoredKey::Typed(TypedKey::Hex(hex::encode(bytes))),
        }
    }
}

impl From<StoredKey> for KeyValue {
    /// A damaged typed value becomes text, which `source::key::KeyType::conform` then refuses.
    fn from(stored: StoredKey) -> KeyValue {
        match stored {
            StoredKey::Int(v) => KeyValue::Int(v),
            StoredKey::Text(text) => KeyValue::Text(text),
            StoredKey::Typed(TypedKey::Decimal(text)) => KeyValue::Decimal(text),
            StoredKey::Typed(TypedKey::FloatBits(hex)) => match u64::from_str_radix(&hex, 16) {
                Ok(bits) => KeyValue::Float(bits),
                Err(_) => KeyValue::Text(hex),
            },
            StoredKey::Typed(TypedKey::Timestamp(text)) => match Timestamp::parse(&text) {
                Some(ts) => KeyValue::Timestamp(ts),
                None => KeyValue::Text(text),
            },
            StoredKey::Typed(TypedKey::Date(text)) => match Date::parse(&text) {
                Some(date) => KeyValue::Date(date),
                None => KeyValue::Text(text),
            },
            StoredKey::Typed(TypedKey::Hex(text)) => match hex::decode(&text) {
                Ok(bytes) => KeyValue::Binary(bytes),
                Err(_) => KeyValue::Text(text),
            },
        }
    }
}
