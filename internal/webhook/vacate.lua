-- A node instance stops holding a channel (KEYS[1], the channel's holders; ARGV[1] the
-- instance). Returns 1 when that was the last holder: the channel is now vacated. Vacating
-- twice returns 1 at most once.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  return 1
end
return 0
