//! Fetch buffers sized from a memory budget, and reading cells and keys out of a fetched batch.
//!
//! A buffer holds `rows × (max value size + indicator)` per column. Declared widths are useless as
//! sizes (`varchar(max)`, PostgreSQL `text`, SQLite's free-form types), so text and binary
//! columns start at a modest capacity and grow only when a value does not fit: the driver reports
//! the truncation, the statement is reopened after the last key sent, and the grown buffer holds
//! fewer rows so the budget still holds. Growth stops at [`BULK_VALUE_MAX_BYTES`]: a larger value
//! is read in pieces (`super::piecewise`), so memory does not follow the values. A value is
//! never cut.

use odbc_api::buffers::{BufferDesc, ColumnarDynBuffer};

use crate::config::{Config, FetchLimit, TextEncoding};
use crate::model::{Cell, Dialect, KeyValue};
use crate::sink::encode::{EncodeError, RowEncoder, RowOp};
use crate::source::catalog::Column;
use crate::source::delivery::FetchBuffer;
use crate::source::key::KeyType;
use crate::source::types::ValueKind;

/// Starting capacity for text and binary values of unknown or large declared size, in bytes.
const LONG_VALUE_START_BYTES: usize = 4096;
/// The largest capacity a bulk buffer grows to per value, in bytes; larger values are read in
/// pieces.
pub(crate) const BULK_VALUE_MAX_BYTES: usize = 64 * 1024;
/// Declared lengths up to this many characters get a buffer that always fits.
const FULL_WIDTH_MAX_CHARS: usize = 1024;

/// How fetch buffers are typed for a run (their size is the tier's [`FetchLimit`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BufferPolicy {
    /// The largest value copied at all (read in pieces): a larger one fails its table.
    pub(crate) max_value_bytes: usize,
    /// Fetch floats as text, for drivers whose wire format is text (psqlODBC): the server's
    /// text is already the shortest exact form. Integers are fetched binary (but see
    /// `loose_integers_as_text`): psqlODBC's text path costs more per value (it looks the
    /// client encoding up by name for every value) than parsing an integer does.
    pub(crate) floats_as_text: bool,
    /// Text buffers hold UTF-16 (the wide ODBC functions) rather than UTF-8: the run's
    /// `fetch_text`, UTF-16 by default on Windows.
    pub(crate) wide_text: bool,
    /// Fetch integer columns other than key columns as text (SQLite). A SQLite column's
    /// declared type does not bind its values (type affinity), and sqliteodbc turns a value it
    /// cannot convert to an integer into NULL or its numeric prefix without any warning (`abc`
    /// arrives as NULL, `1.5` as 1); as text every value arrives as SQLite holds it.
    pub(crate) loose_integers_as_text: bool,
}

impl BufferPolicy {
    /// The buffers of a run of `config` against `dialect`.
    pub(crate) fn for_run(config: &Config, dialect: Dialect) -> BufferPolicy {
        BufferPolicy {
            max_value_bytes: config.max_value_bytes,
            // psqlODBC receives every value as text; binary wire formats keep typed buffers.
            floats_as_text: dialect == Dialect::Postgres,
            wide_text: config.fetch_text == TextEncoding::Utf16,
            loose_integers_as_text: dialect == Dialect::Sqlite,
        }
    }
}

/// The buffer shape of one statement: one description per column and the rows per fetch.
#[derive(Debug, Clone)]
pub(crate) struct FetchLayout {
    kinds: Vec<ValueKind>,
    /// Whether each column is part of the primary key (keys stay typed: they are resume points).
    keys: Vec<bool>,
    /// Capacity per value: bytes (narrow text, binary) or UTF-16 units (wide text).
    capacities: Vec<usize>,
    limit: FetchLimit,
    policy: BufferPolicy,
}

/// A value does not fit a bulk buffer at its cap: the rows are read in pieces instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BeyondBulkCap {
    pub(crate) column: usize,
}

