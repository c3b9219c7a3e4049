#!/usr/bin/env bash
# Resident memory of the release server:
#   1. idle after start;
#   2. with SESSIONS (default 100,000) live server-side sessions, each used
#      again (distinct_sessions.lua);
#   3. then with 1,000,000 distinct rate-limit keys as well (one `global`
#      key per client; the clients come through a trusted proxy, see
#      distinct_clients.lua);
#   4. two minutes after the load stopped, with no request at all (the
#      keys' windows, 1 minute here, have ended and the sweeper dropped
#      them: rampart_rate_limit_keys shows it; the allocator gave their
#      memory back, nudged by housekeeping::spawn_allocator_nudge).
# Sign-ins use a cheap password hash here so that 100,000 sessions take a
# minute; at the defaults each concurrent hash adds its 19 MiB while it runs
# (auth.password_hash.max_concurrent of them, one per core).
#
#   bench/memory.sh            prints the figures in MiB
# Fails when step 1 is over 30 MiB, step 2 or 3 over 150 MiB, or (unless
# AFTER=0) step 4 has not given back three quarters of what the addresses
# took (step 3 minus step 2).
#
#   AFTER=0 bench/memory.sh    stops after step 3
#   (step 4 should come back near step 2's figure: what the addresses took
#   is given back; the sessions' SQLite page caches stay, as they should)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d /tmp/rampart-memory.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet
PORT=18280
ADMIN=19280
(cd "$WORK" && RAMPART_SERVER__BIND="127.0.0.1:$PORT" RAMPART_SERVER__ADMIN_BIND="127.0.0.1:$ADMIN" \
  RAMPART_SERVER__TRUSTED_PROXIES='["127.0.0.1/32"]' RAMPART_RATE_LIMIT__GLOBAL__LIMIT=1000000000 \
  RAMPART_RATE_LIMIT__GLOBAL__WINDOW=1m RAMPART_RATE_LIMIT__LOGIN__LIMIT=1000000000 \
  RAMPART_RATE_LIMIT__API__LIMIT=1000000000 \
  RAMPART_AUTH__PASSWORD_HASH__MEMORY_KIB=64 RAMPART_AUTH__PASSWORD_HASH__ITERATIONS=1 \
  RAMPART_DEFENSE__ENABLED=false exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/rampart" > "$WORK/server.log" 2>&1) &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status"; }
metric() { curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
sleep 4
IDLE_RSS=$(rss_mib)
echo "1. idle after start: $IDLE_RSS MiB (target ≤ 30)"

export BENCH_EMAIL=memory-bench@example.com BENCH_PASSWORD="violet pancake orbit nine"
curl -sf -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\",\"name\":\"Bench\"}" \
  "http://127.0.0.1:$PORT/auth/signup"
export SESSIONS="${SESSIONS:-100000}"
wrk -t1 -c32 -d"${SESSION_DURATION:-90}s" -s bench/distinct_sessions.lua "http://127.0.0.1:$PORT" \
  | grep 'requests in'
sleep 6
SESSIONS_RSS=$(rss_mib)
echo "2. with $(metric rampart_active_sessions) live sessions: $SESSIONS_RSS MiB"

# ~40 s at the rates of a 2-core machine: every address is seen at least once.
wrk -t1 -c64 -d"${DURATION:-40}s" -s bench/distinct_clients.lua "http://127.0.0.1:$PORT/no-such-page" \
  | grep 'requests in'
sleep 6
PEAK_RSS=$(rss_mib)
echo "3. and then 1,000,000 client addresses: $PEAK_RSS MiB (target ≤ 150);" \
  "rate-limit keys held: $(metric rampart_rate_limit_keys)"
AFTER_RSS=$PEAK_RSS

if [ "${AFTER:-1}" != 0 ]; then
  # A sliding window's key is stale two windows after its last request;
  # the sweeper runs every 5 s.
  # (rss_mib reads /proc; metric is read after it: the scrape is a request)
  sleep 130
  AFTER_RSS=$(rss_mib)
  echo "4. two minutes after the load, no requests since: $AFTER_RSS MiB (after the sessions, before the" \
    "addresses: $SESSIONS_RSS MiB); rate-limit keys held: $(metric rampart_rate_limit_keys)"
fi
python3 - "$IDLE_RSS" "$SESSIONS_RSS" "$PEAK_RSS" "$AFTER_RSS" "${AFTER:-1}" <<'PY'
import sys
idle, sessions, peak, after = map(float, sys.argv[1:5])
failures = []
if idle > 30:
    failures.append(f"idle {idle} MiB > 30")
if max(sessions, peak) > 150:
    failures.append(f"peak {max(sessions, peak)} MiB > 150")
if sys.argv[5] != "0":
    given_back = (peak - after) / (peak - sessions) if peak > sessions else 1.0
    print(f"given back: {given_back:.0%} of what the addresses took")
    if given_back < 0.75:
        failures.append(f"only {given_back:.0%} given back")
if failures:
    sys.exit("FAILED: " + "; ".join(failures))
print("memory bounded and given back")
PY
