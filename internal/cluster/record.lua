-- Conditional writes of a session record (a hash), as a function other scripts call too
-- (records.lua, admit.lua), so that a sessions-API change and a resume on another node cannot
-- overwrite each other: every write bumps the field v, and a write says what it last read.
--
-- record_write(key, op, version, node, ttl, channels, sub, owner, connected_at):
--   op        "save" (the whole record: sub, owner node, connected_at too) or "channels"
--   version   the version the writer read ("" = any; for save, "0" for a new session)
--   node      the node the record must name ("" = any; channels only)
--   ttl       time to live, ms
--   channels  JSON
-- Returns the new version, -1 when the record changed since it was read (or names another
-- node), -2 when there is no record (channels only). Nothing is written unless it succeeds.
local function record_write(key, op, version, node, ttl, channels, sub, owner, connected_at)
  local exists = redis.call('EXISTS', key) == 1
  if op == 'channels' and not exists then
    return -2
  end
  local v = tonumber(redis.call('HGET', key, 'v') or '0')
  if version ~= '' and tonumber(version) ~= v then
    return -1
  end
  if node ~= '' and redis.call('HGET', key, 'node') ~= node then
    return -1
  end
  v = v + 1
  if op == 'save' then
    redis.call('HSET', key, 'sub', sub, 'node', owner, 'connected_at', connected_at, 'channels', channels, 'v', v)
  else
    redis.call('HSET', key, 'channels', channels, 'v', v)
  end
  redis.call('PEXPIRE', key, ttl)
  return v
end
