-- wrk script: POST /api/v1/access_tokens with a new email on every request.
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  -- LuaJIT's math.random starts from the same seed in every process: without the clock, each wrk
  -- run would send the previous run's emails again (new tokens for old users, not new users).
  math.randomseed(os.time() * 100 + tid)
  -- WRK_INSTANCE tells apart wrk processes started in the same second (bench/engines.sh's two nodes).
  prefix = (os.getenv("WRK_INSTANCE") or "") .. tostring(tid) .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
end

request = function()
  counter = counter + 1
  local body = '{"user":{"email":"bench-' .. prefix .. "-" .. counter .. '@load.test"}}'
  return wrk.format("POST", "/api/v1/access_tokens", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("RESELLERD_KEY")}, body)
end
