-- Publishes events to channels of one tenant, atomically, in one round trip.
--
-- KEYS[1]    the tenant's sequence hash (fields seq, ms, epoch)
-- KEYS[2]    the idempotency key (read and written only when ARGV[4] is "1")
-- KEYS[2+i]  the history stream of event i
-- ARGV[1]    an epoch to store if the tenant has none yet (a fresh counter)
-- ARGV[2]    history window: most events kept per channel
-- ARGV[3]    history window: seconds kept
-- ARGV[4]    "1" when an Idempotency-Key was given
-- ARGV[5+3(i-1)], ARGV[6+3(i-1)], ARGV[7+3(i-1)]  event i: pub/sub channel, kind, payload
--
-- Returns {"ok" | "dup", epoch, comma-separated ids}.
-- Ids are "<ms>-<seq>": seq is the tenant's own counter, so ids are unique and ordered across all
-- of a tenant's channels, and each channel's stream only ever grows.
local seqKey, idemKey = KEYS[1], KEYS[2]
local maxLen = tonumber(ARGV[2])
local maxAgeMs = tonumber(ARGV[3]) * 1000
local useIdem = ARGV[4] == '1'

redis.call('HSETNX', seqKey, 'epoch', ARGV[1])
local epoch = redis.call('HGET', seqKey, 'epoch')

if useIdem then
  local prev = redis.call('GET', idemKey)
  if prev then
    return {'dup', epoch, prev}
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', seqKey, 'ms') or '0')
if now < last then
  now = last -- the clock went back: ids must still grow
end

local n = (#ARGV - 4) / 3
local seq = redis.call('HINCRBY', seqKey, 'seq', n) - n
local ids = {}
for i = 1, n do
  seq = seq + 1
  local id = now .. '-' .. seq
  local stream = KEYS[2 + i]
  local base = 4 + (i - 1) * 3
  local kind, payload = ARGV[base + 2], ARGV[base + 3]
  redis.call('XADD', stream, 'MAXLEN', maxLen, id, 'k', kind, 'd', payload)
  redis.call('XTRIM', stream, 'MINID', now - maxAgeMs)
  redis.call('PEXPIRE', stream, maxAgeMs + 60000)
  redis.call('PUBLISH', ARGV[base + 1], id .. '\n' .. kind .. '\n' .. payload)
  ids[i] = id
end
redis.call('HSET', seqKey, 'ms', now)

local joined = table.concat(ids, ',')
if useIdem then
  redis.call('SET', idemKey, joined, 'PX', maxAgeMs)
end
return {'ok', epoch, joined}
