-- wrk script: each request carries the next of the bearer tokens listed one
-- per line in the file named by TOKENS_FILE (forged tokens: the server's
-- real kid and fresh claims, a signature that does not match them).
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
local next_token = 0

request = function()
  next_token = next_token % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[next_token] })
end
