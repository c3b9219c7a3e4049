#!/usr/bin/env bash
# Refusals must be cheaper than service (issue: reliability, item 7): a
# normal client's latency (GET /api/posts, 4 connections) while 64
# connections flood the server with
#   health   GET /health (the baseline: the cheapest thing it serves)
#   forged   bearer tokens with the server's real kid, fresh claims and a
#            wrong signature (each one a full signature check unless the
#            server stops checking for that client)
#   limited  requests over the client's rate limit (429)
#   blocked  requests from a blocked address (403)
# Each flood comes from its own loopback address (127.0.0.2-5) through
# the trusted proxy header, so the normal client (127.0.0.1) is never the
# one limited or blocked. Prints a table of the normal client's p50/p99
# per flood and its ratio to the health flood, and fails when a refusal
# flood costs the normal client more than the health flood does: its p50
# over 1.5x the health flood's, or its throughput under 0.67x (the margins
# are this machine's run-to-run noise; p99 is not judged: on two cores it
# is the scheduler's, the same for every flood).
#
#   bash tests/reliability/flood.sh         (MEASURE=8 seconds per run)
#   FLOOD_BINARY=/path/to/rampart bash tests/reliability/flood.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
MEASURE=${MEASURE:-8}
WORK=$(mktemp -d /tmp/rampart-flood.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
# FLOOD_BINARY: another build to measure (e.g. one from before a change).
BIN=${FLOOD_BINARY:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/rampart"
fi
source tests/reliability/server.sh
start_server "$BIN" 18380 19380 admin@example.com 'trusted_proxies = ["127.0.0.1/32"]'

TOKEN=$(curl -s "$BASE/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"admin@example.com\",\"password\":\"$ADMIN_PASSWORD\"}" | python3 -c 'import json,sys; d = json.load(sys.stdin); print(d.get("access_token") or sys.exit(f"login failed: {d}"))')
# 20,000 forged tokens: the real header, the real claims with a fresh jti
# and iat each, the real token's signature (which matches none of them).
python3 - "$TOKEN" > "$WORK/forged.txt" <<'PY'
import base64, json, sys, uuid
header, payload, signature = sys.argv[1].split(".")
pad = lambda s: s + "=" * (-len(s) % 4)
claims = json.loads(base64.urlsafe_b64decode(pad(payload)))
for n in range(20000):
    claims["jti"] = str(uuid.uuid4())
    claims["iat"] = claims["iat"] - (n % 60)
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
    print(f"{header}.{body}.{signature}")
PY
# Block 127.0.0.5 (the blocked flood's address).
curl -sf "$BASE/api/admin/blocks" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"ip":"127.0.0.5/32","reason":"flood test","duration":"1h"}' >/dev/null

normal() { # the normal client, as 127.0.0.1 itself
  wrk -t1 -c4 -d"${MEASURE}s" -s bench/report.lua "$BASE/api/posts" | sed -n 's/^BENCH_JSON //p'
}
row() { # $1 name, $2 summary JSON
  python3 - "$1" "$2" <<'PY'
import json, sys
name, d = sys.argv[1], json.loads(sys.argv[2])
print(f"{name} {d['p50_ms']:.3f} {d['p99_ms']:.3f} {d['rps']:.0f}")
PY
}
RESULTS="$WORK/results.txt"
: > "$RESULTS"
row idle "$(normal)" >> "$RESULTS"
for kind in health forged limited blocked; do
  case $kind in
    health)  wrk -t1 -c64 -d"$((MEASURE + 2))s" -H "X-Forwarded-For: 127.0.0.2" "$BASE/health" >/dev/null 2>&1 & ;;
    forged)  TOKENS_FILE="$WORK/forged.txt" wrk -t1 -c64 -d"$((MEASURE + 2))s" -H "X-Forwarded-For: 127.0.0.3" \
               -s tests/reliability/forged.lua "$BASE/api/profile" >/dev/null 2>&1 & ;;
    limited) wrk -t1 -c64 -d"$((MEASURE + 2))s" -H "X-Forwarded-For: 127.0.0.4" "$BASE/limited" >/dev/null 2>&1 & ;;
    blocked) wrk -t1 -c64 -d"$((MEASURE + 2))s" -H "X-Forwarded-For: 127.0.0.5" "$BASE/api/posts" >/dev/null 2>&1 & ;;
  esac
  FLOOD=$!
  sleep 1
  row "$kind" "$(normal)" >> "$RESULTS"
  wait $FLOOD || true
done
python3 - "$RESULTS" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
by = {r[0]: (float(r[1]), float(r[2]), float(r[3])) for r in rows}
h50, h99, hrps = by["health"]
print("| normal client (GET /api/posts, -c4) during | p50 ms | p99 ms | req/s | p50, p99, req/s as x the health flood's |")
print("|---|---|---|---|---|")
for name, (p50, p99, rps) in by.items():
    print(f"| {name} | {p50:.2f} | {p99:.2f} | {rps:.0f} | {p50 / h50:.2f}, {p99 / h99:.2f}, {rps / hrps:.2f} |")
failures = [
    f"{name}: p50 x{p50 / h50:.2f}, req/s x{rps / hrps:.2f} of the health flood's"
    for name, (p50, _, rps) in by.items()
    if name in ("forged", "limited", "blocked") and (p50 > 1.5 * h50 or rps < 0.67 * hrps)
]
if failures:
    sys.exit("FAILED: refusals cost more than service: " + "; ".join(failures))
print("refusals cost no more than /health")
PY
