-- Appends a job or workflow update to its partition of the update stream, stamped with the
-- next sequence number of that job or workflow, so that workers can apply a job's updates in
-- the order they were accepted whichever worker takes which.
--
-- KEYS[1] the job's or workflow's counter   KEYS[2] the partition's stream
-- ARGV[1] the counter's time to live (ms)   ARGV[2] the stream's approximate cap
-- ARGV[3..] the entry's fields as name, value pairs (without seq)
--
-- Returns {entry id, seq}.
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local fields = {'seq', seq}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
return {id, seq}
