#!/usr/bin/env bash
# Resident memory of the release server: idle after start, then with
# 1,000,000 distinct rate-limit keys (one `global` key per client; the
# clients come through a trusted proxy, see distinct_clients.lua), then
# once the load has stopped and the keys' windows (1 minute here, so the
# wait is short) have ended and the sweeper dropped them.
#
#   bench/memory.sh        prints the three figures in MiB
#   AFTER=0 bench/memory.sh   skips the wait for the third
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d /tmp/rampart-memory.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet
PORT=18280
(cd "$WORK" && RAMPART_SERVER__BIND="127.0.0.1:$PORT" RAMPART_SERVER__ADMIN_BIND=127.0.0.1:19280 \
  RAMPART_SERVER__TRUSTED_PROXIES='["127.0.0.1/32"]' RAMPART_RATE_LIMIT__GLOBAL__LIMIT=1000000000 \
  RAMPART_RATE_LIMIT__GLOBAL__WINDOW=1m \
  RAMPART_DEFENSE__ENABLED=false exec "$ROOT/target/release/rampart" > "$WORK/server.log" 2>&1) &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status"; }
sleep 4
echo "idle after start: $(rss_mib) MiB (target ≤ 30)"
# ~40 s at the rates of a 2-core machine: every address is seen at least once.
wrk -t1 -c64 -d"${DURATION:-40}s" -s bench/distinct_clients.lua "http://127.0.0.1:$PORT/no-such-page" \
  | grep 'requests in'
echo "with 1,000,000 rate-limit keys: $(rss_mib) MiB (target ≤ 150)"
if [ "${AFTER:-1}" != 0 ]; then
  # A sliding window's key is stale two windows after its last request;
  # the sweeper runs every 5 s.
  sleep 130
  echo "2 minutes after the load stopped: $(rss_mib) MiB"
fi
