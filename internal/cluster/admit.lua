-- Admits a stream in one round trip: counts the connect against the tenant's connect rate,
-- takes one of its connections (lease.lua), saves the session record (record.lua) and reads
-- the tenant's position (snapshot.lua of internal/stream). Nothing is taken or written when the
-- stream is refused.
--
-- KEYS[1]  the tenant's connect-rate counter
-- KEYS[2]  the tenant's connection count
-- KEYS[3]  the session record
-- KEYS[4..] the position's keys
-- ARGV[1..3]  rate: connects counted (1), the limit (0: not counted), the window in ms
-- ARGV[4..6]  lease: node id, lease in ms, max_connections (0: no connection taken)
-- ARGV[7..12] record: "save" (or "" for none), version read ("0": a new session), ttl in ms,
--             channels (JSON), sub, connected_at; the owner is the node of ARGV[4]
-- ARGV[13..] the position's arguments
--
-- Returns {"rate", count, pttl} over the rate; {"full", count, pttl, total} at the cap;
-- {"changed", count, pttl} when the record is not at the version read (nothing counted);
-- {"ok", count, pttl, total, position, version}.
local rateKey, leaseKey, recordKey = KEYS[1], KEYS[2], KEYS[3]
local node, lease, max = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local save = ARGV[7] == 'save'

if save then
  local v = tonumber(redis.call('HGET', recordKey, 'v') or '0')
  if v ~= tonumber(ARGV[8]) then
    return {'changed', 0, 0}
  end
end

local count, pttl = 0, 0
local limit = tonumber(ARGV[2])
if limit > 0 then
  count, pttl = rateTake(rateKey, tonumber(ARGV[1]), tonumber(ARGV[3]))
  if count > limit then
    return {'rate', count, pttl}
  end
end

local total = 0
if max > 0 then
  local got = lease_acquire(leaseKey, node, lease, max)
  if got[1] == 0 then
    return {'full', count, pttl, got[2]}
  end
  total = got[2]
end

local version = 0
if save then
  version = record_write(recordKey, 'save', ARGV[8], '', ARGV[9], ARGV[10], ARGV[11], node, ARGV[12])
end

local k, a = {}, {}
for i = 4, #KEYS do k[#k + 1] = KEYS[i] end
for i = 13, #ARGV do a[#a + 1] = ARGV[i] end
return {'ok', count, pttl, total, snapshot(k, a), version}
