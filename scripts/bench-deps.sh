#!/usr/bin/env bash
# Installs what the bench harness compares against and drives, from Debian's packages:
# wrk (saturation load), nginx-light with its stream module (the reference proxy, tcp
# and tls passthrough included), HAProxy, and taskset (util-linux); and, with
# `cargo install --locked`, the tunnel scenario's peers: rathole and bore. Idempotent:
# only missing tools are installed, and it says which. Needs root (or sudo) for
# apt-get, and cargo for the tunnels.
set -euo pipefail

# The tunnel peers, pinned: rathole 0.5.0 (required by the tunnel scenario) and
# bore-cli 0.6 (compared where it builds; a failed build is said, not hidden, and the
# scenario then reports bore as not installed). bore builds with its own lock file
# (--locked). rathole 0.5.0's lock file pins time 0.3.29, which no longer compiles
# with current Rust (E0282 in time's format_description), so rathole resolves its
# semver-compatible dependencies afresh: the version itself stays exact.
tunnel_peers() {
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    if ! command -v cargo >/dev/null; then
        echo "bench-deps: no cargo here; the tunnel scenario needs rathole (cargo install rathole --version =0.5.0)" >&2
        return 1
    fi
    if command -v rathole >/dev/null || [ -x "$cargo_bin/rathole" ]; then
        echo "bench-deps: rathole is installed"
    else
        echo "bench-deps: installing rathole 0.5.0 (cargo install; a few minutes)"
        cargo install --quiet rathole --version '=0.5.0'
    fi
    if command -v bore >/dev/null || [ -x "$cargo_bin/bore" ]; then
        echo "bench-deps: bore is installed"
    else
        echo "bench-deps: installing bore-cli 0.6 (cargo install --locked)"
        if ! cargo install --locked --quiet bore-cli --version '~0.6'; then
            echo "bench-deps: bore-cli 0.6 did not build here: the tunnel scenario runs without bore" >&2
        fi
    fi
}
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
# rathole's TLS transport builds against OpenSSL (native-tls).
pkg-config --exists openssl 2>/dev/null || missing+=(pkg-config libssl-dev)
if [ ${#missing[@]} -eq 0 ]; then
    echo "bench-deps: wrk, nginx (with stream), haproxy and taskset are installed"
    tunnel_peers
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
tunnel_peers
echo "bench-deps: done"
