-- A tenant's position at one instant (see History.Snapshot), as a function other scripts call
-- too (the stream admission in internal/cluster). k and a are its own keys and arguments:
--
-- k: the tenant's sequence hash, its trim marks, then n history streams, then m state hashes
-- a: an epoch to store if the tenant has none yet, n, m, then the n channel names (checked for a
--    gap: none without a cursor)
--
-- Returns {{epoch, ms, seq}, {{event, eid} per state hash}, {trim mark per channel},
-- {1 or 0: the channel's history exists}}.
local function snapshot(k, a)
  local seqKey, trimKey = k[1], k[2]
  local n, m = tonumber(a[2]), tonumber(a[3])
  redis.call('HSETNX', seqKey, 'epoch', a[1])
  local pos = redis.call('HMGET', seqKey, 'epoch', 'ms', 'seq')
  local states, trimmed, exists = {}, {}, {}
  for i = 1, m do
    states[i] = redis.call('HMGET', k[2 + n + i], 'event', 'eid')
  end
  for i = 1, n do
    trimmed[i] = redis.call('HGET', trimKey, a[3 + i])
    exists[i] = redis.call('EXISTS', k[2 + i])
  end
  return {pos, states, trimmed, exists}
end
