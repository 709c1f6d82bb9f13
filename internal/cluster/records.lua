-- Conditional writes of a session record (a hash), so that a sessions-API change and a resume
-- on another node cannot overwrite each other: every write bumps the field v, and a write says
-- what it last read.
--
-- KEYS[1]  the session record
-- ARGV[1]  "save" or "channels"
-- ARGV[2]  the version the writer read ("" = any; for save, "0" for a new session)
-- ARGV[3]  the node the record must name ("" = any; channels only)
-- ARGV[4]  time to live, ms
-- ARGV[5]  channels (JSON)
-- ARGV[6.. ] for save: sub, node, connected_at
--
-- Returns the new version, -1 when the record changed since it was read (or names another
-- node), -2 when there is no record (channels only).
local key = KEYS[1]
local exists = redis.call('EXISTS', key) == 1
if ARGV[1] == 'channels' and not exists then
  return -2
end
local v = tonumber(redis.call('HGET', key, 'v') or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= v then
  return -1
end
if ARGV[3] ~= '' and redis.call('HGET', key, 'node') ~= ARGV[3] then
  return -1
end
v = v + 1
if ARGV[1] == 'save' then
  redis.call('HSET', key, 'sub', ARGV[6], 'node', ARGV[7], 'connected_at', ARGV[8], 'channels', ARGV[5], 'v', v)
else
  redis.call('HSET', key, 'channels', ARGV[5], 'v', v)
end
redis.call('PEXPIRE', key, ARGV[4])
return v
