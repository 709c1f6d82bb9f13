-- Compare and set on the global issuer+audience index. KEYS[1] is the index entry; ARGV: the
-- value it must hold now ('' for none), the value to give it ('' deletes it). Returns 1 if it
-- was changed, 0 if it held something else.
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
