# Sourced by the scripts that check a running innergate from outside (real TLS
# clients, testssl, slowhttptest): a temporary directory removed on exit, the
# processes they start stopped on exit, and a data plane plus control on 127.0.0.1.
#
#   source "$root/scripts/lib/local-stack.sh"
#   start_stack "$bin" ACCOUNT --port-map "80=$(free_port)" [more data plane flags]
#
# After start_stack: $tmp, $pids (append your own), INNERGATE_API_URL and
# INNERGATE_API_KEY exported for the `innergate api` CLI, the data plane's log in
# $tmp/dataplane.log.

tmp="$(mktemp -d)"
pids=()
stop_stack() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap stop_stack EXIT

# A port the OS has just handed out and taken back.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_stack BIN_DIR ACCOUNT [DATA PLANE FLAGS...]: starts both processes and
# creates ACCOUNT. Control's agent leases outlive the run (nothing renews them here).
start_stack() {
    local bin=$1 account=$2
    shift 2
    local api
    api=$(free_port)
    RUST_LOG=warn "$bin/innergate-dataplane" --workers 2 --bind 127.0.0.1 \
        --control-socket "$tmp/dp.sock" "$@" 2> "$tmp/dataplane.log" & pids+=($!)
    for _ in $(seq 1 100); do [ -S "$tmp/dp.sock" ] && break; sleep 0.1; done
    RUST_LOG=warn "$bin/innergate" serve --api "127.0.0.1:$api" --data "$tmp/control" \
        --dataplane-socket "$tmp/dp.sock" --lease-ttl 1h > /dev/null & pids+=($!)
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$api") 2>/dev/null && break; sleep 0.1; done
    export INNERGATE_API_URL="http://127.0.0.1:$api"
    INNERGATE_API_KEY=$("$bin/innergate" accounts create "$account" --data "$tmp/control" 2>/dev/null)
    export INNERGATE_API_KEY
}
