#!/usr/bin/env bash
# The demo: builds ehi-sync, fills a synthetic EHR database in SQLite (no server needed) and
# runs ehi-sync on it. Idempotent: every run regenerates the same database.
#
#   scripts/demo.sh                       generate, then the main job (sync)
#   MAIN_JOB=check scripts/demo.sh        run another subcommand last
#   SCALE=20000 scripts/demo.sh           more patients (flowsheet_value = 20 x SCALE rows)
#
# Everything lands in ./demo-output: the config, the database ehr-demo.db and the files.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
setup_host

# The subcommand the demo ends with.
MAIN_JOB=${MAIN_JOB:-sync}
# 5,000 patients: flowsheet_value (100,000 rows) is large, lab_result and encounter are
# medium, note_text and wide_table are small, with the thresholds below.
SCALE=${SCALE:-5000}

cargo build --release
binary=target/release/ehi-sync

demo_dir="$PWD/demo-output"
mkdir -p "$demo_dir"
config="$demo_dir/demo-config.json"
database="$demo_dir/ehr-demo.db"
json_path=${database//\\/\\\\}
json_path=${json_path//\"/\\\"}
# StepAPI=1: sqliteodbc streams rows instead of reading a whole table into memory first.
# Relative output_dir resolves against the config's folder: demo-output/files.
cat >"$config" <<JSON
{
  "connection_string": "Driver={SQLite3};Database=$json_path;StepAPI=1;",
  "output_dir": "files",
  "format": "csv",
  "small_table_threshold": 5000,
  "large_table_threshold": 50000
}
JSON

echo "== ehi-sync generate --scale $SCALE"
"$binary" generate --config "$config" --scale "$SCALE"
echo
echo "== ehi-sync $MAIN_JOB"
"$binary" "$MAIN_JOB" --config "$config"
