//! Finding deleted keys (`"detect_deletes": "key_scan"`) without depending on any sort order.
//!
//! A key is deleted when it is in the previous run's key list and not in this run's scan. The
//! server sorts keys by the column's collation (a varchar in its code page, `nvarchar` by its
//! Unicode rules, `uniqueidentifier` by its odd byte groups), which the client cannot reproduce
//! exactly, so no order-dependent merge is used. Instead both key lists are split by a hash of
//! each key's identity into buckets on disk, and each bucket pair is compared in memory: this
//! run's keys of the bucket in a hash set, the previous run's streamed against it. The scan can
//! then read keys in the key's own index order (`ORDER BY` the key as declared, no `COLLATE`),
//! which the primary key index serves without a sort.
//!
//! # Memory
//!
//! A bucket pair is compared in memory only when its estimated cost fits `memory_bytes`
//! ([`MEMORY_BYTES`] by default): this run's identities and frames plus [`SET_BYTES_PER_KEY`]
//! per key, and the previous run's identities twice plus [`DELETE_BYTES_PER_KEY`] per key (the
//! case where all of them were deleted and are held for sorting). A pair that does not fit is split again by the
//! next bits of the hash, on disk, until it does. While the scan runs, each bucket holds at most
//! [`FRAME_TARGET_BYTES`] of identities before it is written out as a frame. So memory does not
//! grow with the table: 1.6 billion keys make more buckets, not larger ones.
//!
//! # Order of the deletes
//!
//! Deletes are sent in ascending [`Position`]: the key identity's 64-bit hash, then the
//! identity's bytes. This order is the client's own and does not depend on how the buckets were
//! split, so a resumed key scan skips exactly the deletes at or before the last one written.
//! The buckets of a finished scan are kept (durably, marked complete) until the table is done,
//! so a resumed run compares the very same key sets and finds the very same deletes.
//!
//! No error here carries a key value: keys can be patient identifiers.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keys::{FrameEncoder, KeyListError, KeyListReader};
use crate::durable::{Disk, FileOps, safe_name};
use crate::model::KeyValue;
use crate::shutdown::StopFlag;
use crate::source::types::ValueKind;

/// Memory for comparing one bucket pair.
pub(crate) const MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// Memory per key of this run's bucket beyond its identity (and the bucket's frames): the hash
/// map entry (a slice and a flag, 25 bytes with its control byte) times the map's spare
/// capacity (up to 2.3), and the identity's span (16 bytes).
pub(crate) const SET_BYTES_PER_KEY: u64 = 80;
/// Memory per key of the previous run's bucket beyond its identity (counted twice: in its
/// position and in its values), should it be deleted: the key's values and its position, held
/// to be sorted, with the list's spare capacity.
pub(crate) const DELETE_BYTES_PER_KEY: u64 = 200;
/// Identity bytes a bucket collects before it writes them out as one frame.
pub(crate) const FRAME_TARGET_BYTES: usize = 16 * 1024;
/// At most 2^8 buckets at the first level, and 2^4 more for each split.
const TOP_BITS_MAX: u32 = 8;
const SPLIT_BITS: u32 = 4;
/// Expected memory per key (both lists, a short key), for choosing the first level's bucket
/// count.
const ESTIMATED_BYTES_PER_KEY: u64 = 400;
const CURRENT_DIR: &str = "current";
const COMPLETE_FILE: &str = "complete.json";

/// The folder a table's key scan works in, inside the table's output folder. It is removed when
/// the table is done (or its output discarded).
pub(crate) fn work_dir(table_folder: &Path, run_id: &str) -> PathBuf {
    table_folder.join(format!("_keyscan-{}", safe_name(run_id)))
}

/// How a key column's values are compared: the same value always has the same identity,
/// however the driver printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// Integers and exact decimals: compared by value (`1.50` is `1.5`, `007` is `7`).
    Number,
    /// `uniqueidentifier` / `uuid`: case and braces do not matter.
    Guid,
    /// Dates and times: `T` or a space between date and time, trailing fraction zeros do not
    /// matter.
    Timestamp,
    /// Text: compared by its exact characters. Two keys that differ only in case cannot both
    /// exist under a case-insensitive collation, so byte equality never splits one key in two.
    Text,
}

impl KeyKind {
    pub(crate) fn of(kind: ValueKind, source_type: &str) -> KeyKind {
        let source_type = source_type.to_ascii_lowercase();
        match kind {
            ValueKind::Integer | ValueKind::Decimal => KeyKind::Number,
            ValueKind::Timestamp => KeyKind::Timestamp,
            _ if matches!(source_type.as_str(), "uniqueidentifier" | "uuid") => KeyKind::Guid,
            _ => KeyKind::Text,
        }
    }
}

