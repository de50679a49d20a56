//! On-disk key lists for delete detection (`"detect_deletes": "key_scan"`).
//!
//! A key scan saves every primary-key value of the table in a key list; the next run's scan is
//! compared with it to find the deleted rows (see `key_diff`). Tables reach billions of rows, so
//! a list is written and read one frame at a time.
//!
//! # File format
//!
//! A key list is a header and then a sequence of self-contained frames, so the writer can
//! append one frame per batch and a crash-resume can cut the file back to any frame boundary:
//!
//! ```text
//! list    = "EHIKEYS2", frame*
//! frame   = u32 little-endian payload length, payload
//! payload = one zstd frame (with content checksum) of:
//!           varint key count,
//!           per key: varint column count, then per column:
//!             tag 0 (Int):  zigzag varint of the difference from the previous key's value in the
//!                           same column when that was an Int too, else of the value itself
//!             tag 1 (Text): varint byte length, UTF-8 bytes
//! ```
//!
//! Deltas never cross a frame: the first key of every frame is absolute, so each frame decodes
//! on its own. Deltas use wrapping arithmetic, which round-trips every pair of `i64` exactly.
//!
//! The keys of a list are in no particular order. Lists written before the header existed
//! (version 1: the same frames, no header, keys in binary order) are read the same way; their
//! order is simply not used. A header other than [`KEY_LIST_HEADER`] is refused.
//!
//! No error in this module carries a key value: keys can be patient identifiers. Errors name the
//! file and the byte offset of the frame at fault instead.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::model::KeyValue;

/// The largest decoded payload of one frame. [`encode_frame`] refuses to write more and the
/// reader refuses to decode more, so a damaged frame cannot exhaust memory by decompressing to
/// gigabytes. Writers append one frame per batch of keys, far below this.
pub(crate) const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// zstd level for key frames: fast, and keys (sorted, delta-encoded) compress well at any level.
const ZSTD_LEVEL: i32 = 3;

/// The first bytes of a key list of this version.
pub(crate) const KEY_LIST_HEADER: &[u8; 8] = b"EHIKEYS2";

const TAG_INT: u8 = 0;
const TAG_TEXT: u8 = 1;

/// Why a key list cannot be read or written, or why a key scan cannot be compared with it.
///
/// Messages name files and byte offsets, never key values.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyListError {
    /// The previous key list could not be opened (a missing file is this too: the caller
    /// decides whether that means "first scan").
    #[error("cannot open the key list '{path}': {source}")]
    Open { path: PathBuf, source: io::Error },
    /// An I/O error while reading the frame at `offset`.
    #[error("cannot read the key list '{path}' at byte {offset}: {source}")]
    Read {
        path: PathBuf,
        offset: u64,
        source: io::Error,
    },
    /// The file ends inside the frame at `offset`; cutting it back to `offset` leaves a valid
    /// list of the frames before.
    #[error(
        "the key list '{path}' ends inside the frame starting at byte {offset} (the file was cut \
         short, e.g. by a crash while it was written)"
    )]
    Truncated { path: PathBuf, offset: u64 },
    /// The frame at `offset` is whole but does not decode (bad zstd data or checksum, bad
    /// encoding). `problem` is a fixed description, never data.
    #[error("the key list '{path}' is damaged in the frame starting at byte {offset}: {problem}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        problem: &'static str,
    },
    /// The key list starts with a header of another version.
    #[error(
        "the key list '{path}' is of a version this ehi-sync does not know; it was written by a \
         newer ehi-sync, which has to run this table's loads"
    )]
    UnknownVersion { path: PathBuf },
    /// The key scan's work files (its buckets) could not be written or read.
    #[error("cannot use the key scan's work file '{path}': {source}")]
    Work { path: PathBuf, source: io::Error },
    /// The scan returned one key twice: a primary key is unique, so the read is not sound.
    #[error(
        "the key scan returned the same primary key twice (rows moved while the keys were \
         read?); no delete was written, the next run scans again"
    )]
    DuplicateKey,
    /// The previous list holds one key twice; comparing with it could report a live row as
    /// deleted.
    #[error(
        "the key list '{path}' holds a key twice (it is damaged); it cannot be used to detect \
         deletes"
    )]
    PreviousDuplicate { path: PathBuf },
    /// A graceful stop was asked for while large key lists were being split.
    #[error("stopped while the key lists were being compared")]
    Interrupted,
}

