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


def activity(comm, frames):
    syms = [sym for sym, _ in frames]
    dsos = [dso for _, dso in frames]
    if any(s in FETCH_CALLS for s in syms):
        leaf_dso = dsos[0] if dsos else ""
        if "kallsyms" in leaf_dso:
            where = "kernel (socket reads, page faults)"
        elif "libpq" in leaf_dso:
            where = "libpq"
        elif "psqlodbc" in leaf_dso:
            where = "psqlODBC code"
        elif "libc" in leaf_dso:
            where = "libc called by the driver (sscanf/snprintf/strtoll/malloc ...)"
        else:
            where = leaf_dso.rsplit("/", 1)[-1]
        return "SQLFetch: " + where
    if any(s.startswith("SQL") for s in syms):
        return "other ODBC calls (connect, execute, close cursor, catalog)"
    if any("encode_batch" in s or "RowEncoder" in s for s in syms):
        return "encoding rows to CSV/NDJSON (ehi-sync)"
    if any("sha2" in s for s in syms):
        return "sha256 of part files (writer)"
    if any(s in ("fsync", "fdatasync", "__fsync", "__fdatasync") or "sync_data" in s or "sync_all" in s
           or "do_fsync" in s for s in syms):
        return "fsync (writer checkpoints)"
    if any("write_chunk" in s or "write_all" in s or s in ("ksys_write", "vfs_write") for s in syms):
        return "writing part files (writer)"
    if any("crossbeam" in s for s in syms):
        return "channel send/receive"
    if any(s in ("free", "malloc", "_int_free", "_int_malloc", "cfree") or "drop_in_place" in s for s in syms[:3]):
        return "allocation / freeing"
    return "other"


def main():
    by_process = Counter()
    by_thread = Counter()
    by_activity = Counter()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