impl FetchLayout {
    pub(crate) fn new(
        columns: &[Column],
        kinds: &[ValueKind],
        limit: FetchLimit,
        policy: BufferPolicy,
    ) -> FetchLayout {
        let capacities = columns
            .iter()
            .zip(kinds)
            .map(|(column, kind)| initial_capacity(column, *kind, policy.wide_text))
            .collect();
        FetchLayout {
            kinds: kinds.to_vec(),
            keys: columns.iter().map(|c| c.key_position.is_some()).collect(),
            capacities,
            limit,
            policy,
        }
    }

    /// Rows per fetch: the tier's batch size, or fewer when wide rows would exceed the budget.
    pub(crate) fn rows_per_fetch(&self) -> usize {
        self.limit
            .rows_for(self.descs().map(|d| d.bytes_per_row()).sum())
    }

    pub(crate) fn descs(&self) -> impl Iterator<Item = BufferDesc> + '_ {
        self.kinds
            .iter()
            .zip(&self.capacities)
            .zip(&self.keys)
            .map(|((kind, capacity), key)| match kind {
                ValueKind::Integer if !self.policy.loose_integers_as_text || *key => {
                    BufferDesc::I64 { nullable: true }
                }
                ValueKind::Float if !self.policy.floats_as_text => {
                    BufferDesc::F64 { nullable: true }
                }
                ValueKind::Binary => BufferDesc::Binary {
                    max_bytes: *capacity,
                },
                _ if self.policy.wide_text => BufferDesc::WText {
                    max_str_len: *capacity,
                },
                _ => BufferDesc::Text {
                    max_str_len: *capacity,
                },
            })
    }

    /// Allocates one buffer of this layout, failing cleanly when memory is short.
    pub(crate) fn allocate(&self) -> Result<FetchBuffer, odbc_api::Error> {
        ColumnarDynBuffer::try_from_descs(self.rows_per_fetch(), self.descs()).map(FetchBuffer::new)
    }

    /// Grows column `column` after the driver reported a value of `needed` bytes (or an unknown
    /// length) that did not fit, up to [`BULK_VALUE_MAX_BYTES`].
    pub(crate) fn grow(
        &mut self,
        column: usize,
        needed: Option<usize>,
    ) -> Result<(), BeyondBulkCap> {
        let unit = if self.policy.wide_text && self.kinds[column] != ValueKind::Binary {
            2
        } else {
            1
        };
        let current = self.capacities[column];
        let wanted = match needed {
            // The reported length is in bytes; leave headroom for the next long value.
            Some(bytes) => (bytes / unit + 1).max(current * 2),
            None => current * 2,
        };
        // Past the cap (or `max_value_bytes`, which the piecewise read enforces) values come in
        // pieces.
        let wanted = wanted.min(BULK_VALUE_MAX_BYTES.min(self.policy.max_value_bytes) / unit);
        if wanted <= current || needed.is_some_and(|bytes| bytes > wanted * unit) {
            return Err(BeyondBulkCap { column });
        }
        self.capacities[column] = wanted;
        Ok(())
    }
}

/// A buffer capacity that always fits short declared types, and a modest start for long ones.
fn initial_capacity(column: &Column, kind: ValueKind, wide_text: bool) -> usize {
    let declared = column
        .length
        .and_then(|l| usize::try_from(l).ok())
        .filter(|l| *l > 0);
    // At most 2 UTF-16 units (wide) or 4 UTF-8 bytes (narrow) per character.
    let units_per_char = if wide_text { 2 } else { 4 };
    match kind {
        // Only used when numbers are fetched as text: "-9223372036854775808",
        // "-1.2345678901234567e-308", "-Infinity".
        ValueKind::Integer | ValueKind::Float => 32,
        ValueKind::Boolean => 8,
        ValueKind::Decimal => column
            .precision
            .and_then(|p| usize::try_from(p).ok())
            .map_or(64, |p| (p + 3).max(24)),
        ValueKind::Timestamp => 40,
        ValueKind::Binary => match declared {
            Some(len) if len <= 8000 => len,
            _ => LONG_VALUE_START_BYTES,
        },
        ValueKind::Text => match (declared, column.source_type.as_str()) {
            (_, "uuid" | "uniqueidentifier") => 36,
            (_, "date") => 10,
            // SQL Server `time(7)`: `hh:mm:ss.nnnnnnn`.
            (_, "time") => 16,
            (Some(len), _) if len <= FULL_WIDTH_MAX_CHARS => len * units_per_char,
            _ => LONG_VALUE_START_BYTES,
        },
    }
}

