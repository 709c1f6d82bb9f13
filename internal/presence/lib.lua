-- Shared by the presence scripts (prepended to each, after a first line that sets PUB to
-- PUBLISH, or to SPUBLISH on a Redis Cluster). A channel's members are a hash pm
-- (sub → "<sessions> <info JSON>") and a sorted set pz (sub by the time it joined). The tenant's
-- sorted set pcz holds the channels that have members, each scored minus its member count (so
-- that ZRANGE lists the busiest first, ties by name), and pmc counts the members of all its
-- channels. Each holder (one node's share of a tenant) keeps its own sessions per member in its
-- hash pn ("<channel>\n<sub>" → sessions), valid while its lease in pl (holder → expiry, Unix ms)
-- runs.

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- notify tells the channel's subscribers that sub joined or left, unless the channel has more
-- than max members: a join storm never fans out to everyone. The payload is a live event
-- without an id: "\npresence\n<json>".
local function notify(pubsub, channel, action, sub, info, members, max)
  if members > max then
    return
  end
  redis.call(PUB, pubsub, '\npresence\n{"channel":' .. cjson.encode(channel) .. ',"action":"' .. action ..
    '","sub":' .. cjson.encode(sub) .. ',"info":' .. info .. '}')
end

-- The tenant's channel index: pcz and pmc, the keys that follow a channel's member count.
local function channelIndex(pcz, pmc)
  return {pcz = pcz, pmc = pmc}
end

-- counted records that the channel now has members members, one more or one fewer (delta).
local function counted(idx, channel, members, delta)
  if members > 0 then
    redis.call('ZADD', idx.pcz, -members, channel)
  else
    redis.call('ZREM', idx.pcz, channel)
  end
  if redis.call('INCRBY', idx.pmc, delta) <= 0 then
    redis.call('DEL', idx.pmc)
  end
end

local function parse(v)
  local n, info = string.match(v, '^(%d+) (.*)$')
  return tonumber(n), info
end

-- add counts k more sessions of sub on the channel, with info the latest; the first one joins.
-- It returns the member's sessions now.
local function add(pm, pz, idx, channel, sub, info, k, now, pubsub, max)
  local v = redis.call('HGET', pm, sub)
  if v then
    local n = parse(v) + k
    redis.call('HSET', pm, sub, n .. ' ' .. info)
    return n
  end
  redis.call('ZADD', pz, now, sub)
  redis.call('HSET', pm, sub, k .. ' ' .. info)
  local members = redis.call('ZCARD', pz)
  counted(idx, channel, members, 1)
  notify(pubsub, channel, 'join', sub, info, members, max)
  return k
end

-- drop counts k fewer sessions of sub on the channel; the last one leaves. It returns the
-- member's sessions now and, when it left, its info.
local function drop(pm, pz, idx, channel, sub, k, pubsub, max)
  local v = redis.call('HGET', pm, sub)
  if not v then
    return 0, nil
  end
  local n, info = parse(v)
  n = n - k
  if n > 0 then
    redis.call('HSET', pm, sub, n .. ' ' .. info)
    return n, nil
  end
  local members = redis.call('ZCARD', pz)
  redis.call('HDEL', pm, sub)
  redis.call('ZREM', pz, sub)
  counted(idx, channel, members - 1, -1)
  notify(pubsub, channel, 'leave', sub, info, members, max)
  return 0, info
end

-- alive reports whether holder's lease runs; a missing lease is reported as nil.
local function alive(pl, holder, now)
  local exp = redis.call('HGET', pl, holder)
  if not exp then
    return nil
  end
  return tonumber(exp) > now
end
