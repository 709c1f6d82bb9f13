-- Reads a presence channel's members. KEYS: pz, pm. ARGV: the most members to return.
-- Returns {member count, then sub, joined (Unix ms), "<sessions> <info>" of each, by joined
-- time then sub}.
local pz, pm, limit = KEYS[1], KEYS[2], tonumber(ARGV[1])
local out = {redis.call('ZCARD', pz)}
local subs = redis.call('ZRANGE', pz, 0, limit - 1, 'WITHSCORES')
for i = 1, #subs, 2 do
  out[#out + 1] = subs[i]
  out[#out + 1] = subs[i + 1]
  out[#out + 1] = redis.call('HGET', pm, subs[i]) or '0 null'
end
return out
