#!/usr/bin/env bash
# What the tunnel end-to-end tests need to run the hosted service's SDKs as agents:
# a venv with the Python SDK (`ngrok` on PyPI, prebuilt wheel, pinned below) and
# iproute2 (`ip netns`). Idempotent: a venv that already has the pinned version is
# kept as it is. Progress goes to stderr; stdout is one line, the venv's python, so
#
#   python=$(scripts/sdk/install.sh)
#   "$python" scripts/sdk/python_agent.py --help
#
# NGROK_SDK_VENV moves the venv (default: target/sdk-venv); NGROK_SDK_PYTHON names the
# interpreter to build it from (default: the first Python >= 3.12 found).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# 1.7.0 is the newest release; its wheels declare Requires-Python >= 3.12 (1.4.0 is
# the last for 3.11). Built on the ngrok crate 0.18.
version=1.7.0
venv="${NGROK_SDK_VENV:-$root/target/sdk-venv}"

log() { echo "sdk-install: $*" >&2; }

if ! command -v ip >/dev/null; then
    log "installing iproute2 (ip netns)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq iproute2 >&2
fi

# True when $1 runs and is Python 3.12 or newer (a pyenv shim for a version that is
# installed but not selected exits non-zero, so it is skipped too).
new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }

find_python() {
    local candidates=()
    [ -n "${NGROK_SDK_PYTHON:-}" ] && candidates+=("$NGROK_SDK_PYTHON")
    candidates+=(python3 python3.13 python3.12)
    if command -v pyenv >/dev/null; then
        candidates+=("$(pyenv root)"/versions/3.1[2-9]*/bin/python3)
    fi
    for py in "${candidates[@]}"; do
        if new_enough "$py"; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

installed_version() {
    "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ngrok"))' 2>/dev/null || true
}

if [ -x "$venv/bin/python" ] && new_enough "$venv/bin/python" && [ "$(installed_version)" = "$version" ]; then
    log "ngrok $version already in $venv"
else
    if ! python=$(find_python); then
        # No 3.12: the last release that supports an older Python speaks the same
        # protocol (built on an older ngrok crate).
        python=$(command -v python3 || true)
        version=1.4.0
        if [ -z "$python" ]; then
            log "no Python found; set NGROK_SDK_PYTHON"
            exit 1
        fi
        log "no Python >= 3.12 found: using ngrok $version on $("$python" --version 2>&1)"
    fi
    log "creating $venv from $python ($("$python" --version 2>&1))"
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "ngrok==$version" >&2
    log "installed ngrok $(installed_version) in $venv"
fi
echo "$venv/bin/python"
