#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (default 20) on stable Rust
# (`--sanitizer none`) and fails on the first crash, leaving its input under
# fuzz/artifacts/TARGET. Installs cargo-fuzz when it is missing, so that a fresh
# machine (CI) fuzzes too.
#
#   scripts/fuzz.sh            # 20 s per target
#   scripts/fuzz.sh 300        # longer
set -euo pipefail
seconds="${1:-20}"
# The version installed when none is: a new release cannot change CI unannounced.
cargo_fuzz_version="0.13.2"
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $cargo_fuzz_version"
    cargo install --locked cargo-fuzz --version "$cargo_fuzz_version"
fi
# One build for every target, so that the time below is all fuzzing.
cargo fuzz build --sanitizer none
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in $(cargo fuzz list); do
    echo "fuzz: $target for ${seconds}s"
    # -timeout: an input that runs for 10 s is a hang, and fails the run like a crash.
    if ! cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -timeout=10 -max_len=65536 -print_final_stats=0 \
        >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target failed; the input is under fuzz/artifacts/$target"
        exit 1
    fi
    tail -n 1 "$log"
done
