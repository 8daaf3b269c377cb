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
    -addext "subjectAltName=DNS:localhost,DNS:mtls.localhost" -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
start_stack "$bin" tls-clients --port-map "443=$HTTPS" --tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key" \
    --state-dir "$tmp/dp"
"$bin/innergate" api endpoints create --url https://localhost --traffic-policy \
    'on_http_request: [{actions: [{type: custom-response, config: {body: "curl ok via ${req.url.scheme}"}}]}]' > /dev/null
# Mutual TLS as the hosted docs' terminate-tls page sets it up: their openssl
# commands make a CA and a client certificate; the endpoint trusts the CA and answers
# with the subject of the certificate that the client showed.
openssl genpkey -algorithm RSA -out "$tmp/ca.key" -pkeyopt rsa_keygen_bits:2048 2>/dev/null
openssl req -x509 -new -nodes -key "$tmp/ca.key" -sha256 -days 1 -out "$tmp/ca.crt" \
    -subj "/CN=ExampleCA" 2>/dev/null
openssl genpkey -algorithm RSA -out "$tmp/client.key" -pkeyopt rsa_keygen_bits:2048 2>/dev/null
openssl req -new -key "$tmp/client.key" -out "$tmp/client.csr" -subj "/CN=ExampleClient" 2>/dev/null
openssl x509 -req -in "$tmp/client.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
    -CAcreateserial -out "$tmp/client.crt" -days 1 -sha256 2>/dev/null
# The same from a CA the endpoint does not trust (these are X.509 v1 certificates, which
# the docs' commands make and WebPKI alone would refuse whoever signed them).
openssl req -x509 -new -nodes -key "$tmp/client.key" -sha256 -days 1 -out "$tmp/other-ca.crt" \
    -subj "/CN=ExampleCA" 2>/dev/null
openssl x509 -req -in "$tmp/client.csr" -CA "$tmp/other-ca.crt" -CAkey "$tmp/client.key" \
    -CAcreateserial -out "$tmp/stranger.crt" -days 1 -sha256 2>/dev/null
{
    echo "on_tcp_connect:"
    echo "  - actions:"
    echo "      - type: terminate-tls"
    echo "        config:"
    echo "          mutual_tls_certificate_authorities:"
    echo "            - |-"
    sed 's/^/              /' "$tmp/ca.crt"
    echo "on_http_request:"
    echo "  - actions:"
    echo "      - type: custom-response"
    echo "        config:"
    echo "          body: \"\${conn.tls.client.subject.common_name} by \${conn.tls.client.issuer} over \${conn.tls.version}\""
} > "$tmp/mtls.yaml"
"$bin/innergate" api endpoints create --url https://mtls.localhost \
    --traffic-policy "@$tmp/mtls.yaml" > /dev/null

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
curl_mtls() { # extra curl flags: the body, or a failed handshake
    curl -sS --max-time 20 --cacert "$tmp/tls.crt" --resolve "mtls.localhost:$HTTPS:127.0.0.1" \
        "$@" "https://mtls.localhost:$HTTPS/"
}
mtls_with_certificate() {
    [ "$(curl_mtls --cert "$tmp/client.crt" --key "$tmp/client.key")" = \
        "ExampleClient by CN=ExampleCA over 1.3" ]
}
mtls_over_tls12() {
    [ "$(curl_mtls --tls-max 1.2 --cert "$tmp/client.crt" --key "$tmp/client.key")" = \
        "ExampleClient by CN=ExampleCA over 1.2" ]
}
mtls_without_certificate() {
    ! curl_mtls
}
mtls_untrusted_issuer() {
    ! curl_mtls --cert "$tmp/stranger.crt" --key "$tmp/client.key"
}
check "curl over https, verified" curl_verified
check "curl with the docs' mutual TLS client certificate" mtls_with_certificate
check "the same over TLS 1.2" mtls_over_tls12
check "curl without a client certificate refused" mtls_without_certificate
check "curl with a certificate of another CA of the same name refused" mtls_untrusted_issuer
check "openssl s_client TLS 1.2" s_client -tls1_2
check "openssl s_client TLS 1.3" s_client -tls1_3
check "openssl s_client TLS 1.1 refused" old_refused
echo "tls clients: $passed passed, $failed failed"
[ "$failed" = 0 ]
