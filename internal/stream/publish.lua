-- Publishes events to channels of one tenant, atomically, in one round trip, counting them
-- against the tenant's publish rate first (rateTake, from the rate limiter's Lua).
--
-- KEYS[1]    the tenant's sequence hash (fields seq, ms, epoch)
-- KEYS[2]    the idempotency key: an Idempotency-Key's, or the request id's
-- KEYS[3]    the tenant's trim marks: channel → newest id trimmed from its history
-- KEYS[4]    the tenant's publish rate count (touched only when ARGV[6] is above 0)
-- KEYS[4+i]  the history stream of event i
-- ARGV[1]    an epoch to store if the tenant has none yet (a fresh counter)
-- ARGV[2]    history window: most events kept per channel
-- ARGV[3]    history window: seconds kept
-- ARGV[4]    the request's fingerprint
-- ARGV[5]    how long KEYS[2] is remembered, in ms (the window for an Idempotency-Key; a
--            minute for a request id, which only guards against the client library's retry)
-- ARGV[6]    the publish rate: most events per window; 0 counts nothing
-- ARGV[7]    the publish rate's window, in ms
-- ARGV[8+4(i-1)] .. ARGV[11+4(i-1)]  event i: channel, pub/sub channel, kind, payload
--
-- Returns "<status> <epoch> <comma-separated ids> <count> <pttl>", one string (which the client
-- reads without building an array), where count and pttl are the rate's (0 0 when ARGV[6] is 0),
-- epoch and ids are empty unless published or a repeat, and status is
--   "ok"        published;
--   "dup"       the key had been seen: the ids are its first call's, and nothing is counted
--               (count and pttl are the window's as it stands);
--   "limited"   over the rate: counted, and nothing published;
--   "mismatch"  the key was used by a request with another fingerprint: nothing counted.
local seqKey, idemKey, trimKey, rateKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxLen = tonumber(ARGV[2])
local maxAgeMs = tonumber(ARGV[3]) * 1000
local fingerprint = ARGV[4]
local rateLimit, ratePeriodMs = tonumber(ARGV[6]), tonumber(ARGV[7])
local n = (#ARGV - 7) / 4

-- A repeat publishes nothing, so it is told first: it must not count against the rate, nor be
-- refused by it.
local prev = redis.call('GET', idemKey)
if prev then
  local fp, ids = string.match(prev, '^([^|]*)|(.*)$')
  if not fp then
    ids = prev -- stored before requests had fingerprints
  elseif fp ~= fingerprint then
    return 'mismatch   0 0'
  end
  local count, pttl = 0, 0
  if rateLimit > 0 then
    count, pttl = ratePeek(rateKey)
  end
  redis.call('HSETNX', seqKey, 'epoch', ARGV[1])
  return table.concat({'dup', redis.call('HGET', seqKey, 'epoch'), ids, count, pttl}, ' ')
end

local count, pttl = 0, 0
if rateLimit > 0 then
  count, pttl = rateTake(rateKey, n, ratePeriodMs)
  if count > rateLimit then
    return table.concat({'limited', '', '', count, pttl}, ' ')
  end
end

local now, seq = clock(seqKey, ARGV[1], n)
local ids = {}
for i = 1, n do
  seq = seq + 1
  local id = now .. '-' .. seq
  local base = 7 + (i - 1) * 4
  append(KEYS[4 + i], trimKey, ARGV[base + 1], ARGV[base + 2], id, ARGV[base + 3], ARGV[base + 4], now, maxLen, maxAgeMs)
  ids[i] = id
end

local joined = table.concat(ids, ',')
redis.call('SET', idemKey, fingerprint .. '|' .. joined, 'PX', tonumber(ARGV[5]))
return table.concat({'ok', redis.call('HGET', seqKey, 'epoch'), joined, count, pttl}, ' ')
