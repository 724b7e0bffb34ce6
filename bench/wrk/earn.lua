-- POST /v1/members/{m}/earn with a new id per request (wrk -s earn.lua; KEY and TAG from the
-- environment). `tid` is a global that `setup` sets in each thread's own Lua state, so that
-- the threads' ids differ; wrk counts the responses that are not 2xx itself.
local key = os.getenv("KEY")
local tag = os.getenv("TAG") or "w"
local n = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function request()
  n = n + 1
  local m = (n * 104729 + tid * 7919) % 1000000
  local body = string.format('{"id":"%s-%d-%d","points":1}', tag, tid, n)
  return wrk.format("POST", "/v1/members/m" .. m .. "/earn",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, body)
end
