#!/usr/bin/env bash
# Reproducible throughput and memory benchmark of ehi-sync against the usual ways to export a
# table, in three parts: a local PostgreSQL through psqlODBC; the same tables served by the TDS
# test server (tests/tds-server) and read through Microsoft ODBC Driver 18 for SQL Server; and
# peak memory against value size (one value of 1, 10, 100 MB) through both drivers.
#
#   scripts/bench.sh                                        full run (10M narrow, 500k wide rows)
#   BENCH_NARROW_ROWS=1000000 BENCH_WIDE_ROWS=50000 scripts/bench.sh        quick run
#   BENCH_ONLY=mssql scripts/bench.sh                       only the Driver 18 part
#
# Environment (all optional):
#   BENCH_ONLY         the parts to run, of: postgres mssql values (default all three)
#   BENCH_MSSQL_NARROW_ROWS, BENCH_MSSQL_WIDE_ROWS
#                      rows of the tables the TDS test server serves (default 5000000, 250000:
#                      about 3 minutes of measurements on 2 quiet cores, plus about 40 s to build
#                      its SQLite file the first time)
#   BENCH_MSSQL_ENCRYPT  Driver 18's Encrypt for the SQL Server part: yes (default, TLS as in
#                      production, certificate trusted) or no
#   BENCH_VALUE_SIZES  value sizes in MB for the memory part (default "1 10 100")
#   BENCH_VALUE_SOURCES  of: mssql pg (default both)
#   BENCH_DATA_DIR     where the TDS test server's SQLite files are kept between runs
#                      (default /var/tmp/ehi-bench-data)
#   BENCH_NARROW_ROWS  rows of flowsheet_value (default 10000000)
#   BENCH_WIDE_ROWS    rows of wide_table, 210 columns (default 500000)
#   BENCH_REPEAT       runs per measurement; the best time is kept (default 1)
#   BENCH_REBUILD=1    drop and regenerate the tables even when they look right
#   BENCH_TOOLS        subset of: psql ehi-sync-csv ehi-sync-ndjson ehi-sync-parquet odbcsv
#                      odbc2parquet pyodbc (psql only reads PostgreSQL; the memory part runs the
#                      ehi-sync CSV and NDJSON ones and isql)
#   BENCH_FETCH        psqlODBC's Fetch (rows per server round trip, cached per connection;
#                      default 1000, which keeps its cache of the wide table near 70 MiB)
#   BENCH_PROFILE=1    afterwards, profile one ehi-sync CSV run per table with `perf record -a`
#                      (CPU by process, thread kind and library; not part of the timings);
#                      BENCH_PROFILE=only skips the measurements and only profiles
#   BENCH_TIMEOUT      seconds before one measurement is killed (default 1800)
#   BENCH_QUIET_WAIT   before each measurement, wait up to this many seconds for the machine to
#                      be quiet (under 25% CPU busy over one second; default 300, 0 = no wait);
#                      CPU used by other processes during each run is reported ("other")
#   BENCH_BINARY       measure this ehi-sync binary instead of building the working tree
#   BENCH_WORK_DIR     scratch folder (default /var/tmp/ehi-bench); outputs are deleted after
#                      every measurement
#
# What it does: sets the host up (scripts/setup.sh: ODBC drivers with CommLog=0, PostgreSQL on
# 127.0.0.1:5432), builds the release binary, creates database ehi_bench with tables generated
# server-side (reused on reruns when their row counts match), then measures wall seconds and
# peak RSS (/usr/bin/time) of every tool on every table, the CPU time of the client, of
# PostgreSQL and of anything else, checks each tool's row count, and writes the table to
# bench-results/results-<timestamp>.txt and bench-results/latest.txt. Each run's output goes to
# a scratch folder that is deleted afterwards; logs stay in $BENCH_WORK_DIR/logs.
# A full run of the PostgreSQL part takes about 7 minutes on 2 cores (about 40 s of it
# generating the tables); each further BENCH_REPEAT adds about 6 minutes.
# The SQL Server part builds its SQLite file once (reused while the row counts match), starts the
# TDS test server as a separate process and measures only the client: user+sys CPU of the client
# process, wall time, peak RSS. The memory part syncs one-row tables holding one long value.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

NARROW_ROWS=${BENCH_NARROW_ROWS:-10000000}
WIDE_ROWS=${BENCH_WIDE_ROWS:-500000}
REPEAT=${BENCH_REPEAT:-1}
REBUILD=${BENCH_REBUILD:-0}
TOOLS=${BENCH_TOOLS:-psql ehi-sync-csv ehi-sync-ndjson ehi-sync-parquet odbcsv odbc2parquet pyodbc}
# odbc2parquet, the reference for Parquet output: pinned, installed with cargo when missing.
ODBC2PARQUET_VERSION=11.0.1
PROFILE=${BENCH_PROFILE:-0}
TIMEOUT=${BENCH_TIMEOUT:-1800}
QUIET_WAIT=${BENCH_QUIET_WAIT:-300}
WORK=${BENCH_WORK_DIR:-/var/tmp/ehi-bench}
ONLY=${BENCH_ONLY:-postgres mssql values}
MSSQL_NARROW_ROWS=${BENCH_MSSQL_NARROW_ROWS:-5000000}
MSSQL_WIDE_ROWS=${BENCH_MSSQL_WIDE_ROWS:-250000}
MSSQL_ENCRYPT=${BENCH_MSSQL_ENCRYPT:-yes}
VALUE_SIZES=${BENCH_VALUE_SIZES:-1 10 100}
VALUE_SOURCES=${BENCH_VALUE_SOURCES:-mssql pg}
BENCH_DATA=${BENCH_DATA_DIR:-/var/tmp/ehi-bench-data}

