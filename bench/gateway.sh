#!/usr/bin/env bash
# Gateway benchmark: what it costs to put a gateway in front of an API. The
# ceiling peer (../shared/peers/bare-axum) is the upstream, measured
#   D   directly                                    GET /health
#   N   through nginx, a plain keep-alive proxy     GET /health      (bench/peers/nginx-proxy.conf)
#   N2  the same with worker_processes auto (Debian's default: one per core)
#   E1  through an Express gateway, bearer JWT      GET /health      (bench/peers/express-gateway)
#   E2  through the Express gateway, public route   GET /public/health
#   G1  through Rampart's gateway, auth = required  GET /priv/health (bearer access token)
#   G2  through Rampart's gateway, auth = public    GET /pub/health
# each with wrk -t1 -c64, WARMUP s of warm-up then MEASURE s measured, in
# one run on one machine. G1 and G2 run only with a Rampart binary:
#
#   bench/gateway.sh                      D, N, E1, E2
#   bench/gateway.sh target/release/rampart
#   bench/gateway.sh --build              builds Rampart (release) first
#   MEASURE=3 bench/gateway.sh            shorter runs
#
# Rampart gets a config with two routes to the peer (strip_prefix, so
# /priv/health and /pub/health reach the peer's /health), every rate limit
# raised so it is evaluated but never trips, and [defense] off; G1/G2 are
# skipped with a message when it does not start or answers 404 for the
# route (a build without the gateway). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WARMUP=${WARMUP:-2}
MEASURE=${MEASURE:-8}
PEER_SRC=${PEER_SRC:-$ROOT/../shared/peers/bare-axum}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NGINX=${NGINX:-/usr/sbin/nginx}
WORK=$(mktemp -d /tmp/rampart-gateway-bench.XXXXXX)
PIDS=()
cleanup() { for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

RAMPART=""
case "${1:-}" in
  --build)
    echo "building rampart (release)" >&2
    cargo build --release --quiet
    RAMPART="$TARGET/release/rampart" ;;
  "") ;;
  *) RAMPART=$(realpath "$1") ;;
esac

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
if [ ! -x "$NGINX" ]; then
  echo "installing nginx" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
if [ ! -d bench/peers/express-gateway/node_modules ]; then
  npm ci --prefix bench/peers/express-gateway --no-audit --no-fund --loglevel=error >&2
fi

echo "building the ceiling peer (release)" >&2
cp -r "$PEER_SRC" "$WORK/bare-axum"
chmod -R u+w "$WORK/bare-axum"
CARGO_TARGET_DIR="$TARGET/bench-peer" cargo build --release --quiet --manifest-path "$WORK/bare-axum/Cargo.toml"
PEER="$TARGET/bench-peer/release/bare-axum"

wait_for() { # URL [TOKEN]: true once it answers 2xx within 10 s
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null ${2:+-H "Authorization: Bearer $2"} "$1" && return 0
    sleep 0.1
  done
  return 1
}

P=18290; N=18291; E=18292; G=18293; GA=18294; N2=18295

echo "starting the peer, nginx and the Express gateway" >&2
PORT=$P "$PEER" 2>/dev/null &
PIDS+=($!)
wait_for "http://127.0.0.1:$P/health" || { echo "the peer did not start" >&2; exit 1; }

mkdir -p "$WORK/nginx"
cp deploy/nginx/nginx.conf.test-wrapper "$WORK/nginx/nginx.conf"
sed -e "s/@LISTEN@/127.0.0.1:$N/" -e "s/@UPSTREAM@/127.0.0.1:$P/" bench/peers/nginx-proxy.conf > "$WORK/nginx/site.conf"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e stderr 2>"$WORK/nginx/error.log" &
PIDS+=($!)
wait_for "http://127.0.0.1:$N/health" || { cat "$WORK/nginx/error.log" >&2; exit 1; }
# N2: the same proxy as Debian runs nginx by default, one worker per core.
mkdir -p "$WORK/nginx2"
sed -e 's/^master_process off;/master_process on;/' -e 's/^worker_processes 1;/worker_processes auto;/' \
  deploy/nginx/nginx.conf.test-wrapper > "$WORK/nginx2/nginx.conf"
sed -e "s/@LISTEN@/127.0.0.1:$N2/" -e "s/@UPSTREAM@/127.0.0.1:$P/" bench/peers/nginx-proxy.conf > "$WORK/nginx2/site.conf"
"$NGINX" -p "$WORK/nginx2" -c "$WORK/nginx2/nginx.conf" -e stderr 2>"$WORK/nginx2/error.log" &
PIDS+=($!)
wait_for "http://127.0.0.1:$N2/health" || { cat "$WORK/nginx2/error.log" >&2; exit 1; }

# ES256: jsonwebtoken 9 cannot verify EdDSA, Rampart's default.
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$WORK/es256.pem"
openssl ec -in "$WORK/es256.pem" -pubout -out "$WORK/es256.pub.pem" 2>/dev/null
EXPRESS_TOKEN=$(JWT_PRIVATE_KEY_FILE="$WORK/es256.pem" node bench/peers/express-gateway/gateway.js --sign)
PORT=$E UPSTREAM_URL="http://127.0.0.1:$P" JWT_PUBLIC_KEY_FILE="$WORK/es256.pub.pem" \
  node bench/peers/express-gateway/gateway.js >/dev/null 2>"$WORK/express.log" &
