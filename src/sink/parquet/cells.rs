//! The cell stream: how a worker hands a Parquet table's rows to the writer.
//!
//! Workers parse and check every value (they run in parallel, and a value that does not fit
//! its column fails the table there, as an encoding error does for CSV); the writer only copies
//! the typed values into its column builders. Every cell starts with a varint head: 0 for NULL,
//! 1 for a long value in pieces, else a value: text and binary have `2 + length` and their
//! bytes; the other types have 2 and their value (integers, dates, times, timestamps and
//! decimals as zigzag varints, floats as little-endian bytes, booleans as one byte). A long
//! value's pieces are each a varint length and the bytes, and a zero length ends it: the stream
//! can go to a spool file before the value's length is known. Rows have no framing: each holds
//! one cell per column of the file. The stream is about as compact as CSV (a wide table's queue
//! and chunks hold it), not one fixed-size slot per value.

use std::io::Read;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int64Builder,
    LargeBinaryBuilder, LargeStringBuilder, Time64NanosecondBuilder, TimestampMicrosecondBuilder,
};

use crate::model::ParquetType;

const NULL: u128 = 0;
const PIECES: u128 = 1;
const VALUE: u128 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(input: &mut impl Read) -> std::io::Result<u128> {
    let mut v: u128 = 0;
    for shift in (0..128).step_by(7) {
        let [byte] = read_array(input)?;
        v |= u128::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(malformed("a varint longer than 128 bits"))
}

pub(crate) fn put_null(out: &mut Vec<u8>) {
    put_varint(out, NULL);
}

/// An integer, date (days), time (nanoseconds), timestamp (microseconds) or decimal (unscaled).
pub(crate) fn put_integer(out: &mut Vec<u8>, v: i128) {
    put_varint(out, VALUE);
    put_varint(out, ((v << 1) ^ (v >> 127)) as u128);
}

pub(crate) fn put_f64(out: &mut Vec<u8>, v: f64) {
    put_varint(out, VALUE);
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_f32(out: &mut Vec<u8>, v: f32) {
    put_varint(out, VALUE);
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_bool(out: &mut Vec<u8>, v: bool) {
    put_varint(out, VALUE);
    out.push(u8::from(v));
}

/// A text (valid UTF-8) or binary value.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, VALUE + bytes.len() as u128);
    out.extend_from_slice(bytes);
}

pub(crate) fn begin_pieces(out: &mut Vec<u8>) {
    put_varint(out, PIECES);
}

/// A piece of a long value; text pieces are each valid UTF-8 on their own.
pub(crate) fn put_piece(out: &mut Vec<u8>, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_varint(out, bytes.len() as u128);
        out.extend_from_slice(bytes);
    }
}

pub(crate) fn end_pieces(out: &mut Vec<u8>) {
    put_varint(out, 0);
}

/// A stream that is not what the encoder writes: a defect of ehi-sync, never of the data.
fn malformed(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("internal error: the cell stream holds {what}"),
    )
}

