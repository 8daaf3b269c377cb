#!/usr/bin/env bash
# Scans innergate's https listener with testssl.sh (Debian package testssl.sh) and
# fails on any HIGH or CRITICAL finding. Starts its own data plane on 127.0.0.1 with a
# test CA and a certificate it signed (RSA 2048, SAN localhost), serving an https
# endpoint whose policy answers; stops everything it started.
#
#   scripts/tls-scan.sh            # builds the release binaries first
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/release"
if ! command -v testssl >/dev/null; then
    echo "tls-scan: installing testssl.sh" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh bsdextrautils >&2
fi
cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin innergate --bin innergate-dataplane
# shellcheck source=lib/local-stack.sh
source "$root/scripts/lib/local-stack.sh"
port=$(free_port)

# A test CA, and a server certificate it signed.
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=innergate test CA" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tmp/tls.key" \
    -out "$tmp/tls.csr" 2>/dev/null
# A certificate as a public CA would issue it: a year's validity and a CRL location,
# so that what the scan reports is about the TLS service, not the test certificate.
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\ncrlDistributionPoints=URI:http://localhost/innergate-test-ca.crl\n' > "$tmp/ext"
openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 365 -extfile "$tmp/ext" -out "$tmp/leaf.crt" 2>/dev/null
cat "$tmp/leaf.crt" "$tmp/ca.crt" > "$tmp/tls.crt"

start_stack "$bin" tls-scan --port-map "443=$port" --tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key"
"$bin/innergate" api endpoints create --url https://localhost --traffic-policy \
    'on_http_request: [{actions: [{type: custom-response, config: {body: "scanned"}}]}]' > /dev/null
[ "$(curl -sS --max-time 20 --cacert "$tmp/ca.crt" "https://localhost:$port/")" = "scanned" ]

testssl --quiet --color 0 --warnings off --ip one --add-ca "$tmp/ca.crt" \
    --jsonfile "$tmp/scan.json" "https://localhost:$port" > "$tmp/scan.txt" 2>&1 || true
python3 - "$tmp/scan.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
for f in findings:
    if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL"):
        print(f"{f['severity']:8} {f['id']}: {f['finding']}")
print(f"tls-scan: {len(findings)} checks, {len(bad)} HIGH or CRITICAL")
sys.exit(1 if bad else 0)
PY
