#!/usr/bin/env bash
# Every BENCH.md scenario, innergate beside nginx, HAProxy and a direct connection:
# installs the peers when missing, builds in release mode, runs the harness, writes
# bench/results/run-*.json, bench/results/*.svg and the sections of bench/RESULTS.md.
#
#   scripts/bench.sh all --pin proxy=1,load=0
#   scripts/bench.sh http-proxy tcp --duration 5 --repeat 3
#   scripts/bench.sh --help
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/bench-deps.sh"
cargo build --release --locked --manifest-path "$root/Cargo.toml" \
    -p innergate-bench -p innergate-dataplane
exec "$root/target/release/innergate-bench" "$@"