DB=ehi_bench
NARROW=flowsheet_value
NARROW_1M=flowsheet_value_1m
WIDE=wide_table
WIDE_COLUMNS=209 # besides row_id
FLAT_ROWS=1000000
# Bump when the generated data changes, so old tables are rebuilt instead of reused.
# v2: wide_table rows are stored in-line (toast_tuple_target), as SQL Server stores them.
DATA_VERSION=v2
# psqlODBC keeps FETCH rows per connection in its own memory (about 20 KB a row on the wide
# table), so BENCH_FETCH moves every tool's memory; the same value is used for all of them.
FETCH=${BENCH_FETCH:-1000}
CONNECTION="Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=$DB;Uid=postgres;Pwd=;UseDeclareFetch=1;Fetch=$FETCH;CommLog=0;Debug=0;"
PSQL=(psql -X -w -q -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1)

log() {
    echo "bench: $*" >&2
}

die() {
    log "$*"
    exit 1
}

for pair in "BENCH_NARROW_ROWS:$NARROW_ROWS" "BENCH_WIDE_ROWS:$WIDE_ROWS" \
    "BENCH_MSSQL_NARROW_ROWS:$MSSQL_NARROW_ROWS" "BENCH_MSSQL_WIDE_ROWS:$MSSQL_WIDE_ROWS" \
    "BENCH_REPEAT:$REPEAT" "BENCH_TIMEOUT:$TIMEOUT" "BENCH_QUIET_WAIT:$((QUIET_WAIT + 1))"; do
    [[ ${pair#*:} =~ ^[1-9][0-9]*$ ]] || die "${pair%%:*} must be a positive integer, not '${pair#*:}'"
done
for tool in $TOOLS; do
    case $tool in
        psql | ehi-sync-csv | ehi-sync-ndjson | ehi-sync-parquet | odbcsv | odbc2parquet | pyodbc) ;;
        *) die "unknown tool '$tool' in BENCH_TOOLS (psql ehi-sync-csv ehi-sync-ndjson ehi-sync-parquet odbcsv odbc2parquet pyodbc)" ;;
    esac
done
wants() {
    [[ " $TOOLS " == *" $1 "* ]]
}
ONLY=${ONLY//,/ }
for part in $ONLY; do
    case $part in
        postgres | mssql | values) ;;
        *) die "unknown part '$part' in BENCH_ONLY (postgres mssql values)" ;;
    esac
done
runs_part() {
    [[ " $ONLY " == *" $1 "* ]]
}
for size in $VALUE_SIZES; do
    [[ $size =~ ^[1-9][0-9]*$ ]] || die "BENCH_VALUE_SIZES must be sizes in MB, not '$size'"
done
for source in $VALUE_SOURCES; do
    [[ $source == mssql || $source == pg ]] || die "unknown source '$source' in BENCH_VALUE_SOURCES (mssql pg)"
done
[[ $MSSQL_ENCRYPT == yes || $MSSQL_ENCRYPT == no ]] || die "BENCH_MSSQL_ENCRYPT must be yes or no, not '$MSSQL_ENCRYPT'"
# PostgreSQL serves the first part and psqlODBC's half of the memory part.
NEEDS_PG=0
if runs_part postgres || { runs_part values && [[ " $VALUE_SOURCES " == *" pg "* ]]; }; then
    NEEDS_PG=1
fi
NEEDS_TDS=0
if runs_part mssql || { runs_part values && [[ " $VALUE_SOURCES " == *" mssql "* ]]; }; then
    NEEDS_TDS=1
fi
VALUE_TOOLS=
for tool in ehi-sync-csv ehi-sync-ndjson; do
    wants "$tool" && VALUE_TOOLS+=" $tool"
done

# One run at a time: a second one would delete the first one's scratch files and both would
# measure each other's load.
mkdir -p "$(dirname "$WORK")"
exec 9>>"$WORK.lock"
if ! flock -n 9; then
    die "another scripts/bench.sh is running (pid $(cat "$WORK.lock" 2>/dev/null || echo '?'), lock $WORK.lock); wait for it to finish"
fi
echo $$ >"$WORK.lock"

# ---------------------------------------------------------------------------------------------
# Host: drivers, PostgreSQL, the compared tools.

BENCH_APT_UPDATED=0
bench_apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    if ((BENCH_APT_UPDATED == 0)); then
        apt-get update
        BENCH_APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

pg_answers() {
    "${PSQL[@]}" -d postgres -Atc 'SELECT 1' >/dev/null 2>&1
}

# Used only when scripts/setup.sh is missing: the same promises in short.
fallback_setup() {
    bench_apt_install unixodbc unixodbc-dev odbcinst odbc-postgresql postgresql
    if ! odbcinst -q -d -n "PostgreSQL Unicode" 2>/dev/null | grep -qx 'CommLog=0'; then
        printf '%s\n' "[PostgreSQL Unicode]" "Description=PostgreSQL ODBC driver (Unicode version)" \
            "Driver=psqlodbcw.so" "Setup=libodbcpsqlS.so" "Debug=0" "CommLog=0" |
            odbcinst -i -d -r >/dev/null
    fi
    pg_answers && return 0
    local version hba
    version=$(pg_lsclusters -h | awk '$3 == 5432 { print $1; exit }')
    [[ -n $version ]] || die "no PostgreSQL cluster on port 5432"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    grep -qE '^host[[:space:]]+all[[:space:]]+postgres[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba" ||
        sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main restart
    for _ in $(seq 1 30); do
        pg_answers && return 0
        sleep 1
    done
    die "PostgreSQL does not answer on 127.0.0.1:5432"
}

