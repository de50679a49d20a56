#!/usr/bin/env bash
# Prepares a Debian 12 host to build, test and demo ehi-sync. Idempotent: it installs and
# changes only what is missing, so it is safe to run before every build.
#
#   scripts/setup.sh               ODBC driver manager, psqlODBC, sqliteodbc, Microsoft ODBC
#                                  Driver 18, FreeTDS, python-tds, pyodbc, pyarrow and duckdb
#                                  (the tests' Parquet readers), Rust (with the
#                                  x86_64-pc-windows-gnu target and MinGW-w64 for the Windows lint)
#   scripts/setup.sh --postgres    the same, plus PostgreSQL answering on 127.0.0.1:5432
#
# Sourcing it (`source scripts/setup.sh`) only defines the functions; call `setup_host
# [--postgres]` afterwards, so PATH changes (~/.cargo/bin) reach the caller.
#
# Why the driver registration matters: Debian registers psqlODBC with CommLog=1, which makes
# every connection write its traffic, row values included, to /tmp/psqlodbc_*.log. On a host
# that copies patient data that is a PHI leak, so both PostgreSQL drivers get CommLog=0 and
# Debug=0 in /etc/odbcinst.ini. (A connection string's CommLog=0 stops the traffic log, but the
# driver still creates the file while the registration says 1.)

set -euo pipefail

SETUP_PACKAGES=(unixodbc unixodbc-dev odbcinst odbc-postgresql libsqliteodbc sqlite3 tdsodbc freetds-bin)

# Microsoft ODBC Driver 18 for SQL Server, Microsoft's own Linux build as shipped in the PyPI
# wheel mssql-python-odbc (pinned by version and sha256). Its Debian/Ubuntu tree is unpacked into
# MSODBC_HOME and registered as [ODBC Driver 18 for SQL Server].
MSODBC_WHEEL_VERSION=18.6.2.2
MSODBC_WHEEL_SHA256=f5ed985f6d9854345e3e65dbc38e0b574ff13d8e04e6a58492d37bb19e714553
MSODBC_HOME=${MSODBC_HOME:-/opt/ehi-sync/msodbcsql18-$MSODBC_WHEEL_VERSION}
MSODBC_LIBRARY=$MSODBC_HOME/lib/libmsodbcsql-18.6.so.2.1
SETUP_APT_UPDATED=0

# The Python clients the TDS test server's cross-checks run (tests/tds-server/tests/python):
# python-tds, a pure-Python TDS client nobody here wrote, and pyodbc for Driver 18 from Python.
PYTHON_TDS_VERSION=1.17.1
PYODBC_VERSION=5.5.0
# The two Parquet readers the integration tests read Parquet output with
# (tests/common/read_parquet.py), each on its own: Apache Arrow's pyarrow and DuckDB. Both
# wheels need Python 3.11 or newer (Debian 12 has 3.11). DuckDB also runs the statements
# `ehi-sync ddl --dialect duckdb` prints (tests/ddl.rs).
PYARROW_VERSION=26.0.1
DUCKDB_VERSION=2.0.1

