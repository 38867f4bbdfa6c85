-- wrk script: POST /api/v1/access_tokens with a new email on every request, spread over many
-- resellers: each request takes the next API key from the file named by RESELLERD_KEYS (one key
-- per line), so every reseller gets the same number of users.
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  math.randomseed(os.time() * 100 + tid)
  prefix = tostring(tid) .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
  keys = {}
  for line in io.lines(os.getenv("RESELLERD_KEYS")) do
    keys[#keys + 1] = line
  end
  counter = tid
end

request = function()
  counter = counter + 1
  local key = keys[(counter % #keys) + 1]
  local body = '{"user":{"email":"spread-' .. prefix .. "-" .. counter .. '@load.test"}}'
  return wrk.format("POST", "/api/v1/access_tokens", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end
