-- A conditional write of a session record (record_write in record.lua).
-- KEYS[1]  the session record
-- ARGV     op, version, node, ttl (ms), channels (JSON), then for save: sub, node, connected_at
return record_write(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
