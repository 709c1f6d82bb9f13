-- Replaces a session record's channels if the record is as the writer read it (record_write in
-- record.lua; the whole record is saved by a stream's admission, admit.lua).
-- KEYS[1]  the session record
-- ARGV     the version read ("" = any), the node the record must name ("" = any), ttl (ms),
--          channels (JSON)
return record_write(KEYS[1], 'channels', ARGV[1], ARGV[2], ARGV[3], ARGV[4])
