# The SQL Server half of scripts/bench.sh (sourced by it; uses its globals and functions):
# the TDS test server serving the bench tables and the long-value tables from SQLite, read
# through Microsoft ODBC Driver 18 for SQL Server. The server runs as its own process (release
# build) and is not measured: its cost is the same for every client.

MSSQL_USER=bench
# The local test server's login; not a secret (it guards generated data on 127.0.0.1).
MSSQL_PASSWORD=Bench-Passw0rd
TDS_PIDS=()
# odbcsv's --max-str-len for the (max) columns of wide_table (their values are under 40 bytes).
MSSQL_ODBCSV_MAX_STR_LEN=1000

# Starts the TDS test server on SQLite file $2, building fixture $1 in it first (or reusing
# it), waits for its "listening on" line, and sets TDS_PID and TDS_PORT. A file whose build
# did not finish (no .built marker beside it) is built again.
tds_start() {
    local spec=$1 file=$2 out="$WORK/logs/tds-server-${1%%:*}.out"
    mkdir -p "$(dirname "$file")"
    if [[ $REBUILD == 1 || ! -f $file.built ]]; then
        # Files of this fixture built with other sizes go too: one copy is kept.
        rm -f "$(dirname "$file")/${spec%%:*}"-*.sqlite*
        log "building the TDS test server's fixture $spec in $file"
    fi
    "$TDS_BIN" --sqlite "$file" --database "$DB" --fixture "$spec" --user "$MSSQL_USER" \
        --password "$MSSQL_PASSWORD" --tls optional >"$out" 2>>"$WORK/logs/tds-server.log" &
    TDS_PID=$!
    TDS_PIDS+=("$TDS_PID")
    local waited=0
    until grep -q '^listening on ' "$out"; do
        kill -0 "$TDS_PID" 2>/dev/null ||
            die "the TDS test server exited while starting with $spec (log: $WORK/logs/tds-server.log)"
        ((waited++ < TIMEOUT)) || die "the TDS test server did not start within ${TIMEOUT}s"
        sleep 1
    done
    TDS_PORT=$(sed -n 's/^listening on 127\.0\.0\.1://p' "$out")
    touch "$file.built"
    log "TDS test server (pid $TDS_PID) serves $file on 127.0.0.1:$TDS_PORT"
}

tds_stop_all() {
    local pid
    for pid in "${TDS_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    TDS_PIDS=()
# odbcsv's --max-str-len for the (max) columns of wide_table (their values are under 40 bytes).
MSSQL_ODBCSV_MAX_STR_LEN=1000
}

# CPU ticks of the TDS test server process (all its threads).
tds_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$TDS_PID/stat" 2>/dev/null || echo 0
}

# Driver 18's connection string for the server started last (odbcsv, pyodbc, isql); ehi-sync
# gets the same settings through its mssql_* keys.
mssql_connection() {
    echo "Driver={ODBC Driver 18 for SQL Server};Server=tcp:127.0.0.1,$TDS_PORT;Database=$DB;UID=$MSSQL_USER;PWD=$MSSQL_PASSWORD;Encrypt=$MSSQL_ENCRYPT;TrustServerCertificate=yes"
}

# ehi-sync's config for a SQL Server table, as a hospital writes it: mssql_* keys, the password
# from the environment.
write_mssql_config() {
    local path=$1 table=$2 format=$3 output=$4
    cat >"$path" <<JSON
{
  "mssql_server": "127.0.0.1",
  "mssql_port": $TDS_PORT,
  "mssql_database": "$DB",
  "mssql_user": "$MSSQL_USER",
  "mssql_password": "\${env:EHI_BENCH_MSSQL_PASSWORD}",
  "mssql_encrypt": "$MSSQL_ENCRYPT",
  "mssql_trust_server_certificate": true,
  "include": ["dbo.$table"],
  "output_dir": "$output",
  "format": "$format"
}
JSON
}
export EHI_BENCH_MSSQL_PASSWORD=$MSSQL_PASSWORD

# ---------------------------------------------------------------------------------------------
# Throughput: the narrow and wide tables through Driver 18.