fn read_array<const N: usize>(input: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut bytes = [0; N];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_length(input: &mut impl Read) -> std::io::Result<usize> {
    usize::try_from(read_varint(input)?).map_err(|_| malformed("a length beyond memory"))
}

fn read_integer(input: &mut impl Read) -> std::io::Result<i128> {
    let zigzag = read_varint(input)?;
    Ok((zigzag >> 1) as i128 ^ -((zigzag & 1) as i128))
}

/// An integer of the stream as the column's narrower type.
fn narrow<T: TryFrom<i128>>(v: i128) -> std::io::Result<T> {
    T::try_from(v).map_err(|_| malformed("an integer beyond its column's type"))
}

/// One column of the row group being built.
pub(crate) enum ColumnBuilder {
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Decimal(Decimal128Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64NanosecondBuilder),
    String(LargeStringBuilder),
    Binary(LargeBinaryBuilder),
}

impl ColumnBuilder {
    /// A builder with room for `rows` values and `data_bytes` bytes of text or binary: the
    /// size of the row group before, so a row group grows without reallocating (each doubling
    /// leaves a freed block behind that the allocator keeps).
    pub(crate) fn with_capacity(t: ParquetType, rows: usize, data_bytes: usize) -> ColumnBuilder {
        match t {
            ParquetType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            ParquetType::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(rows)),
            ParquetType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            ParquetType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(rows)),
            ParquetType::Decimal { precision, scale } => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(rows)
                    .with_data_type(arrow_schema::DataType::Decimal128(precision, scale)),
            ),
            ParquetType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(rows)),
            ParquetType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
            }
            ParquetType::TimestampUtc => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            ParquetType::TimeNanos => {
                ColumnBuilder::Time(Time64NanosecondBuilder::with_capacity(rows))
            }
            ParquetType::String => {
                ColumnBuilder::String(LargeStringBuilder::with_capacity(rows, data_bytes))
            }
            ParquetType::Binary => {
                ColumnBuilder::Binary(LargeBinaryBuilder::with_capacity(rows, data_bytes))
            }
        }
    }

    /// Reads one cell of this column from `input` and appends it. Returns the bytes it adds to
    /// the row group in memory.
    pub(crate) fn read(&mut self, input: &mut impl Read) -> std::io::Result<usize> {
        let head = read_varint(input)?;
        if head == NULL {
            self.append_null();
            return Ok(1);
        }
        if head == PIECES {
            return self.read_pieces(input);
        }
        if let ColumnBuilder::String(_) | ColumnBuilder::Binary(_) = self {
            let length =
                usize::try_from(head - VALUE).map_err(|_| malformed("a length beyond memory"))?;
            self.read_piece(input, length)?;
            self.end_value();
            return Ok(length + 8);
        }
        if head != VALUE {
            return Err(malformed("a length for a fixed-size value"));
        }
        match self {
            ColumnBuilder::Int64(b) => b.append_value(narrow(read_integer(input)?)?),
            ColumnBuilder::Float32(b) => b.append_value(f32::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Float64(b) => b.append_value(f64::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Boolean(b) => b.append_value(read_array::<1>(input)? != [0]),
            ColumnBuilder::Decimal(b) => b.append_value(read_integer(input)?),
            ColumnBuilder::Date(b) => b.append_value(narrow(read_integer(input)?)?),
            ColumnBuilder::Timestamp(b) => b.append_value(narrow(read_integer(input)?)?),
            ColumnBuilder::Time(b) => b.append_value(narrow(read_integer(input)?)?),
            ColumnBuilder::String(_) | ColumnBuilder::Binary(_) => {}
        }
        Ok(16)
    }

    fn read_pieces(&mut self, input: &mut impl Read) -> std::io::Result<usize> {
        if !matches!(self, ColumnBuilder::String(_) | ColumnBuilder::Binary(_)) {
            return Err(malformed("pieces of a fixed-size value"));
        }
        let mut total = 8;
        loop {
            let length = read_length(input)?;
            if length == 0 {
                self.end_value();
                return Ok(total);
            }
            self.read_piece(input, length)?;
            total += length;
        }
    }

    /// Appends `length` bytes of `input` to the value being built.
    fn read_piece(&mut self, input: &mut impl Read, length: usize) -> std::io::Result<()> {
        let mut limited = input.take(length as u64);
        let copied = match self {
            ColumnBuilder::Binary(b) => std::io::copy(&mut limited, b)?,
            ColumnBuilder::String(b) => {
                let mut text = Vec::with_capacity(length);
                limited.read_to_end(&mut text)?;
                let text = std::str::from_utf8(&text).map_err(|_| malformed("invalid UTF-8"))?;
                std::fmt::Write::write_str(b, text).map_err(|_| malformed("unwritable text"))?;
                text.len() as u64
            }
            _ => return Err(malformed("bytes of a fixed-size value")),
        };
        if copied != length as u64 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Ends the text or binary value written so far (an empty one is not NULL).
    fn end_value(&mut self) {
        match self {
            ColumnBuilder::String(b) => b.append_value(""),
            ColumnBuilder::Binary(b) => b.append_value(b""),
            _ => {}
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Decimal(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Time(b) => b.append_null(),
            ColumnBuilder::String(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
        }
    }

    /// The column's values so far as an array; the builder starts empty again, with room for
    /// as many values and bytes.
    pub(crate) fn finish(&mut self, t: ParquetType) -> ArrayRef {
        let array: ArrayRef = match self {
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::String(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
        };
        // Text and binary: the second buffer holds the values' bytes.
        let data_bytes = array.to_data().buffers().get(1).map_or(0, |b| b.len());
        *self = ColumnBuilder::with_capacity(t, array.len(), data_bytes);
        array
    }
}
