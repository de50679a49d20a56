//! The writer on a simulated file system: checkpoint order, resume truncation and manifests,
//! under a power cut or a full disk at every durable step.
//!
//! A scripted source stands in for the workers: it sends the messages a worker sends (table
//! started, chunks in key order with their last key, key list frames, partition done) and, on
//! a resumed run, reads each partition again after the last key the state file holds, as a
//! worker does. Everything from the writer down is the program's own code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::*;
use crate::durable::FileOps;
use crate::durable::power_cut::{PowerCutFs, Survives};
use crate::manifest::{self, MANIFEST_FILE};
use crate::model::{
    CursorKind, Dialect, Format, KeyRange, KeyValue, Load, LoadKind, ParquetType, PartitionSpec,
    ReadMode, SyncMode, Tier,
};
use crate::source::catalog::Column;
use crate::source::types::ValueKind;
use crate::state::{self, RunState, SourceIdentity, Start, TableState, TableStatus, table_start};

const HEADER: &[u8] = b"id,value\n";
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// One table of the scripted source: rows `1..=rows` split into key ranges.
#[derive(Clone)]
struct ScriptedTable {
    name: &'static str,
    /// Upper bounds of the key ranges; the last is open above.
    ranges: Vec<i64>,
    /// Rows this load reads: `(first, last)` ids.
    ids: (i64, i64),
    /// An incremental load with a key scan that finds `deleted` gone.
    key_scan: Option<Vec<i64>>,
    /// No key: one stream, which the worker restarts from the first row halfway through (a
    /// dropped connection), and a resumed run reads again from the start.
    keyless: bool,
}

#[derive(Clone)]
struct Script {
    run_id: &'static str,
    output_dir: PathBuf,
    state_path: PathBuf,
    tables: Vec<ScriptedTable>,
    part_file_max_bytes: u64,
    checkpoint_interval: u64,
    /// `checkpoint_seconds`, read off a clock that moves on by `clock_tick` at every reading.
    checkpoint_every: Option<Duration>,
    clock_tick: Duration,
    rows_per_chunk: i64,
    format: Format,
}

/// A clock that moves on by `tick` each time it is read: the writer's time rule then depends
/// only on the messages, never on how fast the test runs.
fn ticking_clock(tick: Duration) -> Clock {
    let start = Instant::now();
    let readings = AtomicU64::new(0);
    Arc::new(move || {
        let n = readings.fetch_add(1, Ordering::SeqCst);
        start + tick * u32::try_from(n).expect("few readings")
    })
}

fn writer_settings(fs: &PowerCutFs, script: &Script) -> WriterSettings {
    WriterSettings {
        fs: Arc::new(fs.clone()),
        output_dir: script.output_dir.clone(),
        change_columns: false,
        state_path: script.state_path.clone(),
        format: script.format,
        compression: Compression::None,
        part_file_max_bytes: script.part_file_max_bytes,
        row_group_bytes: 1 << 20,
        checkpoint_every: script.checkpoint_every,
        clock: ticking_clock(script.clock_tick),
    }
}

fn row(id: i64) -> Vec<u8> {
    format!("{id},value of row {id}\n").into_bytes()
}

fn delete_row(id: i64) -> Vec<u8> {
    format!("{id},deleted\n").into_bytes()
}

/// A row as a worker sends it in `format`: CSV as [`row`] writes it, or the Parquet cell
/// stream of the same two values.
fn encoded(format: Format, id: i64, value: &str) -> Vec<u8> {
    match format {
        Format::Parquet => {
            let mut out = Vec::new();
            parquet::cells::put_integer(&mut out, i128::from(id));
            parquet::cells::put_bytes(&mut out, value.as_bytes());
            out
        }
        Format::Csv | Format::Ndjson => format!("{id},{value}\n").into_bytes(),
    }
}

fn encoded_row(format: Format, id: i64) -> Vec<u8> {
    encoded(format, id, &format!("value of row {id}"))
}

fn encoded_delete(format: Format, id: i64) -> Vec<u8> {
    encoded(format, id, "deleted")
}

/// The rows of a Parquet part file, each as the CSV line [`row`] writes.
fn parquet_lines(bytes: &[u8]) -> Vec<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use std::io::Write;
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(bytes).expect("temp file");
    let reader = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a complete Parquet file")
        .build()
        .expect("a reader");
    let mut lines = Vec::new();
    for batch in reader {
        let batch = batch.expect("a row group");
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let values = batch.column(1).as_string::<i64>();
        for i in 0..batch.num_rows() {
            lines.push(format!("{},{}", ids.value(i), values.value(i)));
        }
    }
    lines
}

fn key_frame(ids: &[i64]) -> Vec<u8> {
    ids.iter()
        .flat_map(|id| format!("k{id};").into_bytes())
        .collect()
}

impl ScriptedTable {
    fn load(&self) -> Load {
        match &self.key_scan {
            None => Load::full_default(),
            Some(_) => Load {
                kind: LoadKind::Incremental,
                mode: SyncMode::Cursor {
                    column: "updated".into(),
                    kind: CursorKind::Integer,
                },
                reason: "cursor".into(),
                from: Some((self.ids.0 - 1).to_string()),
                to: Some(self.ids.1.to_string()),
                key_scan: true,
                ..Load::full_default()
            },
        }
    }

