//! Parquet part files that stay exactly-once (ARCHITECTURE.md, "Parquet part files").
//!
//! A Parquet file cannot be appended to once its footer is written, and a checkpoint must leave
//! a file a loader can read. So at each checkpoint the rows buffered so far become a row group
//! and a footer describing every row group of the file is appended; the writer goes on
//! appending row groups after it. Readers find the footer from the end of the file, so every
//! checkpointed prefix is a complete Parquet file, and resume still cuts a file back to the
//! length the state recorded. Offsets in a footer are absolute, so the footers left behind
//! between row groups are bytes no reader looks at. A resumed part is not written to again
//! (the writer cannot continue a file it did not start): the next rows go to a new part.
//!
//! A part closes (with its last footer) at `part_file_max_bytes`, at the end of the table, and
//! at a checkpoint once the footers it has left behind exceed a 32nd of it or it holds
//! [`COLUMN_CHUNKS_PER_PART`] column chunks, so a large table written with frequent checkpoints
//! makes neither thousands of files nor mostly footers, and the metadata the writer holds (and
//! copies into each footer) stays small.
//!
//! Row groups are encoded one column at a time at their end: parquet's column writers each keep
//! a compression context once used, and a table of 210 columns would otherwise hold 210 of
//! them. Memory is the row group's values (at most `row_group_bytes` of them), one column's
//! encoded pages, and the metadata of the part's row groups.

pub(crate) mod cells;
pub(crate) mod values;

use std::io::BufRead;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;

use super::part::PartFile;
use crate::model::{Compression, ParquetType};
use cells::ColumnBuilder;

/// A part closes at a checkpoint once the footers it left behind pass this share of it.
const DEAD_FOOTER_SHARE: u64 = 32;

/// A part closes at a checkpoint once it holds this many column chunks (row groups times
/// columns): their metadata stays in memory until the part closes and is copied into each
/// footer (about half a KiB each), so a 210-column table's parts hold about 40 row groups.
const COLUMN_CHUNKS_PER_PART: usize = 8192;

