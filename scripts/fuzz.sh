#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (default 20) on stable Rust
# (`--sanitizer none`). Without cargo-fuzz installed it says so and succeeds, so the
# test command can call it; `cargo install cargo-fuzz` enables it.
#
#   scripts/fuzz.sh            # 20 s per target
#   scripts/fuzz.sh 300        # longer
set -euo pipefail
seconds="${1:-20}"
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed; skipping (cargo install cargo-fuzz)"
    exit 0
fi
for target in $(cargo fuzz list); do
    echo "fuzz: $target for ${seconds}s"
    # A crash fails the run and leaves its input under fuzz/artifacts/$target.
    cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=0 2>&1 | tail -n 3
done
