//! Reading rows one at a time with `SQLGetData`, long text and binary values in pieces.
//!
//! A bulk fetch buffer holds every value of a column at one capacity, capped at
//! [`super::fetch::BULK_VALUE_MAX_BYTES`]. A value larger than the cap is not fetched whole:
//! the statement is reopened after the last key sent and read here, one row per fetch with no
//! column bound, every column read with `SQLGetData` in ascending order (what the ODBC
//! specification allows every driver, without `SQL_GD_ANY_ORDER` or `SQL_GD_BLOCK`). A text or
//! binary value goes through one fixed piece buffer: each call returns the next piece (01004
//! with the remaining length or `SQL_NO_TOTAL`, until the last), and each piece is encoded
//! straight into the row's output (`LongValue`). Memory per worker is one piece and the encoded
//! row, not a multiple of the value.

use odbc_api::Nullable;
use odbc_api::buffers::{BufferDesc, Indicator};
use odbc_api::handles::{CDataMut, DiagnosticStream, SqlResult, Statement, StatementRef};
use odbc_api::parameter::{Binary, Text, VarCell, WideText};

use super::fetch::{FetchLayout, row_op};
use crate::error::DbError;
use crate::model::{Cell, KeyValue};
use crate::sink::encode::{EncodeError, RowEncoder, RowOp};
use crate::source::key::KeyType;
use crate::source::types::ValueKind;

/// Bytes per `SQLGetData` call for text and binary values.
pub(crate) const PIECE_BYTES: usize = 64 * 1024;
/// Encoded bytes of a row held in memory before they go to its spool file.
pub(crate) const SPILL_BYTES: usize = 1 << 20;

/// Writes a value read whole (and takes a key column's value).
type CellSink<'a> = dyn FnMut(Cell<'_>, &mut RowEncoder, &mut Vec<u8>) -> Result<(), RowError> + 'a;

/// Takes the encoded bytes of a row too large to hold (see [`RowReader::encode_row`]).
pub(crate) type Spill<'a> = dyn FnMut(&[u8]) -> std::io::Result<()> + 'a;

/// How one result column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Int,
    Float,
    /// Narrow text; `pieces`: a long value is encoded piece by piece (text columns that are not
    /// keys), else read whole (keys, decimals, timestamps: short by their type).
    Text {
        pieces: bool,
    },
    Wide {
        pieces: bool,
    },
    Binary {
        pieces: bool,
    },
}

/// The column reads of a statement, in select order, typed as the bulk buffers would be.
pub(crate) struct RowReader {
    reads: Vec<Read>,
    max_value_bytes: usize,
    piece: Vec<u8>,
    wide_piece: Vec<u16>,
    /// A value read whole (a key or a short type that outgrew a piece).
    whole: Vec<u8>,
    wide_whole: Vec<u16>,
}

/// Why a row could not be read.
#[derive(Debug)]
pub(crate) enum RowError {
    Db(odbc_api::Error),
    /// The driver did not deliver a value: a warning about it, or no data where it announced
    /// more. Holds the column (0-based) and the diagnostic.
    Undelivered {
        column: usize,
        diagnostic: Option<DbError>,
    },
    Encode(EncodeError),
    /// The row's spool file could not be written.
    Spill(std::io::Error),
    /// A value is larger than `max_value_bytes`.
    TooLarge {
        column: usize,
    },
    UnknownOperation,
}

/// What one row held besides its encoded values.
pub(crate) struct RowRead {
    /// The key columns' values, in key order; `None` if one was NULL or not of its type.
    pub(crate) key: Option<Vec<KeyValue>>,
    pub(crate) op: RowOp,
}

impl RowReader {
    /// Reads of `layout`'s columns; `keys[i]`: column `i` is a key column. `wide_pieces`: long
    /// text comes in pieces as UTF-16 whatever the buffers' text width.
    pub(crate) fn new(
        layout: &FetchLayout,
        kinds: &[ValueKind],
        keys: &[bool],
        max: usize,
        wide_pieces: bool,
    ) -> RowReader {
        let reads = layout
            .descs()
            .enumerate()
            .map(|(i, desc)| {
                let pieces = !keys.get(i).copied().unwrap_or(false)
                    && matches!(kinds.get(i), Some(ValueKind::Text | ValueKind::Binary));
                match desc {
                    BufferDesc::I64 { .. } => Read::Int,
                    BufferDesc::F64 { .. } => Read::Float,
                    BufferDesc::Binary { .. } => Read::Binary { pieces },
                    BufferDesc::WText { .. } => Read::Wide { pieces },
                    _ if pieces && wide_pieces => Read::Wide { pieces },
                    _ => Read::Text { pieces },
                }
            })
            .collect();
        RowReader {
            reads,
            max_value_bytes: max,
            piece: vec![0; PIECE_BYTES + 1],
            wide_piece: vec![0; PIECE_BYTES / 2 + 1],
            whole: Vec::new(),
            wide_whole: Vec::new(),
        }
    }

