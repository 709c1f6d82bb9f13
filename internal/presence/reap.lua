-- Takes back what a holder whose lease ended held, a batch of entries at a time: each entry's
-- sessions leave their member, and a member left with none leaves the channel (an event for
-- its subscribers). When the holder holds nothing more its lease is forgotten.
--
-- KEYS: pl, pn (the holder's), pcz, pmc, then for each entry i: pm_i, pz_i (its channel's)
-- ARGV: holder, the most members that still get events, then for each entry i: channel_i,
--       sub_i, the channel's pub/sub name
--
-- Returns {"alive"} when the lease runs (renewed meanwhile: nothing is touched), else
-- {"more" | "done", then channel, sub, info of each member that left}.
local pl, pn, idx, holder, max = KEYS[1], KEYS[2], channelIndex(KEYS[3], KEYS[4]), ARGV[1], tonumber(ARGV[2])

if alive(pl, holder, nowMs()) then
  return {'alive'}
end
local out = {'more'}
for i = 1, (#ARGV - 2) / 3 do
  local channel, sub, pubsub = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  local field = channel .. '\n' .. sub
  local held = tonumber(redis.call('HGET', pn, field) or '0')
  redis.call('HDEL', pn, field)
  if held > 0 then
    local _, info = drop(KEYS[3 + 2 * i], KEYS[4 + 2 * i], idx, channel, sub, held, pubsub, max)
    if info then
      out[#out + 1] = channel
      out[#out + 1] = sub
      out[#out + 1] = info
    end
  end
end
if redis.call('HLEN', pn) == 0 then
  redis.call('HDEL', pl, holder)
  out[1] = 'done'
end
return out
