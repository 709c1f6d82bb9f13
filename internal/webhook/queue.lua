-- Shared by the scripts that change one endpoint's queue in its partition: they keep the
-- partition's due set telling when the endpoint is next worth a scheduler's look.

-- reschedule puts the endpoint in the due set at its earliest queued delivery or, when every
-- slot is taken, no earlier than the first lease to end (a finished send reschedules it
-- sooner); without deliveries it leaves the set.
local function reschedule(due, queue, busy, member, limit)
  local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  if #head == 0 then
    redis.call('ZREM', due, member)
    return
  end
  local at = tonumber(head[2])
  if redis.call('ZCARD', busy) >= limit then
    local first = redis.call('ZRANGE', busy, 0, 0, 'WITHSCORES')
    if #first > 0 and tonumber(first[2]) > at then
      at = tonumber(first[2])
    end
  end
  redis.call('ZADD', due, at, member)
end