/// Encodes `keys` as one frame (length prefix included), for tests that write key lists; the
/// writer's [`FrameEncoder`] reuses its compression context.
#[cfg(test)]
pub(crate) fn encode_frame(keys: &[Vec<KeyValue>]) -> io::Result<Vec<u8>> {
    FrameEncoder::new()?.encode(keys)
}

/// Encodes frames with one zstd context (creating one per frame costs more than compressing a
/// small frame).
pub(crate) struct FrameEncoder {
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
}

impl FrameEncoder {
    pub(crate) fn new() -> io::Result<FrameEncoder> {
        let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
        // The checksum turns a flipped bit into an error instead of a wrong key (a wrong
        // delete).
        compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        Ok(FrameEncoder {
            compressor,
            raw: Vec::new(),
        })
    }

    /// Encodes `keys` as one frame (length prefix included).
    ///
    /// An empty batch gives an empty `Vec`: no frame at all, so appending it changes nothing.
    /// Fails (`InvalidInput`) only when the batch encodes to more than [`MAX_FRAME_BYTES`],
    /// which the reader would refuse; split such a batch.
    pub(crate) fn encode(&mut self, keys: &[Vec<KeyValue>]) -> io::Result<Vec<u8>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let raw = &mut self.raw;
        raw.clear();
        put_varint(raw, keys.len() as u64);
        let mut previous: Vec<Option<i64>> = Vec::new();
        for key in keys {
            put_varint(raw, key.len() as u64);
            for (column, value) in key.iter().enumerate() {
                match value {
                    KeyValue::Int(v) => {
                        raw.push(TAG_INT);
                        let delta = match previous.get(column) {
                            Some(Some(p)) => v.wrapping_sub(*p),
                            _ => *v,
                        };
                        put_varint(raw, zigzag(delta));
                    }
                    KeyValue::Text(s) => put_text(raw, s),
                    // Key lists hold integers and text; other values as their text form.
                    other => put_text(raw, &other.to_text()),
                }
            }
            remember_ints(&mut previous, key);
        }
        if raw.len() > MAX_FRAME_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a key frame may hold at most {MAX_FRAME_BYTES} bytes; write smaller batches"
                ),
            ));
        }
        let compressed = self.compressor.compress(raw)?;
        let len = u32::try_from(compressed.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a compressed key frame does not fit a u32 length; write smaller batches",
            )
        })?;
        let mut frame = Vec::with_capacity(4 + compressed.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&compressed);
        Ok(frame)
    }
}

/// Records which columns of `key` are `Int`, the bases for the next key's deltas.
fn remember_ints(previous: &mut Vec<Option<i64>>, key: &[KeyValue]) {
    previous.clear();
    previous.extend(key.iter().map(|v| match v {
        KeyValue::Int(n) => Some(*n),
        _ => None,
    }));
}

fn put_text(raw: &mut Vec<u8>, text: &str) {
    raw.push(TAG_TEXT);
    put_varint(raw, text.len() as u64);
    raw.extend_from_slice(text.as_bytes());
}

/// Maps signed to unsigned so small negative deltas stay short varints.
fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// LEB128: seven bits per byte, high bit set on every byte but the last.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a key list one frame at a time, yielding its keys in file order.
///
/// Memory is bounded by one frame (compressed and decoded). A file that ends inside a frame, or
/// a frame that does not decode, is an error naming the file and the frame's byte offset; after
/// an error the iterator ends. A file that ends exactly at a frame boundary ends cleanly.
pub(crate) struct KeyListReader {
    inner: Box<dyn Read + Send>,
    path: PathBuf,
    /// File offset of the frame the current keys come from.
    frame_offset: u64,
    /// File offset of the next frame.
    next_offset: u64,
    /// The current frame's compressed payload; reused across frames.
    compressed: Vec<u8>,
    /// The current frame's decoded payload; reused across frames.
    decoded: Vec<u8>,
    pos: usize,
    /// Keys of the current frame not yet yielded.
    remaining: u64,
    /// The previous key's `Int` columns, the bases for deltas.
    previous: Vec<Option<i64>>,
    done: bool,
}

