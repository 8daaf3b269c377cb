#!/usr/bin/env bash
# Checks the systemd units of scripts/deploy with `systemd-analyze verify` (syntax,
# sandboxing options this systemd knows), with the binaries' paths pointed at
# /bin/true since nothing is installed here. Says so and succeeds where systemd-analyze
# is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v systemd-analyze >/dev/null; then
    echo "check-units: systemd-analyze is not installed; skipping"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for unit in "$root"/scripts/deploy/*.service; do
    sed -e 's#^ExecStart=/usr/local/bin/innergate-dataplane#ExecStart=/bin/true#' \
        -e 's#^ExecStart=/usr/local/bin/innergate #ExecStart=/bin/true #' \
        "$unit" > "$tmp/$(basename "$unit")"
done
systemd-analyze verify --man=no "$tmp"/*.service
echo "check-units: $(ls "$tmp" | wc -l) units verified"
