-- Takes up to ARGV[5] due deliveries of one endpoint to send, as far as its concurrency allows:
-- each gets a lease, and its place in the queue moves to the lease's end, so that a worker that
-- dies mid-send leaves it to be sent again then.
--
-- KEYS[1] the partition's due set   KEYS[2] the endpoint's queue
-- KEYS[3] the endpoint's deliveries KEYS[4] the endpoint's in-flight leases
-- ARGV[1] the endpoint's member in the due set   ARGV[2] now (Unix ms)   ARGV[3] lease (ms)
-- ARGV[4] concurrency   ARGV[5] how many the caller can take
--
-- Returns the deliveries taken.
local now, lease, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local room = math.min(limit - redis.call('ZCARD', KEYS[4]), tonumber(ARGV[5]))
local out = {}
if room > 0 then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, room)
  for _, id in ipairs(ids) do
    local d = redis.call('HGET', KEYS[3], id)
    if d then
      redis.call('ZADD', KEYS[2], now + lease, id)
      redis.call('ZADD', KEYS[4], now + lease, id)
      out[#out + 1] = d
    else
      redis.call('ZREM', KEYS[2], id)
    end
  end
end
reschedule(KEYS[1], KEYS[2], KEYS[4], ARGV[1], limit)
return out