    fn specs(&self) -> Vec<PartitionSpec> {
        if self.keyless {
            return vec![PartitionSpec {
                id: 0,
                mode: ReadMode::Stream,
                range: KeyRange::ALL,
            }];
        }
        let mut specs: Vec<PartitionSpec> = std::iter::once(None)
            .chain(self.ranges.iter().map(|&b| Some(b)))
            .zip(
                self.ranges
                    .iter()
                    .map(|&b| Some(b))
                    .chain(std::iter::once(None)),
            )
            .enumerate()
            .map(|(id, (lower, upper))| PartitionSpec {
                id,
                mode: ReadMode::Range,
                range: KeyRange {
                    lower_exclusive: lower,
                    upper_inclusive: upper,
                },
            })
            .collect();
        if self.key_scan.is_some() {
            specs.push(PartitionSpec {
                id: specs.len(),
                mode: ReadMode::KeyScan,
                range: KeyRange::ALL,
            });
        }
        specs
    }

    /// Every key of the table after this load: what the key scan lists.
    fn all_keys(&self) -> Vec<i64> {
        let deleted = self.key_scan.clone().unwrap_or_default();
        (1..=self.ids.1)
            .filter(|id| !deleted.contains(id))
            .collect()
    }
}

/// The messages a worker sends for one partition, reading after `after`.
fn read_partition(
    script: &Script,
    t: usize,
    spec: &PartitionSpec,
    after: Option<&[KeyValue]>,
    out: &mut Vec<Message>,
) {
    let table = &script.tables[t];
    let after = match after {
        Some([KeyValue::Int(id)]) => Some(*id),
        Some(other) => panic!("unexpected key {other:?}"),
        None => None,
    };
    if spec.mode == ReadMode::KeyScan {
        // A key scan always starts again from the first key; deletes after `after` only.
        out.push(Message::KeyScanStarted { table: t });
        let deleted = table.key_scan.clone().unwrap_or_default();
        let mut previous_last = 0;
        for keys in table.all_keys().chunks(script.rows_per_chunk as usize) {
            let last = keys[keys.len() - 1];
            let gone: Vec<i64> = deleted
                .iter()
                .copied()
                .filter(|&d| d > previous_last && d <= last && after.is_none_or(|a| d > a))
                .collect();
            previous_last = last;
            out.push(Message::Chunk(Chunk {
                table: t,
                partition: spec.id,
                rows: gone.len() as u64,
                bytes: gone
                    .iter()
                    .flat_map(|&d| encoded_delete(script.format, d))
                    .collect(),
                last_key: Some(vec![KeyValue::Int(after.map_or(last, |a| a.max(last)))]),
                deletes: gone.len() as u64,
                keys: Some(key_frame(keys)),
                new_keys: 0,
            }));
        }
    } else if spec.mode == ReadMode::Stream {
        let ids: Vec<i64> = (table.ids.0..=table.ids.1).collect();
        let half = &ids[..ids.len() / 2];
        for attempt in [half, &ids[..]] {
            for ids in attempt.chunks(script.rows_per_chunk as usize) {
                out.push(Message::Chunk(Chunk {
                    table: t,
                    partition: spec.id,
                    rows: ids.len() as u64,
                    bytes: ids
                        .iter()
                        .flat_map(|&id| encoded_row(script.format, id))
                        .collect(),
                    last_key: None,
                    deletes: 0,
                    keys: None,
                    new_keys: 0,
                }));
            }
            if attempt.len() < ids.len() {
                out.push(Message::RestartTable { table: t });
            }
        }
    } else {
        let lo = spec.range.lower_exclusive.unwrap_or(i64::MIN);
        let hi = spec.range.upper_inclusive.unwrap_or(i64::MAX);
        let ids: Vec<i64> = (table.ids.0..=table.ids.1)
            .filter(|&id| id > lo && id <= hi && after.is_none_or(|a| id > a))
            .collect();
        for ids in ids.chunks(script.rows_per_chunk as usize) {
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&id| encoded_row(script.format, id))
                .collect();
            let mut chunk = Chunk {
                table: t,
                partition: spec.id,
                rows: ids.len() as u64,
                bytes: Vec::new(),
                last_key: ids.last().map(|&id| vec![KeyValue::Int(id)]),
                deletes: 0,
                keys: None,
                new_keys: 0,
            };
            // Every other chunk comes through a spool file, as a row with a long value does.
            if ids[0] % 2 == 0 {
                let mut spool = Compression::None
                    .spool(&std::env::temp_dir())
                    .expect("spool file");
                spool.write_all(&bytes).expect("spool write");
                out.push(Message::SpooledChunk(
                    chunk,
                    spool.finish().expect("spool finish"),
                ));
            } else {
                chunk.bytes = bytes;
                out.push(Message::Chunk(chunk));
            }
        }
    }
    out.push(Message::PartitionDone {
        table: t,
        partition: spec.id,
    });
}

