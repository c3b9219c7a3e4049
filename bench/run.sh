#!/usr/bin/env bash
# Load benchmark: Rampart (release, default configuration, every layer on,
# rate limits raised so they are evaluated but never trip) against the
# framework ceiling (../shared/peers/bare-axum), same wrk settings, A B A B;
# for S1-S3 and S5 also the floor (bench/floor: the ceiling sending the
# response bytes API.md requires, nothing else), the best reachable ratio.
#
#   bench/run.sh            full run (2 s warm-up, 8 s measured per run)
#   MEASURE=3 bench/run.sh  shorter runs
#   ONLY=keys bench/run.sh  S2 and S8 alone (the API key path against the JWT path)
#
# Prints a Markdown table and writes bench/results/latest.json (with
# ONLY=keys, bench/results/keys.json).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WARMUP=${WARMUP:-2}
MEASURE=${MEASURE:-8}
PEER_SRC=${PEER_SRC:-$ROOT/../shared/peers/bare-axum}
WORK=$(mktemp -d /tmp/rampart-bench.XXXXXX)
PIDS=()
cleanup() { for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

echo "building rampart (release)" >&2
cargo build --release --quiet
RAMPART="${CARGO_TARGET_DIR:-$ROOT/target}/release/rampart"

echo "building the ceiling peer (release)" >&2
cp -r "$PEER_SRC" "$WORK/bare-axum"
chmod -R u+w "$WORK/bare-axum"
CARGO_TARGET_DIR="$ROOT/target/bench-peer" cargo build --release --quiet --manifest-path "$WORK/bare-axum/Cargo.toml"
PEER="$ROOT/target/bench-peer/release/bare-axum"
# The floor (bench/floor): the ceiling sending the response bytes API.md
# requires and doing nothing else; floor/ceiling bounds Rampart's ratio.
CARGO_TARGET_DIR="$ROOT/target/bench-peer" cargo build --release --quiet --manifest-path bench/floor/Cargo.toml
FLOOR="$ROOT/target/bench-peer/release/floor"

wait_for() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

start_rampart() { # $1 port, $2 admin port, $3 global limit, $4 dir
  mkdir -p "$4"
  (cd "$4" && RAMPART_SERVER__BIND="127.0.0.1:$1" RAMPART_SERVER__ADMIN_BIND="127.0.0.1:$2" \
    RAMPART_RATE_LIMIT__GLOBAL__LIMIT="$3" RAMPART_RATE_LIMIT__API__LIMIT=1000000000 \
    RAMPART_RATE_LIMIT__LOGIN__LIMIT=1000000000 RAMPART_DEFENSE__ENABLED=false \
    exec "$RAMPART" > "$4/server.log" 2>&1) &
  PIDS+=($!)
  wait_for "http://127.0.0.1:$1/health"
}

R=18080; P=18090; F=18180; L=18095
start_rampart $R 19080 1000000000 "$WORK/rampart"
start_rampart $F 19180 1 "$WORK/flood"
PORT=$P "$PEER" 2>/dev/null & PIDS+=($!)
wait_for "http://127.0.0.1:$P/health"
PORT=$L "$FLOOR" 2>/dev/null & PIDS+=($!)
wait_for "http://127.0.0.1:$L/health"

echo "seeding a user and 20 posts" >&2
(cd "$WORK/rampart" && RAMPART_PASSWORD="violet pancake orbit nine" RAMPART_SERVER__BIND=127.0.0.1:0 \
  "$RAMPART" user create --email bench@example.com --name Bench --role user >/dev/null)
LOGIN='{"email":"bench@example.com","password":"violet pancake orbit nine"}'
TOKEN=$(curl -s -H 'content-type: application/json' -d "$LOGIN" "http://127.0.0.1:$R/auth/login" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# S8's API key: the same user, the scope S8 needs.
KEY=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["profile:read"]}' "http://127.0.0.1:$R/api/profile/api-keys" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
for i in $(seq 1 20); do
  curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"title\":\"Benchmark post $i\",\"body\":\"Body of benchmark post number $i. Lorem ipsum dolor sit amet.\"}" \
    "http://127.0.0.1:$R/api/posts"
done

# run URL CONNECTIONS [METHOD BODY TOKEN] -> BENCH_JSON line
run() {
  local url=$1 connections=$2
  BENCH_METHOD=${3:-GET} BENCH_BODY=${4:-} BENCH_TOKEN=${5:-} \
    wrk -t1 -c"$connections" -d"${WARMUP}s" -s bench/report.lua "$url" >/dev/null
  BENCH_METHOD=${3:-GET} BENCH_BODY=${4:-} BENCH_TOKEN=${5:-} \
    wrk -t1 -c"$connections" -d"${MEASURE}s" -s bench/report.lua "$url" | sed -n 's/^BENCH_JSON //p'
}

RESULTS="$WORK/results.jsonl"
record() { # scenario target round json
  python3 -c 'import json,sys; r=json.loads(sys.argv[4]); r.update(scenario=sys.argv[1], target=sys.argv[2], round=int(sys.argv[3])); print(json.dumps(r))' "$@" >> "$RESULTS"
}

ONLY=${ONLY:-}
for round in 1 2; do
  if [ "$ONLY" = keys ]; then
    echo "round $round: S2, S8" >&2
    record S2 rampart $round "$(run "http://127.0.0.1:$R/api/profile" 64 GET '' "$TOKEN")"
    record S8 rampart $round "$(run "http://127.0.0.1:$R/api/profile" 64 GET '' "$KEY")"
    continue
  fi
  echo "round $round: S1-S3" >&2
  record S1 rampart $round "$(run "http://127.0.0.1:$R/health" 64)"
  record S1 ceiling $round "$(run "http://127.0.0.1:$P/health" 64)"
  record S1 floor $round "$(run "http://127.0.0.1:$L/health" 64)"
  record S2 rampart $round "$(run "http://127.0.0.1:$R/api/profile" 64 GET '' "$TOKEN")"
  record S2 ceiling $round "$(run "http://127.0.0.1:$P/api/profile" 64 GET '' "$TOKEN")"
  record S2 floor $round "$(run "http://127.0.0.1:$L/api/profile" 64 GET '' "$TOKEN")"
  # S8: S2 with the API key instead of the JWT.
  record S8 rampart $round "$(run "http://127.0.0.1:$R/api/profile" 64 GET '' "$KEY")"
  record S3 rampart $round "$(run "http://127.0.0.1:$R/api/posts" 64)"
  record S3 ceiling $round "$(run "http://127.0.0.1:$P/api/posts" 64)"
  record S3 floor $round "$(run "http://127.0.0.1:$L/api/posts" 64)"
  echo "round $round: S4-S6" >&2
  record S4 rampart $round "$(run "http://127.0.0.1:$R/auth/login" 8 POST "$LOGIN")"
  record S5 rampart $round "$(run "http://127.0.0.1:$F/api/posts" 64)"
  record S5 floor $round "$(run "http://127.0.0.1:$L/flood" 64)"
  # S6: S2 while S4 runs at the same time.
  (BENCH_METHOD=POST BENCH_BODY="$LOGIN" wrk -t1 -c8 -d"$((WARMUP + MEASURE + 1))s" -s bench/report.lua \
    "http://127.0.0.1:$R/auth/login" >/dev/null) &
  LOGINS=$!
  sleep 1
  record S6 rampart $round "$(run "http://127.0.0.1:$R/api/profile" 64 GET '' "$TOKEN")"
  wait $LOGINS || true
  # S7: a normal request's latency, idle and then during a flood of failed
  # requests (bad bearer tokens, all 401, all logged and audited).
  record S7idle rampart $round "$(run "http://127.0.0.1:$R/api/posts" 4)"
  (BENCH_TOKEN=not-a-valid-token wrk -t1 -c64 -d"$((WARMUP + MEASURE + 1))s" -s bench/report.lua \
    "http://127.0.0.1:$R/api/profile" >/dev/null) &
  FLOOD=$!
  sleep 1
  record S7 rampart $round "$(run "http://127.0.0.1:$R/api/posts" 4)"
  wait $FLOOD || true
done

RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$(pgrep -f "$RAMPART" | head -1)/status" 2>/dev/null || echo 0)
mkdir -p bench/results
SUMMARY=bench/results/latest.json
if [ "$ONLY" = keys ]; then SUMMARY=bench/results/keys.json; fi
python3 - "$RESULTS" "$RSS_KIB" > "$SUMMARY" <<'PY'
import json, sys, statistics, datetime, platform, os
rows = [json.loads(line) for line in open(sys.argv[1])]
def mean(scenario, target, key):
    values = [r[key] for r in rows if r["scenario"] == scenario and r["target"] == target]
    return statistics.mean(values) if values else None
out = {"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z", "machine": f"{platform.machine()} {os.cpu_count()} cores",
       "rss_rampart_kib_after": int(sys.argv[2]), "runs": rows, "summary": {}}
for s in ["S1", "S2", "S3", "S4", "S5", "S6", "S7idle", "S7", "S8"]:
    out["summary"][s] = {t: {k: mean(s, t, k) for k in ["rps", "p50_ms", "p99_ms", "non_2xx"]} for t in ["rampart", "ceiling", "floor"]}
print(json.dumps(out, indent=2))
PY

python3 - "$SUMMARY" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["summary"]
def f(x, fmt="{:.0f}"): return "—" if x is None else fmt.format(x)
ceiling_s1 = d["S1"]["ceiling"]["rps"]
s2_idle_p99 = d["S2"]["rampart"]["p99_ms"]
targets = {"S1": ("S1 ceiling", 0.85), "S2": ("S2 ceiling", 0.75), "S3": ("S3 ceiling", 0.5), "S5": ("S1 ceiling", 0.9)}
# The floor column: the same ratio for bench/floor, which sends the bytes
# API.md requires and does nothing else; no server that honours API.md
# can do much better than it on this machine.
print("| scenario | rampart req/s | p50 ms | p99 ms | ceiling req/s | ratio | target | floor ratio |")
print("|---|---|---|---|---|---|---|---|")
for s, name in [("S1", "GET /health"), ("S2", "GET /api/profile (Bearer)"), ("S3", "GET /api/posts (guest, 20 posts)"),
                ("S4", "POST /auth/login (-c8)"), ("S5", "flood, 429s"), ("S6", "S2 while S4 runs"),
                ("S8", "GET /api/profile (API key)")]:
    r = d[s]["rampart"]; c = d[s]["ceiling"]; fl = d[s]["floor"]
    if r["rps"] is None:
        continue
    ratio = target = floor = ""
    if s in targets:
        base_name, want = targets[s]
        base = ceiling_s1 if base_name == "S1 ceiling" else c["rps"]
        ratio = f(r["rps"] / base, "{:.2f}") if base else "—"
        floor = f(fl["rps"] / base, "{:.2f}") if base and fl["rps"] else "—"
        target = f"≥ {want} × {base_name}"
    if s == "S4":
        target = "≥ 70 logins/s"
    if s == "S6":
        ratio = f(r["p99_ms"] / s2_idle_p99, "{:.2f}") + " × S2 p99"
        target = "p99 ≤ 2 × S2 idle p99"
    if s == "S8":
        ratio = f(r["rps"] / d["S2"]["rampart"]["rps"], "{:.2f}") + " × S2"
        target = "≥ 0.9 × S2 (the JWT path)"
    print(f"| {s} {name} | {f(r['rps'])} | {f(r['p50_ms'], '{:.2f}')} | {f(r['p99_ms'], '{:.2f}')} | {f(c['rps'])} | {ratio} | {target} | {floor} |")
idle = d["S7idle"]["rampart"]; flood = d["S7"]["rampart"]
if idle["rps"] is not None: print(f"| S7 GET /api/posts (-c4) during a 401 flood | {f(flood['rps'])} | {f(flood['p50_ms'], '{:.2f}')} | {f(flood['p99_ms'], '{:.2f}')} | — | "
      f"{f(flood['p99_ms'] / idle['p99_ms'], '{:.2f}')} × idle p99 ({f(idle['p99_ms'], '{:.2f}')} ms) | p99 ≤ 2 × idle p99 | |")
PY