impl KeyListReader {
    /// Opens the key list at `path`.
    pub(crate) fn open(path: &Path) -> Result<KeyListReader, KeyListError> {
        let file = File::open(path).map_err(|source| KeyListError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(KeyListReader::from_reader(BufReader::new(file), path))
    }

    /// Reads a key list from any reader; `name` stands for the file in error messages.
    pub(crate) fn from_reader(
        reader: impl Read + Send + 'static,
        name: impl Into<PathBuf>,
    ) -> Self {
        KeyListReader {
            inner: Box::new(reader),
            path: name.into(),
            frame_offset: 0,
            next_offset: 0,
            compressed: Vec::new(),
            decoded: Vec::new(),
            pos: 0,
            remaining: 0,
            previous: Vec::new(),
            done: false,
        }
    }

    /// The file named in this reader's errors.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, problem: &'static str) -> KeyListError {
        KeyListError::Corrupt {
            path: self.path.clone(),
            offset: self.frame_offset,
            problem,
        }
    }

    fn read_error(&self, source: io::Error) -> KeyListError {
        KeyListError::Read {
            path: self.path.clone(),
            offset: self.frame_offset,
            source,
        }
    }

    /// Loads the next frame. `Ok(false)` at a clean end of file.
    fn load_frame(&mut self) -> Result<bool, KeyListError> {
        self.frame_offset = self.next_offset;
        let mut len = [0u8; 4];
        let got = read_up_to(&mut self.inner, &mut len).map_err(|e| self.read_error(e))?;
        if got == 0 {
            return Ok(false);
        }
        if got < len.len() {
            return Err(self.truncated());
        }
        // No version 1 frame is this long (its length would be 1.2 GB): a header.
        if self.frame_offset == 0 && len == KEY_LIST_HEADER[..4] {
            let mut rest = [0u8; 4];
            let got = read_up_to(&mut self.inner, &mut rest).map_err(|e| self.read_error(e))?;
            if got < rest.len() || rest != KEY_LIST_HEADER[4..] {
                return Err(KeyListError::UnknownVersion {
                    path: self.path.clone(),
                });
            }
            self.next_offset = KEY_LIST_HEADER.len() as u64;
            return self.load_frame();
        }
        let len = u32::from_le_bytes(len);
        if len == 0 {
            return Err(self.corrupt("a frame has an empty payload"));
        }
        self.compressed.clear();
        // `take` + `read_to_end` allocates only what the file really holds, so a damaged length
        // cannot make this allocate gigabytes.
        (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut self.compressed)
            .map_err(|e| self.read_error(e))?;
        if self.compressed.len() < len as usize {
            return Err(self.truncated());
        }
        self.next_offset = self.frame_offset + 4 + u64::from(len);

        self.decoded.clear();
        self.pos = 0;
        let decoder = zstd::stream::read::Decoder::with_buffer(&self.compressed[..])
            .map_err(|e| self.read_error(e))?;
        let decoded = decoder
            .take(MAX_FRAME_BYTES as u64 + 1)
            .read_to_end(&mut self.decoded);
        if decoded.is_err() {
            // zstd's messages (bad checksum, unknown frame) name no data, but the kind is enough.
            return Err(self.corrupt("the frame does not decompress (bad zstd data or checksum)"));
        }
        if self.decoded.len() > MAX_FRAME_BYTES {
            return Err(self.corrupt("the frame decompresses to more than the largest frame size"));
        }
        let count = self.varint()?;
        // Every key takes at least one byte (its column count): a larger count is damage.
        if count > (self.decoded.len() - self.pos) as u64 {
            return Err(self.corrupt("the frame claims more keys than it holds"));
        }
        self.remaining = count;
        self.previous.clear();
        if count == 0 {
            self.check_frame_end()?;
        }
        Ok(true)
    }

    fn truncated(&self) -> KeyListError {
        KeyListError::Truncated {
            path: self.path.clone(),
            offset: self.frame_offset,
        }
    }

    fn check_frame_end(&self) -> Result<(), KeyListError> {
        if self.pos != self.decoded.len() {
            return Err(self.corrupt("the frame has bytes after its last key"));
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, KeyListError> {
        match self.decoded.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.corrupt("a key runs past the end of the frame")),
        }
    }

