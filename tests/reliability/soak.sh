#!/usr/bin/env bash
# Soak (issue: reliability, item 5): SOAK_MINUTES (default 10) of mixed
# load against the release server on SQLite (sign-ins, reads, writes,
# refresh rotations, 429s; tests/reliability/mixed.lua), as consecutive
# 30-second wrk runs, with the server's resident memory sampled every 5 s
# (all of it, and its anonymous and file-backed parts), and the database's
# size. SOAK_SERVER_KEYS adds configuration (e.g. "[database]
# max_connections = 2") to compare runs.
# Fails on any status but the expected ones (200/201, 429 for the limited
# path), on socket errors, on memory that keeps growing (the last third's
# mean more than 10% over the second third's) or a p99 that drifts (the
# last third's median over 2x the first third's). Writes
#   target/soak/soak.csv    (kind,time_s,value: rss_mib, rss_anon_mib,
#                            rss_file_mib, db_mib and p99_ms)
#   target/soak/soak.png    RSS and p99 over time (matplotlib, in a venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
MINUTES=${SOAK_MINUTES:-10}
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/soak"
WORK=$(mktemp -d /tmp/rampart-soak.XXXXXX)
PID=
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

if ! command -v wrk >/dev/null; then
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
VENV="${CARGO_TARGET_DIR:-$ROOT/target}/soak-venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/reliability/requirements.txt
fi
cargo build --release --quiet

source tests/reliability/server.sh
start_server "${CARGO_TARGET_DIR:-$ROOT/target}/release/rampart" 18480 19480 soak@example.com "${SOAK_SERVER_KEYS:-}"

START=$(date +%s)
CSV="$OUT/soak.csv"
echo "kind,time_s,value" > "$CSV"
( while kill -0 "$PID" 2>/dev/null; do
    now=$(( $(date +%s) - START ))
    for field in VmRSS:rss_mib RssAnon:rss_anon_mib RssFile:rss_file_mib; do
      echo "${field#*:},$now,$(awk -v f="${field%%:*}:" '$1 == f {printf "%.1f", $2 / 1024}' "/proc/$PID/status")" >> "$CSV"
    done
    echo "db_mib,$now,$(du -cm "$WORK"/data/rampart.db* 2>/dev/null | awk 'END {print $1}')" >> "$CSV"
    sleep 5
  done ) &
SAMPLER=$!

RUNS=$(( MINUTES * 2 ))
: > "$WORK/runs.jsonl"
for run in $(seq 1 "$RUNS"); do
  SOAK_EMAIL=soak@example.com SOAK_PASSWORD="$ADMIN_PASSWORD" \
    wrk -t4 -c4 -d30s -s tests/reliability/mixed.lua "$BASE" \
    | sed -n 's/^SOAK_JSON //p' > "$WORK/run.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2] + "," + str(d["p99_ms"]))' \
    "$WORK/run.json" "$(( $(date +%s) - START ))" | sed 's/^/p99_ms,/' >> "$CSV"
  cat "$WORK/run.json" >> "$WORK/runs.jsonl"
  echo "run $run/$RUNS: $(cat "$WORK/run.json")" >&2
done
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=

"$VENV/bin/python" - "$CSV" "$WORK/runs.jsonl" "$OUT/soak.png" <<'PY'
import csv, json, statistics, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
def series(kind):
    return [(int(r["time_s"]), float(r["value"])) for r in rows if r["kind"] == kind and r["value"]]
rss, anon, db = series("rss_mib"), series("rss_anon_mib"), series("db_mib")
p99 = [(int(r["time_s"]), float(r["value"])) for r in rows if r["kind"] == "p99_ms"]
runs = [json.loads(line) for line in open(sys.argv[2])]

expected = {"read:200", "write:201", "login:200", "refresh:200", "limited:429", "limited:404"}
statuses, requests, socket_errors = {}, 0, 0
for run in runs:
    requests += run["requests"]
    socket_errors += run["socket_errors"]
    for key, n in run["statuses"].items():
        statuses[key] = statuses.get(key, 0) + n
unexpected = {k: n for k, n in statuses.items() if k not in expected}

def thirds(values):
    n = len(values)
    return values[: n // 3], values[n // 3 : 2 * n // 3], values[2 * n // 3 :]
_, rss_mid, rss_last = thirds([v for _, v in rss])
p99_first, _, p99_last = thirds([v for _, v in p99])
rss_growth = statistics.mean(rss_last) / statistics.mean(rss_mid) - 1
p99_drift = statistics.median(p99_last) / statistics.median(p99_first)

fig, left = plt.subplots(figsize=(10, 5))
left.plot([t / 60 for t, _ in rss], [v for _, v in rss], color="tab:blue", label="RSS (MiB)")
left.plot([t / 60 for t, _ in anon], [v for _, v in anon], color="tab:blue", linestyle="--", label="anonymous")
left.legend(loc="lower right")
left.set_xlabel("minutes")
left.set_ylabel("resident memory, MiB", color="tab:blue")
left.set_ylim(bottom=0)
right = left.twinx()
right.plot([t / 60 for t, _ in p99], [v for _, v in p99], color="tab:red", marker="o", label="p99 (ms)")
right.set_ylabel("p99 latency per 30 s run, ms", color="tab:red")
right.set_ylim(bottom=0)
plt.title(f"Rampart soak: {requests:,} requests in {len(runs) / 2:.0f} min of mixed load")
fig.tight_layout()
fig.savefig(sys.argv[3], dpi=100)

print(f"requests {requests}, statuses {dict(sorted(statuses.items()))}, socket errors {socket_errors}")
print(f"RSS MiB: first {rss[0][1]:.1f}, max {max(v for _, v in rss):.1f}, last {rss[-1][1]:.1f}; "
      f"last third vs second third {rss_growth:+.1%}")
if anon and db:
    print(f"anonymous MiB: first {anon[0][1]:.1f}, last {anon[-1][1]:.1f}; database MiB: last {db[-1][1]:.0f}")
print(f"p99 ms per run: min {min(v for _, v in p99):.2f}, median {statistics.median(v for _, v in p99):.2f}, "
      f"max {max(v for _, v in p99):.2f}; last third vs first third x{p99_drift:.2f}")
print(f"chart: {sys.argv[3]}")
failures = []
if unexpected:
    failures.append(f"unexpected statuses {unexpected}")
if socket_errors:
    failures.append(f"{socket_errors} socket errors")
if rss_growth > 0.10:
    failures.append(f"memory grew {rss_growth:+.1%}")
if p99_drift > 2:
    failures.append(f"p99 drifted x{p99_drift:.2f}")
if failures:
    print("FAILED: " + "; ".join(failures))
    sys.exit(1)
print("soak passed")
PY
