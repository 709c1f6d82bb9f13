-- Adds an identity provider unless the tenant has its fill. KEYS[1] is the tenant's hash of
-- provider id -> record; ARGV: id, record, the most a tenant may have. Returns 1 if added, 0
-- if the tenant is at its limit.
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
