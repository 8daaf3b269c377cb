#!/usr/bin/env bash
# Slow-header (slowloris) and slow-body (R.U.D.Y.) attacks with slowhttptest (Debian
# package slowhttptest) against innergate's http listener in front of an upstream
# that reads bodies, while a probe keeps asking for a page: fails if a single probe
# fails. Starts its own data plane and control on
# 127.0.0.1, with the default header and body timeouts; stops everything it started.
#
#   scripts/slow-clients.sh             # 1000 slow connections per attack, 30 s each
#   CONNECTIONS=4000 DURATION=60 scripts/slow-clients.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/release"
connections="${CONNECTIONS:-1000}"
duration="${DURATION:-30}"
if ! command -v slowhttptest >/dev/null || ! command -v curl >/dev/null; then
    echo "slow-clients: installing slowhttptest and curl" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slowhttptest curl >&2
fi
cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin innergate --bin innergate-dataplane
ulimit -n "$(ulimit -Hn)"
# shellcheck source=lib/local-stack.sh
source "$root/scripts/lib/local-stack.sh"
port=$(free_port)
start_stack "$bin" slow --port-map "80=$port"
# An upstream that reads whole request bodies (a thread per connection), so that a
# slow body really holds a request open through the data plane.
backend=$(free_port)
python3 - "$backend" <<'PY' & pids+=($!)
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"up")
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 4096
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$backend") 2>/dev/null && break; sleep 0.1; done
"$bin/innergate" api endpoints create --url http://localhost \
    --upstream-url "http://127.0.0.1:$backend" > /dev/null
url="http://localhost:$port/"
[ "$(curl -sS --max-time 10 "$url")" = "up" ]

failed=0
for mode in -H -B; do # slow headers, slow body
    echo "slow-clients: slowhttptest $mode, $connections connections, ${duration}s"
    slowhttptest $mode -c "$connections" -r 500 -i 5 -l "$duration" -s 65536 -t POST \
        -u "$url" -p 3 > "$tmp/slow.log" 2>&1 & attack=$!
    probes=0; probe_failures=0
    sleep 2
    while kill -0 "$attack" 2>/dev/null; do
        probes=$((probes + 1))
        answer=$(curl -sS --max-time 5 "$url" 2>&1 || true)
        if [ "$answer" != "up" ]; then
            probe_failures=$((probe_failures + 1))
            if [ "$probe_failures" -le 3 ]; then
                echo "  probe failed: $answer"
            fi
        fi
        sleep 0.5
    done
    wait "$attack" || true
    grep -E "service available|closed|pending|connected" "$tmp/slow.log" | tail -n 4 | sed 's/^/  /' || true
    echo "slow-clients: $mode: $probes probes, $probe_failures failed"
    [ "$probe_failures" -eq 0 ] || failed=1
done
if [ "$failed" -eq 0 ]; then
    echo "slow-clients: the service stayed available"
else
    echo "slow-clients: the data plane's log:"; sed 's/^/  /' "$tmp/dataplane.log"
fi
exit "$failed"