if [[ -f scripts/setup.sh ]]; then
    # shellcheck source=setup.sh
    source scripts/setup.sh
    if ((NEEDS_PG)); then
        setup_host --postgres
    else
        setup_host
    fi
else
    fallback_setup
fi
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"

bench_apt_install time
if wants odbc2parquet && [[ $(odbc2parquet --version 2>/dev/null) != *" $ODBC2PARQUET_VERSION" ]]; then
    log "installing odbc2parquet $ODBC2PARQUET_VERSION from crates.io (cargo install odbc2parquet)"
    cargo install --locked odbc2parquet --version "$ODBC2PARQUET_VERSION"
fi
if wants ehi-sync-parquet || wants odbc2parquet; then
    # Rows of a Parquet output are counted with pyarrow (the version the tests pin).
    python3 -c 'import pyarrow' 2>/dev/null || (source scripts/setup.sh && ensure_python_clients)
fi
if wants odbcsv && ! command -v odbcsv >/dev/null; then
    log "installing odbcsv from crates.io (cargo install odbcsv)"
    cargo install --locked odbcsv
fi
if wants pyodbc && ! python3 -c 'import pyodbc' 2>/dev/null; then
    command -v python3 >/dev/null || bench_apt_install python3
    # A wheel usually exists; building one needs unixodbc-dev, which setup installs.
    if ! python3 -m pip install pyodbc; then
        log "pip could not install pyodbc; using Debian's python3-pyodbc"
        bench_apt_install python3-pyodbc
    fi
    python3 -c 'import pyodbc' || die "pyodbc is not importable by $(command -v python3)"
fi
if [[ $PROFILE != 0 ]] && ! command -v perf >/dev/null; then
    bench_apt_install linux-perf || log "perf is not available; BENCH_PROFILE skipped"
fi

# ---------------------------------------------------------------------------------------------
# Build. The binary is copied so a rebuild by someone else mid-run cannot change what is measured.

if [[ -n ${BENCH_BINARY:-} ]]; then
    [[ -x $BENCH_BINARY ]] || die "BENCH_BINARY '$BENCH_BINARY' is not an executable"
    SOURCE_BINARY=$BENCH_BINARY
    log "measuring $SOURCE_BINARY (BENCH_BINARY; not rebuilt)"
else
    log "cargo build --release"
    cargo build --release
    SOURCE_BINARY=${CARGO_TARGET_DIR:-$ROOT/target}/release/ehi-sync
fi
rm -rf "$WORK"
mkdir -p "$WORK/logs"
BIN="$WORK/ehi-sync"
cp "$SOURCE_BINARY" "$BIN"
# shellcheck source=bench/mssql.sh
source "$ROOT/scripts/bench/mssql.sh"
if ((NEEDS_TDS)); then
    log "cargo build --release -p tds-test-server"
    cargo build --release -p tds-test-server --bin tds-test-server
    TDS_BIN="$WORK/tds-test-server"
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/tds-test-server" "$TDS_BIN"
fi
trap 'tds_stop_all; rm -rf "$WORK/run" "$WORK/perf.data"' EXIT

# ---------------------------------------------------------------------------------------------
# Data: generated inside PostgreSQL with generate_series, no rows cross the client connection.

sql() {
    PGOPTIONS="-c client_min_messages=warning" "${PSQL[@]}" -d "$DB" "$@"
}

# The marker written last by a successful build; absent after an interrupted one.
marker() {
    echo "ehi-bench $DATA_VERSION rows=$1"
}

# True when table $1 exists, carries the marker for $2 rows and holds exactly $2 rows.
table_ready() {
    local table=$1 rows=$2 comment count
    comment=$(sql -Atc "SELECT obj_description(to_regclass('public.$table'), 'pg_class')" 2>/dev/null) ||
        return 1
    [[ $comment == "$(marker "$rows")" ]] || return 1
    count=$(sql -Atc "SELECT count(*) FROM public.$table") || return 1
    [[ $count == "$rows" ]]
}

build_narrow() {
    log "generating $NARROW ($NARROW_ROWS rows)"
    sql <<SQL
SET maintenance_work_mem = '512MB';
DROP TABLE IF EXISTS $NARROW_1M;
DROP TABLE IF EXISTS $NARROW;
-- The narrow Epic flowsheet shape: one measurement per row.
CREATE TABLE $NARROW (
    fsv_id       bigint NOT NULL,
    encounter_id bigint NOT NULL,
    flo_meas_id  int NOT NULL,
    recorded_at  timestamp(6) NOT NULL,
    value_num    double precision,
    value_text   varchar(100)
);
-- value_num: NULL on 20% of rows. value_text: NULL on 60%, '' on 10%, a blood pressure on 20%,
-- a short nursing phrase on 10%.
INSERT INTO $NARROW
SELECT g,
       40000000 + g / 25,
       1 + (g * 7919) % 4000,
       timestamp '2014-01-01' + g * interval '3 seconds' + (g % 1000000) * interval '1 microsecond',
       CASE WHEN g % 5 = 0 THEN NULL ELSE ((g * 2654435761) % 2000000)::float8 / 100 END,
       CASE g % 5
           WHEN 0 THEN CASE WHEN g % 10 = 0 THEN ''
                            ELSE 'Pt resting comfortably; RR ' || (12 + g % 9) || ', SpO2 ' || (90 + g % 10) || '%'
                       END
           WHEN 1 THEN (100 + g % 60) || '/' || (60 + g % 40)
       END
FROM generate_series(1::bigint, $NARROW_ROWS) AS g;
ALTER TABLE $NARROW ADD PRIMARY KEY (fsv_id);
SQL
    sql -c "VACUUM ANALYZE $NARROW"
    sql -c "COMMENT ON TABLE $NARROW IS '$(marker "$NARROW_ROWS")'"
}