    /// Encodes the fetched row of `statement` into `out`: the encoder's columns, then (with
    /// `op_column`) the change operation after them. Whenever a long value has made `out`
    /// hold [`SPILL_BYTES`], `spill` takes what it holds (and empties it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_row(
        &mut self,
        statement: &mut StatementRef<'_>,
        encoder: &mut RowEncoder,
        key_indices: &[usize],
        key_types: &[KeyType],
        op_column: bool,
        out: &mut Vec<u8>,
        spill: &mut Spill<'_>,
    ) -> Result<RowRead, RowError> {
        let mut key: Vec<Option<KeyValue>> = vec![None; key_indices.len()];
        encoder.begin_row(out);
        for index in 0..encoder.width() {
            let key_type = key_indices
                .iter()
                .position(|&k| k == index)
                .map(|position| (position, &key_types[position]));
            let mut sink = |cell: Cell<'_>, encoder: &mut RowEncoder, out: &mut Vec<u8>| {
                if let Some((position, key_type)) = key_type {
                    key[position] = key_type.value_of(cell);
                }
                encoder.cell(out, index, cell).map_err(RowError::Encode)
            };
            self.read_column(statement, index, encoder, out, &mut sink, spill)?;
        }
        let op = if op_column {
            let mut op = Nullable::<i64>::null();
            get(statement, encoder.width(), &mut op)?;
            let cell = op.into_opt().map_or(Cell::Null, Cell::Int);
            row_op(cell).map_err(|_| RowError::UnknownOperation)?
        } else {
            RowOp::Upsert
        };
        encoder.end_row(out, op);
        Ok(RowRead {
            key: key.into_iter().collect(),
            op,
        })
    }

    /// Reads column `index` and writes it: a short value (one piece) through `sink` as the bulk
    /// path would, a long one piece by piece.
    fn read_column(
        &mut self,
        statement: &mut StatementRef<'_>,
        index: usize,
        encoder: &mut RowEncoder,
        out: &mut Vec<u8>,
        sink: &mut CellSink<'_>,
        spill: &mut Spill<'_>,
    ) -> Result<(), RowError> {
        let mut spill_full = |out: &mut Vec<u8>| {
            if out.len() >= SPILL_BYTES {
                spill(out).map_err(RowError::Spill)?;
                out.clear();
            }
            Ok::<(), RowError>(())
        };
        let max = self.max_value_bytes;
        let too_large = |length: usize| {
            if length > max {
                Err(RowError::TooLarge { column: index })
            } else {
                Ok(())
            }
        };
        match self.reads[index] {
            Read::Int => {
                let mut value = Nullable::<i64>::null();
                get(statement, index, &mut value)?;
                sink(value.into_opt().map_or(Cell::Null, Cell::Int), encoder, out)
            }
            Read::Float => {
                let mut value = Nullable::<f64>::null();
                get(statement, index, &mut value)?;
                sink(
                    value.into_opt().map_or(Cell::Null, Cell::Float),
                    encoder,
                    out,
                )
            }
            Read::Text { pieces } | Read::Binary { pieces } => {
                let binary = matches!(self.reads[index], Read::Binary { .. });
                let mut piece = next_piece(statement, index, &mut self.piece, binary)?;
                let Some(first) = piece else {
                    return sink(Cell::Null, encoder, out);
                };
                let cell = |bytes| {
                    if binary {
                        Cell::Bytes(bytes)
                    } else {
                        Cell::Text(bytes)
                    }
                };
                if first.complete {
                    too_large(first.length)?;
                    return sink(cell(&self.piece[..first.length]), encoder, out);
                }
                let mut length = 0;
                if !pieces {
                    self.whole.clear();
                    while let Some(p) = piece {
                        length += p.length;
                        too_large(length)?;
                        self.whole.extend_from_slice(&self.piece[..p.length]);
                        if p.complete {
                            break;
                        }
                        piece = next_piece(statement, index, &mut self.piece, binary)?;
                    }
                    let whole = std::mem::take(&mut self.whole);
                    let written = sink(cell(&whole), encoder, out);
                    self.whole = whole;
                    return written;
                }
                let mut value = encoder.begin_long(out, index, binary);
                while let Some(p) = piece {
                    length += p.length;
                    too_large(length)?;
                    let bytes = &self.piece[..p.length];
                    if binary {
                        value.bytes(out, bytes);
                    } else {
                        value.text(encoder, out, bytes).map_err(RowError::Encode)?;
                    }
                    spill_full(out)?;
                    if p.complete {
                        break;
                    }
                    piece = next_piece(statement, index, &mut self.piece, binary)?;
                }
                value.finish(encoder, out).map_err(RowError::Encode)
            }
            Read::Wide { pieces } => {
                let mut piece = next_wide_piece(statement, index, &mut self.wide_piece)?;
                let Some(first) = piece else {
                    return sink(Cell::Null, encoder, out);
                };
                if first.complete {
                    too_large(first.length * 2)?;
                    return sink(
                        Cell::WideText(&self.wide_piece[..first.length]),
                        encoder,
                        out,
                    );
                }
                let mut length = 0;
                if !pieces {
                    self.wide_whole.clear();
                    while let Some(p) = piece {
                        length += p.length * 2;
                        too_large(length)?;
                        self.wide_whole
                            .extend_from_slice(&self.wide_piece[..p.length]);
                        if p.complete {
                            break;
                        }
                        piece = next_wide_piece(statement, index, &mut self.wide_piece)?;
                    }
                    let whole = std::mem::take(&mut self.wide_whole);
                    let written = sink(Cell::WideText(&whole), encoder, out);
                    self.wide_whole = whole;
                    return written;
                }
                let mut value = encoder.begin_long(out, index, false);
                while let Some(p) = piece {
                    length += p.length * 2;
                    too_large(length)?;
                    value
                        .wide(encoder, out, &self.wide_piece[..p.length])
                        .map_err(RowError::Encode)?;
                    spill_full(out)?;
                    if p.complete {
                        break;
                    }
                    piece = next_wide_piece(statement, index, &mut self.wide_piece)?;
                }
                value.finish(encoder, out).map_err(RowError::Encode)
            }
        }
    }
}