PIDS+=($!)
wait_for "http://127.0.0.1:$E/health" "$EXPRESS_TOKEN" || { cat "$WORK/express.log" >&2; exit 1; }

RAMPART_TOKEN=""
GATEWAY=""
if [ -n "$RAMPART" ]; then
  echo "starting rampart's gateway" >&2
  mkdir -p "$WORK/rampart"
  # ./rampart.toml of the server's working directory.
  cat > "$WORK/rampart/rampart.toml" <<EOF
[server]
bind = "127.0.0.1:$G"
admin_bind = "127.0.0.1:$GA"
public_url = "http://127.0.0.1:$G"

[defense]
enabled = false

# Counted but never tripping. (A token bucket keeps time in milliseconds:
# past one request per millisecond its interval rounds to nothing.)
[rate_limit.proxy]
strategy = "sliding_window"
limit = 1000000000
window = "1m"

[proxy.upstreams.peer]
url = "http://127.0.0.1:$P"

[[proxy.routes]]
id = "priv"
path = "/priv"
upstream = "peer"
strip_prefix = true
auth = "required"

[[proxy.routes]]
id = "pub"
path = "/pub"
upstream = "peer"
strip_prefix = true
auth = "public"
EOF
  # The same raised limits as bench/run.sh.
  export RAMPART_RATE_LIMIT__GLOBAL__LIMIT=1000000000 RAMPART_RATE_LIMIT__API__LIMIT=1000000000 \
    RAMPART_RATE_LIMIT__LOGIN__LIMIT=1000000000
  (cd "$WORK/rampart" && exec "$RAMPART" serve >server.log 2>&1) &
  PIDS+=($!)
  if ! wait_for "http://127.0.0.1:$G/health"; then
    echo "skipped G1/G2: rampart did not start with the gateway config; its log ends:" >&2
    tail -5 "$WORK/rampart/server.log" >&2
  else
    (cd "$WORK/rampart" && RAMPART_PASSWORD="violet pancake orbit nine" RAMPART_SERVER__BIND=127.0.0.1:0 \
      RAMPART_SERVER__ADMIN_BIND=127.0.0.1:0 "$RAMPART" user create \
      --email bench@example.com --name Bench --role user >/dev/null)
    LOGIN='{"email":"bench@example.com","password":"violet pancake orbit nine"}'
    RAMPART_TOKEN=$(curl -s -H 'content-type: application/json' -d "$LOGIN" "http://127.0.0.1:$G/auth/login" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$G/pub/health")
    if [ "$status" = 200 ]; then
      GATEWAY=1
    else
      echo "skipped G1/G2: rampart answers $status for GET /pub/health (no gateway in this build?)" >&2
    fi
  fi
fi

# run NAME URL [TOKEN]: one measured wrk run, appended to results as JSON
RESULTS="$WORK/results.jsonl"
run() {
  local name=$1 url=$2 token=${3:-}
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' ${token:+-H "Authorization: Bearer $token"} "$url")
  if [ "$status" != 200 ]; then
    echo "$name: GET $url answered $status, not measured" >&2
    return
  fi
  echo "measuring $name" >&2
  BENCH_TOKEN=$token wrk -t1 -c64 -d"${WARMUP}s" -s bench/report.lua "$url" >/dev/null
  BENCH_TOKEN=$token wrk -t1 -c64 -d"${MEASURE}s" -s bench/report.lua "$url" | sed -n 's/^BENCH_JSON //p' \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r["name"]=sys.argv[1]; r["url"]=sys.argv[2]; print(json.dumps(r))' "$name" "$url" >> "$RESULTS"
}

run D "http://127.0.0.1:$P/health"
run N "http://127.0.0.1:$N/health"
run N2 "http://127.0.0.1:$N2/health"
run E1 "http://127.0.0.1:$E/health" "$EXPRESS_TOKEN"
run E2 "http://127.0.0.1:$E/public/health"
if [ -n "$GATEWAY" ]; then
  run G1 "http://127.0.0.1:$G/priv/health" "$RAMPART_TOKEN"
  run G2 "http://127.0.0.1:$G/pub/health"
fi

python3 - "$RESULTS" "$MEASURE" <<'PY'
import json, sys
rows = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
what = {"D": "upstream direct", "N": "nginx, plain proxy (1 worker)", "N2": "nginx, plain proxy (worker_processes auto)", "E1": "Express gateway, bearer JWT (ES256)",
        "E2": "Express gateway, public route", "G1": "Rampart gateway, auth required (bearer)",
        "G2": "Rampart gateway, public route"}
n = rows.get("N", {}).get("rps"); d = rows.get("D", {}).get("rps")
print(f"wrk -t1 -c64, {sys.argv[2]} s measured; ratios are req/s over N's and D's")
print()
print("| run | what | req/s | p50 ms | p99 ms | non-2xx | ÷ N | ÷ D |")
print("|---|---|---|---|---|---|---|---|")
for name, label in what.items():
    r = rows.get(name)
    if r is None:
        print(f"| {name} | {label} | — | — | — | — | — | — |")
        continue
    ratio = lambda base: f"{r['rps'] / base:.2f}" if base else "—"
    print(f"| {name} | {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} | {ratio(n)} | {ratio(d)} |")
PY
