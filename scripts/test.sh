#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test of the workspace, then real TLS
# clients (curl, openssl s_client) against the built data plane, the bench scenarios
# in quick mode and every fuzz target.
# Needs the Rust toolchain pinned in rust-toolchain.toml; installs curl, openssl and
# cargo-fuzz when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The tunnel tests run the hosted service's SDKs as agents: the Python SDK in a venv
# (installed here, with iproute2 for their network namespaces) and the Rust SDK agent.
INNERGATE_SDK_PYTHON="$(scripts/sdk/install.sh)"
export INNERGATE_SDK_PYTHON
cargo build --locked -p innergate-ngrok-rs-agent
cargo test --workspace --locked
scripts/test-tls-clients.sh
# Every bench scenario for about a second against innergate, failing on any error
# (no timing assertions; figures come from scripts/bench.sh).
cargo run --locked -q -p innergate-bench -- all --quick
# Every fuzz target for a few seconds, failing on a crash (installs cargo-fuzz when
# it is missing).
scripts/fuzz.sh 10
# The systemd units of scripts/deploy, where systemd-analyze is installed.
scripts/check-units.sh