/// Interleaves the partitions' messages as parallel workers would.
fn interleave(mut streams: Vec<Vec<Message>>) -> Vec<Message> {
    for stream in &mut streams {
        stream.reverse();
    }
    let mut out = Vec::new();
    while streams.iter().any(|s| !s.is_empty()) {
        for stream in &mut streams {
            if let Some(m) = stream.pop() {
                out.push(m);
            }
        }
    }
    out
}

fn outputs(script: &Script) -> Vec<TableOutput> {
    script
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| TableOutput {
            schema: "dbo".into(),
            name: t.name.into(),
            tier: Tier::Small,
            folder: format!("dbo.{}", t.name),
            position: i + 1,
            checkpoint_interval: script.checkpoint_interval,
            header: match script.format {
                Format::Parquet => Vec::new(),
                Format::Csv | Format::Ndjson => HEADER.to_vec(),
            },
            columns: vec![
                ManifestColumn::new(
                    &Column::for_test("id", "bigint", Some(1)),
                    ValueKind::Integer,
                )
                .with_parquet(ParquetType::Int64, None),
                ManifestColumn::new(&Column::for_test("value", "text", None), ValueKind::Text)
                    .with_parquet(ParquetType::String, None),
            ],
            primary_key: vec!["id".into()],
        })
        .collect()
}