    fn varint(&mut self) -> Result<u64, KeyListError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            // The tenth byte may only carry the 64th bit.
            if shift == 63 && b > 1 {
                return Err(self.corrupt("a number is longer than 64 bits"));
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.corrupt("a number is longer than 64 bits"))
    }

    /// Decodes one key of the current frame.
    fn decode_key(&mut self) -> Result<Vec<KeyValue>, KeyListError> {
        let columns = self.varint()?;
        // Every column takes at least two bytes (tag and value).
        if columns > ((self.decoded.len() - self.pos) / 2) as u64 {
            return Err(self.corrupt("a key claims more columns than the frame holds"));
        }
        let mut key = Vec::with_capacity(columns as usize);
        for column in 0..columns as usize {
            match self.byte()? {
                TAG_INT => {
                    let delta = unzigzag(self.varint()?);
                    let value = match self.previous.get(column) {
                        Some(Some(p)) => p.wrapping_add(delta),
                        _ => delta,
                    };
                    key.push(KeyValue::Int(value));
                }
                TAG_TEXT => {
                    let len = self.varint()?;
                    let available = (self.decoded.len() - self.pos) as u64;
                    if len > available {
                        return Err(self.corrupt("a text value runs past the end of the frame"));
                    }
                    let end = self.pos + len as usize;
                    let text = std::str::from_utf8(&self.decoded[self.pos..end])
                        .map_err(|_| self.corrupt("a text value is not valid UTF-8"))?
                        .to_owned();
                    self.pos = end;
                    key.push(KeyValue::Text(text));
                }
                _ => return Err(self.corrupt("a value has an unknown type tag")),
            }
        }
        remember_ints(&mut self.previous, &key);
        Ok(key)
    }

    fn next_key(&mut self) -> Result<Option<Vec<KeyValue>>, KeyListError> {
        while self.remaining == 0 {
            if !self.load_frame()? {
                return Ok(None);
            }
        }
        let key = self.decode_key()?;
        self.remaining -= 1;
        if self.remaining == 0 {
            self.check_frame_end()?;
        }
        Ok(Some(key))
    }
}

