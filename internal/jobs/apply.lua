-- Applies one job or workflow update to its state and publishes the new state on its channel,
-- atomically: the state and what subscribers saw can never disagree, and applying the same
-- update twice changes nothing.
--
-- KEYS[1] the state hash    KEYS[2] the tenant's sequence hash
-- KEYS[3] the trim marks    KEYS[4] the channel's history stream
-- ARGV[1] kind: job | workflow | step     ARGV[2] the job or workflow id
-- ARGV[3] the update's sequence number    ARGV[4] "1" to apply even if a predecessor is missing
-- ARGV[5] updated_at (RFC 3339)           ARGV[6] channel    ARGV[7] pub/sub channel
-- ARGV[8] epoch candidate   ARGV[9] history events   ARGV[10] history seconds
-- ARGV[11] retention of a finished state (ms)
-- ARGV[12..] the update's fields as name, value pairs; values are JSON texts
--
-- Returns {"applied", event id} | {"dup"} | {"ignored"} | {"wait", last applied seq}; an update
-- that finishes the job (now, or again as a duplicate) adds the published state:
-- {"applied" | "dup", event id, state event}.
local stateKey, seqKey, trimKey, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local kind, id, seq, force, now, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5], ARGV[6]
local retention = tonumber(ARGV[11])
local activeTTL = 30 * 24 * 3600 * 1000

local applied = tonumber(redis.call('HGET', stateKey, 'seq') or '0')
if seq <= applied then
  -- The update that finished the job, again (its worker could not report the finish): the
  -- finish is reported again.
  if tonumber(redis.call('HGET', stateKey, 'final_seq') or '0') == seq then
    return {'dup', redis.call('HGET', stateKey, 'eid') or '', redis.call('HGET', stateKey, 'event') or ''}
  end
  return {'dup'}
end
if seq ~= applied + 1 and not force then
  return {'wait', tostring(applied)}
end

local upd = {}
for i = 12, #ARGV, 2 do
  upd[ARGV[i]] = ARGV[i + 1]
end

local terminal = {succeeded = true, failed = true, cancelled = true}
local status = redis.call('HGET', stateKey, 'status')
if status and terminal[cjson.decode(status)] then
  -- Final: the update is consumed without a change.
  redis.call('HSET', stateKey, 'seq', seq)
  return {'ignored'}
end

local function set(field)
  if upd[field] then
    redis.call('HSET', stateKey, field, upd[field])
  end
end

-- mergeSteps folds incoming steps into the stored list: by name, in order of arrival; a field
-- an incoming step leaves out keeps its value. A workflow holds at most 1,000 steps: names
-- beyond them are not added.
local function mergeSteps(incoming)
  local steps = cjson.decode(redis.call('HGET', stateKey, 'steps') or '[]')
  for _, s in ipairs(incoming) do
    local found = nil
    for _, have in ipairs(steps) do
      if have.name == s.name then
        found = have
      end
    end
    if found then
      if s.status then found.status = s.status end
      if s.error then found.error = s.error end
    elseif #steps < 1000 then
      table.insert(steps, {name = s.name, status = s.status or 'pending', error = s.error})
    end
  end
  local parts = {}
  for i, s in ipairs(steps) do
    local e = 'null'
    if s.error and s.error ~= cjson.null then e = cjson.encode(s.error) end
    parts[i] = '{"name":' .. cjson.encode(s.name) .. ',"status":' .. cjson.encode(s.status) .. ',"error":' .. e .. '}'
  end
  redis.call('HSET', stateKey, 'steps', '[' .. table.concat(parts, ',') .. ']')
end

if kind == 'job' then
  if not status then redis.call('HSET', stateKey, 'status', '"queued"') end
  for _, f in ipairs({'status', 'progress', 'message', 'output', 'error'}) do set(f) end
elseif kind == 'workflow' then
  if not status then redis.call('HSET', stateKey, 'status', '"pending"') end
  for _, f in ipairs({'status', 'step', 'waiting_for', 'output', 'error'}) do set(f) end
  if upd.steps then mergeSteps(cjson.decode(upd.steps)) end
else -- one step of a workflow
  if not status then redis.call('HSET', stateKey, 'status', '"pending"') end
  local s = {name = cjson.decode(upd.name)}
  if upd.status then s.status = cjson.decode(upd.status) end
  if upd.error then s.error = cjson.decode(upd.error) end
  mergeSteps({s})
end
redis.call('HSET', stateKey, 'seq', seq, 'updated_at', cjson.encode(now))

local st = redis.call('HGETALL', stateKey)
local h = {}
for i = 1, #st, 2 do
  h[st[i]] = st[i + 1]
end
local function v(field)
  return h[field] or 'null'
end
local payload
if kind == 'job' then
  payload = '{"channel":' .. cjson.encode(channel) .. ',"job":{"job_id":' .. cjson.encode(id) ..
    ',"status":' .. v('status') .. ',"progress":' .. v('progress') .. ',"message":' .. v('message') ..
    ',"output":' .. v('output') .. ',"error":' .. v('error') .. ',"updated_at":' .. v('updated_at') .. '}}'
else
  payload = '{"channel":' .. cjson.encode(channel) .. ',"workflow":{"workflow_id":' .. cjson.encode(id) ..
    ',"status":' .. v('status') .. ',"step":' .. v('step') .. ',"waiting_for":' .. v('waiting_for') ..
    ',"steps":' .. (h.steps or '[]') .. ',"output":' .. v('output') .. ',"error":' .. v('error') ..
    ',"updated_at":' .. v('updated_at') .. '}}'
end
local eventKind = 'job'
if kind ~= 'job' then eventKind = 'workflow' end

local maxAgeMs = tonumber(ARGV[10]) * 1000
local t, n = clock(seqKey, ARGV[8], 1)
local eid = t .. '-' .. (n + 1)
append(history, trimKey, channel, ARGV[7], eid, eventKind, payload, t, tonumber(ARGV[9]), maxAgeMs)

redis.call('HSET', stateKey, 'event', payload, 'eid', eid)
if terminal[cjson.decode(h.status)] then
  redis.call('HSET', stateKey, 'final_seq', seq)
  redis.call('PEXPIRE', stateKey, retention)
  return {'applied', eid, payload}
end
redis.call('PEXPIRE', stateKey, activeTTL)
return {'applied', eid}
