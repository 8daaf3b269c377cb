#!/usr/bin/env bash
# tcp throughput through innergate beside a direct loopback connection, in one run:
# 1 GiB to a counting sink, direct and through a tcp endpoint, for each forwarding
# variant (copy loop with a buffer growing to --tcp-buffer, or splice), with the data
# plane's CPU seconds per GiB. The data plane gets one worker pinned to CPU 1; sender
# and sink share CPU 0. Loopback only; everything it starts is stopped on exit.
#
#   scripts/bench-tcp.sh   # BYTES=1073741824 REPEAT=3 VARIANTS="copy:65536 copy:1048576 splice:0"
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
BYTES=${BYTES:-1073741824}
REPEAT=${REPEAT:-3}
VARIANTS=${VARIANTS:-"copy:65536 copy:1048576 splice:0"}
cargo build --release --locked --manifest-path "$root/Cargo.toml" \
    --bin innergate --bin innergate-dataplane --bin innergate-bench >&2
bin="$root/target/release"
tmp="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK=$(free_port); API=$(free_port)
taskset -c 0 "$bin/innergate-bench" tcp-sink "127.0.0.1:$SINK" & pids+=($!)
RUST_LOG=warn "$bin/innergate" serve --api "127.0.0.1:$API" --data "$tmp/control" \
    --dataplane-socket "$tmp/dp.sock" --lease-ttl 1h > /dev/null & pids+=($!)
sleep 0.5
export INNERGATE_API_URL="http://127.0.0.1:$API"
INNERGATE_API_KEY=$("$bin/innergate" accounts create bench --data "$tmp/control" 2>/dev/null)
export INNERGATE_API_KEY
"$bin/innergate" api endpoints create --url tcp://bench.test:15432 \
    --upstream-url "tcp://127.0.0.1:$SINK" > /dev/null

echo "# $(nproc) cores, $(uname -r), $BYTES bytes x $REPEAT"
for i in $(seq 1 "$REPEAT"); do
    printf '%-28s run %d  %s\n' "direct" "$i" "$(taskset -c 0 "$bin/innergate-bench" tcp-send "127.0.0.1:$SINK" "$BYTES")"
done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for variant in $VARIANTS; do
    mode=${variant%%:*}; buffer=${variant##*:}
    [ "$buffer" = 0 ] && buffer=1048576
    IG=$(free_port)
    RUST_LOG=warn taskset -c 1 "$bin/innergate-dataplane" --workers 1 --bind 127.0.0.1 \
        --port-map "15432=$IG" --control-socket "$tmp/dp.sock" --state-dir "$tmp/dp" \
        --tcp-forwarding "$mode" --tcp-buffer "$buffer" & dp=$!
    pids+=($dp)
    # control pushes the table within a tick of seeing the new data plane
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$IG") 2>/dev/null && break; sleep 0.1; done
    for i in $(seq 1 "$REPEAT"); do
        before=$(cpu_ticks "$dp")
        result=$(taskset -c 0 "$bin/innergate-bench" tcp-send "127.0.0.1:$IG" "$BYTES")
        after=$(cpu_ticks "$dp")
        cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v b="$BYTES" \
            'BEGIN { printf "%.3f", t / hz / (b / 1073741824) }')
        printf '%-28s run %d  %s  %s CPU s/GiB\n' "innergate, $mode $buffer" "$i" "$result" "$cpu"
    done
    kill "$dp"; wait "$dp" 2>/dev/null || true
done