/// Appends the identity of `key` to `out`: per column a length prefix and the canonical bytes
/// of its value, so equal keys give equal bytes and different keys different ones.
pub(crate) fn identity(key: &[KeyValue], kinds: &[KeyKind], out: &mut Vec<u8>) {
    for (index, value) in key.iter().enumerate() {
        let kind = kinds.get(index).copied().unwrap_or(KeyKind::Text);
        let start = out.len();
        // Room for the length prefix, written once the value's length is known.
        out.extend_from_slice(&[0; 4]);
        value_identity(value, kind, out);
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// The canonical bytes of one value: one arm per [`KeyValue`] variant.
fn value_identity(value: &KeyValue, kind: KeyKind, out: &mut Vec<u8>) {
    match value {
        KeyValue::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes()),
        KeyValue::Text(text) => match kind {
            KeyKind::Number => canonical_number(text, out),
            KeyKind::Guid => canonical_guid(text, out),
            KeyKind::Timestamp => canonical_timestamp(text, out),
            KeyKind::Text => out.extend_from_slice(text.as_bytes()),
        },
        // The scan hands integers and text ([`KeyValue::to_text`] for the other types).
        other => value_identity(&KeyValue::Text(other.to_text()), kind, out),
    }
}

/// A decimal without leading integer zeros, trailing fraction zeros or a plus sign; `-0` is
/// `0`. Text that is not a plain decimal is kept as it is.
fn canonical_number(text: &str, out: &mut Vec<u8>) {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !plain(whole) || !plain(fraction) {
        out.extend_from_slice(trimmed.as_bytes());
        return;
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    if whole.is_empty() && fraction.is_empty() {
        out.push(b'0');
        return;
    }
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(if whole.is_empty() {
        b"0"
    } else {
        whole.as_bytes()
    });
    if !fraction.is_empty() {
        out.push(b'.');
        out.extend_from_slice(fraction.as_bytes());
    }
}

fn canonical_guid(text: &str, out: &mut Vec<u8>) {
    let trimmed = text.trim().trim_start_matches('{').trim_end_matches('}');
    out.extend(trimmed.bytes().map(|b| b.to_ascii_lowercase()));
}

/// `2026-01-02T03:04:05.500` and `2026-01-02 03:04:05.5000000` are one value.
fn canonical_timestamp(text: &str, out: &mut Vec<u8>) {
    let bytes = text.trim().as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'T' => out.push(b' '),
            b'.' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let fraction = &bytes[i + 1..i + 1 + digits];
                let kept =
                    fraction.len() - fraction.iter().rev().take_while(|b| **b == b'0').count();
                if digits == 0 || kept > 0 {
                    out.push(b'.');
                    out.extend_from_slice(&fraction[..kept]);
                }
                i += 1 + digits;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
}

fn hash(identity: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(identity)
}

/// Where a delete stands in the order deletes are sent: by the hash of its identity, then by
/// the identity itself (a total order: different keys have different identities).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    hash: u64,
    identity: Vec<u8>,
}

/// The position of `key`.
pub(crate) fn position(key: &[KeyValue], kinds: &[KeyKind]) -> Position {
    let mut bytes = Vec::new();
    identity(key, kinds, &mut bytes);
    Position {
        hash: hash(&bytes),
        identity: bytes,
    }
}

/// The bucket of `hash` among `2^bits` at a level that starts `bits_used` bits into the hash.
fn bucket_of(hash: u64, bits_used: u32, bits: u32) -> usize {
    if bits == 0 || bits_used >= 64 {
        return 0;
    }
    ((hash << bits_used) >> (64 - bits)) as usize
}

/// How many keys a bucket file holds, and their identity bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BucketSize {
    keys: u64,
    identity_bytes: u64,
}

/// One bucket file being written: keys collected into frames of [`FRAME_TARGET_BYTES`].
struct BucketWriter {
    path: PathBuf,
    file: BufWriter<File>,
    pending: Vec<Vec<KeyValue>>,
    pending_bytes: usize,
    size: BucketSize,
}

impl BucketWriter {
    fn create(path: PathBuf) -> Result<BucketWriter, KeyListError> {
        let file = crate::durable::open_private_file(&path, None).map_err(|e| io(&path, e))?;
        Ok(BucketWriter {
            path,
            file: BufWriter::with_capacity(8 * 1024, file),
            pending: Vec::new(),
            pending_bytes: 0,
            size: BucketSize::default(),
        })
    }

    fn push(
        &mut self,
        key: Vec<KeyValue>,
        identity_len: usize,
        encoder: &mut FrameEncoder,
    ) -> Result<(), KeyListError> {
        self.pending.push(key);
        self.pending_bytes += identity_len;
        self.size.keys += 1;
        self.size.identity_bytes += identity_len as u64;
        if self.pending_bytes >= FRAME_TARGET_BYTES {
            self.write_frame(encoder)?;
        }
        Ok(())
    }

