//! Every durable step of the output, behind one small trait.
//!
//! The writer, the state file and the manifest create, write, fsync, rename and remove files
//! only through [`FileOps`]. The program uses [`Disk`] (std::fs); the tests use a file system
//! that keeps whatever was not fsynced in memory only and drops it at a simulated power cut
//! (`durable::power_cut`), so the durable order is checked, not assumed. Vector's disk buffer is
//! tested the same way: a file system trait with a fault-injecting implementation.
//!
//! The rules a power cut enforces (POSIX `fsync`): bytes written to a file survive only once
//! the file is synced; a new, renamed or removed directory entry survives only once its folder
//! is synced.
//!
//! Output holds patient data. On Unix, [`Disk`] creates folders 0700 and files 0600; on Windows
//! they inherit the folder's ACL, so `output_dir` must sit in a restricted folder (see the
//! README).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The file operations the output is written with.
pub(crate) trait FileOps: Send + Sync {
    /// Creates `path` and its parents, private to the owner on Unix.
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()>;
    /// Creates `path` (or empties it) for writing, private to the owner on Unix.
    fn create(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>>;
    /// Opens an existing file cut to `length`, to append after it (a resumed run drops the
    /// bytes after its checkpoint).
    fn open_truncated(&self, path: &Path, length: u64) -> std::io::Result<Box<dyn DurableFile>>;
    /// Opens `path` to append to it, creating it private if it is not there.
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>>;
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn Read + Send>>;
    fn len(&self, path: &Path) -> std::io::Result<u64>;
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn remove_file(&self, path: &Path) -> std::io::Result<()>;
    /// Names of the regular files in `dir`.
    fn list_files(&self, dir: &Path) -> std::io::Result<Vec<String>>;
    /// Makes a folder's entries (new, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
    /// Bytes an unprivileged writer can still use on the file system holding `dir`.
    fn available_bytes(&self, dir: &Path) -> std::io::Result<u64>;
}

/// A file open for writing.
pub(crate) trait DurableFile: Send {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// fsync: the bytes written so far survive a power cut.
    fn sync(&mut self) -> std::io::Result<()>;
}

/// Reads a whole file; `Ok(None)` when there is none.
pub(crate) fn read_if_exists(fs: &dyn FileOps, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut reader = match fs.open_read(path) {
        Ok(reader) => reader,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Removes a file; one that is not there is no error.
pub(crate) fn remove_if_exists(fs: &dyn FileOps, path: &Path) -> std::io::Result<()> {
    match fs.remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content:
/// write a temporary file, fsync it, rename it over `path`, fsync the folder. A failed write
/// (a full disk) removes the temporary file and leaves `path` as it was.
pub(crate) fn write_atomically(fs: &dyn FileOps, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let written = fs.create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync()
    });
    if let Err(e) = written {
        // The space it held is given back; what it failed with is the error to report.
        let _ = remove_if_exists(fs, &tmp);
        return Err(e);
    }
    #[cfg(debug_assertions)]
    pause_in_atomic_write_for_tests(path);
    fs.rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => fs.sync_dir(dir),
        None => Ok(()),
    }
}

/// Test hook (debug builds only): with `EHI_SYNC_TEST_PAUSE_IN_ATOMIC_WRITE=NAME:N` the N-th
/// atomic write of a file named NAME stops for a minute between the synced temporary file and
/// its rename, after saying so on standard error, so a test can kill the process exactly there.
#[cfg(debug_assertions)]
fn pause_in_atomic_write_for_tests(path: &Path) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let Ok(setting) = std::env::var("EHI_SYNC_TEST_PAUSE_IN_ATOMIC_WRITE") else {
        return;
    };
    let Some((name, Ok(pause_at))) = setting
        .rsplit_once(':')
        .map(|(name, n)| (name, n.trim().parse::<u64>()))
    else {
        return;
    };
    if path.file_name().is_some_and(|f| f == name)
        && WRITES.fetch_add(1, Ordering::SeqCst) + 1 == pause_at
    {
        eprintln!(
            "test hook: pausing in the atomic write of {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// True for "no space left on device" and "disk quota exceeded".
pub(crate) fn is_out_of_space(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// An error the writer stops on, with what to do when the disk or quota is full: the run
/// stopped at its last checkpoint and the next `sync` resumes from there.
pub(crate) fn with_out_of_space_fix(error: std::io::Error, path: &Path) -> std::io::Error {
    if !is_out_of_space(&error) {
        return error;
    }
    let folder = path.parent().unwrap_or(path);
    std::io::Error::new(
        error.kind(),
        format!(
            "{error}. The run stopped at its last checkpoint: free space on the file system \
             holding '{}' (or raise the quota), then run `ehi-sync sync` again to resume",
            folder.display()
        ),
    )
}

/// `min_free_bytes`: a table does not start, nor go on to its next partition, on a file
/// system with less free space; it fails and the next `sync` resumes it.
#[derive(Debug, Clone)]
pub(crate) struct FreeSpaceCheck {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) min_bytes: u64,
}

impl FreeSpaceCheck {
    /// The reason a table cannot go on, if there is one.
    pub(crate) fn shortage(&self, fs: &dyn FileOps) -> Option<String> {
        match fs.available_bytes(&self.dir) {
            Ok(free) if free >= self.min_bytes => None,
            Ok(free) => Some(format!(
                "only {} bytes are free on the file system holding '{}', less than \
                 min_free_bytes ({}): free space there (or lower min_free_bytes), then run \
                 `ehi-sync sync` again to resume this table",
                crate::display::group_digits(free),
                self.dir.display(),
                self.min_bytes
            )),
            Err(e) => Some(format!(
                "cannot tell the free space of '{}' for min_free_bytes: {e}",
                self.dir.display()
            )),
        }
    }
}

/// The real file system.
pub(crate) struct Disk;

struct DiskFile(File);

impl DurableFile for DiskFile {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync_all()
    }
}

#[cfg(unix)]
fn private_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

/// Windows files inherit the folder's access list.
#[cfg(not(unix))]
fn private_options() -> OpenOptions {
    OpenOptions::new()
}

impl FileOps for Disk {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(path)
    }

    fn create(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
        let file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(DiskFile(file)))
    }

