//! A file system for power-cut tests: everything lives in memory, in two versions. What a
//! program sees (the page cache) and what a disk holds after a power cut: a file's bytes only
//! as of its last fsync, a folder's entries only as of the folder's last fsync.
//!
//! Every durable step (create, write, fsync, rename, remove, truncate, folder fsync) is
//! numbered. `cut_power_at(n)` makes step `n` fail and throws away what was not durable;
//! `fail_at(n, error)` fails step `n` with an error (a full disk) and keeps running. `reboot`
//! powers it on again, with the disk as the power cut left it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DurableFile, FileOps};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Entry {
    File(usize),
    Dir(usize),
}

#[derive(Default, Clone)]
struct Inode {
    durable: Vec<u8>,
    cached: Vec<u8>,
}

#[derive(Default, Clone)]
struct Dir {
    durable: BTreeMap<String, Entry>,
    cached: BTreeMap<String, Entry>,
}

#[derive(Default)]
struct World {
    inodes: Vec<Inode>,
    /// `dirs[0]` is the root, which always exists.
    dirs: Vec<Dir>,
    /// Durable steps taken so far, with what each did.
    steps: Vec<String>,
    cut_at: Option<(usize, Survives)>,
    fail_at: Option<(usize, i32)>,
    /// Bumped by a power cut: handles opened before it are dead.
    boot: u64,
    powered: bool,
}

/// What of the writes not yet fsynced a power cut leaves on the disk. Nothing is the rule a
/// program must be ready for; a real disk may also have written some of it back already
/// (file systems that journal metadata but not data keep entries and lose bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Survives {
    pub(crate) unsynced_data: bool,
    pub(crate) unsynced_entries: bool,
}

impl Survives {
    pub(crate) const NOTHING: Survives = Survives {
        unsynced_data: false,
        unsynced_entries: false,
    };

    /// Every combination, `NOTHING` first.
    pub(crate) const ALL: [Survives; 4] = [
        Survives::NOTHING,
        Survives {
            unsynced_data: true,
            unsynced_entries: false,
        },
        Survives {
            unsynced_data: false,
            unsynced_entries: true,
        },
        Survives {
            unsynced_data: true,
            unsynced_entries: true,
        },
    ];
}

/// The simulated file system. Clones share it.
#[derive(Clone)]
pub(crate) struct PowerCutFs(Arc<Mutex<World>>);