/// Typed views of a fetched batch's columns, resolved once per batch rather than per cell.
pub(crate) enum ColumnView<'a> {
    Int(&'a [i64], &'a [isize]),
    Float(&'a [f64], &'a [isize]),
    Text(odbc_api::buffers::TextColumnSlice<'a, u8>),
    Wide(odbc_api::buffers::TextColumnSlice<'a, u16>),
    Binary(odbc_api::buffers::BinColumnSlice<'a>),
}

impl ColumnView<'_> {
    pub(crate) fn cell(&self, row: usize) -> Cell<'_> {
        match self {
            ColumnView::Int(values, indicators) => {
                if indicators[row] == odbc_api::sys::NULL_DATA {
                    Cell::Null
                } else {
                    Cell::Int(values[row])
                }
            }
            ColumnView::Float(values, indicators) => {
                if indicators[row] == odbc_api::sys::NULL_DATA {
                    Cell::Null
                } else {
                    Cell::Float(values[row])
                }
            }
            ColumnView::Text(slice) => slice.get(row).map_or(Cell::Null, Cell::Text),
            ColumnView::Wide(slice) => slice.get(row).map_or(Cell::Null, Cell::WideText),
            ColumnView::Binary(slice) => slice.get(row).map_or(Cell::Null, Cell::Bytes),
        }
    }
}

/// Resolves the typed view of every column of `batch`.
pub(crate) fn views(batch: &ColumnarDynBuffer) -> Vec<ColumnView<'_>> {
    (0..batch.num_cols())
        .filter_map(|i| {
            let column = batch.column(i);
            if let Some(slice) = column.as_nullable_slice::<i64>() {
                let (values, indicators) = slice.raw_values();
                return Some(ColumnView::Int(values, indicators));
            }
            let column = batch.column(i);
            if let Some(slice) = column.as_nullable_slice::<f64>() {
                let (values, indicators) = slice.raw_values();
                return Some(ColumnView::Float(values, indicators));
            }
            if let Some(slice) = batch.column(i).as_text() {
                return Some(ColumnView::Text(slice));
            }
            if let Some(slice) = batch.column(i).as_wide_text() {
                return Some(ColumnView::Wide(slice));
            }
            batch.column(i).as_binary().map(ColumnView::Binary)
        })
        .collect()
}

/// A batch that cannot be written: a value, or a change tracking read's operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BatchError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The operation column held NULL or a value that is neither 1 (delete) nor 0 (upsert).
    #[error(
        "the change tracking read returned an operation that is neither a delete nor an \
         upsert; no row of the batch was written"
    )]
    UnknownOperation,
}

