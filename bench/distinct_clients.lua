-- wrk script for bench/memory.sh: every request from another client
-- (X-Forwarded-For from a trusted proxy), cycling through exactly
-- 1,000,000 addresses, so the limiter ends up holding 1,000,000 keys.
local n = 0
request = function()
  n = (n + 1) % 1000000
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/no-such-page", { ["X-Forwarded-For"] = ip })
end
