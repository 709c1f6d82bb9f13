-- Appends a job or workflow update to its partition of the update stream, stamped with the
-- next sequence number of that job or workflow, so that workers can apply a job's updates in
-- the order they were accepted whichever worker takes which.
--
-- KEYS[1] the job's or workflow's counter   KEYS[2] the partition's stream
-- ARGV[1] the counter's time to live (ms)   ARGV[2] the most entries the stream may hold
--
-- Nothing accepted is ever trimmed away: a full partition refuses the update (an error
-- starting with FULL) instead, and workers trim only what every group has acknowledged.
-- ARGV[3..] the entry's fields as name, value pairs (without seq)
--
-- Returns {entry id, seq}.
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then
  return redis.error_reply('FULL the update stream holds its most entries: workers are behind')
end
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local fields = {'seq', seq}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
return {id, seq}
