//! Output files: names that are safe on Windows and Unix, and compression of chunks.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::durable::safe_name;
use crate::model::{Compression, Format};

/// What the writer does with a chunk's bytes for each [`Compression`].
impl Compression {
    /// A spool for one chunk too large to hold in memory (a row with a long value): an
    /// anonymous temporary file in `dir` (removed by the system when closed, so a crash leaves
    /// nothing behind), written through this compression as one member or frame.
    pub(crate) fn spool(self, dir: &Path) -> std::io::Result<Spool> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(match self {
            Compression::None => Spool::Plain(file),
            Compression::Gzip => Spool::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::new(3),
            )),
            Compression::Zstd => Spool::Zstd(zstd::stream::Encoder::new(file, 3)?),
        })
    }

    /// Compresses one chunk into a self-contained member or frame.
    pub(crate) fn compress(self, bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(bytes),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(bytes.len() / 4),
                    flate2::Compression::new(3),
                );
                encoder.write_all(&bytes)?;
                encoder.finish()
            }
            Compression::Zstd => zstd::bulk::compress(&bytes, 3),
        }
    }
}

/// A chunk's compressed bytes on their way to a temporary file (see [`Compression::spool`]).
pub(crate) enum Spool {
    Plain(File),
    Gzip(flate2::write::GzEncoder<File>),
    Zstd(zstd::stream::Encoder<'static, File>),
}

impl Spool {
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Spool::Plain(file) => file.write_all(bytes),
            Spool::Gzip(encoder) => encoder.write_all(bytes),
            Spool::Zstd(encoder) => encoder.write_all(bytes),
        }
    }

    /// Ends the member or frame and returns the file, positioned at its start.
    pub(crate) fn finish(self) -> std::io::Result<File> {
        use std::io::{Seek, SeekFrom};
        let mut file = match self {
            Spool::Plain(file) => file,
            Spool::Gzip(encoder) => encoder.finish()?,
            Spool::Zstd(encoder) => encoder.finish()?,
        };
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

/// Folder names for `schema.table` names, made unique without regard to case (Windows and
/// macOS file systems ignore case). Deterministic for the same list, so a resumed run finds the
/// same folders.
pub(crate) fn unique_folder_names(names: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .iter()
        .map(|name| {
            let base = safe_name(name);
            let mut candidate = base.clone();
            let mut n = 2;
            while !seen.insert(candidate.to_lowercase()) {
                candidate = format!("{base}~{n}");
                n += 1;
            }
            candidate
        })
        .collect()
}

/// `<table>-00001.csv`, `<table>-00002.ndjson.zst`, ... for a full load;
/// `<table>-<run id>-00001.csv` for an incremental one, so names sort in the order a loader
/// applies them (run ids sort by time).
pub(crate) fn part_file_name(
    table: &str,
    run_id: Option<&str>,
    sequence: u32,
    format: Format,
    compression: Compression,
) -> String {
    // Parquet compresses inside the file.
    let (extension, compressed) = match format {
        Format::Csv => ("csv", compression.extension()),
        Format::Ndjson => ("ndjson", compression.extension()),
        Format::Parquet => ("parquet", ""),
    };
    let run = run_id
        .map(|r| format!("{}-", safe_name(r)))
        .unwrap_or_default();
    format!(
        "{}-{run}{sequence:05}.{extension}{compressed}",
        safe_name(table),
    )
}

/// True for names `part_file_name` produces (`x-00001.csv`, `x-00002.ndjson.zst`,
/// `x-00003.parquet`).
pub(crate) fn is_part_file_name(name: &str) -> bool {
    let base = [".gz", ".zst"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    let Some(stem) = base
        .strip_suffix(".csv")
        .or_else(|| base.strip_suffix(".ndjson"))
        .or_else(|| base.strip_suffix(".parquet"))
    else {
        return false;
    };
    stem.rsplit_once('-')
        .is_some_and(|(_, seq)| seq.len() >= 5 && seq.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Compression;
    use std::io::Read;

    #[test]
    fn folder_names_unique_ignoring_case() {
        let names = vec![
            "dbo.Patient".to_owned(),
            "dbo.PATIENT".into(),
            "dbo.x".into(),
        ];
        assert_eq!(
            unique_folder_names(&names),
            ["dbo.Patient", "dbo.PATIENT~2", "dbo.x"]
        );
    }

    #[test]
    fn part_file_names() {
        assert_eq!(
            part_file_name("Order Detail", None, 3, Format::Csv, Compression::None),
            "Order Detail-00003.csv"
        );
        assert_eq!(
            part_file_name("x", None, 12, Format::Ndjson, Compression::Zstd),
            "x-00012.ndjson.zst"
        );
        assert_eq!(
            part_file_name("x", None, 1, Format::Parquet, Compression::Zstd),
            "x-00001.parquet"
        );
    }

    #[test]
    fn part_file_names_are_recognised() {
        assert!(is_part_file_name("Order Detail-00003.csv"));
        let incremental = part_file_name(
            "x",
            Some("20261125T143301Z-1a2b"),
            2,
            Format::Csv,
            Compression::Gzip,
        );
        assert_eq!(incremental, "x-20261125T143301Z-1a2b-00002.csv.gz");
        assert!(is_part_file_name(&incremental));
        assert!(is_part_file_name("x-00012.ndjson.zst"));
        assert!(is_part_file_name("x-100000.csv.gz"));
        assert!(is_part_file_name("x-00003.parquet"));
        assert!(!is_part_file_name("_manifest.json"));
        assert!(!is_part_file_name("notes.csv"));
        assert!(!is_part_file_name("x-00001.csv.bak"));
    }

    #[test]
    fn concatenated_compressed_chunks_decode_to_the_concatenated_input() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let mut file = compression.compress(b"header\n".to_vec()).unwrap();
            file.extend(compression.compress(b"row 1\n".to_vec()).unwrap());
            file.extend(compression.compress(b"row 2\n".to_vec()).unwrap());
            let mut text = String::new();
            match compression {
                Compression::Gzip => {
                    flate2::read::MultiGzDecoder::new(&file[..])
                        .read_to_string(&mut text)
                        .unwrap();
                }
                _ => {
                    zstd::stream::read::Decoder::new(&file[..])
                        .unwrap()
                        .read_to_string(&mut text)
                        .unwrap();
                }
            }
            assert_eq!(text, "header\nrow 1\nrow 2\n", "{compression:?}");
        }
    }
}
