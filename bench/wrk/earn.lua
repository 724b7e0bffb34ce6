-- Durable earns, each with a new id (wrk -s earn.lua; KEY and TAG from the environment): one
-- per request on POST /v1/members/{m}/earn, or, with BATCH=N, N per request on the batch path
-- (POST /v1/earns, answered 200 with a result per earn). `tid` is a global that `setup` sets in
-- each thread's own Lua state, so that the threads' ids differ; wrk counts the responses that
-- are not 2xx itself. MEMBERS (default 1,000,000): the earns go to members m0 .. m<MEMBERS - 1>,
-- spread.
local key = os.getenv("KEY")
local tag = os.getenv("TAG") or "w"
local batch = tonumber(os.getenv("BATCH") or "0")
local members = tonumber(os.getenv("MEMBERS") or "1000000")
local headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}
local n = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
-- The next earn's member and id.
local function next_earn()
  n = n + 1
  return (n * 104729 + tid * 7919) % members, string.format("%s-%d-%d", tag, tid, n)
end
function request()
  if batch == 0 then
    local m, id = next_earn()
    return wrk.format("POST", "/v1/members/m" .. m .. "/earn", headers,
      string.format('{"id":"%s","points":1}', id))
  end
  local parts = {}
  for j = 1, batch do
    local m, id = next_earn()
    parts[j] = string.format('{"member":"m%d","id":"%s","points":1}', m, id)
  end
  return wrk.format("POST", "/v1/earns", headers, '{"earns":[' .. table.concat(parts, ",") .. ']}')
end
