-- Publishes events to channels of one tenant, atomically, in one round trip.
--
-- KEYS[1]    the tenant's sequence hash (fields seq, ms, epoch)
-- KEYS[2]    the idempotency key (read and written only when ARGV[4] is "1")
-- KEYS[3]    the tenant's trim marks: channel → newest id trimmed from its history
-- KEYS[3+i]  the history stream of event i
-- ARGV[1]    an epoch to store if the tenant has none yet (a fresh counter)
-- ARGV[2]    history window: most events kept per channel
-- ARGV[3]    history window: seconds kept
-- ARGV[4]    "1" when an Idempotency-Key was given
-- ARGV[5+4(i-1)] .. ARGV[8+4(i-1)]  event i: channel, pub/sub channel, kind, payload
--
-- Returns {"ok" | "dup", epoch, comma-separated ids}.
-- Ids are "<ms>-<seq>": seq is the tenant's own counter, so ids are unique and ordered across all
-- of a tenant's channels, and each channel's stream only ever grows.
local seqKey, idemKey, trimKey = KEYS[1], KEYS[2], KEYS[3]
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

-- trim removes what falls out of a channel's window and remembers the newest id it removed,
-- so that a resume from before it knows it cannot be replayed.
local function trim(stream, channel, minID)
  local newest = nil
  local over = redis.call('XLEN', stream) - maxLen
  if over > 0 then
    local gone = redis.call('XRANGE', stream, '-', '+', 'COUNT', over)
    newest = gone[#gone][1]
  end
  local old = redis.call('XREVRANGE', stream, '(' .. minID, '-', 'COUNT', 1)
  if #old > 0 then
    newest = old[1][1] -- ids only grow: the newest below minID is past anything counted off
  end
  if newest then
    redis.call('XTRIM', stream, 'MAXLEN', maxLen)
    redis.call('XTRIM', stream, 'MINID', minID)
    redis.call('HSET', trimKey, channel, newest)
    redis.call('PEXPIRE', trimKey, 2 * maxAgeMs + 60000)
  end
end

local n = (#ARGV - 4) / 4
local seq = redis.call('HINCRBY', seqKey, 'seq', n) - n
local ids = {}
local minID = (now - maxAgeMs) .. '-0'
for i = 1, n do
  seq = seq + 1
  local id = now .. '-' .. seq
  local stream = KEYS[3 + i]
  local base = 4 + (i - 1) * 4
  local channel, pubsub, kind, payload = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  redis.call('XADD', stream, id, 'k', kind, 'd', payload)
  trim(stream, channel, minID)
  redis.call('PEXPIRE', stream, maxAgeMs + 60000)
  redis.call('PUBLISH', pubsub, id .. '\n' .. kind .. '\n' .. payload)
  ids[i] = id
end
redis.call('HSET', seqKey, 'ms', now)

local joined = table.concat(ids, ',')
if useIdem then
  redis.call('SET', idemKey, joined, 'PX', maxAgeMs)
end
return {'ok', epoch, joined}