fn not_found(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn names(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

impl World {
    fn lock(fs: &PowerCutFs) -> MutexGuard<'_, World> {
        fs.0.lock().expect("power-cut file system lock")
    }

    /// Numbers one durable step; fails it when the power is cut there (or was before).
    fn step(&mut self, what: String) -> std::io::Result<()> {
        if !self.powered {
            return Err(std::io::Error::other("the power is off"));
        }
        self.steps.push(what);
        let n = self.steps.len();
        if let Some((at, survives)) = self.cut_at
            && at == n
        {
            self.power_cut(survives);
            return Err(std::io::Error::other("power cut"));
        }
        if let Some((at, errno)) = self.fail_at
            && at == n
        {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }

    fn power_cut(&mut self, survives: Survives) {
        self.powered = false;
        self.boot += 1;
        for inode in &mut self.inodes {
            if survives.unsynced_data {
                inode.durable = inode.cached.clone();
            } else {
                inode.cached = inode.durable.clone();
            }
        }
        for dir in &mut self.dirs {
            if survives.unsynced_entries {
                dir.durable = dir.cached.clone();
            } else {
                dir.cached = dir.durable.clone();
            }
        }
    }

    fn dir_of(&self, names: &[String], path: &Path) -> std::io::Result<usize> {
        let mut dir = 0;
        for name in names {
            match self.dirs[dir].cached.get(name) {
                Some(Entry::Dir(d)) => dir = *d,
                _ => return Err(not_found(path)),
            }
        }
        Ok(dir)
    }

    /// The folder holding `path` and the file's name in it.
    fn parent(&self, path: &Path) -> std::io::Result<(usize, String)> {
        let mut names = names(path);
        let name = names.pop().ok_or_else(|| not_found(path))?;
        Ok((self.dir_of(&names, path)?, name))
    }

    fn file(&self, path: &Path) -> std::io::Result<usize> {
        let (dir, name) = self.parent(path)?;
        match self.dirs[dir].cached.get(&name) {
            Some(Entry::File(inode)) => Ok(*inode),
            _ => Err(not_found(path)),
        }
    }

    fn new_inode(&mut self) -> usize {
        self.inodes.push(Inode::default());
        self.inodes.len() - 1
    }
}

impl PowerCutFs {
    pub(crate) fn new() -> PowerCutFs {
        let world = World {
            dirs: vec![Dir::default()],
            powered: true,
            ..World::default()
        };
        PowerCutFs(Arc::new(Mutex::new(world)))
    }

    /// Cuts the power at durable step `n` (1-based, counted from the start): everything not
    /// fsynced is lost.
    pub(crate) fn cut_power_at(&self, n: usize) {
        self.cut_power_keeping(n, Survives::NOTHING);
    }

    /// Cuts the power at step `n`, the disk keeping what `survives` says of the rest.
    pub(crate) fn cut_power_keeping(&self, n: usize, survives: Survives) {
        World::lock(self).cut_at = Some((n, survives));
    }

    /// Fails durable step `n` with OS error `errno` (ENOSPC, EDQUOT); the power stays on.
    pub(crate) fn fail_at(&self, n: usize, errno: i32) {
        World::lock(self).fail_at = Some((n, errno));
    }

    /// Cuts the power now, between steps: everything not fsynced is lost.
    pub(crate) fn cut_power_now(&self) {
        World::lock(self).power_cut(Survives::NOTHING);
    }

    /// Powers on again with what the disk kept; no faults are armed.
    pub(crate) fn reboot(&self) {
        let mut world = World::lock(self);
        world.powered = true;
        world.cut_at = None;
        world.fail_at = None;
    }

    pub(crate) fn steps(&self) -> Vec<String> {
        World::lock(self).steps.clone()
    }

    /// What a program reads at `path` now.
    pub(crate) fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let world = World::lock(self);
        let inode = world.file(path)?;
        Ok(world.inodes[inode].cached.clone())
    }
}

struct FakeFile {
    fs: PowerCutFs,
    inode: usize,
    boot: u64,
    label: String,
}

impl FakeFile {
    fn world(&self) -> std::io::Result<MutexGuard<'_, World>> {
        let world = World::lock(&self.fs);
        if world.boot != self.boot {
            return Err(std::io::Error::other("opened before a power cut"));
        }
        Ok(world)
    }
}

impl DurableFile for FakeFile {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut world = self.world()?;
        world.step(format!("write {} ({} bytes)", self.label, bytes.len()))?;
        world.inodes[self.inode].cached.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let mut world = self.world()?;
        world.step(format!("fsync {}", self.label))?;
        let inode = &mut world.inodes[self.inode];
        inode.durable = inode.cached.clone();
        Ok(())
    }
}

impl PowerCutFs {
    fn open(&self, path: &Path, how: Open) -> std::io::Result<Box<dyn DurableFile>> {
        let mut world = World::lock(self);
        let label = path.display().to_string();
        let existing = world.file(path);
        let inode = match (how, existing) {
            (Open::Create, existing) => {
                world.step(format!("create {label}"))?;
                let (dir, name) = world.parent(path)?;
                let inode = match existing {
                    Ok(inode) => inode,
                    Err(_) => {
                        let inode = world.new_inode();
                        world.dirs[dir].cached.insert(name, Entry::File(inode));
                        inode
                    }
                };
                world.inodes[inode].cached.clear();
                inode
            }
            (Open::Truncated(length), Ok(inode)) => {
                world.step(format!("truncate {label} to {length}"))?;
                let length = usize::try_from(length).map_err(std::io::Error::other)?;
                world.inodes[inode].cached.truncate(length);
                inode
            }
            (Open::Truncated(_), Err(e)) => return Err(e),
            (Open::Append, Ok(inode)) => inode,
            (Open::Append, Err(_)) => {
                world.step(format!("create {label}"))?;
                let (dir, name) = world.parent(path)?;
                let inode = world.new_inode();
                world.dirs[dir].cached.insert(name, Entry::File(inode));
                inode
            }
        };
        Ok(Box::new(FakeFile {
            fs: self.clone(),
            inode,
            boot: world.boot,
            label,
        }))
    }
}