    fn write_frame(&mut self, encoder: &mut FrameEncoder) -> Result<(), KeyListError> {
        let frame = encoder
            .encode(&self.pending)
            .map_err(|e| io(&self.path, e))?;
        self.file.write_all(&frame).map_err(|e| io(&self.path, e))?;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes what is pending, and with `durable` makes the file durable.
    fn finish(
        mut self,
        durable: bool,
        encoder: &mut FrameEncoder,
    ) -> Result<BucketSize, KeyListError> {
        self.write_frame(encoder)?;
        let file = self
            .file
            .into_inner()
            .map_err(|e| io(&self.path, e.into_error()))?;
        if durable {
            file.sync_all().map_err(|e| io(&self.path, e))?;
        }
        Ok(self.size)
    }
}

/// Splits keys into `2^bits` bucket files named `<index>.bin` in `dir`, by the hash bits after
/// the first `bits_used`.
struct Partitioner {
    writers: Vec<BucketWriter>,
    /// One compression context for every bucket of the level.
    encoder: FrameEncoder,
    bits_used: u32,
    bits: u32,
    scratch: Vec<u8>,
}

impl Partitioner {
    fn create(dir: &Path, bits_used: u32, bits: u32) -> Result<Partitioner, KeyListError> {
        Disk.create_dir_all(dir).map_err(|e| io(dir, e))?;
        let writers = (0..1usize << bits)
            .map(|i| BucketWriter::create(bucket_path(dir, i)))
            .collect::<Result<_, _>>()?;
        Ok(Partitioner {
            writers,
            encoder: FrameEncoder::new().map_err(|e| io(dir, e))?,
            bits_used,
            bits,
            scratch: Vec::new(),
        })
    }

    fn add(&mut self, key: Vec<KeyValue>, kinds: &[KeyKind]) -> Result<(), KeyListError> {
        self.scratch.clear();
        identity(&key, kinds, &mut self.scratch);
        let bucket = bucket_of(hash(&self.scratch), self.bits_used, self.bits);
        self.writers[bucket].push(key, self.scratch.len(), &mut self.encoder)
    }

    fn finish(mut self, durable: bool) -> Result<Vec<BucketSize>, KeyListError> {
        let encoder = &mut self.encoder;
        self.writers
            .into_iter()
            .map(|w| w.finish(durable, encoder))
            .collect()
    }
}

fn bucket_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{index}.bin"))
}

fn io(path: &Path, source: io::Error) -> KeyListError {
    KeyListError::Work {
        path: path.to_path_buf(),
        source,
    }
}

/// A folder for one attempt's files, so an abandoned attempt that wakes up never writes into
/// the files of the attempt that replaced it.
fn attempt_dir(work_dir: &Path, what: &str) -> PathBuf {
    work_dir.join(format!("{what}-{:016x}", fastrand::u64(..)))
}

/// What a finished scan records next to its buckets.
#[derive(Debug, Serialize, Deserialize)]
struct Layout {
    top_bits: u32,
    buckets: Vec<BucketSize>,
}

/// This run's keys while the scan streams them, split into buckets on disk.
pub(crate) struct ScanBuckets {
    work_dir: PathBuf,
    dir: PathBuf,
    kinds: Vec<KeyKind>,
    top_bits: u32,
    /// Taken by `finish`.
    partitioner: Option<Partitioner>,
}

impl Drop for ScanBuckets {
    /// A scan that failed or was given up removes its partial buckets (a finished scan's folder
    /// was renamed away, so this finds nothing).
    fn drop(&mut self) {
        drop(self.partitioner.take());
        if let Err(e) = crate::durable::remove_dir_if_exists(&self.dir) {
            log::debug!("cannot remove an unfinished key scan's buckets: {e}");
        }
    }
}

impl ScanBuckets {
    /// Starts a scan in `work_dir`, with as many first-level buckets as `estimated_keys` (the
    /// larger of the table's row count and the previous list's key count) needs to fit
    /// `memory_bytes` per bucket.
    pub(crate) fn create(
        work_dir: &Path,
        kinds: &[KeyKind],
        estimated_keys: u64,
        memory_bytes: u64,
    ) -> Result<ScanBuckets, KeyListError> {
        let buckets = (estimated_keys.saturating_mul(ESTIMATED_BYTES_PER_KEY))
            .div_ceil(memory_bytes.max(1))
            .max(1);
        let top_bits = (64 - (buckets - 1).leading_zeros()).min(TOP_BITS_MAX);
        let dir = attempt_dir(work_dir, "scan");
        let partitioner = Partitioner::create(&dir, 0, top_bits)?;
        Ok(ScanBuckets {
            work_dir: work_dir.to_path_buf(),
            dir,
            kinds: kinds.to_vec(),
            top_bits,
            partitioner: Some(partitioner),
        })
    }

    pub(crate) fn add(&mut self, key: Vec<KeyValue>) -> Result<(), KeyListError> {
        match self.partitioner.as_mut() {
            Some(partitioner) => partitioner.add(key, &self.kinds),
            None => Ok(()),
        }
    }

