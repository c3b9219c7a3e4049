-- wrk script for tests/reliability/soak.sh: a mix of what an API sees.
-- Each thread (run it with one connection per thread: the request and its
-- response alternate) cycles through: sign in (1 of 10), read the posts
-- (4), write a post (2), rotate its own refresh token (2), and one request
-- over a rate limit (1, answered 429). Statuses are counted per thread and
-- summed at the end into one JSON line.
local email = os.getenv("SOAK_EMAIL")
local password = os.getenv("SOAK_PASSWORD")
local login_body = string.format('{"email":"%s","password":"%s"}', email, password)
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  counts = {}
  step = 0
  access = nil
  refresh = nil
  last = nil
end

request = function()
  step = step % 10 + 1
  local json = { ["Content-Type"] = "application/json" }
  if step == 1 or access == nil then
    last = "login"
    return wrk.format("POST", "/auth/login", json, login_body)
  elseif step <= 5 then
    last = "read"
    return wrk.format("GET", "/api/posts")
  elseif step <= 7 then
    last = "write"
    return wrk.format("POST", "/api/posts",
      { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. access },
      '{"title":"soak","body":"a post written during the soak"}')
  elseif step <= 9 then
    last = "refresh"
    return wrk.format("POST", "/auth/refresh", json, string.format('{"refresh_token":"%s"}', refresh))
  else
    last = "limited"
    return wrk.format("GET", "/limited")
  end
end

response = function(status, headers, body)
  local key = last .. ":" .. status
  counts[key] = (counts[key] or 0) + 1
  if (last == "refresh" or last == "login") and status == 200 then
    local token = string.match(body, '"access_token":"([^"]+)"')
    local next_refresh = string.match(body, '"refresh_token":"([^"]+)"')
    if token then access = token end
    if next_refresh then refresh = next_refresh end
  end
end

done = function(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("counts")
    for key, n in pairs(counts) do
      total[key] = (total[key] or 0) + n
    end
  end
  local parts = {}
  for key, n in pairs(total) do
    table.insert(parts, string.format('"%s":%d', key, n))
  end
  io.write(string.format(
    'SOAK_JSON {"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"socket_errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ",")))
end