setup_log() {
    echo "setup: $*" >&2
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        setup_log "need root to run: $*"
        return 1
    fi
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Installs the packages not yet installed; `apt-get update` runs at most once, and only when
# something must be installed.
apt_install() {
    local missing=() package
    for package in "$@"; do
        is_installed "$package" || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    if ((SETUP_APT_UPDATED == 0)); then
        as_root apt-get update
        SETUP_APT_UPDATED=1
    fi
    setup_log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${missing[@]}"
}

# Registers (or re-registers) a driver from a template unless `check` already holds for it.
register_driver() {
    local name=$1 template=$2 check=$3 current
    if current=$(odbcinst -q -d -n "$name" 2>/dev/null) && $check "$current"; then
        return 0
    fi
    setup_log "registering ODBC driver [$name]"
    printf '%s\n' "$template" | as_root odbcinst -i -d -r >/dev/null
}

no_driver_logging() {
    grep -qx 'CommLog=0' <<<"$1" && grep -qx 'Debug=0' <<<"$1"
}

is_registered() {
    [[ -n $1 ]]
}

msodbc_registered() {
    grep -qx "Driver=$MSODBC_LIBRARY" <<<"$1"
}

# Unpacks Driver 18 from its wheel unless this version is already in place. The wheel is
# checked against its pinned sha256 before anything is unpacked.
ensure_msodbc() {
    [[ -f $MSODBC_LIBRARY && -f $MSODBC_HOME/share/resources/en_US/msodbcsqlr18.rll ]] && return 0
    command -v python3 >/dev/null || apt_install python3 python3-pip
    apt_install unzip libgssapi-krb5-2
    local scratch wheel
    scratch=$(mktemp -d)
    setup_log "downloading Microsoft ODBC Driver 18 (PyPI mssql-python-odbc==$MSODBC_WHEEL_VERSION)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$scratch" \
        "mssql-python-odbc==$MSODBC_WHEEL_VERSION"
    wheel=$(find "$scratch" -name 'mssql_python_odbc-*.whl' | head -1)
    if [[ -z $wheel ]] || ! sha256sum "$wheel" | grep -q "^$MSODBC_WHEEL_SHA256 "; then
        setup_log "the mssql-python-odbc wheel does not match its pinned sha256; not installing it"
        rm -rf "$scratch"
        return 1
    fi
    unzip -q -o "$wheel" 'mssql_python_odbc/libs/linux/debian_ubuntu/x86_64/*' -d "$scratch/unpacked"
    as_root mkdir -p "$MSODBC_HOME"
    as_root cp -a "$scratch/unpacked/mssql_python_odbc/libs/linux/debian_ubuntu/x86_64/." "$MSODBC_HOME/"
    rm -rf "$scratch"
    setup_log "Microsoft ODBC Driver 18 unpacked into $MSODBC_HOME"
}

ensure_odbc_drivers() {
    apt_install "${SETUP_PACKAGES[@]}"
    register_driver "PostgreSQL Unicode" "[PostgreSQL Unicode]
Description=PostgreSQL ODBC driver (Unicode version)
Driver=psqlodbcw.so
Setup=libodbcpsqlS.so
Debug=0
CommLog=0" no_driver_logging
    register_driver "PostgreSQL ANSI" "[PostgreSQL ANSI]
Description=PostgreSQL ODBC driver (ANSI version)
Driver=psqlodbca.so
Setup=libodbcpsqlS.so
Debug=0
CommLog=0" no_driver_logging
    ensure_msodbc
    register_driver "ODBC Driver 18 for SQL Server" "[ODBC Driver 18 for SQL Server]
Description=Microsoft ODBC Driver 18 for SQL Server (from the PyPI wheel mssql-python-odbc $MSODBC_WHEEL_VERSION)
Driver=$MSODBC_LIBRARY
UsageCount=1" msodbc_registered
    register_driver "FreeTDS" "[FreeTDS]
Description=FreeTDS ODBC driver (TDS 7.4)
Driver=/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so
UsageCount=1" is_registered
    register_driver "SQLite3" "[SQLite3]
Description=SQLite3 ODBC Driver
Driver=libsqlite3odbc.so
Setup=libsqlite3odbc.so" is_registered
}

python_package_version() {
    python3 -m pip show "$1" 2>/dev/null | awk '$1 == "Version:" { print $2 }'
}

# Installs a pinned PyPI package for the python3 on PATH unless that version is there. A
# Debian python3 refuses pip installs into the system (PEP 668): then the package goes into
# the user's site-packages, which that python3 reads too.
pip_install_pinned() {
    local package=$1 version=$2
    [[ $(python_package_version "$package") == "$version" ]] && return 0
    setup_log "installing $package==$version from PyPI for $(command -v python3)"
    python3 -m pip install --quiet "$package==$version" 2>/dev/null ||
        python3 -m pip install --quiet --user --break-system-packages "$package==$version"
}

ensure_python_clients() {
    command -v python3 >/dev/null || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    pip_install_pinned python-tds "$PYTHON_TDS_VERSION"
    pip_install_pinned pyodbc "$PYODBC_VERSION"
    pip_install_pinned pyarrow "$PYARROW_VERSION"
    pip_install_pinned duckdb "$DUCKDB_VERSION"
    python3 -c 'import pytds, pyodbc, pyarrow.parquet, duckdb' || {
        setup_log "python3 cannot import pytds, pyodbc, pyarrow and duckdb after installing them"
        return 1
    }
}

# Rust is not downloaded from here: hardened hosts have no internet, and rustup is a decision
# for the operator.
ensure_rust() {
    if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        setup_log "cargo is not installed. Install Rust 1.85 or newer with rustup:"
        setup_log "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
        setup_log "  source \"\$HOME/.cargo/env\""
        setup_log "(Debian 12's own cargo package is too old for edition 2024.)"
        return 1
    fi
    # The linker rustc calls, and the C library headers build scripts need.
    command -v cc >/dev/null || apt_install gcc libc6-dev
}

# Half the users run Windows: the Windows build is linted and linked here with rustup's
# x86_64-pc-windows-gnu target and Debian's MinGW-w64 cross compiler (its linker and C library).
WINDOWS_TARGET=x86_64-pc-windows-gnu

ensure_windows_target() {
    apt_install gcc-mingw-w64-x86-64
    if ! command -v rustup >/dev/null; then
        setup_log "rustup is needed for the $WINDOWS_TARGET target (the Windows lint in scripts/test.sh)"
        return 1
    fi
    if ! rustup target list --installed | grep -qx "$WINDOWS_TARGET"; then
        setup_log "adding the Rust target $WINDOWS_TARGET"
        rustup target add "$WINDOWS_TARGET"
    fi
}

postgres_answers() {
    psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1
}

# PostgreSQL on 127.0.0.1:5432 that lets `postgres` in over TCP without a password, as the
# integration tests expect. Nothing changes when it already answers.
ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432 && postgres_answers
    then
        return 0
    fi
    apt_install postgresql
    local version
    version=$(pg_lsclusters -h | awk '$3 == 5432 { print $1; exit }')
    if [[ -z $version ]]; then
        version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)
        setup_log "creating cluster $version/main on port 5432"
        as_root pg_createcluster --port 5432 "$version" main
    fi
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Rules match top-down, so the trust rule goes first (a fresh install uses scram for TCP).
    if ! as_root grep -qE '^host[[:space:]]+all[[:space:]]+postgres[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        setup_log "trusting postgres on 127.0.0.1 in $hba"
        as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    fi
    if pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    else
        setup_log "starting PostgreSQL $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    local attempt
    for attempt in $(seq 1 30); do
        postgres_answers && return 0
        sleep 1
    done
    setup_log "PostgreSQL does not answer on 127.0.0.1:5432 as postgres after $attempt s;"
    setup_log "see /var/log/postgresql/postgresql-$version-main.log"
    return 1
}

setup_host() {
    ensure_odbc_drivers
    ensure_python_clients
    ensure_rust
    ensure_windows_target
    if [[ ${1:-} == --postgres ]]; then
        ensure_postgres
    fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    setup_host "$@"
    setup_log "ready"
fi
