#!/usr/bin/env python3
"""Summarises a whole-machine `perf record -a --call-graph dwarf` of one ehi-sync run: where the
CPU time went, by process, by ehi-sync thread kind, and by what the code was doing.

    perf script -i perf.data -F comm,pid,tid,period,ip,sym,dso | perf_breakdown.py

ehi-sync is the process whose main thread is called `ehi-sync`; every thread of that process
counts as ehi-sync. Thread kinds: `writer`; worker threads (`worker-<n>`, formerly
`<tier>-worker-<n>`), which run statements and encode batches; the odbc-api fetch threads
(ConcurrentBlockCursor, one per statement), which are unnamed and so carry their worker's name.
A thread is a fetch thread when any of its samples has the `from_block_cursor::{closure` frames on
its stack; then all its samples count as such, including those whose stack perf could not
unwind (common inside libc's sscanf/snprintf, which psqlODBC calls for every value it
converts).
"""

import re
import sys
from collections import Counter

HEADER = re.compile(r"^(\S.*?)\s+(\d+)/(\d+)\s+(\d+)\s*$")
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
FETCH = "fetch threads (odbc-api, one per statement: SQLFetch in the driver)"
WORKER = "worker threads (execute statements, encode, send)"
WRITER = "writer thread"
MAIN = "main thread and other"


def samples(lines):
    """Yields (comm, pid, tid, period, frames) with frames leaf first, each (symbol, dso)."""
    comm = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield comm, pid, tid, period, frames
            comm = None
            continue
        if comm is None:
            match = HEADER.match(line)
            if match:
                comm, pid, tid = match.group(1).strip(), match.group(2), match.group(3)
                period, frames = int(match.group(4)), []
            continue
        match = FRAME.match(line)
        if match:
            frames.append((match.group(1), match.group(2)))
    if comm is not None:
        yield comm, pid, tid, period, frames


def library(frames):
    """Which library the sampled instruction was in."""
    dso = frames[0][1] if frames else ""
    if "kallsyms" in dso:
        return "kernel (socket I/O, page faults, scheduling)"
    if "libpq" in dso:
        return "libpq"
    if "psqlodbc" in dso:
        return "psqlODBC code"
    if "libodbc" in dso:
        return "unixODBC driver manager"
    if "libc" in dso or dso == "inlined":
        return "libc (sscanf, snprintf, strtol, strcasecmp, malloc, memcpy ...)"
    if "ehi-sync" in dso:
        return "ehi-sync / odbc-api code"
    return dso.rsplit("/", 1)[-1] or "unknown"


def odbc_call(frames):
    """The ODBC function the sample is inside, if any (the frame nearest the root)."""
    call = None
    for sym, dso in frames:
        if "libodbc" in dso and sym.startswith("SQL"):
            call = sym
    return call


def activity(kind, frames):
    syms = [sym for sym, _ in frames]
    if kind == FETCH:
        return "fetch thread: " + library(frames)
    call = odbc_call(frames)
    if call in ("SQLExecDirect", "SQLExecDirectW", "SQLExecute"):
        return "worker: SQLExecDirect (psqlODBC: DECLARE CURSOR + its first FETCH)"
    if call:
        return "worker/main: other ODBC calls (connect, close cursor, catalog, free)"
    if kind == WRITER:
        if any("sha2" in s for s in syms):
            return "writer: sha256 of part files"
        if any("fsync" in s or "fdatasync" in s or "sync_data" in s or "sync_all" in s for s in syms):
            return "writer: fsync (checkpoints)"
        if any("write" in s for s in syms):
            return "writer: writing part files"
        return "writer: other"
    if any("encode_batch" in s or "RowEncoder" in s for s in syms):
        return "worker: encoding rows to CSV/NDJSON"
    if any("crossbeam" in s for s in syms):
        return "channel send/receive"
    if "asm_exc_page_fault" in syms:
        return "page faults outside the driver (fresh buffer memory)"
    if any(s in ("malloc", "free", "calloc", "realloc", "_int_free", "_int_malloc", "cfree",
                 "malloc_consolidate", "unlink_chunk.constprop.0", "__munmap", "__mmap")
           or "memset" in s or "alloc" in s for s in syms[:6]):
        return "allocating/freeing/zeroing memory outside the driver"
    return ("main: " if kind == MAIN else "worker: ") + "other (" + library(frames) + ")"


def main():
    all_samples = list(samples(sys.stdin))
    client_pids = {pid for comm, pid, tid, _, _ in all_samples if comm == "ehi-sync" and pid == tid}
    fetch_tids = set()
    for _, pid, tid, _, frames in all_samples:
        if pid in client_pids and any("from_block_cursor::{closure" in sym for sym, _ in frames):
            fetch_tids.add(tid)

    by_process = Counter()
    by_thread = Counter()
    by_activity = Counter()
    total = 0
    for comm, pid, tid, period, frames in all_samples:
        total += period
        if comm == "swapper":
            by_process["idle"] += period
        elif comm == "postgres":
            by_process["postgres (server backends)"] += period
        elif pid in client_pids:
            by_process["ehi-sync (all threads)"] += period
            if tid in fetch_tids:
                kind = FETCH
            elif comm == "writer":
                kind = WRITER
            elif "worker" in comm or odbc_call(frames) or any("Worker" in sym for sym, _ in frames):
                kind = WORKER
            else:
                kind = MAIN
            by_thread[kind] += period
            by_activity[activity(kind, frames)] += period
        else:
            by_process["other: " + comm] += period
    if total == 0:
        print("no samples")
        return 1
    client = sum(by_thread.values()) or 1

    def table(title, counter, denominator, note, limit=25):
        print(f"== {title} ({note})")
        for name, value in counter.most_common(limit):
            print(f"  {100 * value / denominator:6.1f}%  {name}")
        print()

    print(f"{len(all_samples)} samples; {len(fetch_tids)} fetch threads seen\n")
    table("machine CPU time", by_process, total, "share of all samples on all CPUs, idle included", 12)
    table("ehi-sync by thread kind", by_thread, client, "share of ehi-sync's CPU time")
    table("ehi-sync by activity", by_activity, client, "share of ehi-sync's CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
