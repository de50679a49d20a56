//! SQL Server data types on the wire: TYPE_INFO ([MS-TDS] 2.2.5.4 Data Type Definitions,
//! 2.2.5.6 Type Info Rule Definition) and values ([MS-TDS] 2.2.5.5 Data Type Dependent Data
//! Streams), both ways: result columns are encoded from [`Value`]s' canonical text forms,
//! RPC parameters decoded into them.

use std::io;

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

use super::packet::Out;
use super::reader::{DecodeError, Reader};
use crate::model::{Collation, SqlType, Value};

// [MS-TDS] 2.2.5.4.1 Fixed-Length Data Types
const INT1: u8 = 0x30;
const BIT: u8 = 0x32;
const INT2: u8 = 0x34;
const INT4: u8 = 0x38;
const DATETIM4: u8 = 0x3A;
const FLT4: u8 = 0x3B;
const MONEY: u8 = 0x3C;
const DATETIME: u8 = 0x3D;
const FLT8: u8 = 0x3E;
const MONEY4: u8 = 0x7A;
const INT8: u8 = 0x7F;
// [MS-TDS] 2.2.5.4.2 Variable-Length Data Types
const GUID: u8 = 0x24;
const INTN: u8 = 0x26;
const BITN: u8 = 0x68;
const DECIMALN: u8 = 0x6A;
const NUMERICN: u8 = 0x6C;
const FLTN: u8 = 0x6D;
const MONEYN: u8 = 0x6E;
const DATETIMN: u8 = 0x6F;
const DATEN: u8 = 0x28;
const TIMEN: u8 = 0x29;
const DATETIME2N: u8 = 0x2A;
const DATETIMEOFFSETN: u8 = 0x2B;
const CHAR: u8 = 0x2F;
const VARCHAR: u8 = 0x27;
const BINARY: u8 = 0x2D;
const VARBINARY: u8 = 0x25;
const BIGVARBIN: u8 = 0xA5;
const BIGVARCHR: u8 = 0xA7;
const BIGBINARY: u8 = 0xAD;
const BIGCHAR: u8 = 0xAF;
const NVARCHAR: u8 = 0xE7;
const NCHAR: u8 = 0xEF;
const XML: u8 = 0xF1;
const TEXT: u8 = 0x23;
const IMAGE: u8 = 0x22;
const NTEXT: u8 = 0x63;
const SSVARIANT: u8 = 0x62;

/// USHORTLEN of a `(max)` type: the value is PLP ([MS-TDS] 2.2.5.2.3).
const MAX_LEN: u16 = 0xFFFF;
/// PLP_NULL and UNKNOWN_PLP_LEN ([MS-TDS] 2.2.5.2.3 Partially Length-prefixed Data Type).
const PLP_NULL: u64 = u64::MAX;
const PLP_UNKNOWN_LEN: u64 = u64::MAX - 1;
/// PLP values are sent in chunks of this many bytes: a 100 MB value never sits encoded.
const PLP_CHUNK: usize = 64 * 1024;
/// `sys.types.user_type_id` of `timestamp`, sent as COLMETADATA's UserType for rowversion.
pub(crate) const USER_TYPE_TIMESTAMP: u32 = 80;

/// Ticks per day of `datetime` (1/300 s).
const DATETIME_TICKS_PER_DAY: i64 = 300 * 86_400;
/// Days from 0001-01-01 to 1900-01-01, the `datetime` epoch.
const DAYS_0001_TO_1900: i64 = 693_595;
/// 1753-01-01, the first `datetime`, as days since 1900-01-01.
const DAYS_1900_TO_1753: i64 = -53_690;
/// 9999-12-31 as days since 0001-01-01.
const MAX_DATE_DAYS: i64 = 3_652_058;

/// The COLLATION bytes ([MS-TDS] 2.2.5.1.2: LCID and flags as a little-endian u32, then SortId)
/// and the code page of the collations the wire knows.
fn collation_info(collation: &Collation) -> Result<([u8; 5], &'static Encoding), String> {
    match collation.0.as_str() {
        // LCID 0x0409, IgnoreCase | IgnoreKana | IgnoreWidth, SortId 52.
        "SQL_Latin1_General_CP1_CI_AS" => Ok(([0x09, 0x04, 0xD0, 0x00, 0x34], WINDOWS_1252)),
        // LCID 0x0409, IgnoreCase | IgnoreKana | IgnoreWidth | UTF8, version 2 (the 100 series).
        "Latin1_General_100_CI_AS_SC_UTF8" => Ok(([0x09, 0x04, 0xD0, 0x24, 0x00], UTF_8)),
        // LCID 0x0409, Binary2.
        "Latin1_General_BIN2" => Ok(([0x09, 0x04, 0x00, 0x02, 0x00], WINDOWS_1252)),
        other => Err(format!(
            "collation {other} is not one the test server can encode"
        )),
    }
}

/// The collation a client sent, by name when it is one of ours, and its code page.
fn collation_from_bytes(bytes: [u8; 5]) -> (Collation, &'static Encoding) {
    for name in [
        Collation::DEFAULT,
        "Latin1_General_100_CI_AS_SC_UTF8",
        "Latin1_General_BIN2",
    ] {
        let collation = Collation(name.to_owned());
        if let Ok((known, encoding)) = collation_info(&collation)
            && known == bytes
        {
            return (collation, encoding);
        }
    }
    let utf8 = bytes[3] & 0x04 != 0;
    let name = format!(
        "0x{}",
        bytes.iter().map(|b| format!("{b:02X}")).collect::<String>()
    );
    (Collation(name), if utf8 { UTF_8 } else { WINDOWS_1252 })
}

/// The default collation's bytes, for ENVCHANGE at login.
pub(crate) fn default_collation_bytes() -> [u8; 5] {
    [0x09, 0x04, 0xD0, 0x00, 0x34]
}

fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn time_len(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn nchar_bytes(length: u16) -> Result<u16, String> {
    length
        .checked_mul(2)
        .filter(|&b| b <= 8000)
        .ok_or_else(|| format!("nchar/nvarchar length {length} is over 4000"))
}

/// Writes TYPE_INFO for a result column ([MS-TDS] 2.2.5.6).
pub(crate) fn write_type_info(out: &mut Out<'_>, ty: &SqlType) -> io::Result<()> {
    let bytes = type_info_bytes(ty).map_err(io::Error::other)?;
    out.put(&bytes)
}

/// Whether the wire can send a column of this type (known collation, scales 0..=7,
/// precision 1..=38, lengths within 8000 bytes).
pub(crate) fn check_type(ty: &SqlType) -> Result<(), String> {
    type_info_bytes(ty).map(drop)
}

fn type_info_bytes(ty: &SqlType) -> Result<Vec<u8>, String> {
    match ty {
        SqlType::Time { scale }
        | SqlType::DateTime2 { scale }
        | SqlType::DateTimeOffset { scale }
            if *scale > 7 =>
        {
            return Err(format!("{ty:?}: the scale is over 7"));
        }
        SqlType::Decimal { precision, scale }
            if !(1..=38).contains(precision) || scale > precision =>
        {
            return Err(format!("{ty:?}: precision 1..=38 and scale up to it"));
        }
        SqlType::Char { length, .. }
        | SqlType::Binary { length }
        | SqlType::VarChar {
            length: Some(length),
            ..
        }
        | SqlType::VarBinary {
            length: Some(length),
        } if *length > 8000 => {
            return Err(format!("{ty:?}: over 8000 bytes (use None for (max))"));
        }
        _ => {}
    }
    let mut b = Vec::with_capacity(16);
    match ty {
        SqlType::TinyInt => b.extend([INTN, 1]),
        SqlType::SmallInt => b.extend([INTN, 2]),
        SqlType::Int => b.extend([INTN, 4]),
        SqlType::BigInt => b.extend([INTN, 8]),
        SqlType::Bit => b.extend([BITN, 1]),
        SqlType::Decimal { precision, scale } => {
            b.extend([DECIMALN, decimal_len(*precision), *precision, *scale])
        }
        SqlType::Money => b.extend([MONEYN, 8]),
        SqlType::SmallMoney => b.extend([MONEYN, 4]),
        SqlType::Float => b.extend([FLTN, 8]),
        SqlType::Real => b.extend([FLTN, 4]),
        SqlType::Date => b.push(DATEN),
        SqlType::Time { scale } => b.extend([TIMEN, *scale]),
        SqlType::DateTime => b.extend([DATETIMN, 8]),
        SqlType::SmallDateTime => b.extend([DATETIMN, 4]),
        SqlType::DateTime2 { scale } => b.extend([DATETIME2N, *scale]),
        SqlType::DateTimeOffset { scale } => b.extend([DATETIMEOFFSETN, *scale]),
        SqlType::Char { length, collation } => {
            b.push(BIGCHAR);
            // varchar(n) and char(n) count bytes (one per character in CP1252).
            b.extend(length.to_le_bytes());
            b.extend(collation_info(collation)?.0);
        }
        SqlType::VarChar { length, collation } => {
            b.push(BIGVARCHR);
            b.extend(length.unwrap_or(MAX_LEN).to_le_bytes());
            b.extend(collation_info(collation)?.0);
        }
        SqlType::NChar { length } => {
            b.push(NCHAR);
            b.extend(nchar_bytes(*length)?.to_le_bytes());
            b.extend(default_collation_bytes());
        }
        SqlType::NVarChar { length } => {
            b.push(NVARCHAR);
            let len = match length {
                Some(l) => nchar_bytes(*l)?,
                None => MAX_LEN,
            };
            b.extend(len.to_le_bytes());
            b.extend(default_collation_bytes());
        }
        SqlType::Text { collation } => {
            b.push(TEXT);
            b.extend(i32::MAX.to_le_bytes());
            b.extend(collation_info(collation)?.0);
            push_table_name(&mut b);
        }
        SqlType::NText => {
            b.push(NTEXT);
            b.extend((i32::MAX - 1).to_le_bytes());
            b.extend(default_collation_bytes());
            push_table_name(&mut b);
        }
        SqlType::Image => {
            b.push(IMAGE);
            b.extend(i32::MAX.to_le_bytes());
            push_table_name(&mut b);
        }
        SqlType::Binary { length } => {
            b.push(BIGBINARY);
            b.extend(length.to_le_bytes());
        }
        SqlType::VarBinary { length } => {
            b.push(BIGVARBIN);
            b.extend(length.unwrap_or(MAX_LEN).to_le_bytes());
        }
        SqlType::UniqueIdentifier => b.extend([GUID, 16]),
        // [MS-TDS] 2.2.5.5.3 XML_INFO: SCHEMA_PRESENT 0.
        SqlType::Xml => b.extend([XML, 0]),
        SqlType::SqlVariant => {
            b.push(SSVARIANT);
            b.extend(8009i32.to_le_bytes());
        }
        SqlType::RowVersion => {
            b.push(BIGBINARY);
            b.extend(8u16.to_le_bytes());
        }
    }
    Ok(b)
}

/// TableName of text/ntext/image columns (TDS 7.2+: NumParts, then each part as US_VARCHAR).
fn push_table_name(b: &mut Vec<u8>) {
    b.push(1);
    let name: Vec<u16> = "t".encode_utf16().collect();
    b.extend((name.len() as u16).to_le_bytes());
    for unit in name {
        b.extend(unit.to_le_bytes());
    }
}

/// One value ready to be written: short values already appended to the row's inline bytes,
/// long ones streamed from their source.
pub(crate) enum Encoded<'v> {
    /// The complete TYPE_VARBYTE, length prefix included, is in the inline bytes.
    Inline,
    /// A PLP value ([MS-TDS] 2.2.5.2.3), `None` for NULL.
    Plp(Option<Source<'v>>),
    /// A text/ntext/image value with its TextPointer ([MS-TDS] 2.2.5.2.4), `None` for NULL.
    Long(Option<Source<'v>>),
}

/// Where a long value's bytes come from; text is converted chunk by chunk.
#[derive(Clone, Copy)]
pub(crate) enum Source<'v> {
    Raw(&'v [u8]),
    Utf16(&'v str),
    Narrow(&'v str, &'static Encoding),
}

impl Source<'_> {
    /// Calls `f` with the value's bytes in chunks of about [`PLP_CHUNK`].
    fn chunks(self, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        match self {
            Source::Raw(bytes) => bytes.chunks(PLP_CHUNK).try_for_each(f),
            Source::Utf16(text) => {
                let mut chunk = Vec::with_capacity(PLP_CHUNK + 4);
                for unit in text.encode_utf16() {
                    chunk.extend(unit.to_le_bytes());
                    if chunk.len() >= PLP_CHUNK {
                        f(&chunk)?;
                        chunk.clear();
                    }
                }
                if chunk.is_empty() { Ok(()) } else { f(&chunk) }
            }
            Source::Narrow(text, encoding) => {
                let mut encoder = encoding.new_encoder();
                let mut chunk = vec![0u8; PLP_CHUNK];
                let mut rest = text;
                loop {
                    let (result, read, written) =
                        encoder.encode_from_utf8_without_replacement(rest, &mut chunk, true);
                    rest = &rest[read..];
                    let mut filled = written;
                    // Like SQL Server, a character the code page lacks is stored as '?'.
                    if let encoding_rs::EncoderResult::Unmappable(_) = result {
                        f(&chunk[..filled])?;
                        filled = 0;
                        f(b"?")?;
                    }
                    if filled > 0 {
                        f(&chunk[..filled])?;
                    }
                    if rest.is_empty() && result != encoding_rs::EncoderResult::OutputFull {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn byte_len(self) -> io::Result<u64> {
        let mut len = 0u64;
        self.chunks(&mut |c| {
            len += c.len() as u64;
            Ok(())
        })?;
        Ok(len)
    }
}

/// Writes a long value (PLP or text/ntext/image); inline values are written by the caller.
pub(crate) fn write_long(out: &mut Out<'_>, value: &Encoded<'_>) -> io::Result<()> {
    match value {
        Encoded::Inline => Ok(()),
        Encoded::Plp(None) => out.put(&PLP_NULL.to_le_bytes()),
        Encoded::Plp(Some(source)) => {
            out.put(&PLP_UNKNOWN_LEN.to_le_bytes())?;
            source.chunks(&mut |chunk| {
                out.put(&(chunk.len() as u32).to_le_bytes())?;
                out.put(chunk)
            })?;
            out.put(&0u32.to_le_bytes())
        }
        Encoded::Long(None) => out.put(&[0]),
        Encoded::Long(Some(source)) => {
            let len = source.byte_len()?;
            let len = i32::try_from(len)
                .map_err(|_| io::Error::other("text/ntext/image value over 2 GB"))?;
            out.put(&[16])?;
            out.put(&[0xEE; 16])?; // TextPointer: any 16 bytes
            out.put(&[0; 8])?; // Timestamp
            out.put(&len.to_le_bytes())?;
            source.chunks(&mut |chunk| out.put(chunk))
        }
    }
}

/// USHORTLEN-prefixed data appended to `inline` by `data`, which must not write more than
/// `max` bytes; `pad_to` pads with `pad` (char, nchar, binary).
fn short_len(
    inline: &mut Vec<u8>,
    ty: &SqlType,
    max: usize,
    pad: Option<(usize, &[u8])>,
    data: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let at = inline.len();
    inline.extend([0, 0]);
    data(inline)?;
    if let Some((len, unit)) = pad {
        while inline.len() - at - 2 < len {
            inline.extend_from_slice(unit);
        }
    }
    let len = inline.len() - at - 2;
    if len > max {
        inline.truncate(at);
        return Err(format!("a value of {len} bytes does not fit {ty:?}"));
    }
    inline[at..at + 2].copy_from_slice(&(len as u16).to_le_bytes());
    Ok(())
}

/// Encodes a value for a column or parameter of type `ty`: short values are appended to
/// `inline` (and `Encoded::Inline` returned), long ones returned to be streamed. The error
/// names what does not fit (never the value itself).
pub(crate) fn encode<'v>(
    ty: &SqlType,
    value: &'v Value,
    inline: &mut Vec<u8>,
) -> Result<Encoded<'v>, String> {
    let text = || match value {
        Value::Text(s) => Ok(s.as_str()),
        _ => Err(format!("{ty:?} needs a Text value, got {}", kind(value))),
    };
    let bytes = || match value {
        Value::Bytes(b) => Ok(b.as_slice()),
        _ => Err(format!("{ty:?} needs a Bytes value, got {}", kind(value))),
    };
    let null = matches!(value, Value::Null);
    // CHARBIN_NULL: USHORTLEN 0xFFFF.
    let short_null = |inline: &mut Vec<u8>| {
        inline.extend([0xFF, 0xFF]);
        Ok(Encoded::Inline)
    };
    match ty {
        SqlType::Char { .. }
        | SqlType::VarChar {
            length: Some(_), ..
        }
        | SqlType::NChar { .. }
        | SqlType::NVarChar { length: Some(_) }
        | SqlType::Binary { .. }
        | SqlType::VarBinary { length: Some(_) }
        | SqlType::RowVersion
            if null =>
        {
            short_null(inline)
        }
        SqlType::Char { length, collation } => {
            let (text, encoding) = (text()?, collation_info(collation)?.1);
            let n = usize::from(*length);
            short_len(inline, ty, n, Some((n, b" ")), |b| {
                append_narrow(b, text, encoding);
                Ok(())
            })?;
            Ok(Encoded::Inline)
        }
        SqlType::VarChar {
            length: Some(n),
            collation,
        } => {
            let (text, encoding) = (text()?, collation_info(collation)?.1);
            short_len(inline, ty, usize::from(*n), None, |b| {
                append_narrow(b, text, encoding);
                Ok(())
            })?;
            Ok(Encoded::Inline)
        }
        SqlType::NChar { length } => {
            let (text, n) = (text()?, usize::from(*length) * 2);
            short_len(inline, ty, n, Some((n, b" \0")), |b| {
                append_utf16(b, text);
                Ok(())
            })?;
            Ok(Encoded::Inline)
        }
        SqlType::NVarChar { length: Some(n) } => {
            let text = text()?;
            short_len(inline, ty, usize::from(*n) * 2, None, |b| {
                append_utf16(b, text);
                Ok(())
            })?;
            Ok(Encoded::Inline)
        }
        SqlType::Binary { length } => {
            let (data, n) = (bytes()?, usize::from(*length));
            short_len(inline, ty, n, Some((n, &[0])), |b| {
                b.extend_from_slice(data);
                Ok(())
            })?;
            Ok(Encoded::Inline)
        }
        SqlType::VarBinary { length: Some(n) } => {
            let data = bytes()?;
            short_len(inline, ty, usize::from(*n), None, |b| {
                b.extend_from_slice(data);
                Ok(())
            })?;
            Ok(Encoded::Inline)
        }
        SqlType::RowVersion => {
            let data = match value {
                Value::Int(i) => i.to_be_bytes().to_vec(),
                _ => bytes()?.to_vec(),
            };
            short_len(inline, ty, 8, Some((8, &[0])), |b| {
                b.extend_from_slice(&data);
                Ok(())
            })?;
            Ok(Encoded::Inline)
        }
        SqlType::VarChar {
            length: None,
            collation,
        } => {
            let encoding = collation_info(collation)?.1;
            Ok(Encoded::Plp(if null {
                None
            } else {
                Some(Source::Narrow(text()?, encoding))
            }))
        }
        SqlType::NVarChar { length: None } | SqlType::Xml => Ok(Encoded::Plp(if null {
            None
        } else {
            Some(Source::Utf16(text()?))
        })),
        SqlType::VarBinary { length: None } => Ok(Encoded::Plp(if null {
            None
        } else {
            Some(Source::Raw(bytes()?))
        })),
        SqlType::Text { .. } | SqlType::NText | SqlType::Image if null => Ok(Encoded::Long(None)),
        SqlType::Text { collation } => Ok(Encoded::Long(Some(Source::Narrow(
            text()?,
            collation_info(collation)?.1,
        )))),
        SqlType::NText => Ok(Encoded::Long(Some(Source::Utf16(text()?)))),
        SqlType::Image => Ok(Encoded::Long(Some(Source::Raw(bytes()?)))),
        SqlType::SqlVariant => match value {
            Value::Null => {
                inline.extend(0u32.to_le_bytes());
                Ok(Encoded::Inline)
            }
            Value::Variant(base, inner) => {
                let data = variant_bytes(base, inner)?;
                inline.extend((data.len() as u32).to_le_bytes());
                inline.extend(data);
                Ok(Encoded::Inline)
            }
            _ => Err(format!(
                "sql_variant needs a Variant value, got {}",
                kind(value)
            )),
        },
        fixed => {
            if null {
                inline.push(0);
            } else {
                let at = inline.len();
                inline.push(0);
                if let Err(e) = put_scalar(fixed, value, inline) {
                    inline.truncate(at);
                    return Err(e);
                }
                inline[at] = (inline.len() - at - 1) as u8;
            }
            Ok(Encoded::Inline)
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Int(_) => "Int",
        Value::Float(_) => "Float",
        Value::Text(_) => "Text",
        Value::Bytes(_) => "Bytes",
        Value::Variant(..) => "Variant",
    }
}

/// Appends text in a code page; like SQL Server, a character the code page lacks becomes '?'.
fn append_narrow(out: &mut Vec<u8>, text: &str, encoding: &'static Encoding) {
    if encoding == UTF_8 {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut encoder = encoding.new_encoder();
    let mut rest = text;
    out.reserve(rest.len());
    loop {
        let (result, read) = encoder.encode_from_utf8_to_vec_without_replacement(rest, out, true);
        rest = &rest[read..];
        match result {
            encoding_rs::EncoderResult::InputEmpty => return,
            encoding_rs::EncoderResult::OutputFull => out.reserve(rest.len() + 16),
            encoding_rs::EncoderResult::Unmappable(_) => out.push(b'?'),
        }
    }
}

fn append_utf16(out: &mut Vec<u8>, text: &str) {
    for unit in text.encode_utf16() {
        out.extend(unit.to_le_bytes());
    }
}

/// The data bytes (no length prefix) of a fixed-size value: integers, floats, money, decimals,
/// dates and times, GUIDs.
fn scalar_bytes(ty: &SqlType, value: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(17);
    put_scalar(ty, value, &mut out)?;
    Ok(out)
}

/// Appends the data bytes (no length prefix) of a fixed-size value to `out`.
fn put_scalar(ty: &SqlType, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let int = || match value {
        Value::Int(i) => Ok(*i),
        Value::Text(t) => t
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{ty:?}: not an integer")),
        _ => Err(format!("{ty:?} needs an Int value, got {}", kind(value))),
    };
    let text = || match value {
        Value::Text(s) => Ok(s.as_str()),
        _ => Err(format!("{ty:?} needs a Text value, got {}", kind(value))),
    };
    let range = |lo: i64, hi: i64| {
        let i = int()?;
        if (lo..=hi).contains(&i) {
            Ok(i)
        } else {
            Err(format!("{ty:?}: integer out of range"))
        }
    };
    match ty {
        SqlType::TinyInt => out.push(range(0, 255)? as u8),
        SqlType::SmallInt => {
            out.extend((range(i16::MIN.into(), i16::MAX.into())? as i16).to_le_bytes())
        }
        SqlType::Int => out.extend((range(i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes()),
        SqlType::BigInt => out.extend(int()?.to_le_bytes()),
        SqlType::Bit => out.push(u8::from(int()? != 0)),
        SqlType::Float | SqlType::Real => {
            let f = match value {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                _ => return Err(format!("{ty:?} needs a Float value, got {}", kind(value))),
            };
            if *ty == SqlType::Real {
                out.extend((f as f32).to_le_bytes());
            } else {
                out.extend(f.to_le_bytes());
            }
        }
        SqlType::Decimal { precision, scale } => {
            let n = match value {
                Value::Int(i) => i128::from(*i) * 10i128.pow(u32::from(*scale)),
                _ => parse_decimal(text()?, *scale)?,
            };
            put_decimal(out, n, *precision)?;
        }
        SqlType::Money | SqlType::SmallMoney => {
            let n = match value {
                Value::Int(i) => i128::from(*i) * 10_000,
                _ => parse_decimal(text()?, 4)?,
            };
            if *ty == SqlType::SmallMoney {
                let n = i32::try_from(n).map_err(|_| "smallmoney out of range".to_owned())?;
                out.extend(n.to_le_bytes());
            } else {
                // [MS-TDS] 2.2.5.5.1.4 Money: the high 32 bits first, then the low 32 bits.
                let n = i64::try_from(n).map_err(|_| "money out of range".to_owned())?;
                out.extend(((n >> 32) as i32).to_le_bytes());
                out.extend((n as u32).to_le_bytes());
            }
        }
        SqlType::Date => put_days(out, parse_date(text()?.trim())?),
        SqlType::Time { scale } => put_time(out, parse_time(text()?.trim(), *scale)?, *scale),
        SqlType::DateTime2 { scale } => {
            let (days, ticks) = parse_datetime(text()?, *scale)?;
            put_time(out, ticks, *scale);
            put_days(out, days);
        }
        SqlType::DateTimeOffset { scale } => {
            let (days, ticks, offset) = parse_datetimeoffset(text()?, *scale)?;
            if !(0..=MAX_DATE_DAYS).contains(&days) {
                return Err("a datetimeoffset is out of range in UTC".to_owned());
            }
            put_time(out, ticks, *scale);
            put_days(out, days);
            out.extend(offset.to_le_bytes());
        }
        SqlType::DateTime => {
            let (days, ns) = parse_datetime(text()?, 9)?;
            // [MS-TDS] 2.2.5.5.1.8: days since 1900-01-01, then 1/300 s ticks, rounded.
            let mut days = days - DAYS_0001_TO_1900;
            let mut ticks = (ns * 3 + 5_000_000) / 10_000_000;
            if ticks >= DATETIME_TICKS_PER_DAY {
                ticks -= DATETIME_TICKS_PER_DAY;
                days += 1;
            }
            if days < DAYS_1900_TO_1753 {
                return Err("a datetime before 1753-01-01".to_owned());
            }
            out.extend((days as i32).to_le_bytes());
            out.extend((ticks as u32).to_le_bytes());
        }
        SqlType::SmallDateTime => {
            let (days, ns) = parse_datetime(text()?, 9)?;
            let mut days = days - DAYS_0001_TO_1900;
            let mut minutes = (ns + 30_000_000_000) / 60_000_000_000;
            if minutes >= 1440 {
                minutes -= 1440;
                days += 1;
            }
            let days = u16::try_from(days).map_err(|_| "smalldatetime out of range".to_owned())?;
            out.extend(days.to_le_bytes());
            out.extend((minutes as u16).to_le_bytes());
        }
        SqlType::UniqueIdentifier => out.extend(parse_guid(text()?)?),
        other => return Err(format!("{other:?} is not a fixed-size type")),
    }
    Ok(())
}

/// [MS-TDS] 2.2.5.5.1.3 Decimal/Numeric: sign (1 = positive), then the magnitude little-endian
/// in 4, 8, 12 or 16 bytes by precision.
fn put_decimal(out: &mut Vec<u8>, n: i128, precision: u8) -> Result<(), String> {
    if precision == 0 || precision > 38 {
        return Err(format!("decimal precision {precision} is not 1..=38"));
    }
    if n.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Err(format!(
            "a decimal value does not fit precision {precision}"
        ));
    }
    let len = usize::from(decimal_len(precision)) - 1;
    out.push(u8::from(n >= 0));
    out.extend_from_slice(&n.unsigned_abs().to_le_bytes()[..len]);
    Ok(())
}

fn put_days(out: &mut Vec<u8>, days: i64) {
    out.extend_from_slice(&days.to_le_bytes()[..3]);
}

fn put_time(out: &mut Vec<u8>, ticks: i64, scale: u8) {
    out.extend_from_slice(&ticks.to_le_bytes()[..usize::from(time_len(scale))]);
}

/// A value Driver 18 cannot convert, for [`crate::wire::Fault::BadValueAtRow`], length prefix
/// included: the right framing for the column's type with content out of the type's range. (A decimal one digit
/// over its precision is no such value: Driver 18 returns it as text without complaint.)
pub(crate) fn bad_value(ty: &SqlType) -> Result<Vec<u8>, String> {
    let day = |scale: u8| 86_400 * 10i64.pow(u32::from(scale));
    let mut data = Vec::new();
    match ty {
        // 24:00:00 and past: time ticks beyond the day.
        SqlType::Time { scale } => put_time(&mut data, day(*scale), *scale),
        SqlType::DateTime2 { scale } => {
            put_time(&mut data, day(*scale), *scale);
            put_days(&mut data, 0);
        }
        SqlType::DateTimeOffset { scale } => {
            put_time(&mut data, day(*scale), *scale);
            put_days(&mut data, 0);
            data.extend(0i16.to_le_bytes());
        }
        // The day after 9999-12-31.
        SqlType::Date => put_days(&mut data, MAX_DATE_DAYS + 1),
        SqlType::DateTime => {
            data.extend(0i32.to_le_bytes());
            data.extend((DATETIME_TICKS_PER_DAY as u32).to_le_bytes());
        }
        other => {
            return Err(format!(
                "BadValueAtRow needs a time, datetime2, datetimeoffset, date or datetime \
                 column, not {other:?}"
            ));
        }
    }
    let mut b = vec![data.len() as u8];
    b.extend(data);
    Ok(b)
}

/// [MS-TDS] 2.2.5.5.1.9 sql_variant: BaseType, the count of property bytes, the properties,
/// then the value without its length prefix.
fn variant_bytes(base: &SqlType, value: &Value) -> Result<Vec<u8>, String> {
    let (code, props): (u8, Vec<u8>) = match base {
        SqlType::TinyInt => (INT1, vec![]),
        SqlType::SmallInt => (INT2, vec![]),
        SqlType::Int => (INT4, vec![]),
        SqlType::BigInt => (INT8, vec![]),
        SqlType::Bit => (BIT, vec![]),
        SqlType::Float => (FLT8, vec![]),
        SqlType::Real => (FLT4, vec![]),
        SqlType::Money => (MONEY, vec![]),
        SqlType::SmallMoney => (MONEY4, vec![]),
        SqlType::DateTime => (DATETIME, vec![]),
        SqlType::SmallDateTime => (DATETIM4, vec![]),
        SqlType::Date => (DATEN, vec![]),
        SqlType::Time { scale } => (TIMEN, vec![*scale]),
        SqlType::DateTime2 { scale } => (DATETIME2N, vec![*scale]),
        SqlType::DateTimeOffset { scale } => (DATETIMEOFFSETN, vec![*scale]),
        SqlType::Decimal { precision, scale } => (DECIMALN, vec![*precision, *scale]),
        SqlType::UniqueIdentifier => (GUID, vec![]),
        SqlType::VarChar {
            length: Some(n),
            collation,
        }
        | SqlType::Char {
            length: n,
            collation,
        } => {
            let code = if matches!(base, SqlType::Char { .. }) {
                BIGCHAR
            } else {
                BIGVARCHR
            };
            let mut p = collation_info(collation)?.0.to_vec();
            p.extend(n.to_le_bytes());
            (code, p)
        }
        SqlType::NVarChar { length: Some(n) } | SqlType::NChar { length: n } => {
            let code = if matches!(base, SqlType::NChar { .. }) {
                NCHAR
            } else {
                NVARCHAR
            };
            let mut p = default_collation_bytes().to_vec();
            p.extend(nchar_bytes(*n)?.to_le_bytes());
            (code, p)
        }
        SqlType::VarBinary { length: Some(n) } | SqlType::Binary { length: n } => {
            let code = if matches!(base, SqlType::Binary { .. }) {
                BIGBINARY
            } else {
                BIGVARBIN
            };
            (code, n.to_le_bytes().to_vec())
        }
        other => return Err(format!("{other:?} cannot be a sql_variant base type")),
    };
    let data = match base {
        SqlType::VarChar { .. }
        | SqlType::Char { .. }
        | SqlType::NVarChar { .. }
        | SqlType::NChar { .. }
        | SqlType::VarBinary { .. }
        | SqlType::Binary { .. } => {
            let mut b = Vec::new();
            match encode(base, value, &mut b)? {
                // Drop the USHORTLEN prefix: the variant's own length covers the value.
                Encoded::Inline if b.len() >= 2 && b[..2] != [0xFF, 0xFF] => b[2..].to_vec(),
                _ => return Err("a sql_variant value cannot be NULL or long".to_owned()),
            }
        }
        _ => {
            if matches!(value, Value::Null) {
                return Err("a sql_variant's base value cannot be NULL: use Value::Null".into());
            }
            scalar_bytes(base, value)?
        }
    };
    let mut b = vec![code, props.len() as u8];
    b.extend(props);
    b.extend(data);
    Ok(b)
}

// ---------------------------------------------------------------------------------------------
// Canonical text forms

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const EPOCH_0001: i64 = -719_162; // days_from_civil(1, 1, 1)

/// `YYYY-MM-DD` → days since 0001-01-01.
fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || "a date is not YYYY-MM-DD in 0001..9999".to_owned();
    let mut parts = s.splitn(3, '-');
    let mut next = || -> Result<i64, String> {
        parts
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next()?, next()?, next()?);
    if !(1..=9999).contains(&y) || civil_from_days(days_from_civil(y, m, d)) != (y, m, d) {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d) - EPOCH_0001)
}

fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days + EPOCH_0001);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `hh:mm:ss[.fffffff]` → ticks of 10^-scale seconds (extra digits are cut, not rounded).
fn parse_time(s: &str, scale: u8) -> Result<i64, String> {
    let bad = || "a time is not hh:mm:ss[.fffffff] below 24:00:00".to_owned();
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.splitn(3, ':');
    let mut next = || -> Result<i64, String> {
        parts
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (h, m, sec) = (next()?, next()?, next()?);
    if h > 23 || m > 59 || sec > 59 || h < 0 || m < 0 || sec < 0 {
        return Err(bad());
    }
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let scale = usize::from(scale);
    let mut digits: String = frac.chars().take(scale).collect();
    while digits.len() < scale {
        digits.push('0');
    }
    let fraction = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().map_err(|_| bad())?
    };
    Ok((h * 3600 + m * 60 + sec) * 10i64.pow(scale as u32) + fraction)
}

fn format_time(ticks: i64, scale: u8) -> String {
    let unit = 10i64.pow(u32::from(scale));
    let secs = ticks / unit;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if scale == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        let f = ticks % unit;
        format!(
            "{h:02}:{m:02}:{s:02}.{f:0width$}",
            width = usize::from(scale)
        )
    }
}

/// `YYYY-MM-DD[ hh:mm:ss[.f]]` (or with `T`) → (days since 0001-01-01, ticks of 10^-scale s).
fn parse_datetime(s: &str, scale: u8) -> Result<(i64, i64), String> {
    let s = s.trim();
    match s.split_once([' ', 'T']) {
        Some((date, time)) => Ok((parse_date(date)?, parse_time(time.trim(), scale)?)),
        None => Ok((parse_date(s)?, 0)),
    }
}

/// `YYYY-MM-DD hh:mm:ss[.f] +hh:mm` → (UTC days, UTC ticks, offset in minutes), as TDS sends
/// datetimeoffset ([MS-TDS] 2.2.5.5.1.8: the UTC date and time, then the offset).
fn parse_datetimeoffset(s: &str, scale: u8) -> Result<(i64, i64, i16), String> {
    let bad = || "a datetimeoffset is not YYYY-MM-DD hh:mm:ss[.f] +hh:mm".to_owned();
    let s = s.trim();
    let (local, offset) = s.rsplit_once(' ').ok_or_else(bad)?;
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let (oh, om) = offset[1..].split_once(':').ok_or_else(bad)?;
    let (oh, om): (i64, i64) = (
        oh.parse().map_err(|_| bad())?,
        om.parse().map_err(|_| bad())?,
    );
    if oh > 14 || om > 59 {
        return Err(bad());
    }
    let offset_minutes = sign * (oh * 60 + om);
    let (days, ticks) = parse_datetime(local, scale)?;
    let per_day = 86_400 * 10i64.pow(u32::from(scale));
    let utc = days * per_day + ticks - offset_minutes * 60 * 10i64.pow(u32::from(scale));
    Ok((
        utc.div_euclid(per_day),
        utc.rem_euclid(per_day),
        offset_minutes as i16,
    ))
}

/// `-123.4500` → the integer scaled by 10^scale. More fractional digits than `scale` are an
/// error unless they are zeros.
fn parse_decimal(s: &str, scale: u8) -> Result<i128, String> {
    let bad = || "a decimal is not [-]digits[.digits]".to_owned();
    let s = s.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let scale = usize::from(scale);
    if frac.len() > scale && frac[scale..].chars().any(|c| c != '0') {
        return Err(format!("a decimal has more than {scale} fractional digits"));
    }
    let mut all = String::from(if int.is_empty() { "0" } else { int });
    all.extend(frac.chars().take(scale));
    all.extend(std::iter::repeat_n('0', scale.saturating_sub(frac.len())));
    let n: i128 = all
        .parse()
        .map_err(|_| "a decimal is over 38 digits".to_owned())?;
    Ok(if negative { -n } else { n })
}

fn format_decimal(n: i128, scale: u8) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let n = n.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{n}");
    }
    let unit = 10u128.pow(u32::from(scale));
    format!(
        "{sign}{}.{:0width$}",
        n / unit,
        n % unit,
        width = usize::from(scale)
    )
}

/// `6F9619FF-8B86-D011-B42D-00C04FC964FF` → bytes as TDS sends them: the first three groups
/// little-endian, the rest as written.
fn parse_guid(s: &str) -> Result<[u8; 16], String> {
    let hex: String = s.trim().chars().filter(|&c| c != '-').collect();
    let bad = || "a uniqueidentifier is not 32 hex digits in 8-4-4-4-12 groups".to_owned();
    if hex.len() != 32 || s.trim().len() != 36 {
        return Err(bad());
    }
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Ok(b)
}

fn format_guid(b: &[u8]) -> String {
    let mut b = b.to_vec();
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ---------------------------------------------------------------------------------------------
// RPC parameters

/// A parameter's TYPE_INFO as the client sent it: what the value decoder needs besides the
/// [`SqlType`] it maps to.
pub(crate) struct WireType {
    pub(crate) sql_type: SqlType,
    code: u8,
    /// The declared length (bytes) of a variable-length type; 0xFFFF for PLP.
    max_len: u32,
    encoding: &'static Encoding,
}

/// Reads a parameter's TYPE_INFO ([MS-TDS] 2.2.5.6; 2.2.6.6 RPC Request ParameterData).
pub(crate) fn read_type_info(r: &mut Reader<'_>) -> Result<WireType, DecodeError> {
    let code = r.u8()?;
    let mut encoding = WINDOWS_1252;
    let mut collation = |r: &mut Reader<'_>| -> Result<Collation, DecodeError> {
        let bytes: [u8; 5] = r.array()?;
        let (c, e) = collation_from_bytes(bytes);
        encoding = e;
        Ok(c)
    };
    let fixed = |ty: SqlType, len: u32| (ty, len);
    let (sql_type, max_len) = match code {
        INT1 => fixed(SqlType::TinyInt, 1),
        INT2 => fixed(SqlType::SmallInt, 2),
        INT4 => fixed(SqlType::Int, 4),
        INT8 => fixed(SqlType::BigInt, 8),
        BIT => fixed(SqlType::Bit, 1),
        FLT4 => fixed(SqlType::Real, 4),
        FLT8 => fixed(SqlType::Float, 8),
        MONEY4 => fixed(SqlType::SmallMoney, 4),
        MONEY => fixed(SqlType::Money, 8),
        DATETIM4 => fixed(SqlType::SmallDateTime, 4),
        DATETIME => fixed(SqlType::DateTime, 8),
        INTN | BITN | FLTN | MONEYN | DATETIMN | GUID => {
            let len = r.u8()?;
            let ty = match (code, len) {
                (INTN, 1) => SqlType::TinyInt,
                (INTN, 2) => SqlType::SmallInt,
                (INTN, 4) => SqlType::Int,
                (INTN, 8) => SqlType::BigInt,
                (BITN, 1) => SqlType::Bit,
                (FLTN, 4) => SqlType::Real,
                (FLTN, 8) => SqlType::Float,
                (MONEYN, 4) => SqlType::SmallMoney,
                (MONEYN, 8) => SqlType::Money,
                (DATETIMN, 4) => SqlType::SmallDateTime,
                (DATETIMN, 8) => SqlType::DateTime,
                (GUID, 16) => SqlType::UniqueIdentifier,
                _ => {
                    return Err(DecodeError::new(format!(
                        "type 0x{code:02X} with length {len}"
                    )));
                }
            };
            (ty, u32::from(len))
        }
        DECIMALN | NUMERICN => {
            let len = r.u8()?;
            let precision = r.u8()?;
            let scale = r.u8()?;
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(DecodeError::new(format!("decimal({precision},{scale})")));
            }
            (SqlType::Decimal { precision, scale }, u32::from(len))
        }
        DATEN => (SqlType::Date, 3),
        TIMEN => {
            let scale = read_scale(r)?;
            (SqlType::Time { scale }, 5)
        }
        DATETIME2N => {
            let scale = read_scale(r)?;
            (SqlType::DateTime2 { scale }, 8)
        }
        DATETIMEOFFSETN => {
            let scale = read_scale(r)?;
            (SqlType::DateTimeOffset { scale }, 10)
        }
        BIGVARCHR | BIGCHAR => {
            let len = r.u16()?;
            let collation = collation(r)?;
            let ty = if code == BIGCHAR {
                SqlType::Char {
                    length: len,
                    collation,
                }
            } else {
                SqlType::VarChar {
                    length: (len != MAX_LEN).then_some(len),
                    collation,
                }
            };
            (ty, u32::from(len))
        }
        VARCHAR | CHAR => {
            let len = r.u8()?;
            let collation = Collation::default_collation();
            let ty = if code == CHAR {
                SqlType::Char {
                    length: len.into(),
                    collation,
                }
            } else {
                SqlType::VarChar {
                    length: Some(len.into()),
                    collation,
                }
            };
            (ty, u32::from(len))
        }
        NVARCHAR | NCHAR => {
            let len = r.u16()?;
            collation(r)?;
            let ty = if code == NCHAR {
                SqlType::NChar { length: len / 2 }
            } else {
                SqlType::NVarChar {
                    length: (len != MAX_LEN).then_some(len / 2),
                }
            };
            (ty, u32::from(len))
        }
        BIGVARBIN | BIGBINARY => {
            let len = r.u16()?;
            let ty = if code == BIGBINARY {
                SqlType::Binary { length: len }
            } else {
                SqlType::VarBinary {
                    length: (len != MAX_LEN).then_some(len),
                }
            };
            (ty, u32::from(len))
        }
        VARBINARY | BINARY => {
            let len = r.u8()?;
            let ty = if code == BINARY {
                SqlType::Binary { length: len.into() }
            } else {
                SqlType::VarBinary {
                    length: Some(len.into()),
                }
            };
            (ty, u32::from(len))
        }
        TEXT | NTEXT | IMAGE => {
            let len = r.u32()?;
            let ty = match code {
                TEXT => SqlType::Text {
                    collation: collation(r)?,
                },
                NTEXT => {
                    collation(r)?;
                    SqlType::NText
                }
                _ => SqlType::Image,
            };
            (ty, len)
        }
        XML => {
            if r.u8()? != 0 {
                // SCHEMA_PRESENT: dbname, owning schema (B_VARCHAR), collection (US_VARCHAR).
                r.b_varchar()?;
                r.b_varchar()?;
                r.us_varchar()?;
            }
            (SqlType::Xml, u32::from(MAX_LEN))
        }
        SSVARIANT => (SqlType::SqlVariant, r.u32()?),
        other => {
            return Err(DecodeError::new(format!(
                "parameter type 0x{other:02X} is not supported"
            )));
        }
    };
    Ok(WireType {
        sql_type,
        code,
        max_len,
        encoding,
    })
}

/// The scale of time, datetime2 and datetimeoffset: 0..=7.
fn read_scale(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let scale = r.u8()?;
    if scale > 7 {
        return Err(DecodeError::new(format!(
            "a time scale of {scale} is over 7"
        )));
    }
    Ok(scale)
}

/// Reads a parameter value of a type read by [`read_type_info`] into its canonical form.
pub(crate) fn read_value(r: &mut Reader<'_>, t: &WireType) -> Result<Value, DecodeError> {
    let data: Vec<u8> = match t.code {
        INT1 | INT2 | INT4 | INT8 | BIT | FLT4 | FLT8 | MONEY4 | MONEY | DATETIM4 | DATETIME => {
            r.bytes(t.max_len as usize)?.to_vec()
        }
        INTN | BITN | FLTN | MONEYN | DATETIMN | GUID | DECIMALN | NUMERICN | DATEN | TIMEN
        | DATETIME2N | DATETIMEOFFSETN | VARCHAR | CHAR | VARBINARY | BINARY => {
            let len = r.u8()?;
            if len == 0 && !matches!(t.code, VARCHAR | CHAR | VARBINARY | BINARY) {
                return Ok(Value::Null);
            }
            if len == 0xFF && matches!(t.code, VARCHAR | CHAR | VARBINARY | BINARY) {
                return Ok(Value::Null);
            }
            r.bytes(usize::from(len))?.to_vec()
        }
        BIGVARCHR | BIGCHAR | NVARCHAR | NCHAR | BIGVARBIN | BIGBINARY | XML
            if t.max_len == u32::from(MAX_LEN) =>
        {
            match r.plp()? {
                None => return Ok(Value::Null),
                Some(d) => d,
            }
        }
        BIGVARCHR | BIGCHAR | NVARCHAR | NCHAR | BIGVARBIN | BIGBINARY => {
            let len = r.u16()?;
            if len == 0xFFFF {
                return Ok(Value::Null);
            }
            r.bytes(usize::from(len))?.to_vec()
        }
        TEXT | NTEXT | IMAGE => {
            let len = r.u32()?;
            if len == u32::MAX {
                return Ok(Value::Null);
            }
            r.bytes(len as usize)?.to_vec()
        }
        SSVARIANT => {
            let len = r.u32()?;
            if len == 0 {
                return Ok(Value::Null);
            }
            let mut v = Reader::new(r.bytes(len as usize)?);
            return read_variant(&mut v);
        }
        _ => return Err(DecodeError::new(format!("type 0x{:02X}", t.code))),
    };
    value_from_bytes(&t.sql_type, &data, t.encoding)
}

fn read_variant(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    let code = r.u8()?;
    let prop_len = r.u8()?;
    let props = r.bytes(usize::from(prop_len))?.to_vec();
    let prop = |i: usize| props.get(i).copied().unwrap_or(0);
    let collation = || {
        let bytes: [u8; 5] = props
            .get(..5)
            .and_then(|p| p.try_into().ok())
            .unwrap_or([0; 5]);
        collation_from_bytes(bytes)
    };
    // The last two property bytes of character and binary types: the declared length.
    let max_len = || {
        let at = usize::from(prop_len).saturating_sub(2);
        u16::from_le_bytes([prop(at), prop(at + 1)])
    };
    let (ty, encoding) = match code {
        INT1 => (SqlType::TinyInt, WINDOWS_1252),
        INT2 => (SqlType::SmallInt, WINDOWS_1252),
        INT4 => (SqlType::Int, WINDOWS_1252),
        INT8 => (SqlType::BigInt, WINDOWS_1252),
        BIT => (SqlType::Bit, WINDOWS_1252),
        FLT4 => (SqlType::Real, WINDOWS_1252),
        FLT8 => (SqlType::Float, WINDOWS_1252),
        MONEY4 => (SqlType::SmallMoney, WINDOWS_1252),
        MONEY => (SqlType::Money, WINDOWS_1252),
        DATETIM4 => (SqlType::SmallDateTime, WINDOWS_1252),
        DATETIME => (SqlType::DateTime, WINDOWS_1252),
        DATEN => (SqlType::Date, WINDOWS_1252),
        GUID => (SqlType::UniqueIdentifier, WINDOWS_1252),
        TIMEN => (
            SqlType::Time {
                scale: prop(0).min(7),
            },
            WINDOWS_1252,
        ),
        DATETIME2N => (
            SqlType::DateTime2 {
                scale: prop(0).min(7),
            },
            WINDOWS_1252,
        ),
        DATETIMEOFFSETN => (
            SqlType::DateTimeOffset {
                scale: prop(0).min(7),
            },
            WINDOWS_1252,
        ),
        DECIMALN | NUMERICN => {
            let precision = prop(0).clamp(1, 38);
            let scale = prop(1).min(precision);
            (SqlType::Decimal { precision, scale }, WINDOWS_1252)
        }
        BIGVARCHR | BIGCHAR => {
            let (collation, encoding) = collation();
            let length = max_len();
            let ty = if code == BIGCHAR {
                SqlType::Char { length, collation }
            } else {
                SqlType::VarChar {
                    length: Some(length),
                    collation,
                }
            };
            (ty, encoding)
        }
        NVARCHAR | NCHAR => {
            let length = max_len() / 2;
            let ty = if code == NCHAR {
                SqlType::NChar { length }
            } else {
                SqlType::NVarChar {
                    length: Some(length),
                }
            };
            (ty, WINDOWS_1252)
        }
        BIGVARBIN | BIGBINARY => {
            let length = max_len();
            let ty = if code == BIGBINARY {
                SqlType::Binary { length }
            } else {
                SqlType::VarBinary {
                    length: Some(length),
                }
            };
            (ty, WINDOWS_1252)
        }
        other => {
            return Err(DecodeError::new(format!(
                "sql_variant base type 0x{other:02X}"
            )));
        }
    };
    let data = r.bytes(r.remaining())?.to_vec();
    let value = value_from_bytes(&ty, &data, encoding)?;
    Ok(Value::Variant(Box::new(ty), Box::new(value)))
}

/// A value's data bytes (no length prefix) → its canonical form.
fn value_from_bytes(
    ty: &SqlType,
    data: &[u8],
    encoding: &'static Encoding,
) -> Result<Value, DecodeError> {
    let bad = || DecodeError::new(format!("{} bytes for {ty:?}", data.len()));
    let le = |n: usize| -> Result<i64, DecodeError> {
        if data.len() != n {
            return Err(bad());
        }
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(data);
        Ok(i64::from_le_bytes(b))
    };
    let uint = |from: usize, n: usize| -> i64 {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&data[from..from + n]);
        i64::from_le_bytes(b)
    };
    Ok(match ty {
        SqlType::TinyInt => Value::Int(le(1)?),
        SqlType::SmallInt => Value::Int(i64::from(le(2)? as i16)),
        SqlType::Int => Value::Int(i64::from(le(4)? as i32)),
        SqlType::BigInt => Value::Int(le(8)?),
        SqlType::Bit => Value::Int(i64::from(le(1)? != 0)),
        SqlType::Real => Value::Float(f64::from(f32::from_bits(le(4)? as u32))),
        SqlType::Float => Value::Float(f64::from_bits(le(8)? as u64)),
        SqlType::SmallMoney => Value::Text(format_decimal(i128::from(le(4)? as i32), 4)),
        SqlType::Money => {
            let high = le(8)? as u64;
            let n = ((high & 0xFFFF_FFFF) << 32 | (high >> 32)) as i64;
            Value::Text(format_decimal(i128::from(n), 4))
        }
        SqlType::Decimal { scale, .. } => {
            if data.is_empty() || data.len() > 17 {
                return Err(bad());
            }
            let mut b = [0u8; 16];
            b[..data.len() - 1].copy_from_slice(&data[1..]);
            let magnitude = u128::from_le_bytes(b) as i128;
            let n = if data[0] == 1 { magnitude } else { -magnitude };
            Value::Text(format_decimal(n, *scale))
        }
        SqlType::Date => {
            if data.len() != 3 {
                return Err(bad());
            }
            Value::Text(format_date(uint(0, 3)))
        }
        SqlType::Time { scale } if (3..=5).contains(&data.len()) => {
            Value::Text(format_time(le(data.len())?, *scale))
        }
        SqlType::DateTime2 { scale } => {
            let t = data
                .len()
                .checked_sub(3)
                .filter(|t| (3..=5).contains(t))
                .ok_or_else(bad)?;
            let ticks = uint(0, t);
            Value::Text(format!(
                "{} {}",
                format_date(uint(t, 3)),
                format_time(ticks, *scale)
            ))
        }
        SqlType::DateTimeOffset { scale } => {
            let t = data
                .len()
                .checked_sub(5)
                .filter(|t| (3..=5).contains(t))
                .ok_or_else(bad)?;
            let per_day = 86_400 * 10i64.pow(u32::from(*scale));
            let offset = i64::from(i16::from_le_bytes([data[t + 3], data[t + 4]]));
            if uint(t, 3) > MAX_DATE_DAYS || uint(0, t) >= per_day || offset.abs() > 14 * 60 {
                return Err(bad());
            }
            let local =
                uint(t, 3) * per_day + uint(0, t) + offset * 60 * 10i64.pow(u32::from(*scale));
            let sign = if offset < 0 { '-' } else { '+' };
            Value::Text(format!(
                "{} {} {sign}{:02}:{:02}",
                format_date(local.div_euclid(per_day)),
                format_time(local.rem_euclid(per_day), *scale),
                offset.abs() / 60,
                offset.abs() % 60
            ))
        }
        SqlType::DateTime => {
            if data.len() != 8 {
                return Err(bad());
            }
            let days = i64::from(i32::from_le_bytes([data[0], data[1], data[2], data[3]]));
            let ticks = uint(4, 4);
            // 1/300 s ticks → milliseconds, rounded as SQL Server shows them (.003, .007).
            let ms = (ticks * 10 + 1) / 3;
            Value::Text(format!(
                "{} {}",
                format_date(days + DAYS_0001_TO_1900),
                format_time(ms, 3)
            ))
        }
        SqlType::SmallDateTime => {
            if data.len() != 4 {
                return Err(bad());
            }
            Value::Text(format!(
                "{} {}",
                format_date(uint(0, 2) + DAYS_0001_TO_1900),
                format_time(uint(2, 2) * 60, 0)
            ))
        }
        SqlType::UniqueIdentifier => {
            if data.len() != 16 {
                return Err(bad());
            }
            Value::Text(format_guid(data))
        }
        SqlType::Char { .. } | SqlType::VarChar { .. } | SqlType::Text { .. } => {
            Value::Text(encoding.decode_without_bom_handling(data).0.into_owned())
        }
        SqlType::NChar { .. } | SqlType::NVarChar { .. } | SqlType::NText | SqlType::Xml => {
            if !data.len().is_multiple_of(2) {
                return Err(bad());
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            Value::Text(String::from_utf16(&units).map_err(|_| bad())?)
        }
        SqlType::Binary { .. }
        | SqlType::VarBinary { .. }
        | SqlType::Image
        | SqlType::RowVersion => Value::Bytes(data.to_vec()),
        SqlType::Time { .. } | SqlType::SqlVariant => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(ty: SqlType, text: &str) -> String {
        let value = Value::Text(text.to_owned());
        let data = scalar_bytes(&ty, &value).expect("encodes");
        match value_from_bytes(&ty, &data, WINDOWS_1252).expect("decodes") {
            Value::Text(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn temporal_text_forms_round_trip() {
        assert_eq!(round_trip(SqlType::Date, "0001-01-01"), "0001-01-01");
        assert_eq!(round_trip(SqlType::Date, "9999-12-31"), "9999-12-31");
        assert_eq!(
            round_trip(SqlType::Time { scale: 7 }, "23:59:59.9999999"),
            "23:59:59.9999999"
        );
        assert_eq!(
            round_trip(
                SqlType::DateTime2 { scale: 7 },
                "2024-02-29 12:34:56.1234567"
            ),
            "2024-02-29 12:34:56.1234567"
        );
        assert_eq!(
            round_trip(
                SqlType::DateTimeOffset { scale: 7 },
                "2024-01-01 01:30:00.0000000 +05:30"
            ),
            "2024-01-01 01:30:00.0000000 +05:30"
        );
        assert_eq!(
            round_trip(
                SqlType::DateTimeOffset { scale: 0 },
                "0001-01-01 00:00:00 -14:00"
            ),
            "0001-01-01 00:00:00 -14:00"
        );
        assert_eq!(
            round_trip(SqlType::DateTime, "1753-01-01 00:00:00.003"),
            "1753-01-01 00:00:00.003"
        );
        assert_eq!(
            round_trip(SqlType::DateTime, "9999-12-31 23:59:59.997"),
            "9999-12-31 23:59:59.997"
        );
        assert_eq!(
            round_trip(SqlType::SmallDateTime, "2079-06-06 23:59:00"),
            "2079-06-06 23:59:00"
        );
    }

    #[test]
    fn datetimeoffset_is_sent_as_utc_with_the_offset() {
        let value = Value::Text("2024-01-01 01:30:00 +05:30".to_owned());
        let b = scalar_bytes(&SqlType::DateTimeOffset { scale: 0 }, &value).expect("encodes");
        // 2023-12-31 20:00:00 UTC = 72000 s; offset 330 minutes.
        assert_eq!(&b[0..3], &72_000u32.to_le_bytes()[..3]);
        assert_eq!(&b[6..8], &330i16.to_le_bytes());
    }

    #[test]
    fn exact_numbers_round_trip() {
        let max = "9999999999999999999999999999.9999999999";
        assert_eq!(
            round_trip(
                SqlType::Decimal {
                    precision: 38,
                    scale: 10
                },
                max
            ),
            max
        );
        assert_eq!(
            round_trip(
                SqlType::Decimal {
                    precision: 38,
                    scale: 10
                },
                &format!("-{max}")
            ),
            format!("-{max}")
        );
        assert_eq!(
            round_trip(SqlType::Money, "-922337203685477.5808"),
            "-922337203685477.5808"
        );
        assert_eq!(
            round_trip(SqlType::SmallMoney, "214748.3647"),
            "214748.3647"
        );
        assert!(
            scalar_bytes(
                &SqlType::Decimal {
                    precision: 5,
                    scale: 2
                },
                &Value::Text("1000.00".into())
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_parameter_bytes_are_errors_not_panics() {
        for ty in [
            SqlType::Time { scale: 7 },
            SqlType::DateTime2 { scale: 7 },
            SqlType::DateTimeOffset { scale: 7 },
        ] {
            for len in [0, 2, 9, 12, 40] {
                assert!(value_from_bytes(&ty, &vec![0xFF; len], WINDOWS_1252).is_err());
            }
        }
        let mut r = Reader::new(&[SSVARIANT, 8, 0, 0, 0, BIGVARCHR, 0, 0, 0, 0, 0]);
        let wire = read_type_info(&mut r).expect("sql_variant");
        assert!(read_value(&mut r, &wire).is_err());
    }

    #[test]
    fn datetime_starts_in_1753() {
        let at = |s: &str| scalar_bytes(&SqlType::DateTime, &Value::Text(s.to_owned()));
        assert!(at("1753-01-01 00:00:00").is_ok());
        assert!(at("1752-12-31 23:59:59").is_err());
    }

    #[test]
    fn a_datetimeoffset_before_year_1_in_utc_is_refused() {
        let value = Value::Text("0001-01-01 00:00:00 +01:00".to_owned());
        assert!(scalar_bytes(&SqlType::DateTimeOffset { scale: 7 }, &value).is_err());
    }

    #[test]
    fn guid_groups_are_little_endian() {
        let b = parse_guid("6F9619FF-8B86-D011-B42D-00C04FC964FF").expect("parses");
        assert_eq!(&b[..8], &[0xFF, 0x19, 0x96, 0x6F, 0x86, 0x8B, 0x11, 0xD0]);
        assert_eq!(format_guid(&b), "6F9619FF-8B86-D011-B42D-00C04FC964FF");
    }

    #[test]
    fn varchar_is_sent_in_the_collation_code_page() {
        let narrow = |text: &str| {
            let mut out = Vec::new();
            append_narrow(&mut out, text, WINDOWS_1252);
            out
        };
        assert_eq!(narrow("Ñ€é"), vec![0xD1, 0x80, 0xE9]);
        assert_eq!(narrow("a😀b"), b"a?b".to_vec());
        let mut streamed = Vec::new();
        Source::Narrow("a😀b€", WINDOWS_1252)
            .chunks(&mut |c| {
                streamed.extend_from_slice(c);
                Ok(())
            })
            .expect("streams");
        assert_eq!(streamed, b"a?b\x80".to_vec());
    }
}
