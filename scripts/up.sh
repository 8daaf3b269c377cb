#!/usr/bin/env bash
# Start innergate on this machine: builds the two binaries (release) and runs
# `innergate up` — control with its embedded store under ./innergate-data, the data
# plane as its child, a default account and the seed quickstart ready to curl.
# Extra arguments go to `innergate up` (see `innergate up --help`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin innergate --bin innergate-dataplane
exec "$root/target/release/innergate" up "$@"