build_narrow_1m() {
    log "creating $NARROW_1M (fsv_id <= $FLAT_ROWS)"
    sql <<SQL
DROP TABLE IF EXISTS $NARROW_1M;
CREATE TABLE $NARROW_1M AS SELECT * FROM $NARROW WHERE fsv_id <= $FLAT_ROWS;
ALTER TABLE $NARROW_1M ADD PRIMARY KEY (fsv_id);
SQL
    sql -c "VACUUM ANALYZE $NARROW_1M"
    sql -c "COMMENT ON TABLE $NARROW_1M IS '$(marker "$FLAT_ROWS_ACTUAL")'"
}

# Column i (1-based) cycles through eight types; about 1 value in 17 is NULL.
WIDE_TYPES=("int" "bigint" "varchar(40)" "numeric(18,4)" "timestamp" "boolean" "double precision" "text")
wide_expression() {
    local i=$1 value
    case $(((i - 1) % 8)) in
        0) value="((g * $i) % 1000003)::int" ;;
        1) value="g * 1000 + $i" ;;
        2) value="'V$i-' || g % 99991" ;;
        3) value="(((g * $i) % 100000000) / 10000.0)::numeric(18,4)" ;;
        4) value="timestamp '2018-01-01' + (g * 60 + $i) * interval '1 second'" ;;
        5) value="(g + $i) % 3 = 0" ;;
        6) value="((g * $i) % 1000003)::float8 / 7" ;;
        7) value="'Note $i for row ' || g || ': stable'" ;;
    esac
    echo "CASE WHEN (g + $i) % 17 = 0 THEN NULL ELSE $value END"
}

build_wide() {
    log "generating $WIDE ($WIDE_ROWS rows, $((WIDE_COLUMNS + 1)) columns)"
    local columns="row_id bigint NOT NULL" select="g" i name
    for ((i = 1; i <= WIDE_COLUMNS; i++)); do
        printf -v name 'c%03d' "$i"
        columns+=",
    $name ${WIDE_TYPES[$(((i - 1) % 8))]}"
        select+=",
       $(wide_expression "$i")"
    done
    # A row here is about 2.1 KB on disk. PostgreSQL moves values of rows past 2 KB out of line
    # into the TOAST table (here ~25 short strings a row, each read back through an index),
    # which tripled psql \copy's time on this table. SQL Server keeps rows of up to 8,060 bytes
    # in-row, so the stand-in keeps them in-line too: toast_tuple_target at its maximum.
    sql <<SQL
SET maintenance_work_mem = '512MB';
DROP TABLE IF EXISTS $WIDE;
CREATE TABLE $WIDE (
    $columns
) WITH (toast_tuple_target = 8160);
INSERT INTO $WIDE
SELECT $select
FROM generate_series(1::bigint, $WIDE_ROWS) AS g;
ALTER TABLE $WIDE ADD PRIMARY KEY (row_id);
SQL
    sql -c "VACUUM ANALYZE $WIDE"
    sql -c "COMMENT ON TABLE $WIDE IS '$(marker "$WIDE_ROWS")'"
}

