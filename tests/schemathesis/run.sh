#!/usr/bin/env bash
# Attacks a live release server with schemathesis, generated from the
# server's own /openapi.json, and fails on any finding.
#
#   bash tests/schemathesis/run.sh            # build release, run, clean up
#   ST_BINARY=target/debug/rampart bash tests/schemathesis/run.sh   # skip the build
#   ST_MAX_EXAMPLES=50 ST_SEED=7 bash tests/schemathesis/run.sh       # more cases, another seed
#   ST_ARGS="--include-path /api/profile" bash tests/schemathesis/run.sh  # extra schemathesis options
#   ST_KEEP=1 bash tests/schemathesis/run.sh   # keep the temporary directory (server log, database)
#
# What it does:
# 1. installs the pinned schemathesis (requirements.txt) into a virtualenv
#    under the cargo target directory (reused while the pins are unchanged);
# 2. builds `rampart` in release mode;
# 3. starts it on a free loopback port in a temporary directory: SQLite,
#    cheap Argon2 parameters, rate limits raised and `[defense] enabled =
#    false` (the run sends thousands of bad requests on purpose, API.md);
# 4. seeds an admin and a user with `rampart user create`, and signs in
#    once to check the admin's credentials;
# 5. runs every phase (examples, coverage, fuzzing, stateful) with every
#    check (schemathesis.toml: `[checks] enabled = true`), a fixed seed and
#    a bounded number of examples per operation.
#
# Authentication: schemathesis signs in as the admin through
# `POST /auth/login` (dynamic auth in schemathesis.toml) and signs in again
# when a request answers 401. Some operations end the caller's own tokens
# by design: `POST /auth/logout`, `POST /auth/logout-all`, a password
# change, and an admin changing their own department (which schemathesis
# does once it has seen the admin's id). Signing in again afterwards is
# what any client does, so all of them stay in the run, and nothing after
# such a call is tested as a guest by accident.
#
# Nor may schemathesis take the admin account away (demote, disable or
# delete it after promoting another user): hooks.py sends user
# administration aimed at the run's own admin to the seeded user instead.
#
# Signing in again must not meet the per-email login delay, which
# schemathesis itself would trigger by trying wrong passwords for the
# admin's email on `POST /auth/login` and `POST /auth/session`. So there
# are two runs: every other operation first, then those two.
#
# schemathesis.toml holds the two adjustments, each with its reason: one
# check off for one operation (positive data on sign-up, whose password
# blocklist no schema can state), and 413 counted among the expected
# answers (the body limit counts bytes, which no schema can bound).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
SEED="${ST_SEED:-20261128}"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
log() { printf '\n== schemathesis: %s\n' "$*"; }
started=$(date +%s)