    fn open_truncated(&self, path: &Path, length: u64) -> std::io::Result<Box<dyn DurableFile>> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.set_len(length)?;
        file.seek(std::io::SeekFrom::Start(length))?;
        Ok(Box::new(DiskFile(file)))
    }

    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
        let file = private_options().append(true).create(true).open(path)?;
        Ok(Box::new(DiskFile(file)))
    }

    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn len(&self, path: &Path) -> std::io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list_files(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Windows cannot open a folder as a file; NTFS journals the entries itself.
    #[cfg(not(unix))]
    fn sync_dir(&self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }

    fn available_bytes(&self, dir: &Path) -> std::io::Result<u64> {
        fs4::available_space(dir)
    }
}

/// A folder or file name safe on Windows and Unix: no `<>:"/\|?*` or control characters, no
/// trailing dot or space, no reserved device name.
pub(crate) fn safe_name(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    while safe.ends_with('.') || safe.ends_with(' ') {
        safe.pop();
        safe.push('_');
    }
    let stem = safe.split('.').next().unwrap_or("").to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved || safe.is_empty() {
        safe.insert(0, '_');
    }
    safe
}

/// Opens `path` for writing, creating it private to the owner on Unix. With `truncate_to`, an
/// existing file is cut to that length (a resumed run drops bytes after its checkpoint).
pub(crate) fn open_private_file(path: &Path, truncate_to: Option<u64>) -> std::io::Result<File> {
    let mut options = private_options();
    options.write(true).create(true);
    if truncate_to.is_none() {
        options.truncate(true);
    }
    let mut file = options.open(path)?;
    if let Some(length) = truncate_to {
        file.set_len(length)?;
        file.seek(std::io::SeekFrom::Start(length))?;
    }
    Ok(file)
}

/// Removes the folder `path` and everything in it; a missing folder is not an error.
pub(crate) fn remove_dir_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod power_cut;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_safe_on_windows() {
        assert_eq!(safe_name("dbo.Order Detail"), "dbo.Order Detail");
        assert_eq!(safe_name("dbo.a:b/c*d?"), "dbo.a_b_c_d_");
        assert_eq!(safe_name("CON"), "_CON");
        assert_eq!(safe_name("com1.txt"), "_com1.txt");
        assert_eq!(safe_name("trailing."), "trailing_");
        assert_eq!(safe_name("naïve 李"), "naïve 李");
    }

    #[cfg(unix)]
    #[test]
    fn files_and_folders_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a/b");
        Disk.create_dir_all(&folder).unwrap();
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let file = folder.join("f.csv");
        write_atomically(&Disk, &file, b"x").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        assert_eq!(Disk.list_files(&folder).unwrap(), ["f.csv"]);
    }

    #[test]
    fn reopening_truncates_to_the_checkpointed_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut file = Disk.open_truncated(&path, 4).unwrap();
        file.write_all(b"ab").unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123ab");
    }

    #[test]
    fn a_full_disk_error_says_what_to_do_and_keeps_its_kind() {
        let path = Path::new("/out/dbo.patient/patient-00001.csv");
        for errno in [28, 122] {
            let error = with_out_of_space_fix(std::io::Error::from_raw_os_error(errno), path);
            assert!(is_out_of_space(&error));
            let message = error.to_string();
            assert!(
                message.contains("free space on the file system holding '/out/dbo.patient'")
                    && message.contains("run `ehi-sync sync` again to resume"),
                "{message}"
            );
        }
        let other = with_out_of_space_fix(std::io::Error::other("denied"), path);
        assert_eq!(other.to_string(), "denied");
    }

    #[test]
    fn min_free_bytes_says_how_much_is_free_and_what_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let enough = FreeSpaceCheck {
            dir: dir.path().to_owned(),
            min_bytes: 0,
        };
        assert_eq!(enough.shortage(&Disk), None);
        let too_much = FreeSpaceCheck {
            dir: dir.path().to_owned(),
            min_bytes: u64::MAX,
        };
        let reason = too_much.shortage(&Disk).expect("no disk is that large");
        assert!(
            reason.contains("bytes are free on the file system holding")
                && reason.contains(&format!("less than min_free_bytes ({})", u64::MAX)),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_file_reads_as_none_and_removes_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        assert!(read_if_exists(&Disk, &path).unwrap().is_none());
        remove_if_exists(&Disk, &path).unwrap();
    }
}
