-- wrk script: the Netlify reseller login flow, POST /api/v1/access_tokens for the same users
-- over and over (a new token for one of USERS existing emails on every request). EXPIRES_IN, if
-- set, is each token's lifetime in seconds.
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  users = tonumber(os.getenv("USERS") or "100000")
  counter = tid * 7919
  local ttl = os.getenv("EXPIRES_IN")
  extra = ttl and (',"expires_in":' .. ttl) or ""
end

request = function()
  counter = counter + 1
  local body = '{"user":{"email":"loop-' .. (counter % users) .. '@load.test"}' .. extra .. '}'
  return wrk.format("POST", "/api/v1/access_tokens", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("RESELLERD_KEY")}, body)
end
