-- The tenant's connection count (functions in lease.lua): KEYS[1] is its hash.
-- ARGV: op ("release" or "renew"), node id, lease in ms, then for renew the node's exact count.
-- Connections are taken by a stream's admission (admit.lua). Returns {1, 0}.
local key, op, node, lease = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if op == 'release' then
  lease_release(key, node, lease)
else
  lease_renew(key, node, lease, tonumber(ARGV[4]))
end
return {1, 0}
