-- Tells whether an update held for a missing predecessor may still get it: whether one of the
-- job's updates between the last applied one and the held one is pending in the consumer group,
-- that is, with a worker that will apply it, or that died and whose entries another worker will
-- claim. It follows the entries' prev links back from the held update's predecessor.
--
-- KEYS[1] the partition's stream   ARGV[1] the consumer group
-- ARGV[2] the predecessor's entry id   ARGV[3] the job's last applied sequence number
--
-- Returns "pending" when a predecessor is still to come; "gone" when none can come (each is
-- gone from the stream, or was acknowledged without being applied: dead-lettered); "unlinked"
-- when an entry on the way has no prev (appended by an earlier version), so that this cannot
-- tell.
local stream, group, id, applied = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
for _ = 1, 1000 do
  local e = redis.call('XRANGE', stream, id, id)
  if #e == 0 then
    return 'gone'
  end
  local seq, prev
  local f = e[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'seq' then seq = tonumber(f[i + 1]) end
    if f[i] == 'prev' then prev = f[i + 1] end
  end
  if not seq or seq <= applied then
    return 'gone'
  end
  if #redis.call('XPENDING', stream, group, id, id, 1) > 0 then
    return 'pending'
  end
  if seq == applied + 1 then
    return 'gone'
  end
  if not prev then
    return 'unlinked'
  end
  id = prev
end
return 'unlinked'