/// One `sync`: the start decision of `extract::run` (`table_start`: resume an unfinished run's
/// tables after their checkpoint, start the others), then the writer until every message is
/// written.
fn sync(fs: &PowerCutFs, script: &Script) -> Result<Vec<TableOutcome>, WriteError> {
    let fs_ops: Arc<dyn FileOps> = Arc::new(fs.clone());
    fs_ops
        .create_dir_all(&script.output_dir)
        .map_err(|source| WriteError {
            what: "folder",
            path: script.output_dir.clone(),
            source,
        })?;
    let previous = state::load(fs, &script.state_path).expect("the state file is readable");
    if previous
        .as_ref()
        .is_some_and(|p| p.finished && p.run_id == script.run_id)
    {
        // This run finished; a fault after its last state write came too late to matter (a
        // new `sync` is a new run with a new id).
        return Ok(Vec::new());
    }
    let unfinished = previous.as_ref().is_some_and(|p| !p.finished);
    let mut state = match previous {
        Some(p) if unfinished => p,
        other => RunState {
            version: state::STATE_VERSION,
            run_id: script.run_id.into(),
            started_at: manifest::now_rfc3339(),
            last_checkpoint_at: None,
            finished: false,
            source: SourceIdentity {
                dialect: Dialect::Postgres,
                database: "clarity".into(),
                format: script.format,
                compression: Compression::None,
            },
            tables: other.map(|p| p.tables).unwrap_or_default(),
            validation_bytes: None,
        },
    };
    let outputs = outputs(script);
    let mut earlier = std::mem::take(&mut state.tables);
    let mut starts = Vec::new();
    for (output, table) in outputs.iter().zip(&script.tables) {
        let name = output.full_name();
        let carried = earlier
            .iter()
            .position(|t| t.table == name)
            .map(|i| earlier.remove(i));
        let fresh = TableState::fresh(name, output.tier, output.folder.clone());
        let mode = table.specs()[0].mode;
        let (table, start) = table_start(carried, fresh, unfinished, table.load().kind, mode);
        state.tables.push(table);
        starts.push(start);
    }
    let mut writer = Writer::new(writer_settings(fs, script), outputs, state);
    let mut messages = Vec::new();
    for (t, start) in starts.iter().enumerate() {
        let table = &script.tables[t];
        let streams: Vec<Vec<Message>> = match start {
            Start::Done | Start::Skip => continue,
            Start::Resume => writer
                .resume_table(t)?
                .into_iter()
                .map(|p| {
                    let mut out = Vec::new();
                    read_partition(script, t, &p.spec, p.last_key.as_deref(), &mut out);
                    out
                })
                .collect(),
            Start::Fresh => {
                messages.push(Message::TableStarted {
                    table: t,
                    expected_rows: 0,
                    expected_estimated: false,
                    partitions: table.specs(),
                    load: Box::new(table.load()),
                });
                table
                    .specs()
                    .iter()
                    .map(|spec| {
                        let mut out = Vec::new();
                        read_partition(script, t, spec, None, &mut out);
                        out
                    })
                    .collect()
            }
        };
        messages.extend(interleave(streams));
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    for message in messages {
        tx.send(message).expect("channel open");
    }
    tx.send(Message::TierDone).expect("channel open");
    let (tiers_tx, tiers_rx) = crossbeam_channel::unbounded();
    tiers_tx.send(rx).expect("channel open");
    drop(tiers_tx);
    writer.run(tiers_rx)
}

fn script(tables: Vec<ScriptedTable>, run_id: &'static str) -> Script {
    Script {
        run_id,
        output_dir: PathBuf::from("/out"),
        state_path: PathBuf::from("/out").join(crate::model::STATE_FILE),
        tables,
        part_file_max_bytes: 180,
        checkpoint_interval: 7,
        checkpoint_every: None,
        clock_tick: Duration::ZERO,
        rows_per_chunk: 3,
        format: Format::Csv,
    }
}

/// The same script writing Parquet.
fn in_parquet(script: Script) -> Script {
    Script {
        format: Format::Parquet,
        ..script
    }
}

fn full_tables() -> Vec<ScriptedTable> {
    vec![
        ScriptedTable {
            name: "patient",
            ranges: vec![20],
            ids: (1, 41),
            key_scan: None,
            keyless: false,
        },
        ScriptedTable {
            name: "encounter",
            ranges: vec![],
            ids: (1, 25),
            key_scan: None,
            keyless: false,
        },
        ScriptedTable {
            name: "audit",
            ranges: vec![],
            ids: (1, 16),
            key_scan: None,
            keyless: true,
        },
    ]
}

fn incremental_tables() -> Vec<ScriptedTable> {
    vec![ScriptedTable {
        name: "patient",
        ranges: vec![50],
        ids: (42, 60),
        key_scan: Some(vec![3, 17, 33]),
        keyless: false,
    }]
}

/// A disk that holds an empty output folder, as after `mkdir` and a sync: a power cut before
/// the first sync of the folder's parent would take the whole folder, state file included, and
/// the run would start again from nothing.
fn output_disk() -> PowerCutFs {
    let fs = PowerCutFs::new();
    fs.create_dir_all(Path::new("/out")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .expect("UTF-8 output")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The output equals an uninterrupted run's: every manifest lists exactly the part files in
/// its folder with their sizes, rows and checksums, and the files hold each expected row once.
fn check_output(
    fs: &PowerCutFs,
    script: &Script,
    expected: &[(&str, Vec<Vec<u8>>)],
    context: &str,
) {
    let state = state::load(fs, &script.state_path)
        .expect("readable state")
        .expect("a state file");
    assert!(state.finished, "{context}: the run is finished");
    for (table, rows) in expected {
        let folder = script.output_dir.join(format!("dbo.{table}"));
        let manifest = manifest::read_manifest(fs, &folder)
            .expect("readable manifest")
            .unwrap_or_else(|| panic!("{context}: {table} has a manifest"));
        let mut listed: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
        let mut on_disk: Vec<String> = fs
            .list_files(&folder)
            .expect("folder")
            .into_iter()
            .filter(|n| files::is_part_file_name(n))
            .collect();
        listed.sort();
        on_disk.sort();
        assert_eq!(
            listed, on_disk,
            "{context}: {table}: manifest lists the part files"
        );
        let mut got = Vec::new();
        for file in &manifest.files {
            let bytes = fs.read(&folder.join(&file.name)).expect("part file");
            assert_eq!(
                bytes.len() as u64,
                file.bytes,
                "{context}: {} size",
                file.name
            );
            assert_eq!(
                sha256_hex(&bytes),
                file.sha256,
                "{context}: {} sha256",
                file.name
            );
            let body = match script.format {
                Format::Parquet => parquet_lines(&bytes),
                Format::Csv | Format::Ndjson => {
                    assert!(bytes.starts_with(HEADER), "{context}: {} header", file.name);
                    lines(&bytes[HEADER.len()..])
                }
            };
            assert_eq!(
                body.len() as u64,
                file.rows,
                "{context}: {} rows",
                file.name
            );
            got.extend(body);
        }
        let mut want: Vec<String> = rows.iter().flat_map(|r| lines(r)).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{context}: {table}: every row exactly once");
        let table_state = state.table(&format!("dbo.{table}")).expect("table state");
        assert_eq!(table_state.status, TableStatus::Done, "{context}: {table}");
    }
    let validation = fs
        .read(&script.output_dir.join(manifest::VALIDATION_FILE))
        .unwrap_or_default();
    let records = lines(&validation)
        .iter()
        .filter(|l| l.contains(&format!("\"run_id\":\"{}\"", script.run_id)))
        .count();
    assert_eq!(
        records,
        script.tables.len(),
        "{context}: one validation record per table of run {}",
        script.run_id
    );
}

fn full_expected() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("patient", (1..=41).map(row).collect()),
        ("encounter", (1..=25).map(row).collect()),
        ("audit", (1..=16).map(row).collect()),
    ]
}

fn incremental_expected() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut rows: Vec<Vec<u8>> = (1..=41).map(row).collect();
    rows.extend((42..=60).map(row));
    rows.extend([3, 17, 33].map(delete_row));
    vec![("patient", rows)]
}

fn check_key_list(fs: &PowerCutFs, script: &Script, context: &str) {
    let state = state::load(fs, &script.state_path).unwrap().unwrap();
    let table = state.table("dbo.patient").unwrap();
    let name = table.key_list.as_ref().expect("a key list");
    let path = script.output_dir.join("dbo.patient").join(name);
    assert_eq!(
        fs.read(&path).expect("the key list"),
        key_frame(&script.tables[0].all_keys()),
        "{context}: the key list holds every key once"
    );
}