mssql_measure() {
    local file="$BENCH_DATA/bench-$MSSQL_NARROW_ROWS-$MSSQL_WIDE_ROWS.sqlite" started
    started=$(date +%s)
    tds_start "bench:$MSSQL_NARROW_ROWS:$MSSQL_WIDE_ROWS" "$file"
    MSSQL_DATA_SECONDS=$(($(date +%s) - started))
    MSSQL_FILE_SIZE=$(du -h "$file" | cut -f1)
    SOURCE=mssql
    RUNS="$WORK/runs-mssql.tsv"
    : >"$RUNS"
    started=$(date +%s)
    MSSQL_LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    MSSQL_NARROW_TIER=$(planned_tier "$NARROW")
    MSSQL_WIDE_TIER=$(planned_tier "$WIDE")
    local pair tool r
    for pair in "$NARROW:$MSSQL_NARROW_ROWS" "$WIDE:$MSSQL_WIDE_ROWS"; do
        for tool in ehi-sync-csv ehi-sync-ndjson ehi-sync-parquet odbcsv odbc2parquet pyodbc; do
            wants "$tool" || continue
            for ((r = 1; r <= REPEAT; r++)); do
                run_once "$tool" "${pair%%:*}" "${pair#*:}"
            done
        done
    done
    MSSQL_MEASURE_SECONDS=$(($(date +%s) - started))
    tds_stop_all
    SOURCE=pg
}

# The SQL Server table of the report: client CPU per million rows, and each tool's time and CPU
# against pyodbc's and odbcsv's in the same run.
mssql_render() {
    RUNS="$WORK/runs-mssql.tsv"
    best >"$WORK/best-mssql.tsv"
    awk -F'\t' '
        BEGIN { printf "%-16s %-16s %10s %8s %10s %8s %8s %9s %8s %8s %9s %7s %6s  %s\n",
                "tool", "table", "rows", "seconds", "rows/s", "RSS MiB", "cli CPU", "CPU s/M", "xpyodbc", "xodbcsv",
                "wall/pyo", "srv CPU", "other", "row check" }
        { rows[NR] = $0
          if ($9 == "ok" && $1 == "pyodbc") { pcpu[$2] = $6; pwall[$2] = $4 }
          if ($9 == "ok" && $1 == "odbcsv") ocpu[$2] = $6 }
        END {
            for (i = 1; i <= NR; i++) {
                split(rows[i], f, "\t")
                ok = f[9] == "ok" && f[4] + 0 > 0
                rate = ok ? sprintf("%.0f", f[3] / f[4]) : "-"
                per = ok ? sprintf("%.2f", f[6] / (f[3] / 1000000)) : "-"
                xp = (ok && pcpu[f[2]] + 0 > 0) ? sprintf("%.2f", f[6] / pcpu[f[2]]) : "-"
                xo = (ok && ocpu[f[2]] + 0 > 0) ? sprintf("%.2f", f[6] / ocpu[f[2]]) : "-"
                wp = (ok && pwall[f[2]] + 0 > 0) ? sprintf("%.2f", f[4] / pwall[f[2]]) : "-"
                check = f[9] == "ok" ? "ok (" f[8] ")" : f[9] " (" f[8] ")"
                printf "%-16s %-16s %10s %8.2f %10s %8.1f %8s %9s %8s %8s %9s %7s %6s  %s\n",
                    f[1], f[2], f[3], f[4], rate, f[5] / 1024, f[6], per, xp, xo, wp, f[7], f[10], check
            }
        }' "$WORK/best-mssql.tsv"
}

mssql_report() {
    echo "== SQL Server: the TDS test server (release build, its own process) through Microsoft ODBC Driver 18"
    echo
    echo "driver       $(odbcinst -q -d -n 'ODBC Driver 18 for SQL Server' 2>/dev/null | sed -n 's/^Driver=//p')"
    echo "connection   $(mssql_connection | sed 's/PWD=[^;]*/PWD=***/') (ehi-sync: the same as mssql_* keys)"
    echo "server       tds-test-server sha256 $(sha256sum "$TDS_BIN" | cut -c1-16), SQLite file $MSSQL_FILE_SIZE, ready in ${MSSQL_DATA_SECONDS}s"
    echo "tables       dbo.$NARROW $MSSQL_NARROW_ROWS rows, dbo.$WIDE $MSSQL_WIDE_ROWS rows x $((WIDE_COLUMNS + 1)) columns (varchar(max) for PostgreSQL's text)"
    echo "odbcsv       --max-str-len $MSSQL_ODBCSV_MAX_STR_LEN (needed for Driver 18's (max) columns; its buffers are sized by it)"
    echo "ehi-sync     $NARROW: $MSSQL_NARROW_TIER"
    echo "plans        $WIDE: $MSSQL_WIDE_TIER"
    echo "load         $MSSQL_LOAD_BEFORE before measuring (1, 5, 15 min), $(cut -d' ' -f1-3 /proc/loadavg) after; measurements took ${MSSQL_MEASURE_SECONDS}s"
    echo
    mssql_render
    echo
    BEST="$WORK/best-mssql.tsv" parquet_ratios
    echo
    echo "cli CPU: user+sys seconds of the client process (and its children) only; CPU s/M: that per"
    echo "million rows. xpyodbc / xodbcsv: the tool's client CPU divided by pyodbc's / odbcsv's on the"
    echo "same table in this run (below 1: less CPU). wall/pyo: wall time divided by pyodbc's."
    echo "srv CPU: the TDS test server's CPU seconds (the same work for every tool: not the client's)."
    echo "Ratios within this run are the result; absolute figures depend on the host and its load."
}