/// One piece of a value: its length (bytes, or UTF-16 units for wide text) and whether it was
/// the last.
#[derive(Debug, Clone, Copy)]
struct Piece {
    length: usize,
    complete: bool,
}

/// Reads the next piece of narrow text or binary column `index` into `buffer`; `None` for NULL.
fn next_piece(
    statement: &mut StatementRef<'_>,
    index: usize,
    buffer: &mut [u8],
    binary: bool,
) -> Result<Option<Piece>, RowError> {
    let indicator = Indicator::NoTotal;
    // A text piece ends in the terminating zero the driver writes (odbc-api checks it is
    // there). A driver may also end a piece early rather than split a character: its zero then
    // comes up to 3 bytes before the end, so those bytes start as zeros.
    let tail = buffer.len().saturating_sub(4);
    buffer[tail..].fill(0);
    let (indicator, truncated) = if binary {
        let mut target = VarCell::<&mut [u8], Binary>::from_buffer(buffer, indicator);
        let truncated = get(statement, index, &mut target)?;
        (target.indicator(), truncated)
    } else {
        let mut target = VarCell::<&mut [u8], Text>::from_buffer(buffer, indicator);
        let truncated = get(statement, index, &mut target)?;
        (target.indicator(), truncated)
    };
    let data = if binary {
        buffer.len()
    } else {
        buffer.len() - 1
    };
    let Some(mut piece) = piece_of(indicator, truncated, data, 1, index)? else {
        return Ok(None);
    };
    if !piece.complete && !binary {
        piece.length -= buffer[..piece.length]
            .iter()
            .rev()
            .take(3)
            .take_while(|&&b| b == 0)
            .count();
    }
    Ok(Some(piece))
}

/// Reads the next piece of wide text column `index` into `buffer`; `None` for NULL.
fn next_wide_piece(
    statement: &mut StatementRef<'_>,
    index: usize,
    buffer: &mut [u16],
) -> Result<Option<Piece>, RowError> {
    // As for narrow text: a piece ended early rather than split a surrogate pair.
    let tail = buffer.len().saturating_sub(2);
    buffer[tail..].fill(0);
    let mut target = VarCell::<&mut [u16], WideText>::from_buffer(buffer, Indicator::NoTotal);
    let truncated = get(statement, index, &mut target)?;
    let indicator = target.indicator();
    let Some(mut piece) = piece_of(indicator, truncated, buffer.len() - 1, 2, index)? else {
        return Ok(None);
    };
    if !piece.complete && buffer[..piece.length].last() == Some(&0) {
        piece.length -= 1;
    }
    Ok(Some(piece))
}

