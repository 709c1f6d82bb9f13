-- Adds an endpoint unless the tenant has its maximum already.
--
-- KEYS[1] the tenant's endpoints   ARGV[1] endpoint id   ARGV[2] record   ARGV[3] maximum
--
-- Returns 1, or 0 at the maximum.
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