# ---------------------------------------------------------------------------------------------
# Memory against value size: one row holding one long value, through Driver 18 (the server
# streams (max) values in PLP chunks) and through psqlODBC (which holds the whole value itself).
# The driver's own peak is measured with unixODBC's isql (which reads 300 bytes of each value
# and lets the driver discard the rest) on the same row.

# PostgreSQL's long-value tables: blob_text_<N>mb (text) and blob_bin_<N>mb (bytea), one row each.
build_pg_values() {
    local n table
    for n in $VALUE_SIZES; do
        for table in "blob_text_${n}mb" "blob_bin_${n}mb"; do
            table_ready "$table" 1 && continue
            log "generating $table"
            local value="substr(repeat('ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789.', $n * 1000000 / 65 + 1), 1, $n * 1000000)"
            local type=text
            [[ $table == blob_bin_* ]] && type=bytea value="convert_to($value, 'UTF8')"
            sql <<SQL
DROP TABLE IF EXISTS $table;
CREATE TABLE $table (id int PRIMARY KEY, value $type NOT NULL);
INSERT INTO $table VALUES (1, $value);
SQL
            sql -c "COMMENT ON TABLE $table IS '$(marker 1)'"
        done
    done
}

values_measure() {
    RUNS="$WORK/runs-values.tsv"
    : >"$RUNS"
    # (run_once's own loop variables are not local: these names must differ from them.)
    local megabytes kind value_tool value_source
    for value_source in $VALUE_SOURCES; do
        SOURCE=$value_source
        if [[ $value_source == mssql ]]; then
            tds_start "blobs:${VALUE_SIZES// /,}" "$BENCH_DATA/blobs-${VALUE_SIZES// /-}.sqlite"
        else
            build_pg_values
        fi
        for megabytes in $VALUE_SIZES; do
            for kind in text bin; do
                for value_tool in isql $VALUE_TOOLS; do
                    run_once "$value_tool" "blob_${kind}_${megabytes}mb" 1
                done
            done
        done
        if [[ $value_source == mssql ]]; then
            tds_stop_all
        fi
    done
    SOURCE=pg
}

values_report() {
    echo "== Peak RSS against value size: one row holding one value of 1 MB = 1,000,000 bytes (text: ASCII characters)"
    echo
    awk -F'\t' '
        BEGIN { printf "%-24s %-15s %6s  %-16s %9s %8s %9s  %-22s %s\n", "source", "type", "MB", "tool",
                "RSS MiB", "seconds", "isql MiB", "target", "verdict" }
        $1 == "isql" { driver[$12 "\t" $2] = $5 / 1024; next }
        { rows[++count] = $0; key[count] = $12 "\t" $2 }
        END {
            for (i = 1; i <= count; i++) {
                split(rows[i], f, "\t"); split(f[2], p, "_"); n = p[3] + 0
                rss = f[5] / 1024
                if (f[12] == "mssql") {
                    source = "Driver 18 (TDS server)"; type = p[2] == "bin" ? "varbinary(max)" : "nvarchar(max)"
                    target = "< 128 MiB"; limit = 128; strict = 1
                } else {
                    source = "psqlODBC (PostgreSQL)"; type = p[2] == "bin" ? "bytea" : "text"
                    target = sprintf("<= isql + 64 = %.0f", driver[key[i]] + 64); limit = driver[key[i]] + 64; strict = 0
                }
                if (f[9] != "ok") verdict = f[9] " (" f[8] ")"
                else if (strict ? rss < limit : rss <= limit) verdict = "within"
                else verdict = sprintf("OVER by %.0f MiB", rss - limit)
                printf "%-24s %-15s %6d  %-16s %9.1f %8.2f %9.1f  %-22s %s\n", source, type, n, f[1], rss, f[4],
                    driver[key[i]], target, verdict
            }
        }' "$WORK/runs-values.tsv"
    echo
    echo "RSS: peak resident memory of ehi-sync syncing the one-row table (the largest process of its"
    echo "tree). isql MiB: unixODBC's isql reading the same row through the same driver (300 bytes of the"
    echo "value: the driver's own peak). Targets (issue 15): under 128 MiB through Driver 18, which"
    echo "streams (max) values; through psqlODBC, which holds a whole value itself, at most its own copy"
    echo "(the isql figure) plus 64 MiB. A value over target is reported, not treated as a failure."
}
