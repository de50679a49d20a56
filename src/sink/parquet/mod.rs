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
//! at a checkpoint once the footers it has left behind exceed a 32nd of it, so a large table
//! written with frequent checkpoints makes neither thousands of files nor mostly footers.
//!
//! Row groups are encoded one column at a time at their end: parquet's column writers each keep
//! a compression context once used, and a table of 210 columns would otherwise hold 210 of
//! them. Memory is the row group's values (at most [`ROW_GROUP_BYTES`] of them) plus one
//! column's encoded pages.

pub(crate) mod cells;
pub(crate) mod values;

use std::io::Read;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use super::part::PartFile;
use crate::model::{Compression, OP_COLUMN, ParquetType, SYNCED_AT_COLUMN};
use cells::ColumnBuilder;

/// Values held in memory before they become a row group (besides checkpoints, which end one).
pub(crate) const ROW_GROUP_BYTES: usize = 64 << 20;

/// A part closes at a checkpoint once the footers it left behind pass this share of it.
const DEAD_FOOTER_SHARE: u64 = 32;

/// The Arrow schema of a table's Parquet files: its columns, then the change columns as text.
pub(crate) fn schema(columns: &[(String, ParquetType)], change_columns: bool) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|(name, t)| Field::new(name, data_type(*t), true))
        .collect();
    if change_columns {
        for name in [OP_COLUMN, SYNCED_AT_COLUMN] {
            fields.push(Field::new(name, DataType::LargeUtf8, true));
        }
    }
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

/// The parquet types of the columns of `schema` (the change columns are text).
fn parquet_types(schema: &Schema) -> Vec<ParquetType> {
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int64 => ParquetType::Int64,
            DataType::Float32 => ParquetType::Float32,
            DataType::Float64 => ParquetType::Float64,
            DataType::Boolean => ParquetType::Boolean,
            DataType::Decimal128(precision, scale) => ParquetType::Decimal {
                precision: *precision,
                scale: *scale,
            },
            DataType::Date32 => ParquetType::Date,
            DataType::Timestamp(_, Some(_)) => ParquetType::TimestampUtc,
            DataType::Timestamp(_, None) => ParquetType::Timestamp,
            DataType::Time64(_) => ParquetType::TimeNanos,
            DataType::LargeBinary => ParquetType::Binary,
            _ => ParquetType::String,
        })
        .collect()
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
    builders: Vec<ColumnBuilder>,
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
    /// Starts a Parquet file in `file` (created empty).
    pub(super) fn create(
        file: PartFile,
        schema: SchemaRef,
        compression: Compression,
    ) -> std::io::Result<ParquetPart> {
        Self::try_create(file, schema, compression).map_err(io_error)
    }

    fn try_create(
        file: PartFile,
        schema: SchemaRef,
        compression: Compression,
    ) -> parquet::errors::Result<ParquetPart> {
        let mut properties = WriterProperties::builder()
            .set_compression(codec(compression)?)
            .set_created_by(format!("ehi-sync {}", env!("CARGO_PKG_VERSION")))
            .build();
        // The Arrow schema rides in the footers as readers expect (`ARROW:schema`), so pyarrow
        // reads text as `large_string` and a timestamp with its time zone.
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema, &mut properties);
        let descriptor = ArrowSchemaConverter::new().convert(&schema)?;
        let writer =
            SerializedFileWriter::new(file, descriptor.root_schema_ptr(), Arc::new(properties))?;
        let factory = ArrowRowGroupWriterFactory::try_new(&writer, Arc::clone(&schema))?;
        let builders = parquet_types(&schema)
            .into_iter()
            .map(ColumnBuilder::new)
            .collect();
        Ok(ParquetPart {
            writer,
            factory,
            schema,
            builders,
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
    pub(super) fn append(&mut self, input: &mut impl Read) -> std::io::Result<u64> {
        let mut input = std::io::BufReader::with_capacity(64 * 1024, input);
        let mut rows = 0;
        while !std::io::BufRead::fill_buf(&mut input)?.is_empty() {
            for builder in &mut self.builders {
                self.buffered_bytes += builder.read(&mut input)?;
            }
            self.buffered_rows += 1;
            rows += 1;
            if self.buffered_bytes >= ROW_GROUP_BYTES {
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
        for ((mut column_writer, builder), field) in column_writers
            .into_iter()
            .zip(&mut self.builders)
            .zip(self.schema.fields())
        {
            let array = builder.finish();
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

    /// The last checkpoint left enough dead footers behind that the part should close.
    pub(super) fn worth_closing(&self) -> bool {
        self.dead_footer_bytes * DEAD_FOOTER_SHARE > self.bytes()
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
