-- Appends one Mercure update to the tenant's Mercure log and publishes it live, in one round trip.
--
-- KEYS[1]  the tenant's sequence hash (fields seq, ms, epoch)
-- KEYS[2]  the tenant's trim marks
-- KEYS[3]  the Mercure log: the history stream of the tenant's Mercure channel
-- KEYS[4]  the index entry of the update's own id
-- ARGV[1]  an epoch to store if the tenant has none yet
-- ARGV[2]  history window: most entries kept
-- ARGV[3]  history window: seconds kept
-- ARGV[4]  the Mercure channel's name, ARGV[5] its pub/sub name
-- ARGV[6]  the update as stored
--
-- Returns the entry's id in the log.
local maxLen = tonumber(ARGV[2])
local maxAgeMs = tonumber(ARGV[3]) * 1000
local now, seq = clock(KEYS[1], ARGV[1], 1)
local id = now .. '-' .. (seq + 1)
append(KEYS[3], KEYS[2], ARGV[4], ARGV[5], id, 'mercure', ARGV[6], now, maxLen, maxAgeMs)
-- The index outlives no entry by more than the log itself: a resume from an id whose entry
-- was trimmed by count finds the entry gone and replays nothing.
redis.call('SET', KEYS[4], id, 'PX', maxAgeMs + 60000)
return id
