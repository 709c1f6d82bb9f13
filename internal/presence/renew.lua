-- Extends a holder's lease. KEYS: pl. ARGV: holder, lease ms.
-- Returns 1, or 0 when the lease had ended or is unknown: the holder must hand its members to
-- a new one (what it held is left to the reaper).
local pl, holder, lease = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now = nowMs()
if not alive(pl, holder, now) then
  return 0
end
redis.call('HSET', pl, holder, now + lease)
return 1
