"""The job store's Lua scripts (controller/store.py runs them): each write that must be
atomic is one script. A record's hash names the index entries and counts it holds
(`indexes`, `state_indexes`, `counted`: JSON lists, controller/store_indexes.py), so the
scripts that take a record out remove exactly those, whatever version wrote them."""

from __future__ import annotations

from kubetask import eventlog

# Removes what a record's hash says it holds: its index entries and its counts.
_UNINDEX_FUNCTION = """
local function uncount(job, counts)
  local names = redis.call('HGET', job, 'counted')
  if not names then return end
  for _, name in ipairs(cjson.decode(names)) do
    if redis.call('HINCRBY', counts, name, -1) <= 0 then redis.call('HDEL', counts, name) end
  end
end
local function unindex(job, id, counts)
  for _, field in ipairs({'indexes', 'state_indexes'}) do
    local names = redis.call('HGET', job, field)
    if names then
      for _, index in ipairs(cjson.decode(names)) do redis.call('ZREM', index, id) end
    end
  end
  uncount(job, counts)
end
local function index(id, counts, indexes, state_indexes, counted)
  for _, names in ipairs({indexes, state_indexes}) do
    for _, name in ipairs(cjson.decode(names)) do redis.call('ZADD', name, 0, id) end
  end
  for _, name in ipairs(cjson.decode(counted)) do redis.call('HINCRBY', counts, name, 1) end
end
"""

# KEYS: job, index, active set, idempotency key ('' for none), then the event log's four,
# then the tenant's index and active set, then the counts. ARGV: id, request, created_at,
# status, fingerprint, job key prefix, idempotency TTL, then the "queued" event's body,
# history limit and progress flag, then the tenant and its cap on unfinished jobs ('0':
# none), then the record's indexes, state indexes and counts (JSON lists), then the
# tenant's cap on stored jobs ('0': none; its index holds one entry per record it keeps).
# The event is appended in the same script, so it is always the job's first (seq 1), before
# any reconciler sees the job. A replay answers the original job even at the cap. The same
# script run again (the client retried after losing the connection) writes the key again:
# WAITAOF, on the new connection, then waits for a write of its own, which is after the record.
CREATE = (
    eventlog.APPEND_FUNCTION
    + _UNINDEX_FUNCTION
    + """
if KEYS[4] ~= '' then
  local existing = redis.call('GET', KEYS[4])
  if existing == ARGV[1] then
    redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[7])
    return {ARGV[1], ''}
  end
  if existing then  -- a key whose job is gone (purged, expired) is new again
    local fingerprint = redis.call('HGET', ARGV[6] .. existing, 'fingerprint')
    if fingerprint then return {existing, fingerprint} end
  end
end
local cap = tonumber(ARGV[12])
if cap > 0 then
  local active = redis.call('SCARD', KEYS[10])
  if active >= cap then return {'', 'active', active} end
end
local stored_cap = tonumber(ARGV[16])
if stored_cap > 0 then
  local stored = redis.call('ZCARD', KEYS[9])
  if stored >= stored_cap then return {'', 'stored', stored} end
end
if redis.call('HEXISTS', KEYS[1], 'indexes') == 0 then
  index(ARGV[1], KEYS[11], ARGV[13], ARGV[14], ARGV[15])
end
redis.call('HSET', KEYS[1], 'request', ARGV[2], 'created_at', ARGV[3], 'status', ARGV[4],
           'fingerprint', ARGV[5], 'tenant', ARGV[11], 'indexes', ARGV[13],
           'state_indexes', ARGV[14], 'counted', ARGV[15])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[10], ARGV[1])
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[7]) end
append_event(KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[8], ARGV[9], ARGV[10])
return {ARGV[1], ''}
"""
)

