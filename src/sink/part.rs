//! Part files: a table's rows in files of at most `part_file_max_bytes`, each with the running
//! SHA-256 of its bytes, and the removal of the part files a load does not keep.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::WriteError;
use super::files;
use super::parquet::ParquetPart;
use crate::durable::{self, DurableFile, FileOps};
use crate::manifest::{self, FileEntry};
use crate::state::CommittedFile;

/// The part file a table is being written to: encoded rows appended as they come (CSV,
/// NDJSON), or a Parquet file that becomes complete at each checkpoint.
pub(super) enum Part {
    Encoded(PartFile),
    Parquet(Box<ParquetPart>),
}

impl Part {
    pub(crate) fn rows(&self) -> u64 {
        match self {
            Part::Encoded(part) => part.rows,
            Part::Parquet(part) => part.rows,
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        match self {
            Part::Encoded(part) => part.bytes,
            Part::Parquet(part) => part.bytes(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Part::Encoded(part) => &part.name,
            Part::Parquet(part) => part.name(),
        }
    }

    /// Appends a chunk of `rows` rows: `bytes`, then what `spooled` holds.
    pub(crate) fn append(
        &mut self,
        folder: &Path,
        bytes: &[u8],
        spooled: Option<&mut std::fs::File>,
        rows: u64,
    ) -> Result<(), WriteError> {
        match self {
            Part::Encoded(part) => {
                part.append(folder, bytes)?;
                if let Some(file) = spooled {
                    part.append_spooled(folder, file)?;
                }
                part.rows += rows;
                Ok(())
            }
            Part::Parquet(part) => {
                // In memory the chunk is read as it is; a spool file through a buffer.
                let appended = match spooled {
                    Some(file) => part.append(&mut std::io::BufReader::new(bytes.chain(file))),
                    None => part.append(&mut &bytes[..]),
                };
                let fail = |source| WriteError {
                    what: "data file",
                    path: folder.join(part.name()),
                    source,
                };
                match appended {
                    Ok(appended) if appended == rows => Ok(()),
                    Ok(appended) => Err(fail(std::io::Error::other(format!(
                        "internal error: a chunk of {rows} rows held {appended}"
                    )))),
                    Err(e) => Err(fail(e)),
                }
            }
        }
    }

    /// Makes everything appended so far durable (a Parquet part first becomes a complete file).
    pub(crate) fn sync(&mut self, folder: &Path) -> Result<(), WriteError> {
        match self {
            Part::Encoded(part) => part.sync(folder),
            Part::Parquet(part) => {
                part.checkpoint().map_err(|source| WriteError {
                    what: "data file",
                    path: folder.join(part.name()),
                    source,
                })?;
                part.file_mut().sync(folder)
            }
        }
    }

    /// What a checkpoint records of it (after `sync`).
    pub(crate) fn committed(&self) -> CommittedFile {
        CommittedFile {
            name: self.name().to_owned(),
            bytes: self.bytes(),
            rows: self.rows(),
        }
    }

    /// A Parquet part whose footers left behind have grown too large goes no further.
    pub(crate) fn worth_closing(&self) -> bool {
        match self {
            Part::Encoded(_) => false,
            Part::Parquet(part) => part.worth_closing(),
        }
    }

    /// Completes the file, makes it durable and returns its manifest entry.
    pub(crate) fn close(self, folder: &Path, run_id: &str) -> Result<FileEntry, WriteError> {
        let mut file = match self {
            Part::Encoded(part) => part,
            Part::Parquet(part) => {
                let path = folder.join(part.name());
                part.finish().map_err(|source| WriteError {
                    what: "data file",
                    path,
                    source,
                })?
            }
        };
        file.sync(folder)?;
        Ok(file.entry(run_id))
    }
}

/// The part file a table appends to.
pub(super) struct PartFile {
    file: Box<dyn DurableFile>,
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
    hasher: Sha256,
}

impl PartFile {
    /// Creates part file `name` in `folder` (emptying one of that name) and writes `header`.
    pub(crate) fn create(
        fs: &dyn FileOps,
        folder: &Path,
        name: String,
        header: &[u8],
    ) -> Result<PartFile, WriteError> {
        let path = folder.join(&name);
        let fail = |source| WriteError {
            what: "data file",
            path: path.clone(),
            source,
        };
        let mut file = fs.create(&path).map_err(fail)?;
        file.write_all(header).map_err(fail)?;
        let mut hasher = Sha256::new();
        hasher.update(header);
        Ok(PartFile {
            file,
            name,
            bytes: header.len() as u64,
            rows: 0,
            hasher,
        })
    }

    /// Opens a checkpointed part file at the length the checkpoint recorded, dropping what was
    /// written after it (durably), with the checksum rebuilt from the bytes kept. A file
    /// shorter than recorded was changed outside ehi-sync and is refused.
    pub(crate) fn reopen(
        fs: &dyn FileOps,
        folder: &Path,
        committed: &CommittedFile,
    ) -> Result<PartFile, WriteError> {
        let path = folder.join(&committed.name);
        let fail = |source| WriteError {
            what: "checkpointed data file",
            path: path.clone(),
            source,
        };
        let on_disk = fs.len(&path).map_err(fail)?;
        if on_disk < committed.bytes {
            return Err(fail(std::io::Error::other(format!(
                "it holds {on_disk} bytes but the checkpoint recorded {}; the output was \
                 changed outside ehi-sync: run with --restart",
                committed.bytes
            ))));
        }
        let mut file = fs.open_truncated(&path, committed.bytes).map_err(fail)?;
        file.sync().map_err(fail)?;
        let hasher = hash_file(fs, &path).map_err(fail)?;
        Ok(PartFile {
            file,
            name: committed.name.clone(),
            bytes: committed.bytes,
            rows: committed.rows,
            hasher,
        })
    }

    /// Appends encoded rows.
    pub(crate) fn append(&mut self, folder: &Path, bytes: &[u8]) -> Result<(), WriteError> {
        self.file.write_all(bytes).map_err(|source| WriteError {
            what: "data file",
            path: folder.join(&self.name),
            source,
        })?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Appends everything `spooled` holds (a chunk too large to hold in memory).
    pub(crate) fn append_spooled(
        &mut self,
        folder: &Path,
        spooled: &mut std::fs::File,
    ) -> Result<(), WriteError> {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = spooled.read(&mut buffer).map_err(|source| WriteError {
                what: "temporary file of a long value",
                path: folder.to_owned(),
                source,
            })?;
            if read == 0 {
                return Ok(());
            }
            self.append(folder, &buffer[..read])?;
        }
    }

    /// Makes what was written durable.
    pub(crate) fn sync(&mut self, folder: &Path) -> Result<(), WriteError> {
        self.file.sync().map_err(|source| WriteError {
            what: "data file",
            path: folder.join(&self.name),
            source,
        })
    }

    /// Its manifest entry, for the bytes written so far (durable: call `sync` first).
    pub(crate) fn entry(self, run_id: &str) -> FileEntry {
        FileEntry {
            name: self.name,
            run_id: run_id.to_owned(),
            bytes: self.bytes,
            rows: self.rows,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

/// What the Parquet writer writes through: counted and hashed like appended chunks.
impl std::io::Write for PartFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Removes every part file not in `keep` and, unless `keep_manifest`, the manifest (first, so
/// no loader trusts it any longer).
pub(crate) fn remove_part_files(
    fs: &dyn FileOps,
    folder: &Path,
    keep: &[&str],
    keep_manifest: bool,
) -> Result<(), WriteError> {
    let fail = |path: &Path, source| WriteError {
        what: "previous output",
        path: path.to_owned(),
        source,
    };
    let manifest_path = folder.join(manifest::MANIFEST_FILE);
    if !keep_manifest {
        durable::remove_if_exists(fs, &manifest_path).map_err(|e| fail(&manifest_path, e))?;
    }
    let names = match fs.list_files(folder) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(folder, e)),
    };
    for name in names {
        if files::is_part_file_name(&name) && !keep.contains(&name.as_str()) {
            let path = folder.join(&name);
            fs.remove_file(&path).map_err(|e| fail(&path, e))?;
        }
    }
    fs.sync_dir(folder).map_err(|e| fail(folder, e))
}

/// SHA-256 state of a file's bytes, to go on appending to it.
fn hash_file(fs: &dyn FileOps, path: &Path) -> std::io::Result<Sha256> {
    let mut file = fs.open_read(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};

    use super::*;
    use crate::durable::power_cut::PowerCutFs;

    fn folder_on(fs: &PowerCutFs) -> &'static Path {
        let folder = Path::new("/out/t");
        fs.create_dir_all(folder).unwrap();
        folder
    }

    #[test]
    fn a_part_file_starts_with_its_header_and_its_entry_hashes_every_byte() {
        let fs = PowerCutFs::new();
        let folder = folder_on(&fs);
        let mut part = PartFile::create(&fs, folder, "t-00001.csv".into(), b"id\n").unwrap();
        part.append(folder, b"1\n").unwrap();
        let mut spooled = tempfile::tempfile().unwrap();
        spooled.write_all(b"2 with a long value\n").unwrap();
        spooled.rewind().unwrap();
        part.append_spooled(folder, &mut spooled).unwrap();
        part.rows = 2;
        let all = b"id\n1\n2 with a long value\n";
        let mut part = Part::Encoded(part);
        assert_eq!(
            part.committed(),
            CommittedFile {
                name: "t-00001.csv".into(),
                bytes: all.len() as u64,
                rows: 2
            }
        );
        part.sync(folder).unwrap();
        let entry = part.close(folder, "run-1").unwrap();
        assert_eq!(entry.sha256, hex::encode(Sha256::digest(all)));
        assert_eq!((entry.run_id.as_str(), entry.rows), ("run-1", 2));
        assert_eq!(fs.read(&folder.join("t-00001.csv")).unwrap(), all);
    }

    #[test]
    fn removing_part_files_keeps_the_listed_ones_and_the_manifest_only_when_asked() {
        let fs = PowerCutFs::new();
        let folder = folder_on(&fs);
        for name in [
            "t-00001.csv",
            "t-run-2-00001.csv.gz",
            manifest::MANIFEST_FILE,
            "_keys-run-2.bin",
        ] {
            fs.create(&folder.join(name)).unwrap();
        }
        let names = |fs: &PowerCutFs| {
            let mut names = fs.list_files(folder).unwrap();
            names.sort();
            names
        };
        remove_part_files(&fs, folder, &["t-00001.csv"], true).unwrap();
        assert_eq!(
            names(&fs),
            ["_keys-run-2.bin", manifest::MANIFEST_FILE, "t-00001.csv"]
        );
        remove_part_files(&fs, folder, &[], false).unwrap();
        assert_eq!(names(&fs), ["_keys-run-2.bin"]);
        remove_part_files(&fs, Path::new("/out/gone"), &[], false).unwrap();
    }
}
