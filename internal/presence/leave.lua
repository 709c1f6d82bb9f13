-- Counts one session of sub on a presence channel fewer, held by holder.
--
-- KEYS: pl, pn (the holder's), pcz, pmc, pm, pz (the channel's)
-- ARGV: holder, channel, sub, the channel's pub/sub name, the most members that still get events
--
-- Returns {1, sessions of the member now, info when it left}, or {0, 0} when the holder's
-- lease has ended: what it held is left to the reaper.
local pl, pn, idx, pm, pz = KEYS[1], KEYS[2], channelIndex(KEYS[3], KEYS[4]), KEYS[5], KEYS[6]
local holder, channel, sub, pubsub, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

if not alive(pl, holder, nowMs()) then
  return {0, 0}
end
local field = channel .. '\n' .. sub
local held = redis.call('HINCRBY', pn, field, -1)
if held <= 0 then
  redis.call('HDEL', pn, field)
end
if held < 0 then
  return {1, -1} -- the holder never counted it here: nothing to take back
end
local n, info = drop(pm, pz, idx, channel, sub, 1, pubsub, max)
if info then
  return {1, n, info}
end
return {1, n}
