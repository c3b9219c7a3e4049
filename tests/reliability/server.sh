# Sourced by the scripts in tests/reliability/: starts a release server on
# SQLite in $WORK with every rate-limit group out of the way except
# `limited` (1 request an hour on /limited, so its floods are 429s), active
# defence off, and a bootstrap admin whose password is $ADMIN_PASSWORD.
#
#   start_server BINARY PORT ADMIN_PORT ADMIN_EMAIL [EXTRA_SERVER_KEYS]
#
# Sets PID and BASE once /health answers.
ADMIN_PASSWORD="quiet lantern over grape fields"

start_server() {
  local binary=$1 port=$2 admin_port=$3 admin_email=$4 extra=${5:-}
  cat > "$WORK/rampart.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
admin_bind = "127.0.0.1:$admin_port"
$extra
[rate_limit.global]
limit = 1000000000
[rate_limit.api]
limit = 1000000000
[rate_limit.login]
limit = 1000000000
[rate_limit.limited]
limit = 1
window = "1h"
paths = ["/limited"]
[defense]
enabled = false
[bootstrap]
admin_email = "$admin_email"
TOML
  (cd "$WORK" && RAMPART_BOOTSTRAP__ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    exec "$binary" serve --config "$WORK/rampart.toml" > "$WORK/server.log" 2>&1) &
  PID=$!
  BASE="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.1; done
}
