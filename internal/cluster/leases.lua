-- The tenant's connection count (functions in lease.lua): KEYS[1] is its hash.
-- ARGV: op ("acquire", "release" or "renew"), node id, lease in ms, then per op: acquire the
-- cap, renew the node's exact count.
-- acquire returns {1, total after} or {0, total}; release and renew return {1, 0}.
local key, op, node, lease = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if op == 'acquire' then
  return lease_acquire(key, node, lease, tonumber(ARGV[4]))
elseif op == 'release' then
  lease_release(key, node, lease)
else
  lease_renew(key, node, lease, tonumber(ARGV[4]))
end
return {1, 0}