    /// Makes the buckets durable and marks the scan complete: they become the work folder's
    /// `current` scan, which a resumed run compares again instead of scanning anew.
    pub(crate) fn finish(mut self) -> Result<ScannedKeys, KeyListError> {
        let Some(partitioner) = self.partitioner.take() else {
            return Err(io(
                &self.dir,
                io::Error::other("the scan was finished already"),
            ));
        };
        let buckets = partitioner.finish(true)?;
        let layout = Layout {
            top_bits: self.top_bits,
            buckets,
        };
        let marker = self.dir.join(COMPLETE_FILE);
        let json = serde_json::to_vec(&layout).map_err(|e| io(&marker, e.into()))?;
        let mut file =
            crate::durable::open_private_file(&marker, None).map_err(|e| io(&marker, e))?;
        file.write_all(&json).map_err(|e| io(&marker, e))?;
        file.sync_all().map_err(|e| io(&marker, e))?;
        Disk.sync_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        let current = self.work_dir.join(CURRENT_DIR);
        crate::durable::remove_dir_if_exists(&current).map_err(|e| io(&current, e))?;
        fs::rename(&self.dir, &current).map_err(|e| io(&current, e))?;
        Disk.sync_dir(&self.work_dir)
            .map_err(|e| io(&self.work_dir, e))?;
        Ok(ScannedKeys {
            dir: current,
            layout,
        })
    }
}

/// The buckets of a finished scan of this run.
pub(crate) struct ScannedKeys {
    dir: PathBuf,
    layout: Layout,
}

impl ScannedKeys {
    /// The finished scan in `work_dir`, if this run has one; `None` when the scan has to run.
    pub(crate) fn open(work_dir: &Path) -> Option<ScannedKeys> {
        let dir = work_dir.join(CURRENT_DIR);
        let layout: Layout = serde_json::from_slice(&fs::read(dir.join(COMPLETE_FILE)).ok()?)
            .ok()
            .filter(|l: &Layout| {
                l.top_bits <= TOP_BITS_MAX && l.buckets.len() == 1 << l.top_bits
            })?;
        Some(ScannedKeys { dir, layout })
    }

    /// How many keys the scan found.
    pub(crate) fn keys(&self) -> u64 {
        self.layout.buckets.iter().map(|b| b.keys).sum()
    }
}

/// A bucket pair still to compare.
struct Pending {
    current: PathBuf,
    current_size: BucketSize,
    /// A split of a first-level bucket, removed once compared (first-level buckets stay for a
    /// resumed run).
    current_temporary: bool,
    previous: Option<PathBuf>,
    previous_size: BucketSize,
    bits_used: u32,
}

impl Pending {
    /// Memory to compare the pair: this run's identities and frames, and the previous run's
    /// keys should all of them be deleted.
    fn cost(&self) -> u64 {
        self.current_size.identity_bytes * 2
            + self.current_size.keys * SET_BYTES_PER_KEY
            + self.previous_size.identity_bytes * 2
            + self.previous_size.keys * DELETE_BYTES_PER_KEY
    }
}

/// The comparison of one bucket pair.
pub(crate) struct Leaf {
    /// This run's keys of the bucket, as key list frames (to append to the new key list).
    pub(crate) key_list: Vec<u8>,
    /// The previous run's keys of the bucket that this run did not find, in ascending
    /// [`Position`].
    pub(crate) deleted: Vec<(Position, Vec<KeyValue>)>,
    /// This run's keys of the bucket the previous list did not have.
    pub(crate) new_keys: u64,
}

/// Compares this run's scan with the previous run's key list, bucket pair by bucket pair, in
/// ascending hash order.
pub(crate) struct KeyDiff {
    /// A graceful stop interrupts the splitting of large lists (checked every
    /// [`STOP_CHECK_KEYS`] keys).
    stop: &'static StopFlag,
    work_dir: PathBuf,
    kinds: Vec<KeyKind>,
    memory_bytes: u64,
    stack: Vec<Pending>,
    /// The previous list's name, for its errors.
    previous_name: PathBuf,
}

impl KeyDiff {
    /// Splits `previous` (none on a table's first key scan) into buckets like the scan's.
    pub(crate) fn new(
        stop: &'static StopFlag,
        work_dir: &Path,
        scanned: &ScannedKeys,
        previous: Option<KeyListReader>,
        kinds: &[KeyKind],
        memory_bytes: u64,
    ) -> Result<KeyDiff, KeyListError> {
        remove_comparison_leftovers(work_dir)?;
        let top_bits = scanned.layout.top_bits;
        let mut previous_name = PathBuf::new();
        let previous_buckets = match previous {
            Some(reader) => {
                previous_name = reader.path().to_path_buf();
                let dir = attempt_dir(work_dir, "previous");
                let mut partitioner = Partitioner::create(&dir, 0, top_bits)?;
                for (n, key) in reader.enumerate() {
                    check_stop(stop, n)?;
                    partitioner.add(key?, kinds)?;
                }
                Some((dir, partitioner.finish(false)?))
            }
            None => None,
        };
        let stack = (0..1usize << top_bits)
            .rev()
            .map(|i| Pending {
                current: bucket_path(&scanned.dir, i),
                current_size: scanned.layout.buckets[i],
                current_temporary: false,
                previous: previous_buckets
                    .as_ref()
                    .map(|(dir, _)| bucket_path(dir, i)),
                previous_size: previous_buckets
                    .as_ref()
                    .map(|(_, sizes)| sizes[i])
                    .unwrap_or_default(),
                bits_used: top_bits,
            })
            .collect();
        Ok(KeyDiff {
            stop,
            work_dir: work_dir.to_path_buf(),
            kinds: kinds.to_vec(),
            memory_bytes,
            stack,
            previous_name,
        })
    }