# KEYS: job, active set, outbox (sorted set of entry ids by due time), outbox entries (hash), the
# tenant's active set, the counts, the expiring set, then the job's event log keys
# (eventlog.script_keys) and its progress tally and workers. ARGV: status, cancel flag read, when
# the record expires ('0': not terminal), id, now, the state indexes and counts of the new status
# (JSON lists), the state event (eventlog.script_args: 3), how long the event log of a finished
# job lasts, '1' to mark the job submitted (else '0': a mark is never taken back) and the
# namespace its Job was created in ('': none), then pairs of outbox entry id and entry. The
# status, its state event and (terminal) its notifications are written together, so a crash right
# after the write still leaves the event for the streams and the notifications to deliver (at
# least once), and a status refused writes no event. A record from before the indexes (no
# `indexes` field) is left to the one-time index build.
SAVE_STATUS = (
    eventlog.APPEND_FUNCTION
    + _UNINDEX_FUNCTION
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HGET', KEYS[1], 'status')
if current then
  local state = cjson.decode(current)['state']
  if state == 'succeeded' or state == 'failed' or state == 'cancelled' then
    return 0  -- terminal states are final, whoever writes (a deposed leader's late write)
  end
end
local cancel = redis.call('HGET', KEYS[1], 'cancel') == '1'
if cancel ~= (ARGV[2] == '1') then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if ARGV[12] == '1' then redis.call('HSET', KEYS[1], 'submitted', '1') end
if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'namespace', ARGV[13]) end
if redis.call('HEXISTS', KEYS[1], 'indexes') == 1 then
  local moved = redis.call('HGET', KEYS[1], 'state_indexes')
  if moved then
    for _, name in ipairs(cjson.decode(moved)) do redis.call('ZREM', name, ARGV[4]) end
  end
  uncount(KEYS[1], KEYS[6])
  index(ARGV[4], KEYS[6], '[]', ARGV[6], ARGV[7])
  redis.call('HSET', KEYS[1], 'state_indexes', ARGV[6], 'counted', ARGV[7])
end
append_event(KEYS[8], KEYS[9], KEYS[10], KEYS[11], ARGV[8], ARGV[9], ARGV[10])
if ARGV[3] ~= '0' then
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('SREM', KEYS[5], ARGV[4])
  redis.call('ZADD', KEYS[7], ARGV[3], ARGV[4])
  for _, key in ipairs({KEYS[8], KEYS[9], KEYS[10], KEYS[12], KEYS[13]}) do
    redis.call('EXPIRE', key, ARGV[11])
  end
  for i = 14, #ARGV, 2 do
    if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) == 1 then
      redis.call('ZADD', KEYS[3], ARGV[5], ARGV[i])
    end
  end
end
return 1
"""
)

# KEYS and ARGV[1]: as CREATE's. Takes a record the disk did not confirm back out: the
# record, its event log, its index entries and counts, its places in the active sets (the
# tenant's count of unfinished jobs), and the idempotency key if it still names this job.
DISCARD = (
    _UNINDEX_FUNCTION
    + """
unindex(KEYS[1], ARGV[1], KEYS[11])
redis.call('DEL', KEYS[1], KEYS[5], KEYS[6], KEYS[7])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[10], ARGV[1])
if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1
"""
)

# KEYS: the expiring set, the counts. ARGV: now, how many at most, the job key prefix, the
# outcome key prefix, the counter and the log key prefix of a study in Optuna's layout, then
# the templates of the keys a job's tasks share (`%s`: the id). Each record due goes with
# every index entry it holds, its tasks' outcomes and what they shared (a study, claims: they
# would live on for the 7 days a task gives them, or for good when its task was stopped),
# in one step.
EXPIRE_DUE = (
    _UNINDEX_FUNCTION
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local job = ARGV[3] .. id
  local completions = 1
  local request = redis.call('HGET', job, 'request')
  if request then
    local ok, decoded = pcall(cjson.decode, request)
    if ok and type(decoded['completions']) == 'number' then completions = decoded['completions'] end
  end
  for index = 0, completions - 1 do redis.call('DEL', ARGV[4] .. id .. ':' .. index) end
  local logs = tonumber(redis.call('GET', string.format(ARGV[5], id)))
  if logs then  -- a study an earlier version began: a key per log
    for n = 0, logs do redis.call('DEL', string.format(ARGV[6], id) .. n) end
  end
  for i = 7, #ARGV do redis.call('DEL', string.format(ARGV[i], id)) end
  unindex(job, id, KEYS[2])
  redis.call('DEL', job)
  redis.call('ZREM', KEYS[1], id)
end
return #due
"""
)

# KEYS: job, the counts, the expiring set. ARGV: the status as read, the record's indexes,
# state indexes and counts (JSON lists), '1' when finished, now, the retention, the id.
# Gives a record written before the indexes its entries, once (0: nothing to do; -1: the
# status changed since it was read, read again). A finished one expires through the
# expiring set from then on (its TTL, or the retention when it has none).
INDEX_OLD = (
    _UNINDEX_FUNCTION
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'indexes') == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return -1 end
index(ARGV[8], KEYS[2], ARGV[2], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], 'indexes', ARGV[2], 'state_indexes', ARGV[3], 'counted', ARGV[4])
if ARGV[5] == '1' then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 then ttl = tonumber(ARGV[7]) end
  redis.call('PERSIST', KEYS[1])
  redis.call('ZADD', KEYS[3], tonumber(ARGV[6]) + ttl, ARGV[8])
end
return 1
"""
)

# Only a record that exists (one taken back out after a failed fsync stays gone). ARGV: the
# namespace its Job was created in ('': none).
MARK_SUBMITTED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'submitted', '1')
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'namespace', ARGV[1]) end
return 1
"""

CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
local state = cjson.decode(status)['state']
for _, terminal in ipairs(ARGV) do
  if state == terminal then return state end
end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 'ok'
"""
