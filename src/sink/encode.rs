//! Row encoding to the output contract: CSV (RFC 4180) or NDJSON; for Parquet, the typed cell
//! stream its writer reads (`super::parquet::cells`).
//!
//! CSV is written by hand rather than with the `csv` crate because the contract needs NULL
//! (empty, unquoted) and the empty string (`""`) to differ, which `csv::Writer` cannot express.
//! Workers encode their own batches, so this runs in parallel; it is the hot path.

use base64::Engine as _;

use super::parquet::{cells, values};
use crate::model::{Cell, Format, OP_COLUMN, ParquetType, SYNCED_AT_COLUMN};
use crate::source::types::ValueKind;

/// A value that cannot be written faithfully. Names the column, never the value (it is PHI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("column '{column}' holds text that is not valid {encoding}; no value was written")]
    InvalidText {
        column: String,
        encoding: &'static str,
    },
    #[error(
        "column '{column}' holds a value that is not a valid {parquet_type} (its type in the \
         Parquet files); no value was written. The formats \"csv\" and \"ndjson\" write it \
         as the source's text"
    )]
    NotParquet {
        column: String,
        parquet_type: String,
    },
}

/// Encodes rows of one table. `begin_row`, one `cell` per column in order, `end_row`.
pub(crate) struct RowEncoder {
    format: Format,
    kinds: Vec<ValueKind>,
    names: Vec<String>,
    /// NDJSON `"name":` prefixes, escaped once.
    json_keys: Vec<Vec<u8>>,
    scratch: String,
    /// `_ehi_op` and `_ehi_synced_at` of an upsert row and of a delete row, encoded once;
    /// empty when change columns are off.
    upsert_suffix: Vec<u8>,
    delete_suffix: Vec<u8>,
    /// Columns holding single-precision floats (`real`), by index.
    single_precision: Vec<bool>,
    /// The Parquet type of each column (`Format::Parquet` only).
    parquet_types: Vec<ParquetType>,
}

/// What a row does to the table a loader keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowOp {
    Upsert,
    Delete,
}

impl RowEncoder {
    pub(crate) fn new(format: Format, columns: Vec<(String, ValueKind)>) -> RowEncoder {
        let json_keys = columns
            .iter()
            .map(|(name, _)| {
                let mut key = Vec::new();
                write_json_string(&mut key, name);
                key.push(b':');
                key
            })
            .collect();
        let (names, kinds) = columns.into_iter().unzip();
        RowEncoder {
            format,
            kinds,
            names,
            json_keys,
            scratch: String::new(),
            upsert_suffix: Vec::new(),
            delete_suffix: Vec::new(),
            single_precision: Vec::new(),
            parquet_types: Vec::new(),
        }
    }

    /// The type each column has in the Parquet files: the cell stream carries it typed.
    pub(crate) fn with_parquet_types(mut self, types: Vec<ParquetType>) -> RowEncoder {
        self.parquet_types = types;
        self
    }

    /// Marks the columns whose floats are single precision (`real`, `float4`), so they are
    /// written as the shortest `f32` (`0.1`), not as the widened double (`0.10000000149011612`).
    pub(crate) fn with_single_precision(mut self, columns: Vec<bool>) -> RowEncoder {
        self.single_precision = columns;
        self
    }

    /// Appends `_ehi_op` and `_ehi_synced_at` (the run's start, `synced_at`) to every row.
    pub(crate) fn with_change_columns(mut self, synced_at: &str) -> RowEncoder {
        let suffix = |op: &str| {
            let mut out = Vec::new();
            for (name, value) in [(OP_COLUMN, op), (SYNCED_AT_COLUMN, synced_at)] {
                match self.format {
                    Format::Csv => {
                        out.push(b',');
                        write_csv_text(&mut out, value.as_bytes());
                    }
                    Format::Ndjson => {
                        out.push(b',');
                        write_json_string(&mut out, name);
                        out.push(b':');
                        write_json_string(&mut out, value);
                    }
                    Format::Parquet => cells::put_bytes(&mut out, value.as_bytes()),
                }
            }
            out
        };
        self.upsert_suffix = suffix("upsert");
        self.delete_suffix = suffix("delete");
        self
    }

    pub(crate) fn kind(&self, index: usize) -> ValueKind {
        self.kinds[index]
    }

    /// Columns each row has before the change columns.
    pub(crate) fn width(&self) -> usize {
        self.names.len()
    }

