-- A node instance starts holding a channel (KEYS[1], the channel's holders; ARGV[1] the
-- instance). Returns 1 when the channel had no holder: it is now occupied.
local had = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], '1')
if had == 0 then
  return 1
end
return 0
