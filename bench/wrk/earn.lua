-- POST /v1/members/{m}/earn with a new id per request (wrk -s earn.lua; KEY and TAG from the environment)
local key = os.getenv("KEY")
local tag = os.getenv("TAG") or "w"
local n = 0
local tid = 0
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
function response(status, headers, body)
  if status ~= 200 and status ~= 201 then
    errors = (errors or 0) + 1
    if errors < 3 then print("status " .. status .. " " .. body) end
  end
end
