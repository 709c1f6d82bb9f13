-- Marks an update that will never apply (dead-lettered) as done in its job's sequence, so that
-- the updates after it do not wait for it.
-- KEYS[1] the state hash   ARGV[1] the update's sequence number
local seq = tonumber(ARGV[1])
local applied = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if applied == seq - 1 then
  redis.call('HSET', KEYS[1], 'seq', seq)
  return 1
end
return 0
