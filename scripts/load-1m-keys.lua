-- 1,000,000 distinct keys: each of 2 threads writes its own 500,000 (12-char base64 keys).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local value = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWkFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3g="
local next_id = 0
function setup(thread) thread:set("tid", next_id); next_id = next_id + 1 end
local n = 0
request = function()
  local key = string.format("k%d%010d", tid, n % 500000)
  n = n + 1
  return wrk.format(nil, "/v3/kv/put", nil, '{"key":"' .. key .. '","value":"' .. value .. '"}')
end
