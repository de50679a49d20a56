//! The cell stream: how a worker hands a Parquet table's rows to the writer.
//!
//! Workers parse and check every value (they run in parallel, and a value that does not fit
//! its column fails the table there, as an encoding error does for CSV); the writer only copies
//! the typed values into its column builders. A cell is a tag byte, then for a value its bytes
//! in the column's fixed little-endian form, or for text and binary a `u64` length and the
//! bytes. A long value read in pieces is the `PIECES` tag, each piece as length and bytes, and
//! a zero length at its end: the stream can go to a spool file before the value's length is
//! known. Rows have no framing: each holds one cell per column of the file.

use std::io::Read;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int64Builder,
    LargeBinaryBuilder, LargeStringBuilder, Time64NanosecondBuilder, TimestampMicrosecondBuilder,
};

use crate::model::ParquetType;

const NULL: u8 = 0;
const VALUE: u8 = 1;
const PIECES: u8 = 2;

pub(crate) fn put_null(out: &mut Vec<u8>) {
    out.push(NULL);
}

/// A fixed-size value: the bytes of its column's type (`to_le_bytes`).
pub(crate) fn put_fixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(VALUE);
    out.extend_from_slice(bytes);
}

/// A text (valid UTF-8) or binary value.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(VALUE);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn begin_pieces(out: &mut Vec<u8>) {
    out.push(PIECES);
}

/// A piece of a long value; text pieces are each valid UTF-8 on their own.
pub(crate) fn put_piece(out: &mut Vec<u8>, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_length(out, bytes.len());
        out.extend_from_slice(bytes);
    }
}

pub(crate) fn end_pieces(out: &mut Vec<u8>) {
    put_length(out, 0);
}

fn put_length(out: &mut Vec<u8>, length: usize) {
    out.extend_from_slice(&(length as u64).to_le_bytes());
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
    usize::try_from(u64::from_le_bytes(read_array(input)?))
        .map_err(|_| malformed("a length beyond memory"))
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
    pub(crate) fn new(t: ParquetType) -> ColumnBuilder {
        match t {
            ParquetType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            ParquetType::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            ParquetType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            ParquetType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            ParquetType::Decimal { precision, scale } => ColumnBuilder::Decimal(
                Decimal128Builder::new()
                    .with_data_type(arrow_schema::DataType::Decimal128(precision, scale)),
            ),
            ParquetType::Date => ColumnBuilder::Date(Date32Builder::new()),
            ParquetType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            ParquetType::TimestampUtc => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ParquetType::TimeNanos => ColumnBuilder::Time(Time64NanosecondBuilder::new()),
            ParquetType::String => ColumnBuilder::String(LargeStringBuilder::new()),
            ParquetType::Binary => ColumnBuilder::Binary(LargeBinaryBuilder::new()),
        }
    }

    /// Reads one cell of this column from `input` and appends it. Returns the bytes it adds to
    /// the row group in memory.
    pub(crate) fn read(&mut self, input: &mut impl Read) -> std::io::Result<usize> {
        let [tag] = read_array(input)?;
        if tag == NULL {
            self.append_null();
            return Ok(1);
        }
        if tag == PIECES {
            return self.read_pieces(input);
        }
        if tag != VALUE {
            return Err(malformed("an unknown tag"));
        }
        match self {
            ColumnBuilder::Int64(b) => b.append_value(i64::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Float32(b) => b.append_value(f32::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Float64(b) => b.append_value(f64::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Boolean(b) => b.append_value(read_array::<1>(input)? != [0]),
            ColumnBuilder::Decimal(b) => b.append_value(i128::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Date(b) => b.append_value(i32::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Timestamp(b) => b.append_value(i64::from_le_bytes(read_array(input)?)),
            ColumnBuilder::Time(b) => b.append_value(i64::from_le_bytes(read_array(input)?)),
            ColumnBuilder::String(_) | ColumnBuilder::Binary(_) => {
                let length = read_length(input)?;
                self.read_piece(input, length)?;
                self.end_value();
                return Ok(length + 8);
            }
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

    /// The column's values so far as an array; the builder starts empty again.
    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
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
        }
    }
}
