#!/usr/bin/env bash
# Real TLS clients against an https endpoint: curl (verifying with the test
# certificate), openssl s_client with TLS 1.2 and 1.3 (accepted) and TLS 1.1
# (refused). Installs curl and openssl when missing. Uses the debug binaries that
# `cargo test` built; loopback only; stops everything it starts.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/debug"
if ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then
    echo "installing curl and openssl" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl openssl >&2
fi
[ -x "$bin/innergate" ] && [ -x "$bin/innergate-dataplane" ] \
    || cargo build --locked --manifest-path "$root/Cargo.toml" --bin innergate --bin innergate-dataplane
# shellcheck source=lib/local-stack.sh
source "$root/scripts/lib/local-stack.sh"
HTTPS=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
start_stack "$bin" tls-clients --port-map "443=$HTTPS" --tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key" \
    --state-dir "$tmp/dp"
"$bin/innergate" api endpoints create --url https://localhost --traffic-policy \
    'on_http_request: [{actions: [{type: custom-response, config: {body: "curl ok via ${req.url.scheme}"}}]}]' > /dev/null

passed=0; failed=0
check() { # name, then a command that must succeed
    local name=$1; shift
    if "$@" > "$tmp/out" 2>&1; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$tmp/out"
    fi
}
curl_verified() {
    [ "$(curl -sS --max-time 20 --cacert "$tmp/tls.crt" "https://localhost:$HTTPS/")" = "curl ok via https" ]
}
s_client() { # version flag: must negotiate it
    echo | timeout 20 openssl s_client -connect "127.0.0.1:$HTTPS" -servername localhost \
        -CAfile "$tmp/tls.crt" "$1" 2>&1 | grep -q "Verify return code: 0 (ok)"
}
old_refused() { # TLS 1.1 offered (the client's own floor lowered): the server must refuse
    ! echo | timeout 20 openssl s_client -connect "127.0.0.1:$HTTPS" -servername localhost \
        -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' 2>&1 | grep -q "Cipher is [A-Z]"
}
check "curl over https, verified" curl_verified
check "openssl s_client TLS 1.2" s_client -tls1_2
check "openssl s_client TLS 1.3" s_client -tls1_3
check "openssl s_client TLS 1.1 refused" old_refused
echo "tls clients: $passed passed, $failed failed"
[ "$failed" = 0 ]
