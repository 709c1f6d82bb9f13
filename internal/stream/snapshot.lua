-- A tenant's position at one instant (see History.Snapshot), as a function other scripts call
-- too (the stream admission in internal/cluster). k and a are its own keys and arguments:
--
-- k: the tenant's sequence hash, its trim marks, then n history streams, then m state hashes
-- a: an epoch to store if the tenant has none yet, "1" to check the n channels for a gap,
--    n, m, then the n channel names
--
-- Returns {{epoch, ms, seq}, {{event, eid} per state hash}, {trim mark per channel},
-- {1 or 0: the channel's history exists}}; the last two are empty without the gap check.
local function snapshot(k, a)
  local seqKey, trimKey = k[1], k[2]
  local n, m = tonumber(a[3]), tonumber(a[4])
  redis.call('HSETNX', seqKey, 'epoch', a[1])
  local pos = redis.call('HMGET', seqKey, 'epoch', 'ms', 'seq')
  local states, trimmed, exists = {}, {}, {}
  for i = 1, m do
    states[i] = redis.call('HMGET', k[2 + n + i], 'event', 'eid')
  end
  if a[2] == '1' then
    for i = 1, n do
      trimmed[i] = redis.call('HGET', trimKey, a[4 + i])
      exists[i] = redis.call('EXISTS', k[2 + i])
    end
  end
  return {pos, states, trimmed, exists}
end
