-- Publishes events to channels of one tenant, atomically, in one round trip.
--
-- KEYS[1]    the tenant's sequence hash (fields seq, ms, epoch)
-- KEYS[2]    the idempotency key (read and written only when ARGV[4] is "1")
-- KEYS[3]    the tenant's trim marks: channel → newest id trimmed from its history
-- KEYS[3+i]  the history stream of event i
-- ARGV[1]    an epoch to store if the tenant has none yet (a fresh counter)
-- ARGV[2]    history window: most events kept per channel
-- ARGV[3]    history window: seconds kept
-- ARGV[4]    the request's fingerprint (with an Idempotency-Key or a request id)
-- ARGV[5]    how long KEYS[2] is remembered, in ms (the window for an Idempotency-Key; a
--            minute for a request id, which only guards against the client library's retry)
-- ARGV[6+4(i-1)] .. ARGV[9+4(i-1)]  event i: channel, pub/sub channel, kind, payload
--
-- Returns {"ok" | "dup", epoch, comma-separated ids}, or {"mismatch"} when the key was used
-- by a request with another fingerprint.
local seqKey, idemKey, trimKey = KEYS[1], KEYS[2], KEYS[3]
local maxLen = tonumber(ARGV[2])
local maxAgeMs = tonumber(ARGV[3]) * 1000
local fingerprint = ARGV[4]
local useIdem = fingerprint ~= ''

if useIdem then
  local prev = redis.call('GET', idemKey)
  if prev then
    local fp, ids = string.match(prev, '^([^|]*)|(.*)$')
    if not fp then
      ids = prev -- stored before requests had fingerprints
    elseif fp ~= fingerprint then
      return {'mismatch', '', ''}
    end
    redis.call('HSETNX', seqKey, 'epoch', ARGV[1])
    return {'dup', redis.call('HGET', seqKey, 'epoch'), ids}
  end
end

local n = (#ARGV - 5) / 4
local now, seq = clock(seqKey, ARGV[1], n)
local ids = {}
for i = 1, n do
  seq = seq + 1
  local id = now .. '-' .. seq
  local base = 5 + (i - 1) * 4
  append(KEYS[3 + i], trimKey, ARGV[base + 1], ARGV[base + 2], id, ARGV[base + 3], ARGV[base + 4], now, maxLen, maxAgeMs)
  ids[i] = id
end

local joined = table.concat(ids, ',')
if useIdem then
  redis.call('SET', idemKey, fingerprint .. '|' .. joined, 'PX', tonumber(ARGV[5]))
end
return {'ok', redis.call('HGET', seqKey, 'epoch'), joined}