log "tools"
VENV="$CARGO_TARGET_DIR/schemathesis-venv"
STAMP="$VENV/requirements.sha256"
wanted=$(sha256sum tests/schemathesis/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/schemathesis" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$VENV"
  mkdir -p "$CARGO_TARGET_DIR"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
  echo "$wanted" > "$STAMP"
fi
"$VENV/bin/schemathesis" --version

if [ -z "${ST_BINARY:-}" ]; then
  log "release build"
  cargo build --release --locked
  ST_BINARY="$CARGO_TARGET_DIR/release/rampart"
fi
ST_BINARY="$(realpath "$ST_BINARY")"

WORK="$(mktemp -d -t rampart-schemathesis.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "${ST_KEEP:-}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cat > "$WORK/rampart.toml" <<EOF
[server]
bind = "127.0.0.1:0"
admin_bind = "127.0.0.1:0"
data_dir = "$WORK/data"

[database]
url = "sqlite://$WORK/data/rampart.db"

[auth]
# Longer than the whole run, so expiry is not what ends a token.
access_token_ttl = "2h"

[auth.password_hash]
memory_kib = 64
iterations = 1
parallelism = 1
max_concurrent = 4

[defense]
enabled = false

[rate_limit.global]
limit = 10000000
[rate_limit.login]
limit = 10000000
[rate_limit.api]
limit = 10000000
[rate_limit.password_reset]
limit = 10000000

[log]
format = "json"
EOF
mkdir -p "$WORK/data"

log "seed"
export ST_ADMIN_EMAIL="admin@example.com"
export ST_ADMIN_PASSWORD="quiet lantern over grape fields"
# `user create` prints "created ROLE EMAIL (ID)"; hooks.py needs both ids.
created_id() { sed -n 's/^created .* (\(.*\))$/\1/p' | tail -n 1; }
ST_ADMIN_ID=$(RAMPART_PASSWORD="$ST_ADMIN_PASSWORD" "$ST_BINARY" user create --config "$WORK/rampart.toml" \
  --email "$ST_ADMIN_EMAIL" --name "Ada Admin" --role admin | created_id)
ST_USER_ID=$(RAMPART_PASSWORD="seven copper kites drifting south" "$ST_BINARY" user create \
  --config "$WORK/rampart.toml" --email user@example.com --name "Uma User" --role user --department sales | created_id)
[ -n "$ST_ADMIN_ID" ] && [ -n "$ST_USER_ID" ] || { echo "could not seed the users"; exit 1; }
export ST_ADMIN_ID ST_USER_ID
echo "admin $ST_ADMIN_ID, user $ST_USER_ID"

log "server"
"$ST_BINARY" serve --config "$WORK/rampart.toml" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$WORK/server.log" | grep -o '[0-9]*$' || true)
  [ -n "$PORT" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; echo "the server did not start"; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$WORK/server.log"; echo "the server did not report its port"; exit 1; }
BASE="http://127.0.0.1:$PORT"
echo "rampart (pid $SERVER_PID) on $BASE"

# One sign-in by hand: a wrong seed fails here, with a clear message,
# rather than as a run where every request is a guest's.
python3 - "$BASE" <<'PY'
import json, os, sys, urllib.request
body = json.dumps({"email": os.environ["ST_ADMIN_EMAIL"], "password": os.environ["ST_ADMIN_PASSWORD"]}).encode()
request = urllib.request.Request(sys.argv[1] + "/auth/login", data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as response:
    token = json.load(response)["access_token"]
check = urllib.request.Request(sys.argv[1] + "/api/profile", headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(check, timeout=10) as response:
    assert json.load(response)["role"] == "admin"
print("signed in as the seeded admin")
PY

status=0
run() {
  local name="$1"
  shift
  log "$name (seed $SEED, at most $MAX_EXAMPLES examples per operation)"
  SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$PWD/tests/schemathesis" \
    "$VENV/bin/schemathesis" --config-file tests/schemathesis/schemathesis.toml run "$BASE/openapi.json" \
    --seed "$SEED" \
    --max-examples "$MAX_EXAMPLES" \
    --workers 1 \
    --report junit --report-dir "$CARGO_TARGET_DIR/schemathesis-report/$name" \
    "$@" ${ST_ARGS:-} || status=1
}
# Every operation but the two password sign-ins, as the admin.
run signed-in --exclude-operation-id login --exclude-operation-id create_session
# The password sign-ins last: schemathesis tries wrong passwords for the
# emails it has seen (the admin's among them), which the per-email login
# delay answers with 429 for a while, as it should; no sign-in is needed
# after this run.
run sign-in --include-operation-id login --include-operation-id create_session

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "the server died during the run:"
  tail -n 50 "$WORK/server.log"
  status=1
fi
if grep -q '"level":"ERROR"' "$WORK/server.log"; then
  echo "the server logged errors during the run:"
  grep '"level":"ERROR"' "$WORK/server.log" | tail -n 20
  status=1
fi
echo "schemathesis run took $(( $(date +%s) - started )) s, exit status $status"
exit "$status"