/// Runs `first` (already on `fs`), then `run` with a fault at each of its durable steps, then
/// the next `sync`; checks the output after each.
fn at_every_step(
    prepare: impl Fn(&PowerCutFs),
    run: &Script,
    fault: impl Fn(&PowerCutFs, usize),
    recover: impl Fn(&PowerCutFs),
    check: impl Fn(&PowerCutFs, &str),
) -> usize {
    let clean = output_disk();
    prepare(&clean);
    let before = clean.steps().len();
    sync(&clean, run).expect("an uninterrupted run");
    check(&clean, "uninterrupted");
    let steps = clean.steps();
    for n in before + 1..=steps.len() {
        let fs = output_disk();
        prepare(&fs);
        fault(&fs, n);
        let stopped = sync(&fs, run);
        let context = format!(
            "fault at step {} of {}: {}",
            n - before,
            steps.len() - before,
            steps[n - 1]
        );
        assert!(stopped.is_err(), "{context}: the run stops");
        recover(&fs);
        sync(&fs, run).unwrap_or_else(|e| panic!("{context}: the next sync resumes: {e}"));
        check(&fs, &context);
    }
    steps.len() - before
}

fn power_cut(fs: &PowerCutFs, n: usize) {
    fs.cut_power_at(n);
}

/// A power cut after which the disk kept some of what was not fsynced: every combination of
/// file bytes and folder entries, at every step.
#[test]
fn a_power_cut_that_keeps_part_of_the_unsynced_writes_resumes_exactly() {
    cut_keeping_part_of_the_unsynced_writes(Format::Csv);
}

/// A Parquet part's checkpointed length is a complete file whatever the disk kept after it.
#[test]
fn a_power_cut_that_keeps_part_of_the_unsynced_writes_resumes_exactly_in_parquet() {
    cut_keeping_part_of_the_unsynced_writes(Format::Parquet);
}

fn cut_keeping_part_of_the_unsynced_writes(format: Format) {
    let in_format = |script: Script| Script { format, ..script };
    let full = in_format(script(full_tables(), "run-1"));
    let first = in_format(script(full_tables()[..1].to_vec(), "run-1"));
    let incremental = in_format(script(incremental_tables(), "run-2"));
    let mut cuts = 0;
    for survives in &Survives::ALL[1..] {
        cuts += at_every_step(
            |_| {},
            &full,
            |fs, n| fs.cut_power_keeping(n, *survives),
            PowerCutFs::reboot,
            |fs, context| check_output(fs, &full, &full_expected(), context),
        );
        cuts += at_every_step(
            |fs| {
                sync(fs, &first).expect("the full load");
            },
            &incremental,
            |fs, n| fs.cut_power_keeping(n, *survives),
            PowerCutFs::reboot,
            |fs, context| {
                check_output(fs, &incremental, &incremental_expected(), context);
                check_key_list(fs, &incremental, context);
            },
        );
    }
    eprintln!("{cuts} power cuts that kept part of the unsynced writes, each resumed exactly");
}

fn cut_a_full_load_everywhere(run: &Script) -> usize {
    at_every_step(
        |_| {},
        run,
        power_cut,
        PowerCutFs::reboot,
        |fs, context| check_output(fs, run, &full_expected(), context),
    )
}

#[test]
fn a_power_cut_at_any_step_of_a_full_load_resumes_exactly() {
    let cuts = cut_a_full_load_everywhere(&script(full_tables(), "run-1"));
    eprintln!("full load: a power cut at each of {cuts} durable steps, each resumed exactly");
    assert!(cuts >= 20, "{cuts} cut points");
}

#[test]
fn a_power_cut_at_any_step_of_a_full_load_in_parquet_resumes_exactly() {
    let cuts = cut_a_full_load_everywhere(&in_parquet(script(full_tables(), "run-1")));
    eprintln!(
        "Parquet full load: a power cut at each of {cuts} durable steps, each resumed exactly"
    );
    assert!(cuts >= 20, "{cuts} cut points");
}

#[test]
fn a_power_cut_at_any_step_of_an_incremental_load_in_parquet_resumes_exactly() {
    let run = in_parquet(script(incremental_tables(), "run-2"));
    let cuts = cut_an_incremental_load_everywhere(&run);
    eprintln!(
        "Parquet incremental load: a power cut at each of {cuts} durable steps, each resumed \
         exactly"
    );
    assert!(cuts >= 20, "{cuts} cut points");
}

/// A second power cut while the first one's resume truncates and carries on.
#[test]
fn a_power_cut_during_the_resume_after_a_power_cut_resumes_exactly() {
    let run = script(full_tables(), "run-1");
    let clean = output_disk();
    let before = clean.steps().len();
    sync(&clean, &run).unwrap();
    let steps = clean.steps().len();
    let mut cuts = 0;
    for first in (before + 1..=steps).step_by(15) {
        let probe = output_disk();
        probe.cut_power_at(first);
        assert!(sync(&probe, &run).is_err());
        probe.reboot();
        let resume_starts = probe.steps().len();
        sync(&probe, &run).unwrap();
        for second in resume_starts + 1..=probe.steps().len() {
            let fs = output_disk();
            fs.cut_power_at(first);
            assert!(sync(&fs, &run).is_err());
            fs.reboot();
            fs.cut_power_at(second);
            assert!(sync(&fs, &run).is_err(), "cut at {first}, then {second}");
            fs.reboot();
            let context = format!("cut at step {first}, then at step {second}");
            sync(&fs, &run).unwrap_or_else(|e| panic!("{context}: resumes: {e}"));
            check_output(&fs, &run, &full_expected(), &context);
            cuts += 1;
        }
    }
    eprintln!("{cuts} second power cuts during a resume, each resumed exactly");
    assert!(cuts >= 20, "{cuts} cut points");
}