    /// The next bucket pair's comparison; `None` when every pair is compared.
    pub(crate) fn next_leaf(&mut self) -> Result<Option<Leaf>, KeyListError> {
        while let Some(pending) = self.stack.pop() {
            if pending.cost() > self.memory_bytes && pending.bits_used + SPLIT_BITS <= 64 {
                self.split(pending)?;
                continue;
            }
            let leaf = self.compare(&pending)?;
            if pending.current_temporary {
                remove_file(&pending.current)?;
            }
            if let Some(previous) = &pending.previous {
                remove_file(previous)?;
            }
            return Ok(Some(leaf));
        }
        Ok(None)
    }

    /// Splits a pair that does not fit in memory by the next hash bits, lowest first.
    fn split(&mut self, pending: Pending) -> Result<(), KeyListError> {
        let dir = attempt_dir(&self.work_dir, "split");
        let split = |path: &Path, side: &str| -> Result<Vec<BucketSize>, KeyListError> {
            let mut partitioner =
                Partitioner::create(&dir.join(side), pending.bits_used, SPLIT_BITS)?;
            for (n, key) in KeyListReader::open(path)?.enumerate() {
                check_stop(self.stop, n)?;
                partitioner.add(key?, &self.kinds)?;
            }
            partitioner.finish(false)
        };
        let current = split(&pending.current, "current")?;
        let previous = match &pending.previous {
            Some(path) => Some(split(path, "previous")?),
            None => None,
        };
        if pending.current_temporary {
            remove_file(&pending.current)?;
        }
        if let Some(path) = &pending.previous {
            remove_file(path)?;
        }
        for i in (0..1usize << SPLIT_BITS).rev() {
            self.stack.push(Pending {
                current: bucket_path(&dir.join("current"), i),
                current_size: current[i],
                current_temporary: true,
                previous: previous
                    .as_ref()
                    .map(|_| bucket_path(&dir.join("previous"), i)),
                previous_size: previous.as_ref().map(|p| p[i]).unwrap_or_default(),
                bits_used: pending.bits_used + SPLIT_BITS,
            });
        }
        Ok(())
    }

    fn compare(&self, pending: &Pending) -> Result<Leaf, KeyListError> {
        let key_list = fs::read(&pending.current).map_err(|e| io(&pending.current, e))?;
        let capacity = usize::try_from(pending.current_size.keys).unwrap_or(0);
        let mut arena =
            Vec::with_capacity(usize::try_from(pending.current_size.identity_bytes).unwrap_or(0));
        let mut spans = Vec::with_capacity(capacity);
        for key in KeyListReader::open(&pending.current)? {
            let start = arena.len();
            identity(&key?, &self.kinds, &mut arena);
            spans.push(start..arena.len());
        }
        // Whether the previous list had the key too.
        let mut found: HashMap<&[u8], bool> = HashMap::with_capacity(spans.len());
        for span in &spans {
            if found.insert(&arena[span.clone()], false).is_some() {
                return Err(KeyListError::DuplicateKey);
            }
        }
        let mut matched = 0u64;
        let mut deleted = Vec::new();
        if let Some(previous) = &pending.previous {
            let mut reader = KeyListReader::open(previous)?;
            let mut scratch = Vec::new();
            for key in &mut reader {
                let key = key?;
                scratch.clear();
                identity(&key, &self.kinds, &mut scratch);
                match found.get_mut(scratch.as_slice()) {
                    Some(seen @ false) => {
                        *seen = true;
                        matched += 1;
                    }
                    Some(true) => {
                        return Err(KeyListError::PreviousDuplicate {
                            path: self.previous_name.clone(),
                        });
                    }
                    None => deleted.push((
                        Position {
                            hash: hash(&scratch),
                            identity: scratch.clone(),
                        },
                        key,
                    )),
                }
            }
        }
        deleted.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Leaf {
            key_list,
            deleted,
            new_keys: spans.len() as u64 - matched,
        })
    }
}

