#!/usr/bin/env bash
# Interim benchmark until the harness of issue #6: wrk against a backend directly,
# through innergate (public agent endpoint; public cloud endpoint → forward-internal →
# internal agent endpoint) and through nginx as a reverse proxy with upstream
# keep-alive, all in one run. Proxies get one worker pinned to CPU 1; wrk and the
# backend share CPU 0. Loopback only; everything it starts is stopped on exit.
#
#   scripts/bench-quick.sh            # DURATION=10 CONNECTIONS=64 REPEAT=3
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
REPEAT=${REPEAT:-3}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}

need() { command -v "$1" >/dev/null || { echo "missing $1: apt-get install -y $2" >&2; exit 1; }; }
need wrk wrk
need nginx nginx-light
need taskset util-linux
need openssl openssl

cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin innergate --bin innergate-dataplane >&2
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
BACKEND=$(free_port); NGINX_PROXY=$(free_port); IG_HTTP=$(free_port); API=$(free_port)
NGINX_TLS=$(free_port); IG_HTTPS=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench.test" \
    -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
body=$(printf 'x%.0s' $(seq 1 100))

# The backend: nginx serving a 100-byte body, keep-alive without limit.
mkdir -p "$tmp/backend" "$tmp/proxy"
cat > "$tmp/backend/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/backend/pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND reuseport; location / { return 200 "$body"; } } }
CONF
cat > "$tmp/proxy/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/proxy/pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PROXY; location / {
    proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; } }
  server { listen 127.0.0.1:$NGINX_TLS ssl; ssl_certificate $tmp/tls.crt;
    ssl_certificate_key $tmp/tls.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "Hello world!"; } } }
CONF
taskset -c "$LOAD_CPU" nginx -p "$tmp/backend" -c "$tmp/backend/nginx.conf" & pids+=($!)
taskset -c "$PROXY_CPU" nginx -p "$tmp/proxy" -c "$tmp/proxy/nginx.conf" & pids+=($!)

# innergate: the data plane pinned like nginx, control beside it, endpoints via the CLI.
RUST_LOG=warn taskset -c "$PROXY_CPU" "$bin/innergate-dataplane" --workers 1 --bind 127.0.0.1 \
    --port-map "80=$IG_HTTP" --port-map "443=$IG_HTTPS" --tls-cert "$tmp/tls.crt" \
    --tls-key "$tmp/tls.key" --control-socket "$tmp/dp.sock" --state-dir "$tmp/dp" & pids+=($!)
sleep 0.5
RUST_LOG=warn "$bin/innergate" serve --api "127.0.0.1:$API" --data "$tmp/control" \
    --dataplane-socket "$tmp/dp.sock" --lease-ttl 1h > /dev/null & pids+=($!)
sleep 0.5
export INNERGATE_API_URL="http://127.0.0.1:$API"
INNERGATE_API_KEY=$("$bin/innergate" accounts create bench --data "$tmp/control" 2>/dev/null)
export INNERGATE_API_KEY
ig() { "$bin/innergate" api endpoints create "$@" > /dev/null; }
ig --url http://agent.bench.test --upstream-url "http://127.0.0.1:$BACKEND"
ig --url https://svc.internal --upstream-url "http://127.0.0.1:$BACKEND"
ig --url http://fwd.bench.test --traffic-policy \
    'on_http_request: [{actions: [{type: forward-internal, config: {url: "https://svc.internal"}}]}]'
# The seed quickstart over TLS: public https → forward-internal → custom-response.
ig --url https://example.internal --traffic-policy \
    'on_http_request: [{actions: [{type: custom-response, config: {body: "Hello world!"}}]}]'
ig --url https://hello.bench.test --traffic-policy \
    'on_http_request: [{actions: [{type: forward-internal, config: {url: "https://example.internal"}}]}]'
sleep 0.5

run() { # name host port [scheme]
    local name=$1 host=$2 port=$3 scheme=${4:-http}
    for i in $(seq 1 "$REPEAT"); do
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
            -H "Host: $host" "$scheme://127.0.0.1:$port/")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p50=$(awk '$1=="50%" {print $2}' <<<"$out")
        p99=$(awk '$1=="99%" {print $2}' <<<"$out")
        errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr '\n' ' ' || true)
        printf '%-34s run %d  %10s req/s  p50 %8s  p99 %8s  %s\n' "$name" "$i" "$rps" "$p50" "$p99" "${errors:-0 errors}"
    done
}
echo "# $(nproc) cores, $(uname -r), ${DURATION}s x $REPEAT, $CONNECTIONS connections, wrk -t1"
run "direct (backend)" agent.bench.test "$BACKEND"
run "nginx proxy" agent.bench.test "$NGINX_PROXY"
run "innergate public agent" agent.bench.test "$IG_HTTP"
run "innergate forward-internal, 1 hop" fwd.bench.test "$IG_HTTP"
run "nginx https, local answer" hello.bench.test "$NGINX_TLS" https
run "innergate https seed quickstart" hello.bench.test "$IG_HTTPS" https