#[derive(Clone, Copy)]
enum Open {
    Create,
    Truncated(u64),
    Append,
}

impl FileOps for PowerCutFs {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let mut world = World::lock(self);
        let mut dir = 0;
        for name in names(path) {
            dir = match world.dirs[dir].cached.get(&name) {
                Some(Entry::Dir(d)) => *d,
                Some(Entry::File(_)) => return Err(std::io::Error::other("a file is in the way")),
                None => {
                    world.step(format!("mkdir {name}"))?;
                    world.dirs.push(Dir::default());
                    let new = world.dirs.len() - 1;
                    world.dirs[dir].cached.insert(name, Entry::Dir(new));
                    new
                }
            };
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
        self.open(path, Open::Create)
    }

    fn open_truncated(&self, path: &Path, length: u64) -> std::io::Result<Box<dyn DurableFile>> {
        self.open(path, Open::Truncated(length))
    }

    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
        self.open(path, Open::Append)
    }

    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(self.read(path)?)))
    }

    fn len(&self, path: &Path) -> std::io::Result<u64> {
        Ok(self.read(path)?.len() as u64)
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut world = World::lock(self);
        let (from_dir, from_name) = world.parent(from)?;
        let (to_dir, to_name) = world.parent(to)?;
        let entry = *world.dirs[from_dir]
            .cached
            .get(&from_name)
            .ok_or_else(|| not_found(from))?;
        world.step(format!("rename {} -> {}", from.display(), to.display()))?;
        world.dirs[from_dir].cached.remove(&from_name);
        world.dirs[to_dir].cached.insert(to_name, entry);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let mut world = World::lock(self);
        let (dir, name) = world.parent(path)?;
        world.file(path)?;
        world.step(format!("remove {}", path.display()))?;
        world.dirs[dir].cached.remove(&name);
        Ok(())
    }

    fn list_files(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        let world = World::lock(self);
        let dir = world.dir_of(&names(dir), dir)?;
        Ok(world.dirs[dir]
            .cached
            .iter()
            .filter(|(_, entry)| matches!(entry, Entry::File(_)))
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        let mut world = World::lock(self);
        let dir = world.dir_of(&names(path), path)?;
        world.step(format!("fsync folder {}", path.display()))?;
        let entries = world.dirs[dir].cached.clone();
        world.dirs[dir].durable = entries;
        Ok(())
    }

    fn available_bytes(&self, _dir: &Path) -> std::io::Result<u64> {
        Ok(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_cut_keeps_only_what_was_synced() {
        let fs = PowerCutFs::new();
        let dir = Path::new("/out");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let mut synced = fs.create(&dir.join("synced")).unwrap();
        synced.write_all(b"kept").unwrap();
        synced.sync().unwrap();
        synced.write_all(b" lost").unwrap();
        let mut unsynced = fs.create(&dir.join("unlisted")).unwrap();
        fs.sync_dir(dir).unwrap();
        unsynced.write_all(b"lost").unwrap();
        fs.create(&dir.join("new")).unwrap();
        fs.rename(&dir.join("synced"), &dir.join("renamed"))
            .unwrap();
        fs.cut_power_at(fs.steps().len() + 1);
        assert!(fs.sync_dir(dir).is_err());
        assert!(synced.write_all(b"x").is_err());
        fs.reboot();
        assert_eq!(fs.read(&dir.join("synced")).unwrap(), b"kept");
        assert_eq!(fs.read(&dir.join("unlisted")).unwrap(), b"");
        assert!(fs.read(&dir.join("new")).is_err());
        assert!(fs.read(&dir.join("renamed")).is_err());
        assert!(
            synced.write_all(b"x").is_err(),
            "a handle from before the cut"
        );
    }

    #[test]
    fn an_injected_error_fails_one_step_only() {
        let fs = PowerCutFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let mut file = fs.create(Path::new("/d/f")).unwrap();
        fs.fail_at(fs.steps().len() + 1, 28);
        let error = file.write_all(b"x").unwrap_err();
        assert!(super::super::is_out_of_space(&error));
        file.write_all(b"y").unwrap();
        assert_eq!(fs.read(Path::new("/d/f")).unwrap(), b"y");
    }
}
