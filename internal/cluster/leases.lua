-- The tenant's connection count: KEYS[1] is its hash of node id -> "<count>:<lease expiry ms>".
-- ARGV: op ("acquire", "release" or "renew"), node id, lease in ms, then per op: acquire the
-- cap, renew the node's exact count. Leases that ended belong to dead nodes and are removed.
-- acquire returns {1, total after} or {0, total}; release and renew return {1, 0}.
local key, op, node, lease = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function parse(v)
  local c, e = string.match(v or '', '^(%-?%d+):(%d+)$')
  return tonumber(c) or 0, tonumber(e) or 0
end

local function set(count)
  if count <= 0 then
    redis.call('HDEL', key, node)
  else
    redis.call('HSET', key, node, count .. ':' .. (now + lease))
    redis.call('PEXPIRE', key, lease)
  end
end

if op == 'acquire' then
  local max = tonumber(ARGV[4])
  local total, mine = 0, 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local c, e = parse(all[i + 1])
    if e <= now then
      redis.call('HDEL', key, all[i])
    else
      total = total + c
      if all[i] == node then mine = c end
    end
  end
  if total >= max then return {0, total} end
  set(mine + 1)
  return {1, total + 1}
elseif op == 'release' then
  local c, e = parse(redis.call('HGET', key, node))
  if e > now then set(c - 1) end
  return {1, 0}
else -- renew
  set(tonumber(ARGV[4]))
  return {1, 0}
end
