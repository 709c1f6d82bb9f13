-- Counts k more sessions of sub on a presence channel, held by holder.
--
-- KEYS: pl, pn (the holder's), pcz, pmc, pm, pz (the channel's)
-- ARGV: holder, lease ms, create ("1": the holder's first call, which starts its lease), channel,
--       sub, info JSON, k, the channel's pub/sub name, the most members that still get events
--
-- Returns {1, sessions of the member now}, or {0, 0} when the holder's lease has ended or is
-- unknown (without create): the holder must hand its members to a new one.
local pl, pn, idx, pm, pz = KEYS[1], KEYS[2], channelIndex(KEYS[3], KEYS[4]), KEYS[5], KEYS[6]
local holder, lease, create = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local channel, sub, info, k = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local pubsub, max = ARGV[8], tonumber(ARGV[9])
local now = nowMs()

local live = alive(pl, holder, now)
if live == nil and create then
  redis.call('HSET', pl, holder, now + lease)
elseif not live then
  return {0, 0}
end
redis.call('HINCRBY', pn, channel .. '\n' .. sub, k)
return {1, add(pm, pz, idx, channel, sub, info, k, now, pubsub, max)}
