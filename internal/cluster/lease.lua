-- The tenant's connection count, as functions other scripts call too (leases.lua, admit.lua).
-- key is the tenant's hash of node id -> "<count>:<lease expiry ms>"; a node's share stops
-- counting when its lease ends, and shares whose lease ended (dead nodes) are removed.

local function lease_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function lease_parse(v)
  local c, e = string.match(v or '', '^(%-?%d+):(%d+)$')
  return tonumber(c) or 0, tonumber(e) or 0
end

local function lease_set(key, node, lease, now, count)
  if count <= 0 then
    redis.call('HDEL', key, node)
  else
    redis.call('HSET', key, node, count .. ':' .. (now + lease))
    redis.call('PEXPIRE', key, lease)
  end
end

-- lease_acquire takes one connection for node if the tenant is under max: {1, total after}
-- or {0, total}.
local function lease_acquire(key, node, lease, max)
  local now = lease_now()
  local total, mine = 0, 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local c, e = lease_parse(all[i + 1])
    if e <= now then
      redis.call('HDEL', key, all[i])
    else
      total = total + c
      if all[i] == node then mine = c end
    end
  end
  if total >= max then return {0, total} end
  lease_set(key, node, lease, now, mine + 1)
  return {1, total + 1}
end

-- lease_release gives one connection of node back.
local function lease_release(key, node, lease)
  local now = lease_now()
  local c, e = lease_parse(redis.call('HGET', key, node))
  if e > now then lease_set(key, node, lease, now, c - 1) end
end

-- lease_renew writes node's exact count and extends its lease.
local function lease_renew(key, node, lease, count)
  lease_set(key, node, lease, lease_now(), count)
end
