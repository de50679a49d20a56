#!/usr/bin/env python3
"""Summarises a whole-machine `perf record -a --call-graph dwarf` of one ehi-sync run: where the
CPU time went, by process, by ehi-sync thread kind, and by what the code was doing.

    perf script -i perf.data -F comm,tid,period,ip,sym,dso | perf_breakdown.py

Thread kinds: `writer`; `<tier>-worker-<n>` threads encoding batches; the odbc-api fetch threads
(ConcurrentBlockCursor), which are unnamed and so carry their worker's name, told apart by the
`concurrent_block_cursor` frames on their stacks; `main` (plan, discovery).
"""

import re
import sys
from collections import Counter

HEADER = re.compile(r"^(\S.*?)\s+(\d+)\s+(\d+)\s*$")
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
CLIENT = re.compile(r"^(ehi-sync|writer|ctrl-c|\w+-worker-\d+)$")
FETCH_CALLS = ("SQLFetch", "SQLFetchScroll", "SQLExtendedFetch")


def samples(lines):
    comm = None
    frames = []
    period = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield comm, period, frames
            comm, frames = None, []
            continue
        if comm is None:
            match = HEADER.match(line)
            if match:
                comm, period = match.group(1).strip(), int(match.group(3))
            continue
        match = FRAME.match(line)
        if match:
            frames.append((match.group(1), match.group(2)))
    if comm is not None:
        yield comm, period, frames


def thread_kind(comm, frames):
    if comm == "writer":
        return "writer thread"
    if "worker" in comm:
        if any("concurrent_block_cursor" in sym for sym, _ in frames):
            return "fetch threads (odbc-api, one per statement)"
        return "worker threads (encode, send)"
    return "main thread and other"


def leaf_place(frames):
    """Which library the sampled instruction was in."""
    dso = frames[0][1] if frames else ""
    if "kallsyms" in dso:
        return "kernel (socket I/O, page faults)"
    if "libpq" in dso:
        return "libpq"
    if "psqlodbc" in dso:
        return "psqlODBC code"
    if "libodbc" in dso:
        return "unixODBC driver manager"
    if "libc" in dso:
        return "libc (sscanf/snprintf/strtoll/malloc/memcpy ...)"
    return dso.rsplit("/", 1)[-1] or "unknown"


def odbc_call(frames):
    """The ODBC function the sample is inside, if any (the frame nearest the root)."""
    call = None
    for sym, dso in frames:
        if "libodbc" in dso and sym.startswith("SQL"):
            call = sym
    return call


def activity(comm, frames):
    syms = [sym for sym, _ in frames]
    call = odbc_call(frames)
    if call in ("SQLFetch", "SQLFetchScroll", "SQLExtendedFetch"):
        return "ODBC SQLFetch (driver fetching and converting a block)"
    if call in ("SQLExecDirect", "SQLExecDirectW", "SQLExecute"):
        return "ODBC SQLExecDirect (psqlODBC: DECLARE CURSOR + first FETCH block)"
    if call:
        return "ODBC other calls (connect, close cursor, catalog, free)"
    if any("encode_batch" in s or "RowEncoder" in s for s in syms):
        return "encoding rows to CSV/NDJSON (ehi-sync)"
    if any("sha2" in s for s in syms):
        return "writer: sha256 of part files"
    if any("fsync" in s or "fdatasync" in s or "sync_data" in s or "sync_all" in s for s in syms):
        return "writer: fsync (checkpoints)"
    if any("write_chunk" in s or s in ("ksys_write", "vfs_write") for s in syms):
        return "writer: writing part files"
    if any("crossbeam" in s for s in syms):
        return "channel send/receive"
    if "asm_exc_page_fault" in syms:
        return "page faults outside the driver (fresh buffer memory)"
    if any(s in ("malloc", "free", "calloc", "realloc", "_int_free", "_int_malloc", "cfree",
                 "malloc_consolidate", "unlink_chunk.constprop.0") or "memset" in s
           for s in syms[:4]):
        return "malloc/free/memset outside the driver (stack not unwound further)"
    return "other"


def main():
    by_process = Counter()
    by_thread = Counter()
    by_activity = Counter()
    in_driver = Counter()
    total = 0
    for comm, period, frames in samples(sys.stdin):
        total += period
        if comm == "swapper":
            by_process["idle"] += period
        elif comm == "postgres":
            by_process["postgres (server backends)"] += period
        elif CLIENT.match(comm):
            by_process["ehi-sync (all threads)"] += period
            by_thread[thread_kind(comm, frames)] += period
            by_activity[activity(comm, frames)] += period
            call = odbc_call(frames)
            if call:
                in_driver[call + ": " + leaf_place(frames)] += period
        else:
            by_process["other processes (" + comm + ")"] += period
    if total == 0:
        print("no samples")
        return 1
    client = sum(by_thread.values()) or 1

    def table(title, counter, denominator, note):
        print(f"== {title} ({note})")
        for name, value in counter.most_common(20):
            print(f"  {100 * value / denominator:6.1f}%  {name}")
        print()

    table("machine CPU time", by_process, total, "share of all samples on all CPUs, idle included")
    table("ehi-sync by thread kind", by_thread, client, "share of ehi-sync's CPU time")
    table("ehi-sync by activity", by_activity, client, "share of ehi-sync's CPU time")
    table("inside ODBC calls, by library", in_driver, client, "share of ehi-sync's CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
