-- Shared by publish.lua and apply.lua (prepended to each, after a first line that sets PUB to
-- PUBLISH, or to SPUBLISH on a Redis Cluster): the tenant's event clock and the append of one
-- event to a channel's history and live stream.

-- clock takes n event numbers from the tenant's counter. Ids are "<ms>-<seq>": seq orders all
-- of a tenant's events across its channels, and ms never goes back, so every channel's stream
-- only grows. It returns now (ms) and the seq before the first new event.
local function clock(seqKey, epochCandidate, n)
  redis.call('HSETNX', seqKey, 'epoch', epochCandidate)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = tonumber(redis.call('HGET', seqKey, 'ms') or '0')
  if now < last then
    now = last -- the clock went back: ids must still grow
  end
  redis.call('HSET', seqKey, 'ms', now)
  return now, redis.call('HINCRBY', seqKey, 'seq', n) - n
end

-- seqOf is the tenant sequence part of an id "<ms>-<seq>": the order of a tenant's events.
local function seqOf(id)
  return tonumber(string.match(id, '-(%d+)$'))
end

-- lingerMs is how long a quiet channel's history and trim mark outlive its window: max(window,
-- 1 h). A resume whose cursor is younger than window + linger can then tell "nothing was
-- published here since" (the log or its trim mark still exists, or never existed in that time)
-- from "it may have been" (keep in step with stream.Linger in history.go).
local function lingerMs(maxAgeMs)
  return math.max(maxAgeMs, 3600000)
end

-- trim removes what falls out of a channel's window and remembers the newest id it removed,
-- so that a resume from before it knows it cannot be replayed.
local function trim(stream, trimKey, channel, maxLen, maxAgeMs, minID)
  local newest = nil
  local over = redis.call('XLEN', stream) - maxLen
  if over > 0 then
    local gone = redis.call('XRANGE', stream, '-', '+', 'COUNT', over)
    newest = gone[#gone][1]
  end
  -- Only when something is older than minID: XREVRANGE from an id below the whole stream
  -- walks every entry of it (Redis starts a reverse range at the stream's end when no node is
  -- that old), which in a channel that keeps its whole window is every publish.
  local old = {}
  if #redis.call('XRANGE', stream, '-', '(' .. minID, 'COUNT', 1) > 0 then
    old = redis.call('XREVRANGE', stream, '(' .. minID, '-', 'COUNT', 1)
  end
  if #old > 0 and (not newest or seqOf(old[1][1]) > seqOf(newest)) then
    newest = old[1][1] -- the newest of what either rule removes
  end
  if newest then
    redis.call('XTRIM', stream, 'MAXLEN', maxLen)
    redis.call('XTRIM', stream, 'MINID', minID)
    redis.call('HSET', trimKey, channel, newest)
    redis.call('PEXPIRE', trimKey, maxAgeMs + lingerMs(maxAgeMs) + 60000)
  end
end

-- append writes one event to its channel's history, trims the history to the window, and
-- publishes it live as "<id>\n<kind>\n<payload>".
local function append(stream, trimKey, channel, pubsub, id, kind, payload, now, maxLen, maxAgeMs)
  redis.call('XADD', stream, id, 'k', kind, 'd', payload)
  trim(stream, trimKey, channel, maxLen, maxAgeMs, (now - maxAgeMs) .. '-0')
  redis.call('PEXPIRE', stream, maxAgeMs + lingerMs(maxAgeMs))
  redis.call(PUB, pubsub, id .. '\n' .. kind .. '\n' .. payload)
end
