-- Trims a partition of the update stream to what a worker may still need: entries before the
-- oldest one any consumer group has not acknowledged (pending) or not yet read.
--
-- KEYS[1] the partition's stream. Returns the number of entries removed.
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end

local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

local minid = nil
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  -- Entries after last-delivered-id are unread: keep from the one after it.
  local keep = last
  local pending = redis.call('XPENDING', KEYS[1], name)
  if pending[1] > 0 and older(pending[2], keep) then keep = pending[2] end
  if minid == nil or older(keep, minid) then minid = keep end
end
-- XTRIM MINID removes entries strictly older than minid: last-delivered-id itself was
-- acknowledged when it is not pending, and keeping one entry costs nothing.
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
