//! Runs the TDS test server on its own (for scripts/bench.sh and manual tries).

fn main() {}