/// After a full load of the first table, `run` (an incremental load) with the power cut at each
/// of its durable steps in turn, each resumed exactly; returns how many steps there were.
fn cut_an_incremental_load_everywhere(run: &Script) -> usize {
    let first = Script {
        format: run.format,
        ..script(full_tables()[..1].to_vec(), "run-1")
    };
    at_every_step(
        |fs| {
            sync(fs, &first).expect("the full load");
        },
        run,
        power_cut,
        PowerCutFs::reboot,
        |fs, context| {
            check_output(fs, run, &incremental_expected(), context);
            check_key_list(fs, run, context);
        },
    )
}

#[test]
fn a_power_cut_at_any_step_of_an_incremental_load_resumes_exactly() {
    let cuts = cut_an_incremental_load_everywhere(&script(incremental_tables(), "run-2"));
    eprintln!(
        "incremental load: a power cut at each of {cuts} durable steps, each resumed exactly"
    );
    assert!(cuts >= 20, "{cuts} cut points");
}

#[test]
fn a_full_disk_at_any_step_stops_the_run_and_the_next_sync_resumes_exactly() {
    let run = script(full_tables(), "run-1");
    for errno in [ENOSPC, EDQUOT] {
        let faults = at_every_step(
            |_| {},
            &run,
            |fs, n| fs.fail_at(n, errno),
            |_| {},
            |fs, context| check_output(fs, &run, &full_expected(), context),
        );
        eprintln!("full load: error {errno} at each of {faults} durable steps");
    }
    let first = script(full_tables()[..1].to_vec(), "run-1");
    let incremental = script(incremental_tables(), "run-2");
    at_every_step(
        |fs| {
            sync(fs, &first).expect("the full load");
        },
        &incremental,
        |fs, n| fs.fail_at(n, ENOSPC),
        |_| {},
        |fs, context| {
            check_output(fs, &incremental, &incremental_expected(), context);
            check_key_list(fs, &incremental, context);
        },
    );
}

#[test]
fn a_state_file_kept_outside_the_output_folder_survives_a_power_cut() {
    let mut run = script(full_tables(), "run-1");
    run.state_path = PathBuf::from("/var/ehi-sync").join(crate::model::STATE_FILE);
    at_every_step(
        |fs| {
            fs.create_dir_all(Path::new("/var/ehi-sync")).unwrap();
            fs.sync_dir(Path::new("/var")).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
        },
        &run,
        power_cut,
        PowerCutFs::reboot,
        |fs, context| check_output(fs, &run, &full_expected(), context),
    );
}

/// Checkpoint order: the state file never names more than the disk holds.
#[test]
fn the_state_file_never_claims_bytes_that_are_not_durable() {
    let run = script(full_tables(), "run-1");
    let clean = output_disk();
    let before = clean.steps().len();
    sync(&clean, &run).unwrap();
    let steps = clean.steps().len();
    for n in before + 1..=steps {
        let fs = output_disk();
        fs.cut_power_at(n);
        assert!(sync(&fs, &run).is_err());
        fs.reboot();
        let Some(state) = state::load(&fs, &run.state_path).expect("a state file is whole") else {
            continue;
        };
        for table in &state.tables {
            for file in &table.files {
                let path = run.output_dir.join(&table.folder).join(&file.name);
                let on_disk = fs.len(&path).unwrap_or_else(|e| {
                    panic!(
                        "cut at step {n}: the state names {} but: {e}",
                        path.display()
                    )
                });
                assert!(
                    on_disk >= file.bytes,
                    "cut at step {n}: {} is short",
                    file.name
                );
            }
        }
    }
}

/// Resume truncation: bytes past the checkpoint and part files it does not name are dropped.
#[test]
fn resume_truncates_to_the_checkpoint_and_removes_later_part_files() {
    let run = script(full_tables()[..1].to_vec(), "run-1");
    let fs = output_disk();
    // A state that names 2 rows of the first part file, as a checkpoint would have.
    fs.create_dir_all(Path::new("/out/dbo.patient")).unwrap();
    let part = Path::new("/out/dbo.patient/patient-00001.csv");
    let mut file = fs.create(part).unwrap();
    let committed: Vec<u8> = [HEADER.to_vec(), row(1), row(2)].concat();
    file.write_all(&committed).unwrap();
    file.write_all(&row(3)).unwrap();
    fs.create(Path::new("/out/dbo.patient/patient-00002.csv"))
        .unwrap()
        .write_all(b"later")
        .unwrap();
    let table = &run.tables[0];
    let mut state = TableState::fresh("dbo.patient".into(), Tier::Small, "dbo.patient".into());
    state.status = TableStatus::InProgress;
    state.load = Some(table.load());
    state.files = vec![CommittedFile {
        name: "patient-00001.csv".into(),
        bytes: committed.len() as u64,
        rows: 2,
    }];
    state.partitions = table
        .specs()
        .into_iter()
        .map(|spec| PartitionState {
            last_key: (spec.id == 0).then(|| vec![KeyValue::Int(2)]),
            status: PartitionStatus::InProgress,
            spec,
        })
        .collect();
    let run_state = RunState {
        version: state::STATE_VERSION,
        run_id: "run-1".into(),
        started_at: manifest::now_rfc3339(),
        last_checkpoint_at: None,
        finished: false,
        source: SourceIdentity {
            dialect: Dialect::Postgres,
            database: "clarity".into(),
            format: Format::Csv,
            compression: Compression::None,
        },
        tables: vec![state],
        validation_bytes: None,
    };
    run_state.save(&fs, &run.state_path).unwrap();
    let mut writer = Writer::new(writer_settings(&fs, &run), outputs(&run), run_state);
    let remaining = writer.resume_table(0).unwrap();
    assert_eq!(fs.read(part).unwrap(), committed);
    assert!(
        fs.read(Path::new("/out/dbo.patient/patient-00002.csv"))
            .is_err()
    );
    assert_eq!(remaining.len(), 2);
    assert_eq!(remaining[0].last_key, Some(vec![KeyValue::Int(2)]));
    drop(writer);
    sync(&fs, &run).unwrap();
    check_output(
        &fs,
        &run,
        &[("patient", (1..=41).map(row).collect())],
        "resumed",
    );
}