/// The piece a `SQLGetData` call left in a buffer holding `data` elements of `unit` bytes
/// (after the terminating zero). Whether more follows is what the driver said with 01004, not
/// the length: a driver converting from the server's code page (Driver 18 from a `varchar`)
/// reports the length before conversion. A last piece whose length does not fit, or is not
/// known, did not fully arrive (a driver returning `SQL_SUCCESS` for a cut value).
fn piece_of(
    indicator: Indicator,
    truncated: bool,
    data: usize,
    unit: usize,
    index: usize,
) -> Result<Option<Piece>, RowError> {
    match (indicator, truncated) {
        (Indicator::Null, _) => Ok(None),
        (_, true) => Ok(Some(Piece {
            length: data,
            complete: false,
        })),
        (Indicator::Length(bytes), false) if bytes <= data * unit => Ok(Some(Piece {
            length: bytes / unit,
            complete: true,
        })),
        _ => Err(RowError::Undelivered {
            column: index,
            diagnostic: None,
        }),
    }
}

/// `SQLGetData` of result column `index` (0-based); `true` when more of the value follows.
/// Truncation (01004) is how pieces arrive; any other warning about a value, or no data where
/// the driver announced more, means the value did not arrive.
fn get(
    statement: &mut StatementRef<'_>,
    index: usize,
    target: &mut impl CDataMut,
) -> Result<bool, RowError> {
    let column = u16::try_from(index + 1).unwrap_or(u16::MAX);
    match statement.get_data(column, target) {
        SqlResult::NoData => Err(RowError::Undelivered {
            column: index,
            diagnostic: None,
        }),
        SqlResult::SuccessWithInfo(()) => {
            let mut truncated = false;
            let mut records = DiagnosticStream::new(&*statement);
            while let Some(record) = records.next() {
                let state = record.state.as_str();
                if state == "01004" {
                    truncated = true;
                } else if crate::source::delivery::concerns_values(state) {
                    return Err(RowError::Undelivered {
                        column: index,
                        diagnostic: Some(
                            DbError {
                                state: state.to_owned(),
                                native: record.native_error,
                                message: odbc_api::handles::slice_to_cow_utf8(&record.message)
                                    .into_owned(),
                            }
                            .without_values(),
                        ),
                    });
                }
            }
            Ok(truncated)
        }
        other => other
            .into_result(&*statement)
            .map(|()| false)
            .map_err(RowError::Db),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::fetch::BufferPolicy;
    use crate::source::catalog::Column;

    #[test]
    fn more_follows_when_the_driver_says_so_and_a_last_piece_must_fit() {
        let piece = |indicator, truncated| {
            piece_of(indicator, truncated, 100, 2, 3).map(|p| p.map(|p| (p.length, p.complete)))
        };
        assert!(matches!(piece(Indicator::Null, false), Ok(None)));
        // Driver 18 from a varchar: 01004 with the length before conversion, which fits.
        assert!(matches!(
            piece(Indicator::Length(60), true),
            Ok(Some((100, false)))
        ));
        assert!(matches!(
            piece(Indicator::NoTotal, true),
            Ok(Some((100, false)))
        ));
        assert!(matches!(
            piece(Indicator::Length(200), false),
            Ok(Some((100, true)))
        ));
        assert!(matches!(
            piece(Indicator::Length(0), false),
            Ok(Some((0, true)))
        ));
        // SQL_SUCCESS for a value longer than what arrived, or of unknown length.
        for indicator in [Indicator::Length(202), Indicator::NoTotal] {
            assert!(matches!(
                piece(indicator, false),
                Err(RowError::Undelivered {
                    column: 3,
                    diagnostic: None
                })
            ));
        }
    }

    #[test]
    fn a_reader_holds_one_piece_whatever_the_values() {
        let column = |name: &str, source_type: &str| Column::for_test(name, source_type, None);
        let columns = [
            column("id", "bigint"),
            column("note", "text"),
            column("doc", "bytea"),
        ];
        let kinds = [ValueKind::Integer, ValueKind::Text, ValueKind::Binary];
        let policy = BufferPolicy {
            max_value_bytes: 4 << 30,
            floats_as_text: false,
            wide_text: false,
            loose_integers_as_text: false,
        };
        let limit = crate::config::FetchLimit {
            rows: 1000.try_into().unwrap(),
            bytes: 2 << 20,
        };
        let layout = FetchLayout::new(&columns, &kinds, limit, policy);
        let reader = RowReader::new(&layout, &kinds, &[true, false, false], 4 << 30, false);
        assert_eq!(
            reader.reads,
            [
                Read::Int,
                Read::Text { pieces: true },
                Read::Binary { pieces: true }
            ]
        );
        let wide = RowReader::new(&layout, &kinds, &[true, false, false], 4 << 30, true);
        assert_eq!(wide.reads[1], Read::Wide { pieces: true });
        // What it holds for values, whatever their size: memory does not follow the values.
        assert_eq!(reader.piece.len(), PIECE_BYTES + 1);
        assert_eq!(reader.wide_piece.len() * 2, PIECE_BYTES + 2);
        assert!(reader.whole.capacity() == 0 && reader.wide_whole.capacity() == 0);
    }
}