    /// The CSV header line; NDJSON has none.
    pub(crate) fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.format == Format::Csv {
            for (i, name) in self.names.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_csv_text(&mut out, name.as_bytes());
            }
            if !self.upsert_suffix.is_empty() {
                for name in [OP_COLUMN, SYNCED_AT_COLUMN] {
                    out.push(b',');
                    write_csv_text(&mut out, name.as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    pub(crate) fn begin_row(&self, out: &mut Vec<u8>) {
        if self.format == Format::Ndjson {
            out.push(b'{');
        }
    }

    pub(crate) fn end_row(&self, out: &mut Vec<u8>, op: RowOp) {
        out.extend_from_slice(match op {
            RowOp::Upsert => &self.upsert_suffix,
            RowOp::Delete => &self.delete_suffix,
        });
        match self.format {
            Format::Csv => out.extend_from_slice(b"\r\n"),
            Format::Ndjson => out.extend_from_slice(b"}\n"),
            Format::Parquet => {}
        }
    }

    /// Writes the value of column `index`.
    pub(crate) fn cell(
        &mut self,
        out: &mut Vec<u8>,
        index: usize,
        cell: Cell<'_>,
    ) -> Result<(), EncodeError> {
        if self.format == Format::Parquet {
            let mut scratch = std::mem::take(&mut self.scratch);
            let written = self.parquet_cell(out, index, cell, &mut scratch);
            self.scratch = scratch;
            return written;
        }
        let kind = self.kinds[index];
        if index > 0 {
            out.push(b',');
        }
        if self.format == Format::Ndjson {
            out.extend_from_slice(&self.json_keys[index]);
        }
        // The text and whether it holds a byte the format must quote or escape.
        let text: (&[u8], bool) = match cell {
            Cell::Null => {
                if self.format == Format::Ndjson {
                    out.extend_from_slice(b"null");
                }
                return Ok(());
            }
            Cell::Int(v) => {
                out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                return Ok(());
            }
            Cell::Float(v) => {
                self.float(out, v, self.single_precision.get(index) == Some(&true));
                return Ok(());
            }
            Cell::Bytes(bytes) => {
                self.bytes(out, bytes);
                return Ok(());
            }
            Cell::Text(bytes) => {
                let scan = Scan::of(bytes, self.format);
                // ASCII is valid UTF-8: only text with other bytes needs the full check.
                if scan.non_ascii && std::str::from_utf8(bytes).is_err() {
                    return Err(self.invalid_text(index, "UTF-8"));
                }
                (bytes, scan.special)
            }
            Cell::WideText(units) => {
                let mut scratch = std::mem::take(&mut self.scratch);
                let decoded = self.decode_wide(index, units, &mut scratch);
                if decoded.is_ok() {
                    let special = Scan::of(scratch.as_bytes(), self.format).special;
                    self.text(out, kind, scratch.as_bytes(), special);
                }
                self.scratch = scratch;
                return decoded;
            }
        };
        self.text(out, kind, text.0, text.1);
        Ok(())
    }

    /// Writes the value of column `index` typed as its Parquet column holds it: text parsed into
    /// a decimal, date or timestamp here, in the worker, so the writer only copies.
    fn parquet_cell(
        &self,
        out: &mut Vec<u8>,
        index: usize,
        cell: Cell<'_>,
        scratch: &mut String,
    ) -> Result<(), EncodeError> {
        let cell = match cell {
            Cell::WideText(units) => {
                self.decode_wide(index, units, scratch)?;
                Cell::Text(scratch.as_bytes())
            }
            Cell::Text(bytes) if !bytes.is_ascii() && std::str::from_utf8(bytes).is_err() => {
                return Err(self.invalid_text(index, "UTF-8"));
            }
            cell => cell,
        };
        let parquet_type = self
            .parquet_types
            .get(index)
            .copied()
            .unwrap_or(ParquetType::String);
        let not_parquet = || EncodeError::NotParquet {
            column: self.names[index].clone(),
            parquet_type: parquet_type.name(),
        };
        let integer = |v: Option<i128>| v.ok_or_else(not_parquet);
        match (parquet_type, cell) {
            (_, Cell::Null) => cells::put_null(out),
            (ParquetType::String, Cell::Text(bytes)) => match self.kinds[index] {
                // The same text CSV holds: ISO 8601 timestamps, decimals with a leading zero.
                ValueKind::Timestamp => {
                    let mut iso = Vec::with_capacity(bytes.len() + 3);
                    push_iso_timestamp(&mut iso, bytes);
                    cells::put_bytes(out, &iso);
                }
                ValueKind::Decimal if bytes.first() == Some(&b'.') => {
                    cells::put_bytes(out, &[b"0", bytes].concat());
                }
                ValueKind::Decimal if bytes.starts_with(b"-.") => {
                    cells::put_bytes(out, &[b"-0", &bytes[1..]].concat());
                }
                _ => cells::put_bytes(out, bytes),
            },
            (ParquetType::String, Cell::Int(v)) => {
                cells::put_bytes(out, itoa::Buffer::new().format(v).as_bytes());
            }
            (ParquetType::Binary, Cell::Bytes(bytes)) => cells::put_bytes(out, bytes),
            (ParquetType::Int64, Cell::Int(v)) => cells::put_integer(out, i128::from(v)),
            (ParquetType::Int64, Cell::Text(bytes)) => {
                cells::put_integer(out, integer(parse::<i64>(bytes).map(i128::from))?);
            }
            (ParquetType::Float64, Cell::Float(v)) => cells::put_f64(out, v),
            (ParquetType::Float64, Cell::Text(bytes)) => {
                cells::put_f64(out, parse(bytes).ok_or_else(not_parquet)?);
            }
            // The driver widened the `real` to a double exactly, so narrowing it is exact.
            (ParquetType::Float32, Cell::Float(v)) => {
                let narrow = v as f32;
                if f64::from(narrow) != v && !v.is_nan() {
                    return Err(not_parquet());
                }
                cells::put_f32(out, narrow);
            }
            (ParquetType::Float32, Cell::Text(bytes)) => {
                cells::put_f32(out, parse(bytes).ok_or_else(not_parquet)?);
            }
            (ParquetType::Boolean, Cell::Int(v @ (0 | 1))) => cells::put_bool(out, v == 1),
            (ParquetType::Boolean, Cell::Text(bytes)) => {
                cells::put_bool(out, boolean(bytes).ok_or_else(not_parquet)?);
            }
            (ParquetType::Decimal { precision, scale }, Cell::Text(bytes)) => {
                cells::put_integer(out, integer(values::decimal(bytes, precision, scale))?);
            }
            (ParquetType::Decimal { precision, scale }, Cell::Int(v)) => {
                let mut digits = itoa::Buffer::new();
                let v = values::decimal(digits.format(v).as_bytes(), precision, scale);
                cells::put_integer(out, integer(v)?);
            }
            (ParquetType::Date, Cell::Text(bytes)) => {
                cells::put_integer(out, integer(values::date(bytes).map(i128::from))?);
            }
            (ParquetType::Timestamp, Cell::Text(bytes)) => {
                let v = values::timestamp_micros(bytes).map(i128::from);
                cells::put_integer(out, integer(v)?);
            }
            (ParquetType::TimestampUtc, Cell::Text(bytes)) => {
                let v = values::timestamp_utc_micros(bytes).map(i128::from);
                cells::put_integer(out, integer(v)?);
            }
            (ParquetType::TimeNanos, Cell::Text(bytes)) => {
                let v = values::time_nanos(bytes).map(i128::from);
                cells::put_integer(out, integer(v)?);
            }
            _ => return Err(not_parquet()),
        }
        Ok(())
    }

    /// UTF-16 text of column `index` into `scratch` as UTF-8; an unpaired surrogate is invalid.
    fn decode_wide(
        &self,
        index: usize,
        units: &[u16],
        scratch: &mut String,
    ) -> Result<(), EncodeError> {
        scratch.clear();
        for c in char::decode_utf16(units.iter().copied()) {
            match c {
                Ok(c) => scratch.push(c),
                Err(_) => return Err(self.invalid_text(index, "UTF-16")),
            }
        }
        Ok(())
    }

    fn invalid_text(&self, index: usize, encoding: &'static str) -> EncodeError {
        EncodeError::InvalidText {
            column: self.names[index].clone(),
            encoding,
        }
    }

    /// Text of a valid UTF-8 value, shaped by the column's kind. `special`: the text holds a
    /// byte the format must quote or escape (no shaping below adds or removes one).
    fn text(&self, out: &mut Vec<u8>, kind: ValueKind, text: &[u8], special: bool) {
        match kind {
            ValueKind::Boolean => match boolean(text) {
                Some(true) => out.extend_from_slice(b"true"),
                Some(false) => out.extend_from_slice(b"false"),
                None => self.string(out, text, special),
            },
            ValueKind::Integer | ValueKind::Float if self.format == Format::Ndjson => {
                // Numbers that arrive as text (psqlODBC's floats): a number when it is one, else
                // a string, never a broken JSON document.
                if is_json_number(text) {
                    out.extend_from_slice(text);
                } else {
                    self.string(out, text, special);
                }
            }
            ValueKind::Decimal => {
                // Some drivers render 0.5 as ".5"; loaders want the leading zero.
                let (sign, digits) = match text.split_first() {
                    Some((b'-', rest)) => (&b"-"[..], rest),
                    _ => (&b""[..], text),
                };
                if digits.first() == Some(&b'.') {
                    let mut fixed = Vec::with_capacity(text.len() + 1);
                    fixed.extend_from_slice(sign);
                    fixed.push(b'0');
                    fixed.extend_from_slice(digits);
                    self.string(out, &fixed, special);
                } else {
                    self.string(out, text, special);
                }
            }
            ValueKind::Timestamp if !special => {
                // Timestamps never hold a byte to quote or escape: written in place.
                if self.format == Format::Ndjson {
                    out.push(b'"');
                }
                push_iso_timestamp(out, text);
                if self.format == Format::Ndjson {
                    out.push(b'"');
                }
            }
            ValueKind::Timestamp => {
                let mut iso = Vec::with_capacity(text.len() + 3);
                push_iso_timestamp(&mut iso, text);
                self.string(out, &iso, special);
            }
            _ => self.string(out, text, special),
        }
    }

    fn string(&self, out: &mut Vec<u8>, text: &[u8], special: bool) {
        match self.format {
            Format::Csv => write_csv_field(out, text, special),
            Format::Ndjson if !special => {
                out.push(b'"');
                out.extend_from_slice(text);
                out.push(b'"');
            }
            // Validated as UTF-8 by the caller.
            Format::Ndjson => write_json_string(out, &String::from_utf8_lossy(text)),
            Format::Parquet => cells::put_bytes(out, text),
        }
    }

    /// The shortest text that reads back as the same value: of the `f32` a single-precision
    /// column holds (the driver widened it to `f64` exactly, so narrowing is exact too), else
    /// of the `f64`.
    fn float(&self, out: &mut Vec<u8>, v: f64, single_precision: bool) {
        if self.format == Format::Parquet {
            if single_precision {
                cells::put_f32(out, v as f32);
            } else {
                cells::put_f64(out, v);
            }
        } else if v.is_finite() {
            let mut buffer = ryu::Buffer::new();
            let text = if single_precision {
                buffer.format_finite(v as f32)
            } else {
                buffer.format_finite(v)
            };
            out.extend_from_slice(text.as_bytes());
        } else {
            let text = if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            match self.format {
                Format::Csv => out.extend_from_slice(text.as_bytes()),
                Format::Ndjson => write_json_string(out, text),
                Format::Parquet => cells::put_bytes(out, text.as_bytes()),
            }
        }
    }

    fn bytes(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        match self.format {
            Format::Parquet => cells::put_bytes(out, bytes),
            Format::Csv => {
                if bytes.is_empty() {
                    // An empty binary value is not NULL.
                    out.extend_from_slice(b"\"\"");
                    return;
                }
                let start = out.len();
                out.resize(start + bytes.len() * 2, 0);
                // The slice is exactly twice the input length, which is all encode needs.
                let _ = hex::encode_to_slice(bytes, &mut out[start..]);
            }
            Format::Ndjson => {
                out.push(b'"');
                let engine = &base64::engine::general_purpose::STANDARD;
                let start = out.len();
                let encoded_len = bytes.len().div_ceil(3) * 4;
                out.resize(start + encoded_len, 0);
                let written = engine.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
                out.truncate(start + written);
                out.push(b'"');
            }
        }
    }
}

/// A text or binary value written piece by piece, as `SQLGetData` delivers a long value: CSV
/// text quoted (a field's need for quotes is not known before its last piece), NDJSON text
/// escaped, binary as hex (CSV) or base64 (NDJSON). A UTF-8 sequence, a UTF-16 surrogate pair
/// or a base64 group split between pieces is carried over to the next piece, so memory stays
/// one piece whatever the value's size. `RowEncoder::begin_long`, pieces, `finish`.
pub(crate) struct LongValue {
    format: Format,
    binary: bool,
    column: usize,
    /// The start of a UTF-8 sequence (at most 3 bytes) or of a base64 group (at most 2 bytes)
    /// that the next piece completes.
    carry: Vec<u8>,
    /// A high surrogate that the next wide piece completes.
    high_surrogate: Option<u16>,
    /// Bytes of the value seen so far (an empty binary value is `""`, not NULL).
    length: usize,
    scratch: String,
}

impl RowEncoder {
    /// Starts the value of column `index` (text, or `binary`) that arrives in pieces.
    pub(crate) fn begin_long(&self, out: &mut Vec<u8>, index: usize, binary: bool) -> LongValue {
        match self.format {
            Format::Parquet => cells::begin_pieces(out),
            Format::Ndjson => {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&self.json_keys[index]);
                out.push(b'"');
            }
            Format::Csv => {
                if index > 0 {
                    out.push(b',');
                }
                if !binary {
                    out.push(b'"');
                }
            }
        }
        LongValue {
            format: self.format,
            binary,
            column: index,
            carry: Vec::new(),
            high_surrogate: None,
            length: 0,
            scratch: String::new(),
        }
    }
}

impl LongValue {
    /// Appends a piece of a binary value.
    pub(crate) fn bytes(&mut self, out: &mut Vec<u8>, piece: &[u8]) {
        self.length += piece.len();
        match self.format {
            Format::Parquet => cells::put_piece(out, piece),
            Format::Csv => {
                let start = out.len();
                out.resize(start + piece.len() * 2, 0);
                // The slice is exactly twice the input length, which is all encode needs.
                let _ = hex::encode_to_slice(piece, &mut out[start..]);
            }
            Format::Ndjson => {
                // Whole groups of 3 bytes now; the rest waits for the next piece.
                let mut rest = piece;
                if !self.carry.is_empty() {
                    let (head, tail) = rest.split_at((3 - self.carry.len()).min(rest.len()));
                    self.carry.extend_from_slice(head);
                    if self.carry.len() < 3 {
                        return;
                    }
                    push_base64(out, &std::mem::take(&mut self.carry));
                    rest = tail;
                }
                let whole = rest.len() - rest.len() % 3;
                push_base64(out, &rest[..whole]);
                self.carry = rest[whole..].to_vec();
            }
        }
    }

    /// Appends a piece of a UTF-8 text value.
    pub(crate) fn text(
        &mut self,
        encoder: &RowEncoder,
        out: &mut Vec<u8>,
        piece: &[u8],
    ) -> Result<(), EncodeError> {
        self.length += piece.len();
        let mut piece = piece;
        if !self.carry.is_empty() {
            let needed = utf8_sequence_length(self.carry[0]).saturating_sub(self.carry.len());
            let (head, rest) = piece.split_at(needed.min(piece.len()));
            self.carry.extend_from_slice(head);
            if head.len() < needed {
                return Ok(());
            }
            let sequence = std::mem::take(&mut self.carry);
            let text = std::str::from_utf8(&sequence)
                .map_err(|_| encoder.invalid_text(self.column, "UTF-8"))?;
            self.escaped(out, text);
            piece = rest;
        }
        let valid = match std::str::from_utf8(piece) {
            Ok(text) => text,
            // A sequence cut at the piece's end is completed by the next piece.
            Err(e) if e.error_len().is_none() && piece.len() - e.valid_up_to() < 4 => {
                self.carry = piece[e.valid_up_to()..].to_vec();
                // The prefix up to `valid_up_to` is valid UTF-8.
                std::str::from_utf8(&piece[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Err(encoder.invalid_text(self.column, "UTF-8")),
        };
        self.escaped(out, valid);
        Ok(())
    }

    /// Appends a piece of a UTF-16 text value.
    pub(crate) fn wide(
        &mut self,
        encoder: &RowEncoder,
        out: &mut Vec<u8>,
        piece: &[u16],
    ) -> Result<(), EncodeError> {
        self.length += piece.len() * 2;
        let (piece, next_high) = match piece.split_last() {
            Some((&last, rest)) if (0xD800..0xDC00).contains(&last) => (rest, Some(last)),
            _ => (piece, None),
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let units = self
            .high_surrogate
            .take()
            .into_iter()
            .chain(piece.iter().copied());
        for c in char::decode_utf16(units) {
            match c {
                Ok(c) => scratch.push(c),
                Err(_) => return Err(encoder.invalid_text(self.column, "UTF-16")),
            }
        }
        self.high_surrogate = next_high;
        self.escaped(out, &scratch);
        self.scratch = scratch;
        Ok(())
    }

    /// Closes the value; a sequence left incomplete at its end is invalid text.
    pub(crate) fn finish(self, encoder: &RowEncoder, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !self.binary && !self.carry.is_empty() {
            return Err(encoder.invalid_text(self.column, "UTF-8"));
        }
        if self.high_surrogate.is_some() {
            return Err(encoder.invalid_text(self.column, "UTF-16"));
        }
        match (self.format, self.binary) {
            (Format::Parquet, _) => cells::end_pieces(out),
            (Format::Csv, true) if self.length == 0 => out.extend_from_slice(b"\"\""),
            (Format::Csv, true) => {}
            (Format::Ndjson, true) => {
                push_base64(out, &self.carry);
                out.push(b'"');
            }
            _ => out.push(b'"'),
        }
        Ok(())
    }

    /// Valid text, with `"` doubled (CSV, inside quotes) or JSON-escaped.
    fn escaped(&self, out: &mut Vec<u8>, text: &str) {
        match self.format {
            Format::Parquet => cells::put_piece(out, text.as_bytes()),
            Format::Csv => {
                for &b in text.as_bytes() {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
            }
            Format::Ndjson => {
                let mut plain = 0;
                let bytes = text.as_bytes();
                for (i, &b) in bytes.iter().enumerate() {
                    let escape: &[u8] = match b {
                        b'"' => b"\\\"",
                        b'\\' => b"\\\\",
                        b'\n' => b"\\n",
                        b'\r' => b"\\r",
                        b'\t' => b"\\t",
                        0x08 => b"\\b",
                        0x0C => b"\\f",
                        0..0x20 => b"",
                        _ => continue,
                    };
                    out.extend_from_slice(&bytes[plain..i]);
                    if escape.is_empty() {
                        out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                    } else {
                        out.extend_from_slice(escape);
                    }
                    plain = i + 1;
                }
                out.extend_from_slice(&bytes[plain..]);
            }
        }
    }
}

/// The length of the UTF-8 sequence a lead byte starts (1 for a byte that starts none, which
/// the validation then refuses).
fn utf8_sequence_length(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Appends `bytes` in standard base64 (padded at the end of the input).
fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = engine.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// Appends a date or timestamp as drivers print it in ISO 8601 form: a 4-digit year (FreeTDS
/// prints year 1 as `1-01-01`), `T` between date and time, and no space before a UTC offset
/// (SQL Server's `datetimeoffset` text is `2024-03-01 12:00:00.1234567 +01:00`). Text that does
/// not start with a date (`infinity`) is appended as it is.
fn push_iso_timestamp(out: &mut Vec<u8>, text: &[u8]) {
    let year = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let is_date = year > 0 && text.get(year) == Some(&b'-') && text.get(year + 3) == Some(&b'-');
    if !is_date {
        out.extend_from_slice(text);
        return;
    }
    for _ in year..4 {
        out.push(b'0');
    }
    let date_end = year + 6;
    let time_follows =
        text.get(date_end) == Some(&b' ') && text.get(date_end + 1).is_some_and(u8::is_ascii_digit);
    if !time_follows {
        out.extend_from_slice(text);
        return;
    }
    out.extend_from_slice(&text[..date_end]);
    out.push(b'T');
    let time = &text[date_end + 1..];
    match time
        .windows(2)
        .position(|w| w[0] == b' ' && matches!(w[1], b'+' | b'-'))
    {
        Some(space) => {
            out.extend_from_slice(&time[..space]);
            out.extend_from_slice(&time[space + 1..]);
        }
        None => out.extend_from_slice(time),
    }
}

/// A number drivers deliver as text (psqlODBC's floats, SQLite's loose integers), parsed from
/// the bytes without a copy.
fn parse<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// `1`/`0`, `t`/`f`, `true`/`false`, `y`/`n`, `yes`/`no` as drivers render booleans.
fn boolean(text: &[u8]) -> Option<bool> {
    match text {
        b"1" | b"t" | b"T" | b"y" | b"Y" => Some(true),
        b"0" | b"f" | b"F" | b"n" | b"N" => Some(false),
        _ if text.eq_ignore_ascii_case(b"true") || text.eq_ignore_ascii_case(b"yes") => Some(true),
        _ if text.eq_ignore_ascii_case(b"false") || text.eq_ignore_ascii_case(b"no") => Some(false),
        _ => None,
    }
}

/// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. Runs for
/// every number fetched as text, so it is a byte scan, not a parser.
fn is_json_number(text: &[u8]) -> bool {
    fn digits(text: &[u8], mut i: usize) -> usize {
        while i < text.len() && text[i].is_ascii_digit() {
            i += 1;
        }
        i
    }
    let mut i = usize::from(text.first() == Some(&b'-'));
    let int_end = digits(text, i);
    if int_end == i || (text[i] == b'0' && int_end - i > 1) {
        return false;
    }
    i = int_end;
    if text.get(i) == Some(&b'.') {
        let end = digits(text, i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(text, i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == text.len()
}

/// What one pass over a value's bytes tells: whether it is all ASCII (so valid UTF-8 without
/// further checks) and whether CSV must quote it. Branch-free over the bytes, so the compiler
/// vectorises it; most values are short and plain.
struct Scan {
    non_ascii: bool,
    /// The text holds a byte the format must quote or escape: `,` `"` CR LF for CSV; `"` `\`
    /// and control characters for JSON.
    special: bool,
}

impl Scan {
    fn of(text: &[u8], format: Format) -> Scan {
        let mut high = 0u8;
        let mut special = false;
        match format {
            Format::Csv => {
                for &b in text {
                    high |= b;
                    special |= (b == b',') | (b == b'"') | (b == b'\r') | (b == b'\n');
                }
            }
            Format::Ndjson => {
                for &b in text {
                    high |= b;
                    special |= (b < 0x20) | (b == b'"') | (b == b'\\');
                }
            }
            Format::Parquet => {
                for &b in text {
                    high |= b;
                }
            }
        }
        Scan {
            non_ascii: high >= 0x80,
            special,
        }
    }
}

/// A CSV field: quoted when empty or holding `,` `"` CR or LF, with `"` doubled.
fn write_csv_text(out: &mut Vec<u8>, text: &[u8]) {
    write_csv_field(out, text, Scan::of(text, Format::Csv).special);
}

/// A CSV field whose `special` flag (holds `,` `"` CR or LF) is already known.
fn write_csv_field(out: &mut Vec<u8>, text: &[u8], special: bool) {
    if !special && !text.is_empty() {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for &b in text {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cell;

    fn encode(format: Format, kinds: &[ValueKind], cells: &[Cell]) -> String {
        let columns = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("c{i}"), *k))
            .collect();
        let mut encoder = RowEncoder::new(format, columns);
        let mut out = Vec::new();
        encoder.begin_row(&mut out);
        for (i, cell) in cells.iter().enumerate() {
            encoder.cell(&mut out, i, *cell).unwrap();
        }
        encoder.end_row(&mut out, RowOp::Upsert);
        String::from_utf8(out).unwrap()
    }

    use ValueKind::*;

    #[test]
    fn csv_null_empty_and_quoting() {
        let row = encode(
            Format::Csv,
            &[Text, Text, Text, Text, Text],
            &[
                Cell::Null,
                Cell::Text(b""),
                Cell::Text(b"a,b"),
                Cell::Text("say \"hi\"\r\nnext\tline 😀".as_bytes()),
                Cell::Text(b" plain "),
            ],
        );
        assert_eq!(
            row,
            ",\"\",\"a,b\",\"say \"\"hi\"\"\r\nnext\tline 😀\", plain \r\n"
        );
    }

    #[test]
    fn csv_types() {
        let row = encode(
            Format::Csv,
            &[
                Integer, Float, Boolean, Boolean, Decimal, Decimal, Timestamp, Binary, Binary,
            ],
            &[
                Cell::Int(-42),
                Cell::Float(0.1),
                Cell::Text(b"1"),
                Cell::Text(b"f"),
                Cell::Text(b"-.5000000000"),
                Cell::Text(b"1234567890123456789012345678.0123456789"),
                Cell::Text(b"2024-02-29 23:59:59.1234567"),
                Cell::Bytes(&[0x00, 0xde, 0xad]),
                Cell::Bytes(&[]),
            ],
        );
        assert_eq!(
            row,
            "-42,0.1,true,false,-0.5000000000,1234567890123456789012345678.0123456789,\
             2024-02-29T23:59:59.1234567,00dead,\"\"\r\n"
        );
    }

    #[test]
    fn timestamps_are_iso_8601_with_four_digit_years_and_no_space_before_the_offset() {
        let cells = [
            Cell::Text(b"1-01-01 00:00:00.0000000"),
            Cell::Text(b"999-12-31 23:59:59.9999999"),
            Cell::Text(b"1-01-01"),
            Cell::Text(b"2024-03-01 12:00:00.1234567 +01:00"),
            Cell::Text(b"0001-01-01 00:00:00.0000000 -14:00"),
            Cell::Text(b"2024-03-01 12:00:00+01"),
            Cell::Text(b"2024-03-01T12:00:00Z"),
            Cell::Text(b"infinity"),
            Cell::Text(b"0044-03-15 12:00:00 BC"),
        ];
        let kinds = [Timestamp; 9];
        let csv = encode(Format::Csv, &kinds, &cells);
        assert_eq!(
            csv,
            "0001-01-01T00:00:00.0000000,0999-12-31T23:59:59.9999999,0001-01-01,\
             2024-03-01T12:00:00.1234567+01:00,0001-01-01T00:00:00.0000000-14:00,\
             2024-03-01T12:00:00+01,2024-03-01T12:00:00Z,infinity,0044-03-15T12:00:00 BC\r\n"
        );
        let ndjson = encode(Format::Ndjson, &kinds, &cells);
        let row: serde_json::Value = serde_json::from_str(ndjson.trim_end()).unwrap();
        assert_eq!(row["c0"], "0001-01-01T00:00:00.0000000");
        assert_eq!(row["c3"], "2024-03-01T12:00:00.1234567+01:00");
        assert_eq!(row["c4"], "0001-01-01T00:00:00.0000000-14:00");
    }

    #[test]
    fn real_columns_are_written_as_the_shortest_f32() {
        let columns = vec![("r".to_owned(), Float), ("d".to_owned(), Float)];
        for (format, expected) in [
            (Format::Csv, "0.1,0.10000000149011612\r\n"),
            (Format::Ndjson, "{\"r\":0.1,\"d\":0.10000000149011612}\n"),
        ] {
            let mut encoder =
                RowEncoder::new(format, columns.clone()).with_single_precision(vec![true, false]);
            let widened = f64::from(0.1f32);
            let mut out = Vec::new();
            encoder.begin_row(&mut out);
            encoder.cell(&mut out, 0, Cell::Float(widened)).unwrap();
            encoder.cell(&mut out, 1, Cell::Float(widened)).unwrap();
            encoder.end_row(&mut out, RowOp::Delete);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn one_scan_decides_validation_and_quoting() {
        let row = encode(
            Format::Csv,
            &[Timestamp, Timestamp, Text, Text],
            &[
                Cell::Text(b"2024-01-02 03:04:05"),
                Cell::Text(b"2024-01-02 03:04:05,5"),
                Cell::Text("Straße,\"7\"".as_bytes()),
                Cell::Text("Ünïcödé".as_bytes()),
            ],
        );
        assert_eq!(
            row,
            "2024-01-02T03:04:05,\"2024-01-02T03:04:05,5\",\"Straße,\"\"7\"\"\",Ünïcödé\r\n"
        );
    }

    #[test]
    fn ndjson_types() {
        let row = encode(
            Format::Ndjson,
            &[Integer, Float, Boolean, Decimal, Text, Binary, Text, Float],
            &[
                Cell::Int(i64::MIN),
                Cell::Float(1e300),
                Cell::Text(b"true"),
                Cell::Text(b"12.50"),
                Cell::Text("é\n\"x\"\u{1}".as_bytes()),
                Cell::Bytes(&[0, 255, 1]),
                Cell::Null,
                Cell::Float(f64::NAN),
            ],
        );
        assert_eq!(
            row,
            "{\"c0\":-9223372036854775808,\"c1\":1e300,\"c2\":true,\"c3\":\"12.50\",\
             \"c4\":\"é\\n\\\"x\\\"\\u0001\",\"c5\":\"AP8B\",\"c6\":null,\"c7\":\"NaN\"}\n"
        );
        let value: serde_json::Value = serde_json::from_str(row.trim_end()).unwrap();
        assert_eq!(value["c4"], "é\n\"x\"\u{1}");
    }

    #[test]
    fn ndjson_strings_without_escapes_are_copied_and_the_rest_escaped() {
        let row = encode(
            Format::Ndjson,
            &[Text, Text, Text, Text, Timestamp, Timestamp],
            &[
                Cell::Text("plain Zoë 😀\u{7f}".as_bytes()),
                Cell::Text(b"back\\slash"),
                Cell::Text(b"tab\there"),
                Cell::Text(b""),
                Cell::Text(b"2024-02-29 23:59:59.123456"),
                Cell::Text(b"2024-02-29T00:00:00+05:30"),
            ],
        );
        assert_eq!(
            row,
            "{\"c0\":\"plain Zoë 😀\u{7f}\",\"c1\":\"back\\\\slash\",\"c2\":\"tab\\there\",\
             \"c3\":\"\",\"c4\":\"2024-02-29T23:59:59.123456\",\"c5\":\"2024-02-29T00:00:00+05:30\"}\n"
        );
        let value: serde_json::Value = serde_json::from_str(row.trim_end()).unwrap();
        assert_eq!(value["c0"], "plain Zoë 😀\u{7f}");
        assert_eq!(value["c1"], "back\\slash");
        assert_eq!(value["c2"], "tab\there");
    }

    #[test]
    fn ndjson_numbers_fetched_as_text_stay_valid_json() {
        let row = encode(
            Format::Ndjson,
            &[Integer, Integer],
            &[Cell::Text(b"17"), Cell::Text(b"not a number")],
        );
        assert_eq!(row, "{\"c0\":17,\"c1\":\"not a number\"}\n");
    }

    #[test]
    fn json_number_grammar() {
        for yes in [
            "0",
            "-0",
            "17",
            "-9223372036854775808",
            "1.5",
            "1e+300",
            "2.5E-8",
            "-0.1",
        ] {
            assert!(is_json_number(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "1e",
            "NaN",
            "Infinity",
            "-Infinity",
            "1 ",
            "+1",
            "0x1",
        ] {
            assert!(!is_json_number(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn wide_text_is_transcoded() {
        let units: Vec<u16> = "Müller 🏥".encode_utf16().collect();
        let row = encode(Format::Csv, &[Text], &[Cell::WideText(&units)]);
        assert_eq!(row, "Müller 🏥\r\n");
    }

    #[test]
    fn invalid_text_is_an_error_naming_the_column_not_the_value() {
        let mut encoder = RowEncoder::new(Format::Csv, vec![("NOTE".into(), Text)]);
        let mut out = Vec::new();
        let err = encoder
            .cell(&mut out, 0, Cell::Text(&[b's', 0xff, b'x']))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 'NOTE' holds text that is not valid UTF-8; no value was written"
        );
        let err = encoder
            .cell(&mut out, 0, Cell::WideText(&[0xd800]))
            .unwrap_err();
        assert!(err.to_string().contains("UTF-16"));
    }

    #[test]
    fn change_columns_follow_every_row() {
        for (format, header, upsert, delete) in [
            (
                Format::Csv,
                "ID,NOTE,_ehi_op,_ehi_synced_at\r\n",
                "7,\"a,b\",upsert,2026-11-25T17:00:00.000Z\r\n",
                "7,,delete,2026-11-25T17:00:00.000Z\r\n",
            ),
            (
                Format::Ndjson,
                "",
                "{\"ID\":7,\"NOTE\":\"a,b\",\"_ehi_op\":\"upsert\",\
                 \"_ehi_synced_at\":\"2026-11-25T17:00:00.000Z\"}\n",
                "{\"ID\":7,\"NOTE\":null,\"_ehi_op\":\"delete\",\
                 \"_ehi_synced_at\":\"2026-11-25T17:00:00.000Z\"}\n",
            ),
        ] {
            let mut encoder =
                RowEncoder::new(format, vec![("ID".into(), Integer), ("NOTE".into(), Text)])
                    .with_change_columns("2026-11-25T17:00:00.000Z");
            assert_eq!(String::from_utf8(encoder.header()).unwrap(), header);
            let mut out = Vec::new();
            encoder.begin_row(&mut out);
            encoder.cell(&mut out, 0, Cell::Int(7)).unwrap();
            encoder.cell(&mut out, 1, Cell::Text(b"a,b")).unwrap();
            encoder.end_row(&mut out, RowOp::Upsert);
            assert_eq!(String::from_utf8(out).unwrap(), upsert);
            let mut out = Vec::new();
            encoder.begin_row(&mut out);
            encoder.cell(&mut out, 0, Cell::Int(7)).unwrap();
            encoder.cell(&mut out, 1, Cell::Null).unwrap();
            encoder.end_row(&mut out, RowOp::Delete);
            assert_eq!(String::from_utf8(out).unwrap(), delete);
        }
    }

    #[test]
    fn csv_header_quotes_names_that_need_it() {
        let encoder = RowEncoder::new(
            Format::Csv,
            vec![
                ("select".into(), Text),
                ("a,b".into(), Text),
                ("naïve".into(), Text),
            ],
        );
        assert_eq!(encoder.header(), "select,\"a,b\",naïve\r\n".as_bytes());
        assert!(RowEncoder::new(Format::Ndjson, vec![]).header().is_empty());
    }

    /// Encodes `value` as column 1 of a row (after an integer), in pieces of `piece` bytes.
    fn in_pieces(
        format: Format,
        binary: bool,
        value: &[u8],
        piece: usize,
    ) -> Result<String, EncodeError> {
        let kind = if binary { Binary } else { Text };
        let mut encoder =
            RowEncoder::new(format, vec![("c0".into(), Integer), ("c1".into(), kind)]);
        let mut out = Vec::new();
        encoder.begin_row(&mut out);
        encoder.cell(&mut out, 0, Cell::Int(1))?;
        let mut long = encoder.begin_long(&mut out, 1, binary);
        for chunk in value.chunks(piece) {
            if binary {
                long.bytes(&mut out, chunk);
            } else {
                long.text(&encoder, &mut out, chunk)?;
            }
        }
        long.finish(&encoder, &mut out)?;
        encoder.end_row(&mut out, RowOp::Upsert);
        Ok(String::from_utf8(out).expect("UTF-8 output"))
    }

    #[test]
    fn long_values_in_pieces_of_any_size_encode_as_a_whole_value_would() {
        let text = "é€𝄞 \"quoted\", comma\r\nnew line \\ tab\t \u{1} end";
        let csv_text = format!("1,\"{}\"\r\n", text.replace('"', "\"\""));
        let json_text = format!(
            "{{\"c0\":1,\"c1\":{}}}\n",
            serde_json::to_string(text).unwrap()
        );
        let bytes: Vec<u8> = (0..=255u8).chain(0..7).collect();
        let csv_bytes = format!("1,{}\r\n", hex::encode(&bytes));
        let base64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let json_bytes = format!("{{\"c0\":1,\"c1\":\"{base64}\"}}\n");
        for piece in 1..=8 {
            assert_eq!(
                in_pieces(Format::Csv, false, text.as_bytes(), piece).unwrap(),
                csv_text
            );
            assert_eq!(
                in_pieces(Format::Ndjson, false, text.as_bytes(), piece).unwrap(),
                json_text
            );
            assert_eq!(
                in_pieces(Format::Csv, true, &bytes, piece).unwrap(),
                csv_bytes
            );
            assert_eq!(
                in_pieces(Format::Ndjson, true, &bytes, piece).unwrap(),
                json_bytes
            );
            // What a bulk-read value of the same text decodes to: the CSV field is quoted
            // either way, so loaders read the same value.
            assert_eq!(
                in_pieces(Format::Csv, false, b"", piece).unwrap(),
                encode(
                    Format::Csv,
                    &[Integer, Text],
                    &[Cell::Int(1), Cell::Text(b"")]
                )
            );
            assert_eq!(
                in_pieces(Format::Csv, true, b"", piece).unwrap(),
                encode(
                    Format::Csv,
                    &[Integer, Binary],
                    &[Cell::Int(1), Cell::Bytes(b"")]
                )
            );
            assert_eq!(
                in_pieces(Format::Ndjson, true, &bytes[..4], piece).unwrap(),
                encode(
                    Format::Ndjson,
                    &[Integer, Binary],
                    &[Cell::Int(1), Cell::Bytes(&bytes[..4])]
                )
            );
        }
    }

    #[test]
    fn long_text_split_inside_a_character_is_joined_and_invalid_text_is_refused() {
        let wide: Vec<u16> = "a𝄞b€".encode_utf16().collect();
        for split in 0..=wide.len() {
            let encoder = RowEncoder::new(Format::Ndjson, vec![("v".into(), Text)]);
            let mut out = Vec::new();
            let mut long = encoder.begin_long(&mut out, 0, false);
            long.wide(&encoder, &mut out, &wide[..split]).unwrap();
            long.wide(&encoder, &mut out, &wide[split..]).unwrap();
            long.finish(&encoder, &mut out).unwrap();
            encoder.begin_row(&mut Vec::new());
            assert_eq!(String::from_utf8(out).unwrap(), "\"v\":\"a𝄞b€\"");
        }
        let invalid = |format, value: &[u8]| {
            matches!(
                in_pieces(format, false, value, 2),
                Err(EncodeError::InvalidText { ref column, encoding: "UTF-8" }) if column == "c1"
            )
        };
        for format in [Format::Csv, Format::Ndjson] {
            assert!(invalid(format, b"ab\xff"), "invalid byte");
            assert!(
                invalid(format, "a€".as_bytes().split_last().unwrap().1),
                "cut at the end"
            );
            assert!(
                invalid(format, b"\xe2\x82x"),
                "sequence broken across pieces"
            );
        }
        let encoder = RowEncoder::new(Format::Csv, vec![("v".into(), Text)]);
        let mut out = Vec::new();
        let mut long = encoder.begin_long(&mut out, 0, false);
        long.wide(&encoder, &mut out, &[0xD834]).unwrap();
        assert!(
            long.finish(&encoder, &mut out).is_err(),
            "a lone high surrogate at the end"
        );
        encoder.begin_row(&mut out);
    }
}