/// Manifest building: the files of earlier loads first, then this load's, each with its run.
#[test]
fn an_incremental_manifest_lists_the_earlier_files_then_its_own() {
    let fs = output_disk();
    let first = script(full_tables()[..1].to_vec(), "run-1");
    sync(&fs, &first).unwrap();
    let full = manifest::read_manifest(&fs, Path::new("/out/dbo.patient"))
        .unwrap()
        .unwrap();
    let run = script(incremental_tables(), "run-2");
    sync(&fs, &run).unwrap();
    let manifest = manifest::read_manifest(&fs, Path::new("/out/dbo.patient"))
        .unwrap()
        .unwrap();
    assert_eq!(manifest.sync_type, "incremental");
    assert_eq!(manifest.run_id, "run-2");
    assert_eq!(manifest.files[..full.files.len()], full.files[..]);
    assert!(
        manifest.files[full.files.len()..]
            .iter()
            .all(|f| f.run_id == "run-2")
    );
    assert_eq!(manifest.row_count, 19 + 3);
    assert_eq!(manifest.changes.deleted, 3);
    assert_eq!(
        manifest
            .loads
            .iter()
            .map(|l| l.run_id.as_str())
            .collect::<Vec<_>>(),
        ["run-1", "run-2"]
    );
    assert!(
        fs.read(Path::new("/out/dbo.patient").join(MANIFEST_FILE).as_path())
            .is_ok()
    );
}

/// Checkpoint order, read off the steps of a run: when the state file is renamed into place,
/// every data file and key list written before has been fsynced since its last write, and
/// every file created before has had its folder fsynced since.
#[test]
fn every_state_write_comes_after_the_data_and_folders_it_describes_are_synced() {
    for (prepare, run) in [
        (None, script(full_tables(), "run-1")),
        (
            Some(script(full_tables()[..1].to_vec(), "run-1")),
            script(incremental_tables(), "run-2"),
        ),
    ] {
        let fs = output_disk();
        if let Some(first) = &prepare {
            sync(&fs, first).unwrap();
        }
        let before = fs.steps().len();
        sync(&fs, &run).unwrap();
        let steps = fs.steps();
        let state_rename = format!("-> {}", run.state_path.display());
        let mut unsynced_files: Vec<String> = Vec::new();
        let mut unsynced_entries: Vec<(String, String)> = Vec::new();
        let mut checkpoints = 0;
        for step in &steps[before..] {
            let (op, rest) = step.split_once(' ').unwrap();
            let path = rest.split(" (").next().unwrap().to_owned();
            let folder = |p: &str| {
                Path::new(p)
                    .parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            };
            let is_output = |p: &str| p.ends_with(".csv") || p.ends_with(".bin");
            match op {
                _ if step.starts_with("fsync folder ") => {
                    let dir = step.trim_start_matches("fsync folder ");
                    unsynced_entries.retain(|(d, _)| d != dir);
                }
                "write" if is_output(&path) && !unsynced_files.contains(&path) => {
                    unsynced_files.push(path);
                }
                "fsync" => unsynced_files.retain(|f| *f != path),
                "create" if is_output(&path) => unsynced_entries.push((folder(&path), path)),
                "rename" if step.ends_with(&state_rename) => {
                    checkpoints += 1;
                    assert!(
                        unsynced_files.is_empty(),
                        "{step}: written but not fsynced: {unsynced_files:?}"
                    );
                    assert!(
                        unsynced_entries.is_empty(),
                        "{step}: created but the folder not fsynced: {unsynced_entries:?}"
                    );
                }
                _ => {}
            }
        }
        assert!(checkpoints >= 5, "{checkpoints} checkpoints");
    }
}

