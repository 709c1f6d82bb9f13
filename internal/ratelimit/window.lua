-- Fixed-window counting for scripts that count a rate in their own round trip (the publish
-- script), on the same keys and with the same rules as github.com/ulule/limiter's Redis store,
-- so that a script and the store can count one key together. Prepended to the script's body.

-- rateTake counts n against key: the take that finds no count opens a window of periodMs.
-- It returns the count in the window, this take included, and the ms left in the window.
local function rateTake(key, n, periodMs)
  local count = redis.call('INCRBY', key, n)
  if count == n then
    if periodMs > 0 then
      redis.call('PEXPIRE', key, periodMs)
    end
    return count, periodMs
  end
  return count, redis.call('PTTL', key)
end

-- ratePeek is key's count and the ms left in its window without counting: 0, 0 when no
-- window is open.
local function ratePeek(key)
  local count = redis.call('GET', key)
  if not count then
    return 0, 0
  end
  return tonumber(count), redis.call('PTTL', key)
end
