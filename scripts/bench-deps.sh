#!/usr/bin/env bash
# Installs what the bench harness compares against and drives, from Debian's packages:
# wrk (saturation load), nginx-light with its stream module (the reference proxy, tcp
# and tls passthrough included), HAProxy, and taskset (util-linux). Idempotent: only
# missing tools are installed, and it says which. Needs root (or sudo) for apt-get.
set -euo pipefail
declare -A package_of=(
    [wrk]=wrk
    [nginx]=nginx-light
    [haproxy]=haproxy
    [taskset]=util-linux
)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${package_of[$tool]}")
done
# nginx's stream module is a separate package in Debian.
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
if [ ${#missing[@]} -eq 0 ]; then
    echo "bench-deps: wrk, nginx (with stream), haproxy and taskset are installed"
    exit 0
fi
echo "bench-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
    echo "bench-deps: no apt-get here; install these packages by hand: ${missing[*]}" >&2
    exit 1
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts the packaged nginx and HAProxy services; the bench runs its own.
for service in nginx haproxy; do
    $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
done
echo "bench-deps: done"
