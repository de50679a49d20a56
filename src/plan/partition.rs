//! Partitions: the units of work a tier's workers share.

use crate::model::{Dialect, KeyRange, KeyValue, PartitionSpec, ReadMode};
use crate::source::catalog::Table;
use crate::source::key::KeyType;

/// How a table is read and why, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadChoice {
    pub(crate) mode: ReadMode,
    /// Key types in key order; empty for a stream.
    pub(crate) key_types: Vec<KeyType>,
    pub(crate) reason: String,
}

impl ReadChoice {
    /// Ranges of the leading key read in parallel when it splits arithmetically (integers,
    /// whole-number decimals); keyset chunks for any other key; one stream without a key or
    /// with a key column that cannot be a resume point.
    pub(crate) fn of(dialect: Dialect, table: &Table) -> ReadChoice {
        let stream = |reason: String| ReadChoice {
            mode: ReadMode::Stream,
            key_types: Vec::new(),
            reason,
        };
        if table.primary_key.is_empty() {
            return stream("one stream: no primary key".into());
        }
        let mut key_types = Vec::with_capacity(table.primary_key.len());
        for name in &table.primary_key {
            let Some(column) = table.columns.iter().find(|c| &c.name == name) else {
                return stream(format!(
                    "one stream: key column '{name}' was not discovered"
                ));
            };
            match KeyType::of(dialect, column) {
                Some(key_type) => key_types.push(key_type),
                None => {
                    return stream(format!(
                        "one stream: key column '{name}' is {}, which cannot be a resume point",
                        column.source_type
                    ));
                }
            }
        }
        let composite = if key_types.len() > 1 {
            "composite key"
        } else {
            "key"
        };
        let (mode, reason) = match &key_types[0] {
            KeyType::Integer(_) => (ReadMode::Range, format!("range on integer {composite}")),
            leading if leading.splits_as_integer() => (
                ReadMode::Range,
                format!("range on whole-number decimal {composite}"),
            ),
            _ if key_types.len() > 1 => (ReadMode::Keyset, "keyset on composite key".to_owned()),
            _ => (
                ReadMode::Keyset,
                format!("keyset on {} key", table_key_type(table)),
            ),
        };
        ReadChoice {
            mode,
            key_types,
            reason,
        }
    }
}

/// The leading key column's declared type, for the plan.
fn table_key_type(table: &Table) -> String {
    table
        .primary_key
        .first()
        .and_then(|k| table.columns.iter().find(|c| &c.name == k))
        .map_or_else(String::new, |c| c.source_type.clone())
}

/// A partition handed to a worker, with the key to resume after (the last key already written).
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub(crate) table: usize,
    pub(crate) spec: PartitionSpec,
    pub(crate) after: Option<Vec<KeyValue>>,
}

/// Splits the integer key range `[min, max]` into `count` contiguous ranges of equal width. The
/// first range is open below and the last open above, so rows inserted outside the bounds seen
/// at the start are still read exactly once.
pub(crate) fn split_integer_range(min: i64, max: i64, count: u64) -> Vec<PartitionSpec> {
    let span = i128::from(max) - i128::from(min) + 1;
    let count = i128::from(count.max(1)).min(span.max(1));
    let width = (span + count - 1) / count;
    let boundary = |k: i128| -> Option<i64> { i64::try_from(i128::from(min) - 1 + k * width).ok() };
    (0..count)
        .map(|k| {
            let lower = if k == 0 { None } else { boundary(k) };
            let upper = if k == count - 1 {
                None
            } else {
                boundary(k + 1)
            };
            PartitionSpec {
                id: usize::try_from(k).unwrap_or(usize::MAX),
                mode: ReadMode::Range,
                range: KeyRange {
                    lower_exclusive: lower,
                    upper_inclusive: upper,
                },
            }
        })
        .collect()
}

/// The single partition of a table read as keyset chunks or as one stream.
pub(crate) fn whole_table(mode: ReadMode) -> Vec<PartitionSpec> {
    vec![PartitionSpec {
        id: 0,
        mode,
        range: KeyRange::ALL,
    }]
}

/// The partitions of a change tracking read: one, over every key, read as one statement in
/// key order (see [`rows_per_statement`]). `CHANGETABLE(CHANGES …)` is evaluated again by every
/// statement, so keyset chunks would cost time quadratic in the number of changes.
pub(crate) fn change_tracking_read() -> Vec<PartitionSpec> {
    whole_table(ReadMode::Range)
}

/// The row limit (`TOP`) of each statement of a partition: keyset partitions are read in chunks
/// of `partition_size` rows, every other mode in one statement.
pub(crate) fn rows_per_statement(mode: ReadMode, partition_size: u64) -> Option<u64> {
    (mode == ReadMode::Keyset).then_some(partition_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PartitionSpec, ReadMode};

    #[test]
    fn change_tracking_is_one_partition_read_in_one_statement() {
        let specs = change_tracking_read();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].range, KeyRange::ALL);
        assert_eq!(rows_per_statement(specs[0].mode, 5000), None);
        assert_eq!(rows_per_statement(ReadMode::Keyset, 5000), Some(5000));
    }

    fn ranges(specs: &[PartitionSpec]) -> Vec<(Option<i64>, Option<i64>)> {
        specs
            .iter()
            .map(|s| (s.range.lower_exclusive, s.range.upper_inclusive))
            .collect()
    }

    #[test]
    fn even_split_covers_everything_once() {
        let specs = split_integer_range(1, 100, 4);
        assert_eq!(
            ranges(&specs),
            [
                (None, Some(25)),
                (Some(25), Some(50)),
                (Some(50), Some(75)),
                (Some(75), None)
            ]
        );
        assert_eq!(specs.iter().map(|s| s.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn more_partitions_than_keys_collapses() {
        assert_eq!(
            ranges(&split_integer_range(5, 6, 10)),
            [(None, Some(5)), (Some(5), None)]
        );
        assert_eq!(ranges(&split_integer_range(7, 7, 3)), [(None, None)]);
    }

    #[test]
    fn extreme_bounds_do_not_overflow() {
        let specs = split_integer_range(i64::MIN, i64::MAX, 3);
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].range.lower_exclusive, None);
        assert_eq!(specs[2].range.upper_inclusive, None);
        let b1 = specs[0].range.upper_inclusive.unwrap();
        assert_eq!(specs[1].range.lower_exclusive, Some(b1));
        assert!(b1 < specs[1].range.upper_inclusive.unwrap());
    }

    #[test]
    fn negative_keys() {
        assert_eq!(
            ranges(&split_integer_range(-10, 9, 2)),
            [(None, Some(-1)), (Some(-1), None)]
        );
    }
}