FLAT_ROWS_ACTUAL=$((NARROW_ROWS < FLAT_ROWS ? NARROW_ROWS : FLAT_ROWS))
if ((NEEDS_PG)) && [[ -z $("${PSQL[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    log "creating database $DB"
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
fi
data_started=$(date +%s)
if runs_part postgres; then
if [[ $REBUILD == 1 ]] || ! table_ready "$NARROW" "$NARROW_ROWS"; then
    build_narrow
    build_narrow_1m
elif ! table_ready "$NARROW_1M" "$FLAT_ROWS_ACTUAL"; then
    build_narrow_1m
else
    log "reusing $NARROW ($NARROW_ROWS rows) and $NARROW_1M"
fi
if [[ $REBUILD == 1 ]] || ! table_ready "$WIDE" "$WIDE_ROWS"; then
    build_wide
else
    log "reusing $WIDE ($WIDE_ROWS rows)"
fi
# Dirty pages written now rather than during a measurement; a scan of every table leaves them
# in the page cache, so no tool pays for a cold read the others do not.
sql -c CHECKPOINT
for table in "$NARROW" "$NARROW_1M" "$WIDE"; do
    sql -Atc "SELECT count(*) FROM $table" >/dev/null
done
fi
DATA_SECONDS=$(($(date +%s) - data_started))
runs_part postgres && log "data ready in ${DATA_SECONDS}s"

# ---------------------------------------------------------------------------------------------
# Measurements.

# Busy CPU ticks of the whole machine (client and server together).
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}
CLK_TCK=$(getconf CLK_TCK)

# CPU ticks used by the PostgreSQL server: the postmaster, its live children, and the children
# it has reaped (finished backends), whose time the kernel adds to the postmaster's cutime/cstime.
POSTMASTER=
if ((NEEDS_PG)); then
    POSTMASTER=$(head -1 "$(sql -Atc 'SHOW data_directory')/postmaster.pid" 2>/dev/null || true)
    [[ -r /proc/${POSTMASTER:-none}/stat ]] || log "PostgreSQL's postmaster is not visible here; db CPU is reported as 0"
fi
server_ticks() {
    local total child
    if [[ $SOURCE == mssql ]]; then
        tds_ticks
        return
    fi
    [[ -r /proc/${POSTMASTER:-none}/stat ]] || {
        echo 0
        return
    }
    total=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$POSTMASTER/stat")
    for child in $(ps --ppid "$POSTMASTER" -o pid=); do
        total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# Percent of the machine's CPU busy over the next second.
busy_percent() {
    local before_busy before_all after_busy after_all
    read -r before_busy before_all < <(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat)
    sleep 1
    read -r after_busy after_all < <(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat)
    echo $(((after_busy - before_busy) * 100 / (after_all - before_all > 0 ? after_all - before_all : 1)))
}

# Waits (up to BENCH_QUIET_WAIT seconds) until others leave the CPUs alone; prints the busy
# percent last seen.
wait_quiet() {
    local busy waited=0
    busy=$(busy_percent)
    while ((busy >= 25 && waited < QUIET_WAIT)); do
        ((waited == 0)) && log "  waiting for the machine to be quiet (${busy}% busy)"
        sleep 4
        waited=$((waited + 5))
        busy=$(busy_percent)
    done
    ((busy >= 25)) && log "  measuring anyway: ${busy}% busy after ${waited}s"
    echo "$busy"
}

# Which server run_once, write_config and server_ticks address: pg (PostgreSQL through
# psqlODBC) or mssql (the TDS test server started last, through Driver 18).
SOURCE=pg

# ehi-sync config for one table: default tiers, output into the scratch folder.
write_config() {
    local path=$1 table=$2 format=$3 output=$4
    if [[ $SOURCE == mssql ]]; then
        write_mssql_config "$@"
        return
    fi
    cat >"$path" <<JSON
{
  "connection_string": "$CONNECTION",
  "include": ["public.$table"],
  "output_dir": "$output",
  "format": "$format"
}
JSON
}

# The tier ehi-sync plans for a table, with its settings, from `plan --json`.
planned_tier() {
    local table=$1 config="$WORK/plan-$1.json"
    write_config "$config" "$table" csv "$WORK/run/plan"
    "$BIN" plan --json --config "$config" 2>>"$WORK/logs/plan.log" | python3 -c '
import json, sys
plan = json.load(sys.stdin)
for tier in plan["tiers"]:
    for table in tier["tables"]:
        if table["name"] == sys.argv[1]:
            s = tier["settings"]
            print("%s tier (%d threads, batch %d, partition %d, queue %d; %d rows planned, %d partitions)"
                  % (tier["tier"], s["threads"], s["batch_size"], s["partition_size"],
                     s["queue_size"], table["rows"], table["partitions"]))
' "$table"
}

# Rows written, as the tool's output says: data lines (one line per row: the generated data
# has no line breaks in values) and, for ehi-sync, the manifest's row_count as well.
count_rows() {
    local tool=$1 dir=$2
    case $tool in
        ehi-sync-parquet | odbc2parquet)
            # The manifest's row_count (ehi-sync) and the rows pyarrow reads from every file.
            local files counted
            files=$(find "$dir" -type f -name '*.parquet' | sort)
            [[ -n $files ]] || {
                echo "no-output"
                return
            }
            counted=$(python3 -c 'import sys, pyarrow.parquet as pq
print(sum(pq.ParquetFile(f).metadata.num_rows for f in sys.argv[1:]))' $files)
            if [[ $tool == ehi-sync-parquet ]]; then
                local manifest
                manifest=$(find "$dir/out" -name _manifest.json | head -1)
                echo "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["row_count"])' "$manifest") $counted"
            else
                echo "$counted"
            fi
            ;;
        ehi-sync-csv | ehi-sync-ndjson)
            local manifest parts lines
            manifest=$(find "$dir/out" -name _manifest.json 2>/dev/null | head -1)
            [[ -n $manifest ]] || {
                echo "no-manifest"
                return
            }
            # The part files of the table folder (not _validation.ndjson one level up).
            local folder
            folder=$(dirname "$manifest")
            parts=$(find "$folder" -type f \( -name '*.csv' -o -name '*.ndjson' \) ! -name '_*' | wc -l)
            lines=$(find "$folder" -type f \( -name '*.csv' -o -name '*.ndjson' \) ! -name '_*' -exec cat {} + | wc -l)
            if [[ $tool == ehi-sync-csv ]]; then
                lines=$((lines - parts)) # one header per part file
            fi
            echo "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["row_count"])' "$manifest") $lines"
            ;;
        *)
            [[ -f $dir/out.csv ]] || {
                echo "no-output"
                return
            }
            echo $(($(wc -l <"$dir/out.csv") - 1))
            ;;
    esac
}

# Runs one tool on one table once. Appends a line to $RESULTS:
# tool table expected seconds rss_kb client_cpu_s server_cpu_s rows status other_cpu_s own_s
# source
run_once() {
    local tool=$1 table=$2 expected=$3
    local dir="$WORK/run" tlog="$WORK/logs/$tool-$table.log" timing="$WORK/time.txt"
    rm -rf "$dir"
    mkdir -p "$dir"
    local cmd=() connection=$CONNECTION query="SELECT * FROM $table"
    if [[ $SOURCE == mssql ]]; then
        connection=$(mssql_connection)
        query="SELECT * FROM dbo.$table"
        tlog="$WORK/logs/mssql-$tool-$table.log"
    fi
    case $tool in
        psql)
            cmd=("${PSQL[@]}" -d "$DB" -c "\\copy (SELECT * FROM $table) TO '$dir/out.csv' (FORMAT csv, HEADER)")
            ;;
        ehi-sync-csv | ehi-sync-ndjson | ehi-sync-parquet)
            write_config "$dir/config.json" "$table" "${tool#ehi-sync-}" "$dir/out"
            cmd=("$BIN" sync --config "$dir/config.json")
            ;;
        odbc2parquet)
            # As a user runs it: its defaults (zstd level 3 like ehi-sync; one row group per
            # fetch of up to 2 GiB of buffers; one file), the same query.
            cmd=(odbc2parquet query --connection-string "$connection")
            # Driver 18 reports (max) columns with no length: odbc2parquet's default limit of
            # 4096 would cut such values, so it gets the limit odbcsv gets.
            [[ $SOURCE == mssql ]] && cmd+=(--column-length-limit "$MSSQL_ODBCSV_MAX_STR_LEN")
            cmd+=("$dir/out.parquet" "$query")
            ;;
        odbcsv)
            cmd=(odbcsv fetch --connection-string "$connection" --query "$query" --output "$dir/out.csv")
            # Driver 18 reports (max) columns with no length; odbcsv then refuses to allocate
            # its buffers unless given a largest string length.
            [[ $SOURCE == mssql ]] && cmd+=(--max-str-len "$MSSQL_ODBCSV_MAX_STR_LEN")
            ;;
        pyodbc)
            cmd=(python3 "$ROOT/scripts/bench/pyodbc_export.py" "$connection" "$query" "$dir/out.csv" 5000)
            ;;
        isql)
            # The driver alone: 300 bytes of each value read, the rest left to the driver.
            cmd=(bash -c 'echo "$1" | isql -k "$2" -b -c -d, >"$3"' isql "SELECT id, value FROM $table" "$connection" "$dir/out.csv")
            ;;
    esac
    log "$tool on $table ..."
    sync # earlier outputs' dirty pages are not this run's cost
    local quiet
    quiet=$(wait_quiet)
    local before after server_before server_after status=ok rc=0
    server_before=$(server_ticks)
    before=$(machine_ticks)
    {
        echo "== $(date -Is) $tool $table"
    } >>"$tlog"
    /usr/bin/time -f '%e %M %U %S' -o "$timing" \
        timeout --kill-after=30 "$TIMEOUT" "${cmd[@]}" >>"$tlog" 2>&1 || rc=$?
    after=$(machine_ticks)
    sleep 0.3 # the tool's backends exit after it disconnects; let the postmaster reap them
    server_after=$(server_ticks)
    local seconds=0 rss=0 user=0 sys=0
    read -r seconds rss user sys < <(grep -E '^[0-9.]+ [0-9]+ ' "$timing" | tail -1) || true
    local rows check own=- out_bytes
    rows=$(count_rows "$tool" "$dir")
    # What a loader gets: the data files (not ehi-sync's state, lock or validation record).
    out_bytes=$(find "$dir" -type f \( -name '*.csv*' -o -name '*.ndjson*' -o -name '*.parquet' \) \
        ! -name '_*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    # ehi-sync's own measure of the table (its validation record): the process's wall time
    # minus start-up, planning and shutdown.
    if [[ -f $dir/out/_validation.ndjson ]]; then
        own=$(python3 -c 'import json, sys
print("%.2f" % sum(json.loads(l)["duration_seconds"] for l in open(sys.argv[1]) if l.strip()))' \
            "$dir/out/_validation.ndjson" 2>/dev/null) || own=-
    fi
    if ((rc != 0)); then
        status="exit-$rc"
        ((rc == 124 || rc == 137)) && status=timeout
    fi
    # The row check: every number reported must equal the table's count.
    check=ok
    for n in $rows; do
        [[ $n == "$expected" ]] || check=WRONG
    done
    [[ $status == ok ]] || check=FAILED
    # CPU seconds: the client (its process tree), the server, and everything else on the host.
    local client_cpu server_cpu other_cpu
    # Hundredths for the SQL Server part, whose per-million-row figures and ratios need them.
    local cpu_format=%.1f
    [[ $SOURCE == mssql ]] && cpu_format=%.2f
    client_cpu=$(awk -v u="$user" -v s="$sys" -v f="$cpu_format" 'BEGIN { printf f, u + s }')
    server_cpu=$(awk -v a="$server_after" -v b="$server_before" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (a - b) / t }')
    other_cpu=$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" -v c="$client_cpu" -v d="$server_cpu" \
        'BEGIN { o = (a - b) / t - c - d; printf "%.1f", o < 0 ? 0 : o }')
    log "  ${seconds}s, $((rss / 1024)) MiB, rows ${rows// //}, $check"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$table" "$expected" "$seconds" "$rss" \
        "$client_cpu" "$server_cpu" "${rows// //}" "$check" "$other_cpu" "$own" "$SOURCE" "$out_bytes" >>"$RUNS"
    rm -rf "$dir"
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench-results
grep -qxF '/bench-results' .gitignore 2>/dev/null || echo '/bench-results' >>.gitignore

if [[ $PROFILE != only ]]; then
    RUNS="$WORK/runs.tsv"
    : >"$RUNS"
    measure_started=$(date +%s)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
        log "warning: load average $LOAD_BEFORE before measuring; something else is using the CPUs"
    fi
fi
if [[ $PROFILE != only ]] && runs_part postgres; then
    NARROW_TIER=$(planned_tier "$NARROW")
    NARROW_1M_TIER=$(planned_tier "$NARROW_1M")
    WIDE_TIER=$(planned_tier "$WIDE")
    for pair in "$NARROW:$NARROW_ROWS" "$WIDE:$WIDE_ROWS"; do
        table=${pair%%:*}
        for tool in psql ehi-sync-csv ehi-sync-ndjson ehi-sync-parquet odbcsv odbc2parquet pyodbc; do
            wants "$tool" || continue
            for ((r = 1; r <= REPEAT; r++)); do
                run_once "$tool" "$table" "${pair#*:}"
            done
        done
    done
    # Memory flatness: the same table shape at 1M rows against the full narrow table.
    if wants ehi-sync-csv; then
        for ((r = 1; r <= REPEAT; r++)); do
            run_once ehi-sync-csv "$NARROW_1M" "$FLAT_ROWS_ACTUAL"
        done
    fi
    MEASURE_SECONDS=$(($(date +%s) - measure_started))
fi
if [[ $PROFILE != only ]]; then
    runs_part mssql && mssql_measure
    runs_part values && values_measure

    # ---------------------------------------------------------------------------------------------
    # Report.

    # Best run per (tool, table): the shortest time among successful runs; peak RSS is the largest
    # seen in any run.
    best() {
        awk -F'\t' '
            { key = $1 "\t" $2; n[key]++
              if ($5 + 0 > rss[key] + 0) rss[key] = $5
              good = ($9 == "ok")
              if (!(key in line) || (good && (!bestgood[key] || $4 + 0 < secs[key] + 0))) {
                  line[key] = $0; secs[key] = $4; bestgood[key] = good; order[++count] = key
              } }
            END { for (i = 1; i <= count; i++) { k = order[i]; if (seen[k]++) continue
                    split(line[k], f, "\t"); f[5] = rss[k]
                    printf "%s", f[1]; for (j = 2; j <= 11; j++) printf "\t%s", f[j]; printf "\t%d\t%s\n", n[k], f[13] } }
        ' "$RUNS"
    }
    BEST="$WORK/best.tsv"

    render_table() {
        awk -F'\t' '
            BEGIN { printf "%-16s %-19s %11s %9s %11s %9s %8s %7s %9s %8s %7s %6s %7s  %s\n",
                    "tool", "table", "rows", "seconds", "rows/s", "RSS MiB", "out MiB", "x psql", "pyodbc/x", "cli CPU", "db CPU", "other", "own s", "row check" }
            { rows[NR] = $0
              if ($9 == "ok" && $4 + 0 > 0 && $1 == "psql") psql[$2] = $4
              if ($9 == "ok" && $4 + 0 > 0 && $1 == "pyodbc") pyodbc[$2] = $4 }
            END {
                for (i = 1; i <= NR; i++) {
                    split(rows[i], f, "\t")
                    ok = f[9] == "ok" && f[4] + 0 > 0
                    rate = ok ? sprintf("%.0f", f[3] / f[4]) : "-"
                    ratio = (ok && f[2] in psql) ? sprintf("%.2f", f[4] / psql[f[2]]) : "-"
                    speedup = (ok && f[2] in pyodbc) ? sprintf("%.2f", pyodbc[f[2]] / f[4]) : "-"
                    check = f[9] == "ok" ? "ok (" f[8] ")" : f[9] " (" f[8] ")"
                    printf "%-16s %-19s %11s %9.2f %11s %9.1f %8.1f %7s %9s %8s %7s %6s %7s  %s\n",
                        f[1], f[2], f[3], f[4], rate, f[5] / 1024, f[13] / 1048576, ratio, speedup, f[6], f[7], f[10], f[11], check
                }
            }' "$BEST"
    }

    # ehi-sync's Parquet against odbc2parquet on the same table in this run.
    parquet_ratios() {
        awk -F'\t' '
            $9 == "ok" && $1 == "ehi-sync-parquet" { e[$2] = $0; order[++n] = $2 }
            $9 == "ok" && $1 == "odbc2parquet" { o[$2] = $0 }
            END {
                found = 0
                for (i = 1; i <= n; i++) {
                    t = order[i]
                    if (!(t in o)) continue
                    split(e[t], a, "\t"); split(o[t], b, "\t")
                    if (!found++) printf "%-19s %12s %12s %12s\n", "Parquet vs odbc2parquet", "wall ratio", "RSS ratio", "size ratio"
                    printf "%-19s %12.2f %12.2f %12.2f\n", t, a[4] / b[4], a[5] / b[5], (b[13] > 0 ? a[13] / b[13] : 0)
                }
                if (!found) print "Parquet vs odbc2parquet: not measured (BENCH_TOOLS needs ehi-sync-parquet and odbc2parquet)"
                else print "(ehi-sync-parquet divided by odbc2parquet: below 1 is faster, less memory, smaller files)"
            }' "$BEST"
    }

    flatness() {
        awk -F'\t' -v small="$NARROW_1M" -v full="$NARROW" '
            $1 == "ehi-sync-csv" && $2 == small { s = $5; sr = $3 }
            $1 == "ehi-sync-csv" && $2 == full { f = $5; fr = $3 }
            END {
                if (s && f) printf "ehi-sync CSV peak RSS: %.1f MiB at %d rows (%s), %.1f MiB at %d rows (%s): ratio %.2f\n",
                    s / 1024, sr, small, f / 1024, fr, full, f / s
                else print "ehi-sync CSV memory flatness: not measured"
            }' "$BEST"
    }

    report="bench-results/results-$stamp.txt"
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
    if runs_part postgres; then
        RUNS="$WORK/runs.tsv"
        best >"$BEST"
        narrow_size=$(sql -Atc "SELECT pg_size_pretty(pg_total_relation_size('$NARROW'))")
        wide_size=$(sql -Atc "SELECT pg_size_pretty(pg_total_relation_size(oid)) || ', of it TOAST '
            || pg_size_pretty(coalesce(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0))
            FROM pg_class WHERE oid = '$WIDE'::regclass")
    fi
    {
        echo "ehi-sync benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo
        echo "machine      $(nproc) CPUs ($(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, $(uname -sr)"
        if [[ -n ${BENCH_BINARY:-} ]]; then
            echo "binary       $BENCH_BINARY (BENCH_BINARY, modified $(date -u -r "$BENCH_BINARY" '+%Y-%m-%d %H:%M UTC')); tree at $commit"
        else
            echo "git commit   $commit$( ((dirty > 0)) && echo " + $dirty modified tracked files (working tree measured)")"
        fi
        echo "ehi-sync     $("$BIN" --version 2>/dev/null) sha256 $(sha256sum "$BIN" | cut -c1-16)"
        ((NEEDS_PG)) && echo "PostgreSQL   $(sql -Atc 'SHOW server_version') (same host)"
        ((NEEDS_PG)) && echo "psqlODBC     $(dpkg -s odbc-postgresql 2>/dev/null | sed -n 's/^Version: //p') (odbc-postgresql)"
        echo "odbcsv       $(command -v odbcsv >/dev/null && odbcsv --version 2>/dev/null || echo -)"
        echo "pyodbc       $(python3 -c 'import pyodbc, sys; print(pyodbc.version, "on Python", sys.version.split()[0])' 2>/dev/null || echo -)"
        echo "parts        $ONLY (BENCH_ONLY)"
        if runs_part postgres; then
            echo
            echo "== PostgreSQL through psqlODBC"
            echo
            echo "connection   $CONNECTION"
            echo "tables       $NARROW $NARROW_ROWS rows ($narrow_size), $NARROW_1M $FLAT_ROWS_ACTUAL rows, $WIDE $WIDE_ROWS rows x $((WIDE_COLUMNS + 1)) columns ($wide_size)"
            echo "ehi-sync     $NARROW: $NARROW_TIER"
            echo "plans        $NARROW_1M: $NARROW_1M_TIER"
            echo "             $WIDE: $WIDE_TIER"
            echo "load         $LOAD_BEFORE before measuring (1, 5, 15 min), $(cut -d' ' -f1-3 /proc/loadavg) after"
            echo "runs         $REPEAT per measurement (best time kept); data ready in ${DATA_SECONDS}s, measurements took ${MEASURE_SECONDS}s"
            echo
            render_table
            echo
            parquet_ratios
            echo
            flatness
            echo
            echo "seconds: wall time; RSS: peak resident memory of the client process (psql: psql itself, the"
            echo "server does the work); x psql: time relative to psql \\copy on the same table;"
            echo "pyodbc/x: how many times faster than the pyodbc loop on the same table."
            echo "cli CPU / db CPU / other: CPU seconds of the client, of PostgreSQL (all its processes), and"
            echo "of everything else on the host during the run (other > 1 s: the figures are disturbed)."
            echo "own s: ehi-sync's own table time (duration_seconds of its validation record), without"
            echo "process start-up, planning and shutdown."
            echo "out MiB: the data files written (CSV, NDJSON or Parquet; compression as each tool's default:"
            echo "none for CSV and NDJSON, zstd for both Parquet writers)."
            echo "row check: rows in the output (ehi-sync: manifest row_count/data lines; Parquet: manifest"
            echo "row_count/rows pyarrow reads) against count(*)."
        fi
        if runs_part mssql; then
            echo
            mssql_report
        fi
        if runs_part values; then
            echo
            values_report
        fi
    } >"$report"
    cp "$report" bench-results/latest.txt
    echo
    cat "$report"
    echo
    echo "written: $report and bench-results/latest.txt (logs of every run in $WORK/logs)"
fi

# ---------------------------------------------------------------------------------------------
# Optional profile of one ehi-sync run: where the machine's CPU goes, by thread name and library.

if [[ $PROFILE == 1 || $PROFILE == only ]] && runs_part postgres && command -v perf >/dev/null; then
    profile="bench-results/profile-$stamp.txt"
    {
        echo "perf profiles of ehi-sync sync (CSV), whole machine (perf record -a, dwarf call graphs),"
        echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), binary sha256 $(sha256sum "$BIN" | cut -c1-16)"
    } >"$profile"
    for table in "$NARROW" "$WIDE"; do
        dir="$WORK/run"
        rm -rf "$dir"
        mkdir -p "$dir"
        write_config "$dir/config.json" "$table" csv "$dir/out"
        log "profiling ehi-sync CSV on $table with perf record -a"
        started=$(date +%s.%N)
        perf record -a -F 149 --call-graph dwarf,32768 -o "$WORK/perf.data" -- \
            "$BIN" sync --config "$dir/config.json" >"$WORK/logs/profile-$table.log" 2>&1
        seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        rm -rf "$dir"
        log "summarising the profile (perf script; takes a while)"
        {
            echo
            echo "######## $table: $seconds s under perf (sampling slows the run; shares, not times, count)"
            echo
            perf script -i "$WORK/perf.data" -F comm,pid,tid,period,ip,sym,dso 2>/dev/null |
                python3 "$ROOT/scripts/bench/perf_breakdown.py"
            echo "== hottest symbols in ehi-sync's threads (self time, share of all samples)"
            # The ehi-sync threads: main (ehi-sync), writer, worker-<n> (fetch threads
            # carry their worker's name).
            comms=$(perf report -i "$WORK/perf.data" --no-children --stdio --sort comm -F comm -g none 2>/dev/null |
                awk '!/^#/ && NF { print $1 }' | grep -E '^(ehi-sync|writer|(.*-)?worker-[0-9]+)$' | paste -sd, -)
            perf report -i "$WORK/perf.data" --no-children --stdio -g none --comms "$comms" \
                --sort dso,symbol 2>/dev/null | awk '!/^#/ && NF' | sed -n '1,25p'
            echo
            echo "== hottest symbols in postgres (self time, share of all samples)"
            perf report -i "$WORK/perf.data" --no-children --stdio -g none --comms postgres \
                --sort dso,symbol 2>/dev/null | awk '!/^#/ && NF' | sed -n '1,12p'
        } >>"$profile"
        rm -f "$WORK/perf.data"
    done
    cat "$profile"
    echo "written: $profile"
fi
