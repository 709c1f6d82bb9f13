-- Records one row of an endpoint's delivery history and what follows from it: a success ends
-- the endpoint's run of dead deliveries; a dead delivery is kept (for a while, a bounded number
-- of them) and, unless it was never attempted, extends the run, which disables the endpoint
-- when it reaches the threshold. Nothing is recorded for an endpoint that no longer exists.
--
-- KEYS[1] the tenant's endpoints   KEYS[2] the endpoint's attempt rows   KEYS[3] their index
-- KEYS[4] its dead deliveries      KEYS[5] their index                   KEYS[6] the tenant's dead runs
-- ARGV[1] endpoint id   ARGV[2] row key   ARGV[3] row   ARGV[4] now (Unix ms)   ARGV[5] rows kept
-- ARGV[6] kind: pending (written only if the row is not there yet) | succeeded | failed | dead |
--         overflow (dead without an attempt)
-- ARGV[7] delivery id   ARGV[8] the dead delivery   ARGV[9] dead retention (ms)
-- ARGV[10] dead deliveries kept   ARGV[11] dead in a row that disable the endpoint
--
-- Returns {recorded (0|1), disabled now (0|1)}.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {0, 0}
end
local kind, now = ARGV[6], tonumber(ARGV[4])

local function trim(index, hash, keep)
  local n = redis.call('ZCARD', index)
  if n > keep then
    local old = redis.call('ZRANGE', index, 0, n - keep - 1)
    redis.call('ZREMRANGEBYRANK', index, 0, n - keep - 1)
    redis.call('HDEL', hash, unpack(old))
  end
end

if kind == 'pending' then
  if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then
    return {0, 0}
  end
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
redis.call('ZADD', KEYS[3], now, ARGV[2])
trim(KEYS[3], KEYS[2], tonumber(ARGV[5]))

if kind == 'succeeded' then
  redis.call('HDEL', KEYS[6], ARGV[1])
  return {1, 0}
end
if kind ~= 'dead' and kind ~= 'overflow' then
  return {1, 0}
end

redis.call('HSET', KEYS[4], ARGV[7], ARGV[8])
redis.call('ZADD', KEYS[5], now, ARGV[7])
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[9]), 'LIMIT', 0, 100)
if #expired > 0 then
  redis.call('ZREM', KEYS[5], unpack(expired))
  redis.call('HDEL', KEYS[4], unpack(expired))
end
trim(KEYS[5], KEYS[4], tonumber(ARGV[10]))
if kind == 'overflow' then
  return {1, 0}
end

local run = redis.call('HINCRBY', KEYS[6], ARGV[1], 1)
if run < tonumber(ARGV[11]) then
  return {1, 0}
end
local ep = cjson.decode(raw)
if ep.disabled then
  return {1, 0}
end
ep.disabled = true
ep.disabled_reason = 'failing'
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(ep))
return {1, 1}