impl Iterator for KeyListReader {
    type Item = Result<Vec<KeyValue>, KeyListError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_key() {
            Ok(Some(key)) => Some(Ok(key)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Fills `buf` as far as the reader allows; fewer bytes than `buf.len()` means end of file.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    use KeyValue::{Int, Text};

    fn int(n: i64) -> Vec<KeyValue> {
        vec![Int(n)]
    }

    fn text(s: &str) -> Vec<KeyValue> {
        vec![Text(s.to_owned())]
    }

    /// The bytes of a key list holding `keys`, `per_frame` keys to a frame.
    fn file_bytes(keys: &[Vec<KeyValue>], per_frame: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in keys.chunks(per_frame) {
            out.extend(encode_frame(chunk).expect("encode"));
        }
        out
    }

    fn reader(bytes: Vec<u8>) -> KeyListReader {
        KeyListReader::from_reader(Cursor::new(bytes), "keys/test.keys")
    }

    fn read_all(bytes: Vec<u8>) -> Result<Vec<Vec<KeyValue>>, KeyListError> {
        reader(bytes).collect()
    }

    fn round_trip(keys: &[Vec<KeyValue>], per_frame: usize) {
        let bytes = file_bytes(keys, per_frame);
        assert_eq!(read_all(bytes).expect("read back"), keys);
    }

    /// Compresses hand-made payload bytes into one frame, to test the decoder on damage that
    /// `encode_frame` never writes.
    fn raw_frame(payload: &[u8]) -> Vec<u8> {
        let compressed = zstd::bulk::compress(payload, 3).expect("compress");
        let mut out = (compressed.len() as u32).to_le_bytes().to_vec();
        out.extend(compressed);
        out
    }

    fn corrupt_problem(bytes: Vec<u8>) -> &'static str {
        match read_all(bytes) {
            Err(KeyListError::Corrupt { problem, .. }) => problem,
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    fn ints(ns: &[i64]) -> Vec<Vec<KeyValue>> {
        ns.iter().map(|&n| int(n)).collect()
    }

    #[test]
    fn round_trips_int_keys_across_frames() {
        let keys = ints(&[
            -1_000_000,
            -5,
            -1,
            0,
            1,
            2,
            3,
            1000,
            1_000_000_007,
            9_000_000_000,
        ]);
        for per_frame in [1, 3, 4, 100] {
            round_trip(&keys, per_frame);
        }
    }

    #[test]
    fn round_trips_extreme_deltas() {
        let keys = ints(&[i64::MIN, i64::MAX, i64::MIN, -1, i64::MAX, 0, i64::MIN, 1]);
        round_trip(&keys, 100);
        round_trip(&keys, 3);
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
        assert_eq!(unzigzag(zigzag(i64::MAX)), i64::MAX);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn round_trips_composite_keys() {
        let keys = vec![
            vec![Int(-3), Text("b".into())],
            vec![Int(-3), Text("c".into())],
            vec![Int(7), Text(String::new())],
            vec![Int(i64::MAX), Text("Zürich 東京 🎉".into())],
            vec![Int(i64::MIN), Text("x".into()), Int(42)],
            // The column types change place: deltas must restart where the previous was Text.
            vec![Text("a".into()), Int(5)],
            vec![Int(1)],
            vec![],
            vec![Int(2), Int(-2)],
        ];
        for per_frame in [1, 2, 5, 100] {
            round_trip(&keys, per_frame);
        }
    }

    #[test]
    fn round_trips_text_keys() {
        let keys = vec![
            text(""),
            text("A"),
            text("a"),
            text("é"),
            text("\u{FFFF}"),
            text("\u{10000}"),
            text("line\nbreak,\"quoted\"\0nul"),
            text(&"long".repeat(10_000)),
        ];
        round_trip(&keys, 3);
        round_trip(&keys, 1);
    }

    #[test]
    fn empty_batch_writes_no_frame() {
        assert!(encode_frame(&[]).expect("encode").is_empty());
        assert!(read_all(Vec::new()).expect("empty file").is_empty());
    }

    #[test]
    fn delta_encoding_keeps_sorted_frames_small() {
        let keys: Vec<_> = (1_000_000_000..1_000_010_000).map(int).collect();
        let frame = encode_frame(&keys).expect("encode");
        assert!(
            frame.len() < 1_000,
            "10,000 consecutive ids took {} bytes",
            frame.len()
        );
    }

    #[test]
    fn truncation_is_an_error_except_at_frame_boundaries() {
        let keys = [
            vec![Int(1), Text("a".into())],
            vec![Int(2), Text("b".into())],
            vec![Int(3), Text("c".into())],
            vec![Int(4), Text("d".into())],
            vec![Int(5), Text("e".into())],
        ];
        let frames: Vec<Vec<u8>> = keys
            .chunks(2)
            .map(|c| encode_frame(c).expect("encode"))
            .collect();
        let mut boundaries = vec![0usize];
        for f in &frames {
            boundaries.push(boundaries.last().copied().unwrap_or(0) + f.len());
        }
        let bytes = frames.concat();
        for cut in 0..=bytes.len() {
            let mut r = reader(bytes[..cut].to_vec());
            let mut got = Vec::new();
            let mut error = None;
            for item in r.by_ref() {
                match item {
                    Ok(k) => got.push(k),
                    Err(e) => error = Some(e),
                }
            }
            assert!(r.next().is_none(), "the reader must end after an error");
            match boundaries.iter().position(|&b| b == cut) {
                Some(frames_kept) => {
                    assert!(error.is_none(), "cut {cut} is a frame boundary: {error:?}");
                    assert_eq!(got, keys[..(frames_kept * 2).min(keys.len())]);
                }
                None => {
                    let frame_start = boundaries.iter().rev().find(|&&b| b < cut).copied();
                    match error {
                        Some(KeyListError::Truncated { path, offset }) => {
                            assert_eq!(Some(offset as usize), frame_start, "cut {cut}");
                            assert_eq!(path, Path::new("keys/test.keys"));
                        }
                        other => panic!("cut {cut}: expected Truncated, got {other:?}"),
                    }
                    // Whole frames before the cut still read.
                    let complete = boundaries.iter().filter(|&&b| b > 0 && b < cut).count();
                    assert_eq!(got, keys[..complete * 2]);
                }
            }
        }
    }

    #[test]
    fn truncated_file_error_names_file_and_offset() {
        let mut bytes = file_bytes(&ints(&[1, 2, 3, 4]), 2);
        bytes.pop();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.keys");
        std::fs::write(&path, &bytes).expect("write");
        let first_frame = encode_frame(&ints(&[1, 2])).expect("encode").len();
        let err = KeyListReader::open(&path)
            .expect("open")
            .collect::<Result<Vec<_>, _>>()
            .expect_err("truncated");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("byte {first_frame}")),
            "{message}"
        );
    }

    #[test]
    fn missing_file_is_an_open_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.keys");
        match KeyListReader::open(&path) {
            Err(KeyListError::Open { path: p, .. }) => assert_eq!(p, path),
            Err(other) => panic!("expected Open, got {other:?}"),
            Ok(_) => panic!("opened a missing file"),
        }
    }

    #[test]
    fn flipped_bytes_never_yield_wrong_keys() {
        let keys = vec![
            vec![Int(10), Text("patient-a".into())],
            vec![Int(20), Text("patient-b".into())],
            vec![Int(30), Text("patient-c".into())],
        ];
        let bytes = file_bytes(&keys, 2);
        let mut errors = 0;
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                match read_all(damaged) {
                    Ok(got) => assert_eq!(got, keys, "byte {i} flipped by {flip:#x}"),
                    Err(e) => {
                        errors += 1;
                        let message = e.to_string();
                        assert!(!message.contains("patient"), "{message}");
                        assert!(message.contains("keys/test.keys"), "{message}");
                    }
                }
            }
        }
        assert!(
            errors > bytes.len(),
            "damage went unnoticed: {errors} errors"
        );
    }

    #[test]
    fn damaged_payloads_are_corrupt_errors() {
        // Unknown tag.
        assert!(corrupt_problem(raw_frame(&[1, 1, 7, 0])).contains("type tag"));
        // Invalid UTF-8.
        assert!(corrupt_problem(raw_frame(&[1, 1, TAG_TEXT, 2, 0xff, 0xfe])).contains("UTF-8"));
        // Text longer than the frame.
        assert!(corrupt_problem(raw_frame(&[1, 1, TAG_TEXT, 50, b'a'])).contains("past the end"));
        // More columns than bytes.
        assert!(corrupt_problem(raw_frame(&[1, 100, TAG_INT, 2])).contains("columns"));
        // More keys than bytes.
        assert!(corrupt_problem(raw_frame(&[200, 1, 1, TAG_INT, 2])).contains("more keys"));
        // Bytes after the last key.
        assert!(corrupt_problem(raw_frame(&[1, 1, TAG_INT, 2, 9])).contains("after its last"));
        // A varint longer than 64 bits.
        let mut long = vec![1, 1, TAG_INT];
        long.extend([0xff; 10]);
        long.push(0);
        assert!(corrupt_problem(raw_frame(&long)).contains("64 bits"));
        // A key cut short.
        let cut_short = [2, 1, TAG_INT, 2, 1, TAG_INT, 0x80];
        assert!(corrupt_problem(raw_frame(&cut_short)).contains("past the end"));
        // No key count at all.
        assert!(corrupt_problem(raw_frame(&[])).contains("past the end"));
        // A zero length prefix.
        assert!(corrupt_problem(vec![0, 0, 0, 0]).contains("empty payload"));
        // Not zstd.
        assert!(corrupt_problem(vec![3, 0, 0, 0, 1, 2, 3]).contains("decompress"));
        // The offset is the damaged frame's.
        let mut bytes = file_bytes(&ints(&[1, 2]), 2);
        let good = bytes.len() as u64;
        bytes.extend(raw_frame(&[1, 1, 7, 0]));
        match read_all(bytes) {
            Err(KeyListError::Corrupt { offset, .. }) => assert_eq!(offset, good),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_frame_with_zero_keys_is_skipped() {
        let mut bytes = raw_frame(&[0]);
        bytes.extend(file_bytes(&ints(&[5]), 1));
        bytes.extend(raw_frame(&[0]));
        assert_eq!(read_all(bytes).expect("read"), ints(&[5]));
    }

    #[test]
    fn lists_with_and_without_the_header_read_the_same() {
        let keys = vec![
            vec![Int(3), Text("Zoë".into())],
            vec![Int(1), Text("a".into())],
        ];
        let legacy = file_bytes(&keys, 1);
        let mut versioned = KEY_LIST_HEADER.to_vec();
        versioned.extend(&legacy);
        assert_eq!(read_all(legacy).expect("version 1"), keys);
        assert_eq!(read_all(versioned).expect("version 2"), keys);
        // A header alone is an empty list.
        assert!(
            read_all(KEY_LIST_HEADER.to_vec())
                .expect("empty")
                .is_empty()
        );
        // Another version is refused, naming the file and the way out.
        let mut newer = b"EHIKEYS3".to_vec();
        newer.extend(file_bytes(&keys, 1));
        let err = read_all(newer).expect_err("unknown version");
        assert!(
            matches!(err, KeyListError::UnknownVersion { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("keys/test.keys"), "{message}");
        assert!(message.contains("newer ehi-sync"), "{message}");
        // Damage after the header is reported at its real offset.
        let mut damaged = KEY_LIST_HEADER.to_vec();
        damaged.extend(raw_frame(&[1, 1, 7, 0]));
        match read_all(damaged) {
            Err(KeyListError::Corrupt { offset, .. }) => assert_eq!(offset, 8),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
