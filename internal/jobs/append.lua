-- Appends a job or workflow update to its partition of the update stream, stamped with the
-- next sequence number of that job or workflow, so that workers can apply a job's updates in
-- the order they were accepted whichever worker takes which.
--
-- KEYS[1] the job's or workflow's counter   KEYS[2] the partition's stream
-- KEYS[3] the job's latest update ("<seq> <entry id>")
-- KEYS[4] the idempotency record of this request (an Idempotency-Key or a request id)
-- ARGV[1] the counter's time to live (ms)   ARGV[2] the most entries the stream may hold
-- ARGV[3] the request's fingerprint         ARGV[4] how long KEYS[4] is remembered (ms)
--
-- Nothing accepted is ever trimmed away: a full partition refuses the update (an error
-- starting with FULL) instead, and workers trim only what every group has acknowledged.
-- ARGV[5..] the entry's fields as name, value pairs (without seq and prev)
--
-- The entry carries "prev", the entry id of the job's previous update, so that a worker holding
-- it can tell whether that predecessor is still pending with some worker (and wait for it) or
-- can never come (and go ahead without it).
--
-- Returns {"ok" | "dup", entry id, seq}: "dup" when this request was appended before (a retry,
-- by the client with its Idempotency-Key or by the Redis client after a lost answer), with the
-- first append's entry; or {"mismatch"} when the key came with another update.
local idem = redis.call('GET', KEYS[4])
if idem then
  local fp, id, seq = string.match(idem, '^([^|]*)|([^|]*)|(%d+)$')
  if fp ~= ARGV[3] then
    return {'mismatch', '', ''}
  end
  return {'dup', id, seq}
end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then
  return redis.error_reply('FULL the update stream holds its most entries: workers are behind')
end
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local fields = {'seq', seq}
-- The latest update recorded is the predecessor only if it is seq - 1: an api of an earlier
-- version appends without recording, and then the entry has no prev.
local last = redis.call('GET', KEYS[3])
if last then
  local lastSeq, lastID = string.match(last, '^(%d+) (.+)$')
  if tonumber(lastSeq) == seq - 1 then
    fields[#fields + 1] = 'prev'
    fields[#fields + 1] = lastID
  end
end
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('SET', KEYS[3], seq .. ' ' .. id, 'PX', ARGV[1])
redis.call('SET', KEYS[4], ARGV[3] .. '|' .. id .. '|' .. seq, 'PX', ARGV[4])
return {'ok', id, tostring(seq)}