/// The Arrow schema of Parquet files with these columns.
fn schema(columns: &[(String, ParquetType)]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, t)| Field::new(name, data_type(*t), true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn data_type(t: ParquetType) -> DataType {
    match t {
        ParquetType::Int64 => DataType::Int64,
        ParquetType::Float32 => DataType::Float32,
        ParquetType::Float64 => DataType::Float64,
        ParquetType::Boolean => DataType::Boolean,
        ParquetType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        ParquetType::Date => DataType::Date32,
        ParquetType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ParquetType::TimestampUtc => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ParquetType::TimeNanos => DataType::Time64(TimeUnit::Nanosecond),
        ParquetType::String => DataType::LargeUtf8,
        ParquetType::Binary => DataType::LargeBinary,
    }
}

fn codec(compression: Compression) -> parquet::errors::Result<Codec> {
    Ok(match compression {
        Compression::None => Codec::UNCOMPRESSED,
        Compression::Gzip => Codec::GZIP(GzipLevel::try_new(3)?),
        Compression::Zstd => Codec::ZSTD(ZstdLevel::try_new(3)?),
    })
}

fn io_error(e: parquet::errors::ParquetError) -> std::io::Error {
    match e {
        parquet::errors::ParquetError::External(e) => match e.downcast::<std::io::Error>() {
            Ok(e) => *e,
            Err(e) => std::io::Error::other(e),
        },
        e => std::io::Error::other(e),
    }
}

/// A Parquet part file being written.
pub(super) struct ParquetPart {
    writer: SerializedFileWriter<PartFile>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    types: Vec<ParquetType>,
    builders: Vec<ColumnBuilder>,
    /// A row group ends once the builders hold this many bytes of values.
    row_group_bytes: usize,
    /// Rows and bytes of values in the builders.
    buffered_rows: usize,
    buffered_bytes: usize,
    /// Rows in the file's row groups and the builders.
    pub(super) rows: u64,
    /// Rows the last footer describes.
    footer_rows: Option<u64>,
    /// Bytes of footers no reader will look at any more.
    dead_footer_bytes: u64,
    last_footer_bytes: u64,
}

impl ParquetPart {
    /// Starts a Parquet file with `columns` (the change columns among them) in `file`
    /// (created empty).
    pub(super) fn create(
        file: PartFile,
        columns: &[(String, ParquetType)],
        compression: Compression,
        row_group_bytes: usize,
    ) -> std::io::Result<ParquetPart> {
        Self::try_create(file, columns, compression, row_group_bytes).map_err(io_error)
    }

    fn try_create(
        file: PartFile,
        columns: &[(String, ParquetType)],
        compression: Compression,
        row_group_bytes: usize,
    ) -> parquet::errors::Result<ParquetPart> {
        let schema = schema(columns);
        // Statistics per column chunk, not per page, and no page index: the writer keeps every
        // row group's metadata in memory until the part closes and copies it into each footer,
        // and page-level entries multiplied it by the pages of each of 210 columns.
        let mut properties = WriterProperties::builder()
            .set_compression(codec(compression)?)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .set_created_by(format!("ehi-sync {}", env!("CARGO_PKG_VERSION")))
            .build();
        // The Arrow schema rides in the footers as readers expect (`ARROW:schema`), so pyarrow
        // reads text as `large_string` and a timestamp with its time zone.
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema, &mut properties);
        let descriptor = ArrowSchemaConverter::new().convert(&schema)?;
        let writer =
            SerializedFileWriter::new(file, descriptor.root_schema_ptr(), Arc::new(properties))?;
        let factory = ArrowRowGroupWriterFactory::try_new(&writer, Arc::clone(&schema))?;
        let types: Vec<ParquetType> = columns.iter().map(|(_, t)| *t).collect();
        let builders = types
            .iter()
            .map(|t| ColumnBuilder::with_capacity(*t, 0, 0))
            .collect();
        Ok(ParquetPart {
            writer,
            factory,
            schema,
            types,
            builders,
            row_group_bytes,
            buffered_rows: 0,
            buffered_bytes: 0,
            rows: 0,
            footer_rows: None,
            dead_footer_bytes: 0,
            last_footer_bytes: 0,
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.writer.inner().name
    }

    /// Bytes in the file (row groups and footers; not the rows still buffered).
    pub(super) fn bytes(&self) -> u64 {
        self.writer.bytes_written() as u64
    }

    /// Appends the rows of a chunk's cell stream; returns how many rows it held.
    pub(super) fn append(&mut self, input: &mut impl BufRead) -> std::io::Result<u64> {
        let mut rows = 0;
        while !input.fill_buf()?.is_empty() {
            for builder in &mut self.builders {
                self.buffered_bytes += builder.read(input)?;
            }
            self.buffered_rows += 1;
            rows += 1;
            if self.buffered_bytes >= self.row_group_bytes {
                self.write_row_group().map_err(io_error)?;
            }
        }
        self.rows += rows;
        Ok(rows)
    }

    /// Encodes the buffered rows as a row group, one column at a time.
    fn write_row_group(&mut self) -> parquet::errors::Result<()> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let index = self.writer.flushed_row_groups().len();
        let column_writers = self.factory.create_column_writers(index)?;
        let mut row_group = self.writer.next_row_group()?;
        for (((mut column_writer, builder), field), t) in column_writers
            .into_iter()
            .zip(&mut self.builders)
            .zip(self.schema.fields())
            .zip(&self.types)
        {
            let array = builder.finish(*t);
            for leaf in compute_leaves(field, &array)? {
                column_writer.write(&leaf)?;
            }
            column_writer.close()?.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        Ok(())
    }

    /// Makes every row appended so far part of a complete file: the buffered rows become a row
    /// group and a footer follows (unless nothing was added since the last one); then flushes
    /// it to the file, which the caller syncs.
    pub(super) fn checkpoint(&mut self) -> std::io::Result<()> {
        self.try_checkpoint().map_err(io_error)
    }

    fn try_checkpoint(&mut self) -> parquet::errors::Result<()> {
        if self.footer_rows == Some(self.rows) {
            return Ok(());
        }
        self.write_row_group()?;
        let properties = self.writer.properties();
        let file_metadata = FileMetaData::new(
            properties.writer_version().as_num(),
            0, // counted from the row groups by the metadata writer
            Some(properties.created_by().to_owned()),
            properties.key_value_metadata().cloned(),
            Arc::new(self.writer.schema_descr().clone()),
            None, // derived from the schema by the metadata writer
        );
        let metadata =
            ParquetMetaData::new(file_metadata, self.writer.flushed_row_groups().to_vec());
        let mut footer = Vec::new();
        ParquetMetaDataWriter::new(&mut footer, &metadata)
            .with_preserve_page_index_locations(false)
            .finish()?;
        self.writer.write_all(&footer)?;
        self.writer.flush()?;
        self.dead_footer_bytes += self.last_footer_bytes;
        self.last_footer_bytes = footer.len() as u64;
        self.footer_rows = Some(self.rows);
        Ok(())
    }

    /// The footers left behind or the metadata held have grown enough that the part should
    /// close (at a checkpoint, which has just written a footer).
    pub(super) fn worth_closing(&self) -> bool {
        let column_chunks = self.writer.flushed_row_groups().len() * self.builders.len();
        self.dead_footer_bytes * DEAD_FOOTER_SHARE > self.bytes()
            || column_chunks >= COLUMN_CHUNKS_PER_PART
    }

    /// Writes the buffered rows and the final footer; returns the file, flushed, to sync.
    pub(super) fn finish(mut self) -> std::io::Result<PartFile> {
        self.write_row_group().map_err(io_error)?;
        let mut file = self.writer.into_inner().map_err(io_error)?;
        file.rows = self.rows;
        Ok(file)
    }

    /// The file, flushed up to the last checkpoint.
    pub(super) fn file_mut(&mut self) -> &mut PartFile {
        self.writer.inner_mut()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Date32Type, Decimal128Type, Float32Type, Int64Type, Time64NanosecondType,
        TimestampMicrosecondType,
    };
    use arrow_array::{Array, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::durable::FileOps;
    use crate::durable::power_cut::PowerCutFs;
    use crate::model::{Cell, Format};
    use crate::sink::encode::{EncodeError, RowEncoder, RowOp};
    use crate::source::types::ValueKind;

    const TYPES: [(&str, ValueKind, ParquetType); 11] = [
        ("id", ValueKind::Integer, ParquetType::Int64),
        (
            "price",
            ValueKind::Decimal,
            ParquetType::Decimal {
                precision: 19,
                scale: 4,
            },
        ),
        ("born", ValueKind::Text, ParquetType::Date),
        ("seen", ValueKind::Timestamp, ParquetType::Timestamp),
        ("at", ValueKind::Timestamp, ParquetType::TimestampUtc),
        ("clock", ValueKind::Text, ParquetType::TimeNanos),
        ("ratio", ValueKind::Float, ParquetType::Float32),
        ("flag", ValueKind::Boolean, ParquetType::Boolean),
        ("name", ValueKind::Text, ParquetType::String),
        ("blob", ValueKind::Binary, ParquetType::Binary),
        ("precise", ValueKind::Timestamp, ParquetType::String),
    ];

    fn encoder() -> RowEncoder {
        RowEncoder::new(
            Format::Parquet,
            TYPES.iter().map(|(n, k, _)| (n.to_string(), *k)).collect(),
        )
        .with_parquet_types(TYPES.iter().map(|(_, _, t)| *t).collect())
        .with_change_columns("2026-12-06T10:00:00Z")
    }

    /// The columns of `TYPES`, then the change columns.
    fn columns() -> Vec<(String, ParquetType)> {
        TYPES
            .iter()
            .map(|(n, _, t)| (n.to_string(), *t))
            .chain(
                [crate::model::OP_COLUMN, crate::model::SYNCED_AT_COLUMN]
                    .map(|n| (n.to_owned(), ParquetType::String)),
            )
            .collect()
    }

    /// Row `i` as drivers deliver it; every fifth row is all NULL.
    fn encode_row(encoder: &mut RowEncoder, i: i64, out: &mut Vec<u8>) {
        let cells: Vec<Cell<'_>> = if i % 5 == 4 {
            vec![Cell::Null; TYPES.len()]
        } else {
            vec![
                Cell::Int(i),
                Cell::Text(b"-922337203685477.5808"),
                Cell::Text(b"1840-12-31"),
                Cell::Text(b"9999-12-31 23:59:59.999999"),
                Cell::Text(b"2024-03-01 12:00:00.5+01:00"),
                Cell::Text(b"23:59:59.9999999"),
                Cell::Float(f64::from(0.1f32)),
                Cell::Text(b"t"),
                Cell::Text("naïve \"quoted\", x".as_bytes()),
                Cell::Bytes(if i % 5 == 3 { b"" } else { b"\x00\xff" }),
                Cell::Text(b"2024-01-02 03:04:05.1234567 +01:00"),
            ]
        };
        encoder.begin_row(out);
        for (index, cell) in cells.into_iter().enumerate() {
            encoder.cell(out, index, cell).unwrap();
        }
        encoder.end_row(out, RowOp::Upsert);
    }

    fn read(bytes: &[u8]) -> Vec<RecordBatch> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn every_checkpointed_prefix_is_a_complete_file_with_exactly_the_rows_before_it() {
        let fs = PowerCutFs::new();
        let folder = Path::new("/out/t");
        fs.create_dir_all(folder).unwrap();
        let file = PartFile::create(&fs, folder, "t-00001.parquet".into(), b"").unwrap();
        let mut part = ParquetPart::create(file, &columns(), Compression::Zstd, 1 << 20).unwrap();
        let mut encoder = encoder();
        let mut checkpoints = Vec::new();
        let mut row = 0;
        for chunk_rows in [3, 7, 0, 12, 1] {
            let mut out = Vec::new();
            for _ in 0..chunk_rows {
                encode_row(&mut encoder, row, &mut out);
                row += 1;
            }
            assert_eq!(part.append(&mut &out[..]).unwrap(), chunk_rows as u64);
            part.checkpoint().unwrap();
            checkpoints.push((part.bytes(), part.rows));
        }
        // A checkpoint with nothing new leaves the file as it was.
        assert_eq!(checkpoints[1], checkpoints[2]);
        let file = part.finish().unwrap();
        assert_eq!(file.rows, 23);
        let whole = fs.read(&folder.join("t-00001.parquet")).unwrap();
        assert_eq!(whole.len() as u64, file.bytes);
        for (length, rows) in checkpoints {
            let batches = read(&whole[..length as usize]);
            let read_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(read_rows as u64, rows, "the prefix of {length} bytes");
        }
        let batches = read(&whole);
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 23);
        let first = &batches[0];
        assert_eq!(first.schema(), schema(&columns()));
        let ids = first.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.value(2), 2);
        assert!(ids.is_null(4));
        let price = first.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(price.value(0), -9_223_372_036_854_775_808);
        let born = first.column(2).as_primitive::<Date32Type>();
        assert_eq!(born.value(0), -47_117);
        let seen = first.column(3).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(seen.value(0), 253_402_300_799_999_999);
        let at = first.column(4).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            at.value(0),
            1_709_290_800_500_000,
            "12:00:00.5+01:00 is 11:00:00.5 UTC"
        );
        let clock = first.column(5).as_primitive::<Time64NanosecondType>();
        assert_eq!(clock.value(0), 86_399_999_999_900);
        let ratio = first.column(6).as_primitive::<Float32Type>();
        assert_eq!(ratio.value(0), 0.1f32);
        assert!(first.column(7).as_boolean().value(0));
        assert_eq!(
            first.column(8).as_string::<i64>().value(0),
            "naïve \"quoted\", x"
        );
        let blob = first.column(9).as_binary::<i64>();
        assert_eq!(
            (blob.value(0), blob.value(3), blob.is_null(4)),
            (&b"\x00\xff"[..], &b""[..], true)
        );
        assert_eq!(
            first.column(10).as_string::<i64>().value(0),
            "2024-01-02T03:04:05.1234567+01:00",
            "text fallbacks hold the text CSV holds"
        );
        assert_eq!(first.column(11).as_string::<i64>().value(0), "upsert");
        assert_eq!(
            first.column(12).as_string::<i64>().value(4),
            "2026-12-06T10:00:00Z"
        );
    }

    #[test]
    fn long_values_in_pieces_arrive_whole() {
        let fs = PowerCutFs::new();
        let folder = Path::new("/out/t");
        fs.create_dir_all(folder).unwrap();
        let columns = vec![
            ("body".to_owned(), ParquetType::String),
            ("doc".to_owned(), ParquetType::Binary),
        ];
        let file = PartFile::create(&fs, folder, "t-00001.parquet".into(), b"").unwrap();
        let mut part = ParquetPart::create(file, &columns, Compression::None, 1 << 20).unwrap();
        let encoder = RowEncoder::new(
            Format::Parquet,
            vec![
                ("body".into(), ValueKind::Text),
                ("doc".into(), ValueKind::Binary),
            ],
        )
        .with_parquet_types(columns.iter().map(|(_, t)| *t).collect());
        let mut out = Vec::new();
        encoder.begin_row(&mut out);
        let mut text = encoder.begin_long(&mut out, 0, false);
        // "é" split between two pieces.
        text.text(&encoder, &mut out, b"caf\xc3").unwrap();
        text.text(&encoder, &mut out, b"\xa9 au lait").unwrap();
        text.finish(&encoder, &mut out).unwrap();
        let mut bytes = encoder.begin_long(&mut out, 1, true);
        bytes.bytes(&mut out, b"\x01\x02");
        bytes.bytes(&mut out, b"");
        bytes.bytes(&mut out, b"\x03");
        bytes.finish(&encoder, &mut out).unwrap();
        encoder.end_row(&mut out, RowOp::Upsert);
        assert_eq!(part.append(&mut &out[..]).unwrap(), 1);
        let file = part.finish().unwrap();
        let batches = read(&fs.read(&folder.join(&file.name)).unwrap());
        assert_eq!(
            batches[0].column(0).as_string::<i64>().value(0),
            "café au lait"
        );
        assert_eq!(
            batches[0].column(1).as_binary::<i64>().value(0),
            b"\x01\x02\x03"
        );
    }

    #[test]
    fn a_value_its_parquet_type_cannot_hold_is_refused_naming_the_column_not_the_value() {
        let mut encoder = encoder();
        let mut out = Vec::new();
        for (index, text) in [
            (1, &b"12.34567"[..]),
            (2, b"infinity"),
            (3, b"2024-01-01 00:00:00.0000001"),
            (4, b"2024-01-01 00:00:00"),
            (0, b"12abc"),
        ] {
            let refused = encoder.cell(&mut out, index, Cell::Text(text)).unwrap_err();
            let EncodeError::NotParquet { column, .. } = &refused else {
                panic!("{refused}");
            };
            assert_eq!(column, TYPES[index].0);
            let message = refused.to_string();
            assert!(
                !message.contains(std::str::from_utf8(text).unwrap()),
                "{message}"
            );
            assert!(message.contains("\"csv\""), "{message}");
        }
        // A double that is not a widened float cannot become a float32 exactly.
        assert!(encoder.cell(&mut out, 6, Cell::Float(0.1)).is_err());
    }
}
