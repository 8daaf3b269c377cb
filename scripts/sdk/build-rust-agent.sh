#!/usr/bin/env bash
# Builds the Rust SDK test agent (test-agents/ngrok-rs, binary ngrok-sdk-agent) and
# prints its path on stdout, wherever CARGO_TARGET_DIR puts it; cargo's own output
# goes to stderr. A test outside that crate cannot use CARGO_BIN_EXE_ for it, so:
#
#   export INNERGATE_NGROK_RS_AGENT=$(scripts/sdk/build-rust-agent.sh)
#   cargo test ...
#
# Extra arguments go to cargo build (e.g. --release).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cargo build --locked --manifest-path "$root/Cargo.toml" -p innergate-ngrok-rs-agent \
    --bin ngrok-sdk-agent --message-format=json-render-diagnostics "$@" |
    python3 -c '
import json, sys
paths = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m.get("executable")
         and m["target"]["name"] == "ngrok-sdk-agent"]
if not paths:
    sys.exit("build-rust-agent: cargo reported no ngrok-sdk-agent executable")
print(paths[-1])
'
