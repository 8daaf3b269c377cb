#!/usr/bin/env bash
# Installs innergate on a bare Linux host with systemd: builds the release binaries
# (or takes them from --bin DIR), installs them to /usr/local/bin, creates the
# `innergate` system user, /etc/innergate with the two env files, the systemd units,
# and starts both services. Idempotent; existing env files are kept.
#
#   sudo scripts/install.sh                 # build here, install, enable, start
#   sudo scripts/install.sh --bin ./dist    # install prebuilt binaries
#   sudo scripts/install.sh --no-start      # install and enable only
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir=""
start=1
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin_dir="$2"; shift 2 ;;
        --no-start) start=0; shift ;;
        *) echo "install: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "install: run as root" >&2
    exit 1
fi
command -v systemctl >/dev/null || { echo "install: systemd is required" >&2; exit 1; }

if [ -z "$bin_dir" ]; then
    # Build as the invoking user when run through sudo, so target/ stays theirs.
    build="cargo build --release --locked --manifest-path $root/Cargo.toml --bin innergate --bin innergate-dataplane"
    if [ -n "${SUDO_USER:-}" ]; then sudo -u "$SUDO_USER" -H bash -lc "$build"; else bash -lc "$build"; fi
    bin_dir="$root/target/release"
fi
install -m 0755 "$bin_dir/innergate" "$bin_dir/innergate-dataplane" /usr/local/bin/

id innergate >/dev/null 2>&1 || useradd --system --home-dir /var/lib/innergate \
    --shell /usr/sbin/nologin innergate

install -d -m 0750 -o root -g innergate /etc/innergate
[ -f /etc/innergate/dataplane.env ] || cat > /etc/innergate/dataplane.env <<'ENV'
# Extra flags for innergate-dataplane (see `innergate-dataplane --help` and the
# README's limits table), for example:
#   DATAPLANE_ARGS=--workers 8 --pin-workers --tls-cert-dir /etc/innergate/certs --access-log /var/log/innergate/access.log
DATAPLANE_ARGS=
ENV
[ -f /etc/innergate/control.env ] || cat > /etc/innergate/control.env <<'ENV'
# Extra flags for `innergate serve` (see `innergate serve --help`).
CONTROL_ARGS=
ENV

install -d -m 0755 /usr/local/share/doc/innergate
install -m 0644 "$root/README.md" /usr/local/share/doc/innergate/README.md
install -m 0644 "$root/scripts/deploy/innergate-dataplane.service" \
    "$root/scripts/deploy/innergate.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable innergate-dataplane.service innergate.service
if [ "$start" -eq 1 ]; then
    systemctl restart innergate-dataplane.service innergate.service
    echo "install: started; create an account with:"
else
    echo "install: enabled (not started); once started, create an account with:"
fi
echo "  sudo -u innergate innergate accounts create NAME --data /var/lib/innergate/control"