/// The time rule alone: rows never reach the interval, so every checkpoint before a table's
/// end is due by the clock (or is the first write's); a power cut at any step resumes exactly.
#[test]
fn a_power_cut_at_any_step_of_a_time_checkpointed_load_resumes_exactly() {
    let mut run = script(full_tables(), "run-1");
    run.checkpoint_interval = u64::MAX;
    run.checkpoint_every = Some(Duration::from_secs(5));
    run.clock_tick = Duration::from_secs(1);
    let by_time = states_at_each_checkpoint(&run);
    let mid_table = by_time
        .iter()
        .filter(|s| {
            s.tables
                .iter()
                .any(|t| t.status == TableStatus::InProgress && t.rows > 0)
        })
        .count();
    assert!(mid_table >= 3, "{mid_table} checkpoints inside a table");
    let cuts = at_every_step(
        |_| {},
        &run,
        power_cut,
        PowerCutFs::reboot,
        |fs, context| check_output(fs, &run, &full_expected(), context),
    );
    let mut incremental = script(incremental_tables(), "run-2");
    incremental.checkpoint_interval = u64::MAX;
    incremental.checkpoint_every = Some(Duration::from_secs(5));
    incremental.clock_tick = Duration::from_secs(1);
    let incremental_cuts = cut_an_incremental_load_everywhere(&incremental);
    eprintln!(
        "checkpoints by time ({mid_table} inside a table): a power cut at each of {cuts} steps \
         of a full load and {incremental_cuts} of an incremental one, each resumed exactly"
    );
    assert!(
        cuts >= 20 && incremental_cuts >= 20,
        "{cuts}, {incremental_cuts}"
    );
}

/// What the state file said after each checkpoint of an uninterrupted run of `script`: read
/// back after a power cut right after that checkpoint's folder fsync.
fn states_at_each_checkpoint(script: &Script) -> Vec<RunState> {
    let clean = output_disk();
    let before = clean.steps().len();
    sync(&clean, script).expect("an uninterrupted run");
    let steps = clean.steps();
    let state_rename = format!("-> {}", script.state_path.display());
    let mut states = Vec::new();
    for (i, step) in steps.iter().enumerate().skip(before) {
        if !(step.starts_with("rename ") && step.ends_with(&state_rename)) {
            continue;
        }
        // Step i + 1 is the rename, i + 2 the folder fsync; the cut comes at the next step.
        let fs = output_disk();
        if i + 3 <= steps.len() {
            fs.cut_power_at(i + 3);
            assert!(sync(&fs, script).is_err());
            fs.reboot();
        } else {
            sync(&fs, script).expect("an uninterrupted run");
        }
        states.push(
            state::load(&fs, &script.state_path)
                .expect("a readable state")
                .expect("a state file"),
        );
    }
    states
}

fn rows_recorded(state: &RunState) -> u64 {
    state.tables.iter().map(|t| t.rows).sum()
}

/// The checkpoint decision: by rows at the interval; by time once `checkpoint_seconds` passed
/// since the last one; the first rows a process writes at once; a finished partition only as
/// the clock allows.
#[test]
fn checkpoints_fall_due_by_rows_by_time_and_at_a_process_s_first_write() {
    // One table of 41 rows in 21 partitions: a range per two keys, a chunk per partition.
    let tables = vec![ScriptedTable {
        name: "patient",
        ranges: (1..=20).map(|k| k * 2).collect(),
        ids: (1, 41),
        key_scan: None,
        keyless: false,
    }];
    let mut rows_only = script(tables, "run-1");
    rows_only.checkpoint_interval = u64::MAX;
    let inside = |states: &[RunState]| -> Vec<u64> {
        states
            .iter()
            .filter(|s| s.tables[0].status == TableStatus::InProgress)
            .map(rows_recorded)
            .filter(|&rows| rows > 0)
            .collect()
    };
    // Neither rule: nothing is recorded before the table's end.
    let baseline = states_at_each_checkpoint(&rows_only);
    assert_eq!(inside(&baseline), Vec::<u64>::new());
    // The row interval: every 10 rows, at the first chunk that reaches it.
    let mut by_rows = rows_only.clone();
    by_rows.checkpoint_interval = 10;
    assert_eq!(
        inside(&states_at_each_checkpoint(&by_rows)),
        [10, 20, 30, 40]
    );
    // The clock stands still: the first write is checkpointed at once, and none of the 20
    // partitions finishing after it brings another checkpoint.
    let mut still = rows_only.clone();
    still.checkpoint_every = Some(Duration::from_secs(30));
    let states = states_at_each_checkpoint(&still);
    assert_eq!(inside(&states), [2]);
    assert_eq!(states.len(), baseline.len() + 1);
    // The clock moves on a second per reading (a reading per chunk and per finished
    // partition): a checkpoint every 5 readings once something new was written.
    let mut ticking = still.clone();
    ticking.clock_tick = Duration::from_secs(1);
    ticking.checkpoint_every = Some(Duration::from_secs(5));
    let recorded = inside(&states_at_each_checkpoint(&ticking));
    assert_eq!(recorded.first(), Some(&2), "{recorded:?}");
    assert!(
        recorded.len() >= 5 && recorded.len() <= 20,
        "a checkpoint every few partitions, not at each: {recorded:?}"
    );
    assert!(recorded.windows(2).all(|w| w[0] <= w[1]), "{recorded:?}");
}