/// Encodes every row of the batch into `out` and returns how many were deletes. Without
/// `op_column` every row is an upsert; with it, the view after the encoder's columns holds each
/// row's operation as the change tracking read selects it: the integer 1 for a delete, 0 for an
/// upsert. A batch with any other operation is refused whole: guessing would turn a delete into
/// an upsert of NULLs.
pub(crate) fn encode_batch(
    views: &[ColumnView<'_>],
    rows: usize,
    encoder: &mut RowEncoder,
    op_column: bool,
    out: &mut Vec<u8>,
) -> Result<u64, BatchError> {
    let width = encoder.width();
    let ops = match views.get(width) {
        Some(view) if op_column => Some(view),
        None if op_column => return Err(BatchError::UnknownOperation),
        _ => None,
    };
    let mut deletes = 0;
    for row in 0..rows {
        let op = match ops {
            Some(view) => row_op(view.cell(row))?,
            None => RowOp::Upsert,
        };
        encoder.begin_row(out);
        for (index, view) in views[..width.min(views.len())].iter().enumerate() {
            encoder.cell(out, index, view.cell(row))?;
        }
        if op == RowOp::Delete {
            deletes += 1;
        }
        encoder.end_row(out, op);
    }
    Ok(deletes)
}

/// The operation of a change tracking row. The column is an integer, fetched binary; a driver
/// that returns it as text (narrow or wide, as on Windows) gives the same answer.
pub(super) fn row_op(cell: Cell<'_>) -> Result<RowOp, BatchError> {
    let digit = match cell {
        Cell::Int(v) => v,
        Cell::Text([b]) => i64::from(*b) - i64::from(b'0'),
        Cell::WideText([u]) => i64::from(*u) - i64::from(b'0'),
        _ => -1,
    };
    match digit {
        1 => Ok(RowOp::Delete),
        0 => Ok(RowOp::Upsert),
        _ => Err(BatchError::UnknownOperation),
    }
}

/// A delete row for `key`: the key columns (at `key_indices`) hold the key, the others NULL.
pub(crate) fn encode_delete(
    encoder: &mut RowEncoder,
    key_indices: &[usize],
    key: &[KeyValue],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encoder.begin_row(out);
    for index in 0..encoder.width() {
        let value = key_indices
            .iter()
            .position(|&k| k == index)
            .and_then(|i| key.get(i));
        // A decimal key compared as an integer is still written as the decimal it is.
        let digits;
        let cell = match value {
            Some(KeyValue::Int(v)) if encoder.kind(index) == ValueKind::Integer => Cell::Int(*v),
            Some(KeyValue::Int(v)) => {
                digits = v.to_string();
                Cell::Text(digits.as_bytes())
            }
            Some(KeyValue::Text(text) | KeyValue::Decimal(text)) => Cell::Text(text.as_bytes()),
            Some(KeyValue::Float(bits)) => Cell::Float(f64::from_bits(*bits)),
            Some(KeyValue::Binary(bytes)) => Cell::Bytes(bytes),
            Some(other @ (KeyValue::Timestamp(_) | KeyValue::Date(_))) => {
                digits = other.to_text();
                Cell::Text(digits.as_bytes())
            }
            None => Cell::Null,
        };
        encoder.cell(out, index, cell)?;
    }
    encoder.end_row(out, RowOp::Delete);
    Ok(())
}

/// The key of row `row`, read from the key columns at `key_indices` as values of their key
/// types; `None` if a key value is NULL or not of its type (which a primary key never is).
pub(crate) fn key_of_row(
    views: &[ColumnView<'_>],
    key_indices: &[usize],
    key_types: &[KeyType],
    row: usize,
) -> Option<Vec<KeyValue>> {
    key_indices
        .iter()
        .zip(key_types)
        .map(|(&i, key_type)| key_type.value_of(views.get(i)?.cell(row)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(source_type: &str, length: Option<i64>) -> Column {
        Column {
            length,
            ..Column::for_test("c", source_type, None)
        }
    }

    fn limit(rows: usize, bytes: usize) -> FetchLimit {
        FetchLimit {
            rows: rows.try_into().unwrap(),
            bytes,
        }
    }

    fn policy(max_value_bytes: usize) -> BufferPolicy {
        BufferPolicy {
            max_value_bytes,
            floats_as_text: false,
            wide_text: false,
            loose_integers_as_text: false,
        }
    }

    fn encoder() -> RowEncoder {
        RowEncoder::new(
            crate::model::Format::Csv,
            vec![("ID".into(), ValueKind::Integer)],
        )
        .with_change_columns("2026-12-01T00:00:00Z")
    }

    #[test]
    fn change_operation_is_decoded_from_an_integer_and_from_both_text_forms() {
        use odbc_api::buffers::{Slice, TextColumn};
        let ids = [7i64, 8, 9];
        let present = [0isize; 3];
        // The integer the read selects, as it is fetched (binary).
        let ops = [1i64, 0, 1];
        let views = [
            ColumnView::Int(&ids, &present),
            ColumnView::Int(&ops, &present),
        ];
        let mut out = Vec::new();
        let deletes = encode_batch(&views, 3, &mut encoder(), true, &mut out).unwrap();
        assert_eq!(deletes, 2);
        let text = String::from_utf8(out).unwrap();
        let ops_written: Vec<&str> = text
            .lines()
            .map(|l| l.split(',').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(ops_written, ["delete", "upsert", "delete"], "{text}");
        // The same operations as wide text (UTF-16, as on Windows) and as narrow text.
        let mut wide = TextColumn::<u16>::new(3, 1);
        let mut narrow = TextColumn::<u8>::new(3, 1);
        for (row, op) in ["1", "0", "1"].iter().enumerate() {
            let units: Vec<u16> = op.encode_utf16().collect();
            wide.set_value(row, Some(&units));
            narrow.set_value(row, Some(op.as_bytes()));
        }
        for op_view in [
            ColumnView::Wide(wide.slice(3)),
            ColumnView::Text(narrow.slice(3)),
        ] {
            let views = [ColumnView::Int(&ids, &present), op_view];
            let mut again = Vec::new();
            assert_eq!(
                encode_batch(&views, 3, &mut encoder(), true, &mut again),
                Ok(2)
            );
            assert_eq!(String::from_utf8(again).unwrap(), text);
        }
    }

    #[test]
    fn an_unknown_or_missing_change_operation_fails_the_batch() {
        use odbc_api::buffers::{Slice, TextColumn};
        let ids = [7i64];
        let present = [0isize];
        let null = [odbc_api::sys::NULL_DATA];
        let mut old_form = TextColumn::<u16>::new(1, 8);
        let delete: Vec<u16> = "delete".encode_utf16().collect();
        old_form.set_value(0, Some(&delete));
        for op_view in [
            ColumnView::Int(&[2], &present),
            ColumnView::Int(&[1], &null),
            ColumnView::Wide(old_form.slice(1)),
        ] {
            let views = [ColumnView::Int(&ids, &present), op_view];
            let mut out = Vec::new();
            assert_eq!(
                encode_batch(&views, 1, &mut encoder(), true, &mut out),
                Err(BatchError::UnknownOperation)
            );
        }
        let views = [ColumnView::Int(&ids, &present)];
        assert_eq!(
            encode_batch(&views, 1, &mut encoder(), true, &mut Vec::new()),
            Err(BatchError::UnknownOperation)
        );
        // Without an operation column every row is an upsert.
        assert_eq!(
            encode_batch(&views, 1, &mut encoder(), false, &mut Vec::new()),
            Ok(0)
        );
    }

    #[test]
    fn floats_as_text_for_text_protocol_drivers_and_integers_always_binary() {
        let columns = vec![column("bigint", None), column("double", None)];
        let kinds = [ValueKind::Integer, ValueKind::Float];
        let typed = FetchLayout::new(&columns, &kinds, limit(10, 1 << 20), policy(1 << 20));
        assert!(matches!(
            typed.descs().collect::<Vec<_>>()[..],
            [BufferDesc::I64 { .. }, BufferDesc::F64 { .. }]
        ));
        let mut as_text = policy(1 << 20);
        as_text.floats_as_text = true;
        let text = FetchLayout::new(&columns, &kinds, limit(10, 1 << 20), as_text);
        assert!(matches!(
            text.descs().collect::<Vec<_>>()[..],
            [
                BufferDesc::I64 { .. },
                BufferDesc::Text { .. } | BufferDesc::WText { .. }
            ]
        ));
    }

    #[test]
    fn budget_limits_rows_per_fetch() {
        let columns = vec![column("bigint", None), column("varchar", Some(100))];
        let kinds = [ValueKind::Integer, ValueKind::Text];
        let layout = FetchLayout::new(&columns, &kinds, limit(5000, 1 << 20), policy(1 << 30));
        let per_row: usize = layout.descs().map(|d| d.bytes_per_row()).sum();
        assert_eq!(layout.rows_per_fetch(), ((1 << 20) / per_row).min(5000));
        let roomy = FetchLayout::new(&columns, &kinds, limit(5000, 1 << 30), policy(1 << 30));
        assert_eq!(roomy.rows_per_fetch(), 5000);
    }

    #[test]
    fn long_columns_start_small_and_grow_to_the_bulk_cap_only() {
        let columns = vec![column("text", None)];
        let kinds = [ValueKind::Text];
        let mut layout = FetchLayout::new(&columns, &kinds, limit(1000, 1 << 20), policy(1 << 30));
        let before = layout.rows_per_fetch();
        layout.grow(0, Some(20_000)).unwrap();
        assert!(layout.rows_per_fetch() < before);
        let grown: usize = layout.descs().map(|d| d.bytes_per_row()).sum();
        assert!(grown > 20_000, "{grown}");
        // A value over the cap is read in pieces, whatever max_value_bytes allows.
        assert_eq!(
            layout.grow(0, Some(100_000)),
            Err(BeyondBulkCap { column: 0 })
        );
        // A lower max_value_bytes lowers the cap: the piecewise read refuses the value.
        let mut strict = FetchLayout::new(&columns, &kinds, limit(1000, 1 << 20), policy(4096));
        assert_eq!(strict.grow(0, Some(9000)), Err(BeyondBulkCap { column: 0 }));
        let mut unknown = FetchLayout::new(&columns, &kinds, limit(1000, 1 << 20), policy(1 << 30));
        while unknown.grow(0, None).is_ok() {}
        let capped = unknown.descs().next().unwrap().bytes_per_row();
        assert!(
            (BULK_VALUE_MAX_BYTES..BULK_VALUE_MAX_BYTES + 64).contains(&capped),
            "{capped}"
        );
        let mut wide_policy = policy(1 << 30);
        wide_policy.wide_text = true;
        let mut wide = FetchLayout::new(&columns, &kinds, limit(1000, 1 << 20), wide_policy);
        while wide.grow(0, None).is_ok() {}
        let capped = wide.descs().next().unwrap().bytes_per_row();
        assert!(
            (BULK_VALUE_MAX_BYTES..BULK_VALUE_MAX_BYTES + 64).contains(&capped),
            "{capped}"
        );
    }

    #[test]
    fn a_row_at_the_cap_fetches_within_a_small_budget() {
        let columns = vec![column("text", None)];
        let mut layout = FetchLayout::new(
            &columns,
            &[ValueKind::Text],
            limit(1000, 1024),
            policy(1 << 30),
        );
        layout.grow(0, Some(60_000)).unwrap();
        assert_eq!(layout.rows_per_fetch(), 1);
    }

    #[test]
    fn short_declared_types_fit_exactly() {
        let text = |t, len| initial_capacity(&column(t, len), ValueKind::Text, false);
        assert_eq!(text("uuid", None), 36);
        assert_eq!(text("time", None), 16);
        assert_eq!(text("varchar", Some(20)), 80);
        let wide = initial_capacity(&column("nvarchar", Some(20)), ValueKind::Text, true);
        assert_eq!(wide, 40, "UTF-16 units");
        assert_eq!(text("varchar", Some(-1)), LONG_VALUE_START_BYTES);
        assert_eq!(text("text", None), LONG_VALUE_START_BYTES);
        let mut decimal = column("decimal", None);
        decimal.precision = Some(38);
        assert_eq!(initial_capacity(&decimal, ValueKind::Decimal, false), 41);
    }
}
