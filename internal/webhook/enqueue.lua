-- Queues one delivery for an endpoint. Queuing the same delivery again changes nothing.
--
-- KEYS[1] the partition's due set   KEYS[2] the endpoint's queue
-- KEYS[3] the endpoint's deliveries KEYS[4] the endpoint's in-flight leases
-- ARGV[1] the endpoint's member in the due set   ARGV[2] delivery id   ARGV[3] due (Unix ms)
-- ARGV[4] the delivery   ARGV[5] queue cap   ARGV[6] concurrency
--
-- Returns "queued", "dup" or "full".
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  return 'dup'
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return 'full'
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
reschedule(KEYS[1], KEYS[2], KEYS[4], ARGV[1], tonumber(ARGV[6]))
return 'queued'
