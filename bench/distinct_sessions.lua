-- wrk script for bench/memory.sh: first signs in SESSIONS times (each a
-- new server-side session of the bench user), keeping every session
-- cookie; then reads /api/profile cycling through all of them, so the
-- server sees that many distinct live sessions.
local sessions = tonumber(os.getenv("SESSIONS") or "100000")
local email = os.getenv("BENCH_EMAIL")
local password = os.getenv("BENCH_PASSWORD")
local cookies = {}
local asked = 0
local next_read = 0
local login = string.format('{"email":"%s","password":"%s"}', email, password)

request = function()
  if asked < sessions then
    asked = asked + 1
    return wrk.format("POST", "/auth/session", { ["Content-Type"] = "application/json" }, login)
  end
  if #cookies == 0 then
    return wrk.format("GET", "/health")
  end
  next_read = next_read % #cookies + 1
  return wrk.format("GET", "/api/profile", { ["Cookie"] = cookies[next_read] })
end

response = function(status, headers, body)
  local set = headers["Set-Cookie"] or headers["set-cookie"]
  if set then
    local session = string.match(set, "(rampart_session=[^;]+)")
    if session then
      cookies[#cookies + 1] = session
    end
  end
end
