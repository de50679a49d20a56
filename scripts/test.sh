#!/usr/bin/env bash
# Everything CI checks: host setup (drivers, PostgreSQL on 127.0.0.1:5432, the Python TDS
# clients, the Parquet readers pyarrow and DuckDB), formatting, lints, and every test of the
# workspace against the real databases and the TDS test server. Exits non-zero on the first
# failure.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
setup_host --postgres

for tool in fmt clippy; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        echo "test: cargo $tool is missing; install it with: rustup component add ${tool/fmt/rustfmt}" >&2
        exit 1
    fi
done

echo "== cargo fmt --check"
cargo fmt --check
# --workspace: the TDS test server (tests/tds-server) is linted and its own tests run too
# (Driver 18, FreeTDS and python-tds reading its encodings back).
echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
# The Windows build (text through the wide ODBC functions, no Unix permissions), tests included.
echo "== cargo clippy --target $WINDOWS_TARGET --all-targets -- -D warnings"
cargo clippy --target "$WINDOWS_TARGET" --all-targets -- -D warnings
echo "== cargo test --workspace --all-targets"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (cargo prints one "test result" line per test binary).
echo
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