/// Removes what an interrupted comparison left (its split previous list and split buckets): a
/// comparison runs on one thread at a time, after the scan, so none of it is in use. Scan folders
/// are left alone: an abandoned scan may still be writing its own.
fn remove_comparison_leftovers(work_dir: &Path) -> Result<(), KeyListError> {
    let entries = match fs::read_dir(work_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(work_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(work_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("previous-") || name.starts_with("split-") {
            crate::durable::remove_dir_if_exists(&entry.path())
                .map_err(|e| io(&entry.path(), e))?;
        }
    }
    Ok(())
}

/// How often a long split looks at the stop flag.
const STOP_CHECK_KEYS: usize = 1 << 16;

fn check_stop(stop: &StopFlag, keys_done: usize) -> Result<(), KeyListError> {
    if keys_done.is_multiple_of(STOP_CHECK_KEYS) && stop.is_set() {
        return Err(KeyListError::Interrupted);
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), KeyListError> {
    crate::durable::remove_if_exists(&Disk, path).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incremental::keys::encode_frame;
    use KeyValue::{Int, Text};

    static NEVER: StopFlag = StopFlag::new();

    #[test]
    fn a_graceful_stop_interrupts_splitting_the_previous_list() {
        static STOPPED: StopFlag = StopFlag::new();
        STOPPED.set();
        let kinds = [KeyKind::Number];
        let dir = tempfile::tempdir().expect("tempdir");
        let scanned = ScanBuckets::create(dir.path(), &kinds, 1, 1 << 20)
            .expect("create")
            .finish()
            .expect("finish");
        let path = dir.path().join("prev.keys");
        fs::write(&path, encode_frame(&[vec![Int(1)]]).expect("frame")).expect("write");
        let reader = KeyListReader::open(&path).expect("open");
        assert!(matches!(
            KeyDiff::new(
                &STOPPED,
                dir.path(),
                &scanned,
                Some(reader),
                &kinds,
                1 << 20
            ),
            Err(KeyListError::Interrupted)
        ));
    }

    fn ident(key: &[KeyValue], kinds: &[KeyKind]) -> Vec<u8> {
        let mut out = Vec::new();
        identity(key, kinds, &mut out);
        out
    }

    fn text(s: &str) -> Vec<KeyValue> {
        vec![Text(s.to_owned())]
    }

    /// Every delete the comparison finds, in the order it sends them, and the new-key count.
    fn diff(
        previous: Option<&[Vec<KeyValue>]>,
        current: &[Vec<KeyValue>],
        kinds: &[KeyKind],
        memory: u64,
        estimated: u64,
    ) -> (Vec<Vec<KeyValue>>, u64, Vec<Vec<KeyValue>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        let mut scan = ScanBuckets::create(&work, kinds, estimated, memory).expect("create");
        for key in current {
            scan.add(key.clone()).expect("add");
        }
        let scanned = scan.finish().expect("finish");
        assert_eq!(scanned.keys(), current.len() as u64);
        let previous = previous.map(|keys| {
            let path = dir.path().join("previous.keys");
            let mut bytes = crate::incremental::keys::KEY_LIST_HEADER.to_vec();
            for chunk in keys.chunks(3) {
                bytes.extend(encode_frame(chunk).expect("frame"));
            }
            fs::write(&path, bytes).expect("write");
            KeyListReader::open(&path).expect("open")
        });
        let mut diff =
            KeyDiff::new(&NEVER, &work, &scanned, previous, kinds, memory).expect("diff");
        let (mut deleted, mut new_keys, mut listed) = (Vec::new(), 0, Vec::new());
        let mut last: Option<Position> = None;
        while let Some(leaf) = diff.next_leaf().expect("leaf") {
            for (position, key) in leaf.deleted {
                assert!(last.as_ref().is_none_or(|l| *l < position), "ascending");
                assert_eq!(position, super::position(&key, kinds));
                last = Some(position);
                deleted.push(key);
            }
            new_keys += leaf.new_keys;
            let reader = KeyListReader::from_reader(io::Cursor::new(leaf.key_list), "leaf");
            listed.extend(reader.map(|k| k.expect("listed key")));
        }
        (deleted, new_keys, listed)
    }

    fn sorted(mut keys: Vec<Vec<KeyValue>>) -> Vec<Vec<KeyValue>> {
        keys.sort_by_key(|k| format!("{k:?}"));
        keys
    }

    #[test]
    fn numbers_are_one_value_however_they_are_printed() {
        let n = [KeyKind::Number];
        let same = |a: &str, b: &str| ident(&text(a), &n) == ident(&text(b), &n);
        assert!(same("1.50", "1.5"));
        assert!(same("001.500", "1.5"));
        assert!(same("-0.00", "0"));
        assert!(same("+7", "7"));
        assert!(same("12.", "12"));
        assert!(same(".5", "0.5"));
        assert!(!same("1.5", "15"));
        assert!(!same("-1.5", "1.5"));
        assert!(!same("10", "1"));
        // A whole decimal fetched as text is the integer the old key lists stored.
        assert_eq!(
            ident(&text("123456789012345678"), &n),
            ident(&[Int(123456789012345678)], &n)
        );
        assert_eq!(ident(&text("-42.000"), &n), ident(&[Int(-42)], &n));
    }

    #[test]
    fn guids_timestamps_and_text_identities() {
        let g = [KeyKind::Guid];
        assert_eq!(
            ident(&text("6F9619FF-8B86-D011-B42D-00C04FC964FF"), &g),
            ident(&text("{6f9619ff-8b86-d011-b42d-00c04fc964ff}"), &g)
        );
        let t = [KeyKind::Timestamp];
        assert_eq!(
            ident(&text("2026-01-02T03:04:05.500"), &t),
            ident(&text("2026-01-02 03:04:05.5000000"), &t)
        );
        assert_eq!(
            ident(&text("2026-01-02 03:04:05.000"), &t),
            ident(&text("2026-01-02 03:04:05"), &t)
        );
        assert_eq!(
            ident(&text("2026-01-02 03:04:05.120 +01:00"), &t),
            ident(&text("2026-01-02 03:04:05.12 +01:00"), &t)
        );
        assert_ne!(
            ident(&text("2026-01-02 03:04:05.5"), &t),
            ident(&text("2026-01-02 03:04:05.05"), &t)
        );
        // Text is its exact characters: case and accents are different keys.
        let x = [KeyKind::Text];
        assert_ne!(ident(&text("Zoë"), &x), ident(&text("zoë"), &x));
        assert_ne!(ident(&text("é"), &x), ident(&text("e\u{301}"), &x));
        // The length prefix keeps composite keys apart: ("ab", "c") is not ("a", "bc").
        let xx = [KeyKind::Text, KeyKind::Text];
        assert_ne!(
            ident(&[Text("ab".into()), Text("c".into())], &xx),
            ident(&[Text("a".into()), Text("bc".into())], &xx)
        );
    }

    /// Keys whose byte order and collation order disagree (non-ASCII varchar, decimals with
    /// scale, GUIDs, whose SQL Server order starts at their last byte group): every delete is
    /// found whatever order the scan delivers them in.
    #[test]
    fn deletes_are_found_in_any_scan_order() {
        let kinds = [KeyKind::Text, KeyKind::Number, KeyKind::Guid];
        let key = |t: &str, n: &str, g: &str| vec![Text(t.into()), Text(n.into()), Text(g.into())];
        let previous = vec![
            key("Ärzte", "1.50", "00000000-0000-0000-0000-000000000001"),
            key("arzt", "1.5", "00000000-0000-0000-0000-000000000002"),
            key("Zoë", "2.00", "10000000-0000-0000-0000-000000000000"),
            key("zoe", "10", "00000000-0000-0000-0000-010000000000"),
            key("ß", "0.10", "FFFFFFFF-0000-0000-0000-000000000000"),
            key("ss", "-3", "00000000-0000-0000-0000-0000000000FF"),
        ];
        // This run: the driver prints decimals with the column's scale and GUIDs in upper case;
        // two keys are gone and one is new; the order is a collation's, not bytes'.
        let current = vec![
            key("zoe", "10.00", "00000000-0000-0000-0000-010000000000"),
            key("arzt", "1.50", "00000000-0000-0000-0000-000000000002"),
            key("Ärzte", "1.50", "00000000-0000-0000-0000-000000000001"),
            key("ss", "-3.00", "00000000-0000-0000-0000-0000000000ff"),
            key("Émile", "4", "20000000-0000-0000-0000-000000000000"),
        ];
        let (deleted, new_keys, listed) = diff(Some(&previous), &current, &kinds, 1 << 20, 10);
        assert_eq!(
            sorted(deleted),
            sorted(vec![previous[2].clone(), previous[4].clone()])
        );
        assert_eq!(new_keys, 1);
        assert_eq!(sorted(listed), sorted(current.clone()));
        // First key scan: nothing deleted, every key new.
        let (deleted, new_keys, _) = diff(None, &current, &kinds, 1 << 20, 10);
        assert!(deleted.is_empty());
        assert_eq!(new_keys, 5);
    }

    #[test]
    fn duplicates_are_refused() {
        let kinds = [KeyKind::Number];
        let dir = tempfile::tempdir().expect("tempdir");
        let mut scan = ScanBuckets::create(dir.path(), &kinds, 1, 1 << 20).expect("create");
        scan.add(text("1.0")).expect("add");
        scan.add(text("1")).expect("add");
        let scanned = scan.finish().expect("finish");
        let mut diff =
            KeyDiff::new(&NEVER, dir.path(), &scanned, None, &kinds, 1 << 20).expect("diff");
        assert!(matches!(diff.next_leaf(), Err(KeyListError::DuplicateKey)));
        let message = KeyListError::DuplicateKey.to_string();
        assert!(message.contains("twice"), "{message}");
    }

    #[test]
    fn a_finished_scan_is_found_again_and_gives_the_same_deletes() {
        let kinds = [KeyKind::Number];
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("w");
        assert!(ScannedKeys::open(&work).is_none());
        let mut scan = ScanBuckets::create(&work, &kinds, 1000, 4096).expect("create");
        for i in 0..1000 {
            scan.add(vec![Int(i)]).expect("add");
        }
        // Not finished: nothing to resume from.
        assert!(ScannedKeys::open(&work).is_none());
        scan.finish().expect("finish");
        // Keys can be patient identifiers: private folders and files.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&work), 0o700);
            assert_eq!(mode(&work.join(CURRENT_DIR)), 0o700);
            assert_eq!(mode(&bucket_path(&work.join(CURRENT_DIR), 0)), 0o600);
        }
        let previous: Vec<Vec<KeyValue>> = (500..1500).map(|i| vec![Int(i)]).collect();
        let path = dir.path().join("prev.keys");
        fs::write(&path, encode_frame(&previous).expect("frame")).expect("write");
        let run = || {
            let scanned = ScannedKeys::open(&work).expect("finished scan");
            let reader = KeyListReader::open(&path).expect("open");
            let mut diff =
                KeyDiff::new(&NEVER, &work, &scanned, Some(reader), &kinds, 4096).expect("diff");
            let mut deleted = Vec::new();
            while let Some(leaf) = diff.next_leaf().expect("leaf") {
                deleted.extend(leaf.deleted.into_iter().map(|(p, _)| p));
            }
            deleted
        };
        let first = run();
        assert_eq!(first.len(), 500);
        // An interrupted comparison's leftovers go when the next one starts.
        let leftover = work.join("split-0000000000000001");
        fs::create_dir_all(&leftover).expect("leftover");
        assert_eq!(
            run(),
            first,
            "a resumed comparison sends the same deletes in the same order"
        );
        assert!(!leftover.exists());
    }

    /// A million keys with a memory bound small enough that buckets are split on disk: every
    /// delete found exactly once, the new key list holds this run's keys exactly.
    #[test]
    fn a_million_keys_in_bounded_memory() {
        const N: i64 = 1_000_000;
        let kinds = [KeyKind::Number, KeyKind::Text];
        let key = |i: i64| vec![Int(i * 3 - 1_500_000), Text(format!("PAT{:08}", i % 977))];
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        let started = std::time::Instant::now();
        // The previous run: every key but multiples of 10 + 3, and a tail past N.
        let path = dir.path().join("previous.keys");
        {
            let mut file = BufWriter::new(File::create(&path).expect("create"));
            file.write_all(crate::incremental::keys::KEY_LIST_HEADER)
                .expect("header");
            let mut batch = Vec::with_capacity(10_000);
            for i in (0..N + 2_500).filter(|i| i % 10 != 3) {
                batch.push(key(i));
                if batch.len() == 10_000 || i == N + 2_499 {
                    file.write_all(&encode_frame(&batch).expect("frame"))
                        .expect("write");
                    batch.clear();
                }
            }
            file.flush().expect("flush");
        }
        // This run: multiples of 7 are gone, the skipped ones are back. A first-level estimate
        // far too low, and 4 MiB of memory: the buckets must be split.
        let memory = 4 << 20;
        let mut scan = ScanBuckets::create(&work, &kinds, 1_000, memory).expect("create");
        for i in (0..N).filter(|i| i % 7 != 0) {
            scan.add(key(i)).expect("add");
        }
        let scanned = scan.finish().expect("finish");
        let reader = KeyListReader::open(&path).expect("open");
        let mut diff =
            KeyDiff::new(&NEVER, &work, &scanned, Some(reader), &kinds, memory).expect("diff");
        let (mut deletes, mut delete_sum, mut new_keys, mut listed, mut leaves) =
            (0, 0i64, 0, 0, 0);
        while let Some(leaf) = diff.next_leaf().expect("leaf") {
            leaves += 1;
            for (_, k) in leaf.deleted {
                let [Int(v), _] = k.as_slice() else {
                    panic!("key shape")
                };
                deletes += 1;
                delete_sum += (v + 1_500_000) / 3;
            }
            new_keys += leaf.new_keys;
            listed += KeyListReader::from_reader(io::Cursor::new(leaf.key_list), "leaf").count();
        }
        let expected_deletes = (0..N + 2_500).filter(|i| i % 10 != 3 && (i % 7 == 0 || *i >= N));
        assert_eq!(deletes, expected_deletes.clone().count());
        assert_eq!(delete_sum, expected_deletes.sum::<i64>());
        assert_eq!(
            new_keys,
            (0..N).filter(|i| i % 10 == 3 && i % 7 != 0).count() as u64
        );
        assert_eq!(listed, (0..N).filter(|i| i % 7 != 0).count());
        assert!(leaves > 1 << 4, "the buckets were split: {leaves} leaves");
        eprintln!(
            "1,000,000 keys compared in {:.1}s in {leaves} bucket pairs",
            started.elapsed().as_secs_f64()
        );
    }
}
