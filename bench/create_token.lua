-- wrk script: POST /api/v1/access_tokens with a new email on every request.
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  prefix = tostring(tid) .. "-" .. tostring(math.random(1, 1e9))
end

request = function()
  counter = counter + 1
  local body = '{"user":{"email":"bench-' .. prefix .. "-" .. counter .. '@load.test"}}'
  return wrk.format("POST", "/api/v1/access_tokens", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("RESELLERD_KEY")}, body)
end
