-- Ends a send: the lease goes, and the delivery is done (gone from the queue) or comes back for
-- a retry at its next due time. A delivery dropped meanwhile (its endpoint deleted or
-- disabled) stays gone.
--
-- KEYS[1] the partition's due set   KEYS[2] the endpoint's queue
-- KEYS[3] the endpoint's deliveries KEYS[4] the endpoint's in-flight leases
-- ARGV[1] the endpoint's member in the due set   ARGV[2] delivery id   ARGV[3] concurrency
-- ARGV[4] "done" or "retry"   ARGV[5] next due (Unix ms)   ARGV[6] the delivery, for a retry
--
-- Returns 1, or 0 when the delivery had been dropped.
redis.call('ZREM', KEYS[4], ARGV[2])
local kept = redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1
if kept then
  if ARGV[4] == 'retry' then
    redis.call('HSET', KEYS[3], ARGV[2], ARGV[6])
    redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
  else
    redis.call('HDEL', KEYS[3], ARGV[2])
    redis.call('ZREM', KEYS[2], ARGV[2])
  end
end
reschedule(KEYS[1], KEYS[2], KEYS[4], ARGV[1], tonumber(ARGV[3]))
if kept then
  return 1
end
return 0
