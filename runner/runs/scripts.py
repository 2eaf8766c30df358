"""The Lua scripts that change a run record, each one atomic write (called by
runner.runs.transitions).

Each names its keys and arguments as locals first; the state strings are `RunState`'s values.
"""

from __future__ import annotations

from runner.runs.figures import RECORD_FIGURES
from runner.runs.limits import LIMITS

# Appends ARGV[first..#ARGV] (JSON events) to the stream `log` (capped at about `cap`
# entries) as one entry: field `e` for one event, `es` (a JSON array) for several
# (runner.logs.decode_entries reads both).
LOG_EVENTS = """
local function log_events(log, cap, first)
  local count = #ARGV - first + 1
  if count == 1 then
    redis.call('XADD', log, 'MAXLEN', '~', cap, '*', 'e', unpack(ARGV, first, first))
  elseif count > 1 then
    local batch = '[' .. table.concat(ARGV, ',', first, #ARGV) .. ']'
    redis.call('XADD', log, 'MAXLEN', '~', cap, '*', 'es', batch)
  end
end
"""

# The rerun rule, in one place: RERUN_RUN (an operator: `runner rerun`, the console, the
# client) and BEGIN_ATTEMPT (RQ's tools: `rq requeue` of a failed run's last job) both use
# it. A failed or cancelled run (a succeeded one when forced) goes on to its next attempt,
# with a fresh attempt budget, from its checkpoint or, from scratch, with its finished steps,
# cursor and counters forgotten and its generation bumped; it stops expiring and leaves the
# index of the state it was in. The caller writes the state it goes to (queued, running).
RERUN_RULE = """
local function rerunnable(state, force)
  return state == 'failed' or state == 'cancelled' or (force and state == 'succeeded')
end
local function rerun(run, steps, log, from_index, token, attempt, from_scratch)
  local next_attempt = tonumber(attempt) + 1
  redis.call('HSET', run, 'attempt', next_attempt, 'attempt_base', attempt,
             'rerun_attempt', next_attempt, 'finished_at', '', 'retry_at', '',
             'cancel_requested', '')
  if from_scratch then
    redis.call('HINCRBY', run, 'generation', 1)
    redis.call('HSET', run, 'cursor', 'null', 'counters', 'null')
    redis.call('DEL', steps)
  end
  for _, key in ipairs({run, steps, log}) do redis.call('PERSIST', key) end
  redis.call('ZREM', from_index, token)
  return next_attempt
end
"""

# Claim the token for an attempt and read the run and its finished steps, in one call; the
# job id leaves its intermediate list here, so a delivery is always in that list or leased.
# The attempt's queue wait is kept on the run (`waited`, counted with the outcome at its
# release: runner.runs.figures), '' for a rerun. A failed run's
# own last job, requeued by RQ's tools (`rq requeue`), begins its next attempt: a rerun from
# the checkpoint (RERUN_RULE), status 'rerun' (RQ's failed registry holds failed runs' jobs
# only). Returns {status, run pairs, step pairs}; status 'ok', 'rerun', or why the body must
# not run ('ok' again for the holder that claimed it already: a retry after a reply lost to a
# failover). The holder is unique to one execution, not the job id: a job delivered twice
# (its first claim lost in a failover) is two holders, fenced apart.
BEGIN_ATTEMPT = (
    RERUN_RULE
    + LIMITS
    + """
local run = KEYS[1]           -- the run hash
local lease = KEYS[2]         -- the token's lease (holds the attempt's holder)
local steps = KEYS[3]         -- the run's finished steps
local delivery = KEYS[4]      -- the intermediate list the job id was dequeued into
local queued_index = KEYS[5]  -- tokens of queued runs by when they were queued
local running_index = KEYS[6] -- tokens of running runs by when they started
local failed_index = KEYS[7]  -- tokens of failed runs by when they failed
local log = KEYS[8]           -- the run's log stream
local job = KEYS[9]           -- the RQ job hash of `job_id`
local attempt = ARGV[1]       -- the attempt this job is for
local holder = ARGV[2]        -- the job id and a nonce of this execution, the lease's holder
local lease_ms = ARGV[3]      -- the lease's TTL
local now = ARGV[4]           -- epoch seconds
local worker = ARGV[5]        -- the worker's name
local token = ARGV[6]
local version = ARGV[7]       -- the code version running the attempt
local job_id = ARGV[8]        -- the RQ job id
local limit_prefix = ARGV[9]  -- the limits' key prefix (runner.runs.limits)
local lease_prefix = ARGV[10] -- the leases' key prefix

redis.call('LREM', delivery, 1, job_id)
local record = redis.call('HGETALL', run)  -- read once: the reply is it, with the claim's fields
if #record == 0 then return {'missing', {}, {}} end
local seen = {}
for i = 1, #record, 2 do seen[record[i]] = record[i + 1] end
local status = 'ok'
local claimed = false         -- this holder claimed it already: nothing to write again
-- RQ's failed registry holds the jobs of failed runs only (a cancelled run's job is deleted)
if seen.state == 'failed' and seen.job_id == job_id then status = 'rerun'
elseif tonumber(seen.attempt) ~= tonumber(attempt) then status = 'stale'
elseif seen.state == 'running' and redis.call('GET', lease) == holder then claimed = true
elseif seen.state ~= 'queued' then status = seen.state
end
-- a run of a limited task begins only with room under its key; else it waits for a slot
-- (a failed run's job requeued by RQ's tools, status 'rerun', is not held back)
local key = seen.limit_key
local limited = key ~= nil and key ~= '' and not claimed and status == 'ok'
local per = tonumber(seen.limit_per) or 0
if limited and limit_room(limit_prefix, lease_prefix, key, tonumber(seen.limit_concurrency) or 0,
                          tonumber(seen.limit_rate) or 0, per, tonumber(now), token) < 1 then
  limit_park(limit_prefix, key, token, job, job_id, now)
  return {'limited', record, {}}
end
if not claimed and (status == 'ok' or status == 'rerun')
   and not redis.call('SET', lease, holder, 'NX', 'PX', lease_ms) then status = 'leased' end
if limited and status == 'ok' then
  local hold = (tonumber(seen.timeout) or 3600) + 2 * math.ceil(tonumber(lease_ms) / 1000)
  limit_take(limit_prefix, key, token, holder, per, now, hold)
end
if status == 'rerun' then
  rerun(run, steps, log, failed_index, token, seen.attempt, false)
  redis.call('PERSIST', job)  -- a failed job's hash expires (RQ's failure_ttl): not while it runs
end
if not claimed and (status == 'ok' or status == 'rerun') then
  local waited = ''
  if status == 'ok' then
    local since = tonumber(seen.queued_at or seen.created_at or now)
    waited = string.format('%.17g', tonumber(now) - since)  -- a string: the reply keeps it whole
  end
  local claim = {'state', 'running', 'started_at', now, 'updated_at', now, 'worker', worker,
                 'job_id', job_id, 'code_version', version, 'waited', waited}
  redis.call('HSET', run, unpack(claim))
  redis.call('ZREM', queued_index, token)
  redis.call('ZADD', running_index, now, token)
  if status == 'rerun' then record = redis.call('HGETALL', run)  -- the rerun rewrote it
  else for _, v in ipairs(claim) do table.insert(record, v) end  -- later pairs win
  end
end
-- a first attempt has no finished steps to resume from (only an attempt holding the lease
-- writes them), so only a later attempt, a rerun or a retried claim reads them
local finished = {}
if claimed or status == 'rerun' or tonumber(attempt) > 1 then
  finished = redis.call('HGETALL', steps)
end
return {status, record, finished}
"""
)

# Is an operator asking the run to stop? Rides along with the writes an attempt makes anyway.
CANCEL_ASKED = """
local function cancel_asked(run)
  local origin = redis.call('HGET', run, 'cancel_requested')
  return origin and origin ~= ''
end
"""

# Returns 0 when `holder` lost the lease, 2 when it holds it and the run is to be cancelled,
# else 1.
RENEW_LEASE = (
    CANCEL_ASKED
    + """
local lease = KEYS[1]         -- the token's lease
local run = KEYS[2]           -- the run hash (read for a cancel request)
local holder = ARGV[1]        -- the attempt's holder (see BEGIN_ATTEMPT)
local lease_ms = ARGV[2]      -- the new TTL
if redis.call('GET', lease) ~= holder then return 0 end
redis.call('PEXPIRE', lease, lease_ms)
if cancel_asked(run) then return 2 end
return 1
"""
)

# Returns 1, 2 when the run is also to be cancelled, or 0 (nothing written) when `holder`
# no longer holds the lease.
FENCED_WRITE = (
    LOG_EVENTS
    + CANCEL_ASKED
    + """
local lease = KEYS[1]         -- the token's lease
local run = KEYS[2]           -- the run hash
local steps = KEYS[3]         -- the run's finished steps
local log = KEYS[4]           -- the run's log stream
local holder = ARGV[1]        -- the attempt's holder (see BEGIN_ATTEMPT)
local cap = ARGV[2]           -- the log stream's cap
local nrun = tonumber(ARGV[3])  -- then nrun run field/value pairs
local run_from = 4
local nstep = tonumber(ARGV[run_from + 2*nrun])  -- then nstep step name/result pairs
local step_from = run_from + 2*nrun + 1
local events_from = step_from + 2*nstep          -- then the log events, to the end

if redis.call('GET', lease) ~= holder then return 0 end
if nrun > 0 then redis.call('HSET', run, unpack(ARGV, run_from, step_from - 2)) end
if nstep > 0 then redis.call('HSET', steps, unpack(ARGV, step_from, events_from - 1)) end
log_events(log, cap, events_from)
if cancel_asked(run) then return 2 end
return 1
"""
)

# Returns 1, or 0 (nothing written) when `holder` no longer holds the lease. The attempt is
# counted here, once (runner.runs.figures): no round trip of its own.
RELEASE_ATTEMPT = (
    LOG_EVENTS
    + RECORD_FIGURES
    + LIMITS
    + """
local lease = KEYS[1]         -- the token's lease
local run = KEYS[2]           -- the run hash
local delayed = KEYS[3]       -- retries by due time
local steps = KEYS[4]         -- the run's finished steps
local log = KEYS[5]           -- the run's log stream
local running_index = KEYS[6] -- tokens of running runs by when they started
local state_index = KEYS[7]   -- tokens of runs in the state written, by when they got there
local fig_minute = KEYS[8]    -- the minute's figures (runner.runs.figures)
local ttl_minute = ARGV[7]    -- and their TTL
local holder = ARGV[1]        -- the attempt's holder (see BEGIN_ATTEMPT)
local token = ARGV[2]
local retention = ARGV[3]     -- seconds a finished run is kept
local retry_at = ARGV[4]      -- due time of the retry; '' unless retrying
local cap = ARGV[5]           -- the log stream's cap
local now = tonumber(ARGV[6]) -- epoch seconds
-- what the figures count (the run as its attempt began, and the outcome): ARGV[8] to [15]
local outcome, task, queue, version = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local started, waited = tonumber(ARGV[12]), tonumber(ARGV[13])
local cpu, busy = tonumber(ARGV[14]), tonumber(ARGV[15])  -- runner.attempt.effort
local effort = {cpu = cpu, busy = busy}
local lease_ms = ARGV[16]      -- the lease's TTL
local limit_key = ARGV[17]     -- the run's limit key, '' if none (runner.runs.limits)
local limit_prefix, lease_prefix, run_prefix = ARGV[18], ARGV[19], ARGV[20]
local nrun = tonumber(ARGV[21]) -- then nrun run field/value pairs (the state among them)
local events_from = 22 + 2*nrun  -- then the log events, to the end
local fig = {minute = fig_minute, ttl = ttl_minute}

local held = redis.call('GETDEL', lease)  -- the check and the drop in one command
if held ~= holder then  -- lost: another attempt's lease goes back, with a whole lease period
  if held then redis.call('SET', lease, held, 'PX', lease_ms) end
  return 0
end
redis.call('HSET', run, unpack(ARGV, 22, events_from - 1))
log_events(log, cap, events_from)
if limit_key ~= '' then  -- its slot is free: the first waiter goes
  limit_wake(limit_prefix, lease_prefix, run_prefix, limit_key, now, tonumber(lease_ms), token)
end
redis.call('ZREM', running_index, token)
redis.call('ZADD', state_index, now, token)
if retry_at ~= '' then
  redis.call('ZADD', delayed, retry_at, token)
else  -- (the index's runs past the retention leave it in the reaper's sweep: off the job)
  for _, key in ipairs({run, steps, log}) do redis.call('EXPIRE', key, retention) end
end
if outcome == 'retrying' then outcome = 'retried' end
local observed = {dur = now - (started or now), wait = waited}
record_figures(fig, task, queue, version, {started = 1, [outcome] = 1}, observed, effort)
return 1
"""
)

# Move an existing run to its next attempt, if it is still as the caller saw it (and, for a
# handover, if `holder` still holds its lease). Returns 1, or 0 (nothing written) when the
# run moved on meanwhile.
ADVANCE_RUN = (
    LOG_EVENTS
    + """
local run = KEYS[1]           -- the run hash
local lease = KEYS[2]         -- the token's lease
local delayed = KEYS[3]       -- retries by due time
local steps = KEYS[4]         -- the run's finished steps
local log = KEYS[5]           -- the run's log stream
local from_index = KEYS[6]    -- tokens of runs in `seen_state`
local to_index = KEYS[7]      -- tokens of runs in the state it moves to
-- only when the run is queued again (njob > 0), declared then alone:
local job_index = KEYS[8]     -- job id -> token, for the new attempt's job id
local job = KEYS[9]           -- the new attempt's RQ job hash
local queue = KEYS[10]        -- the RQ queue it goes to
local queues = KEYS[11]       -- RQ's set of queues
local token = ARGV[1]
local seen_state = ARGV[2]    -- the state the caller saw
local seen_attempt = ARGV[3]  -- the attempt the caller saw
local lease_gone = ARGV[4]    -- '1': move only if no attempt holds the lease
local retention = ARGV[5]     -- seconds a finished run is kept
local now = tonumber(ARGV[6]) -- epoch seconds
local holder = ARGV[7]        -- '': no attempt involved; else the attempt handing the run
                              -- over: it must hold the lease, which is dropped
local cap = ARGV[8]           -- the log stream's cap
local nrun = tonumber(ARGV[9])  -- then nrun run field/value pairs
local run_from = 10
local njob = tonumber(ARGV[run_from + 2*nrun])  -- then njob job field/value pairs (none: the
local job_from = run_from + 2*nrun + 1          -- run ends here and starts expiring)
local events_from = job_from + 2*njob           -- then log events, to the end

local seen = redis.call('HMGET', run, 'state', 'attempt')
if seen[1] ~= seen_state or seen[2] ~= seen_attempt then return 0 end
if lease_gone == '1' and redis.call('EXISTS', lease) == 1 then return 0 end
if holder ~= '' then
  if redis.call('GET', lease) ~= holder then return 0 end
  redis.call('DEL', lease)
end
redis.call('ZREM', delayed, token)
redis.call('HSET', run, unpack(ARGV, run_from, job_from - 2))
redis.call('ZREM', from_index, token)
redis.call('ZADD', to_index, now, token)
if njob > 0 then
  redis.call('HSET', run, 'queued_at', now)
  for _, key in ipairs({run, steps, log}) do redis.call('PERSIST', key) end
  redis.call('HSET', job, unpack(ARGV, job_from, job_from + 2*njob - 1))
  redis.call('RPUSH', queue, redis.call('HGET', run, 'job_id'))
  redis.call('SADD', queues, queue)
  redis.call('SET', job_index, token, 'EX', retention)
else
  for _, key in ipairs({run, steps, log}) do redis.call('EXPIRE', key, retention) end
  redis.call('ZREMRANGEBYSCORE', to_index, '-inf', now - tonumber(retention))
end
log_events(log, cap, events_from)
return 1
"""
)

# An operator cancels a run, if it is still as they saw it: a queued or retrying run ends
# `cancelled` here (its job leaves the queue; a copy already taken by a worker is refused by
# BEGIN_ATTEMPT); a running one is asked to stop at its next checkpoint (`cancel_requested`),
# which its attempt reads in the reply of its next write or lease renewal. Returns 1, or 0
# (nothing written) when the run moved on meanwhile.
CANCEL_RUN = (
    LOG_EVENTS
    + """
local run = KEYS[1]           -- the run hash
local delayed = KEYS[2]       -- retries by due time
local steps = KEYS[3]         -- the run's finished steps
local log = KEYS[4]           -- the run's log stream
local queue = KEYS[5]         -- the RQ queue its job waits in
local job = KEYS[6]           -- its RQ job hash
local from_index = KEYS[7]    -- tokens of runs in `seen_state`
local to_index = KEYS[8]      -- tokens of cancelled runs
local token = ARGV[1]
local seen_state = ARGV[2]    -- the state the caller saw
local seen_attempt = ARGV[3]  -- the attempt the caller saw
local origin = ARGV[4]        -- who cancels: 'cli', 'web', ...
local now = ARGV[5]           -- epoch seconds
local retention = ARGV[6]     -- seconds a finished run is kept
local cap = ARGV[7]           -- the log stream's cap
local job_id = ARGV[8]        -- the job id of its current attempt
-- then log events, to the end

local seen = redis.call('HMGET', run, 'state', 'attempt')
if seen[1] ~= seen_state or seen[2] ~= seen_attempt then return 0 end
redis.call('HSET', run, 'cancel_requested', origin, 'updated_at', now)
log_events(log, cap, 9)
if seen_state == 'running' then return 1 end
if redis.call('LREM', queue, 0, job_id) > 0 then redis.call('DEL', job) end
redis.call('ZREM', delayed, token)
redis.call('HSET', run, 'state', 'cancelled', 'finished_at', now, 'retry_at', '')
redis.call('ZREM', from_index, token)
redis.call('ZADD', to_index, now, token)
for _, key in ipairs({run, steps, log}) do redis.call('EXPIRE', key, retention) end
redis.call('ZREMRANGEBYSCORE', to_index, '-inf', tonumber(now) - tonumber(retention))
return 1
"""
)


# An operator reruns a run, if it is still as they saw it and the rule allows it (RERUN_RULE):
# it is queued as its next attempt (a new RQ job). Returns {verdict, state, attempt}: verdict
# 'requeued' (with the new state and attempt), 'would' (a dry run: nothing written), or why
# not: 'missing', 'changed' (it moved on since it was read) or 'refused' (the rule), with
# the run's state and attempt as they are.
RERUN_RUN = (
    LOG_EVENTS
    + RERUN_RULE
    + """
local run = KEYS[1]           -- the run hash
local steps = KEYS[2]         -- the run's finished steps
local log = KEYS[3]           -- the run's log stream
local from_index = KEYS[4]    -- tokens of runs in `seen_state`
local queued_index = KEYS[5]  -- tokens of queued runs by when they were queued
local job_index = KEYS[6]     -- job id -> token, for the new attempt's job id
local job = KEYS[7]           -- the new attempt's RQ job hash
local queue = KEYS[8]         -- the RQ queue it goes to
local queues = KEYS[9]        -- RQ's set of queues
local token = ARGV[1]
local seen_state = ARGV[2]    -- the state the caller saw
local seen_attempt = ARGV[3]  -- the attempt the caller saw
local force = ARGV[4]         -- '1': a succeeded run is rerun too
local from_scratch = ARGV[5]  -- '1': forget the finished steps, cursor and counters
local dry_run = ARGV[6]       -- '1': say what would happen, write nothing
local now = ARGV[7]           -- epoch seconds
local retention = ARGV[8]     -- seconds the job id -> token entry is kept
local cap = ARGV[9]           -- the log stream's cap
local job_id = ARGV[10]       -- the new attempt's RQ job id
local njob = tonumber(ARGV[11])  -- then njob job field/value pairs
local job_from = 12
local events_from = job_from + 2*njob  -- then log events, to the end

local seen = redis.call('HMGET', run, 'state', 'attempt')
if not seen[1] then return {'missing', '', ''} end
if seen[1] ~= seen_state or seen[2] ~= seen_attempt then return {'changed', seen[1], seen[2]} end
if not rerunnable(seen[1], force == '1') then return {'refused', seen[1], seen[2]} end
if dry_run == '1' then return {'would', seen[1], seen[2]} end
local attempt = rerun(run, steps, log, from_index, token, seen[2], from_scratch == '1')
redis.call('HSET', run, 'state', 'queued', 'job_id', job_id, 'queued_at', now, 'updated_at', now)
redis.call('ZADD', queued_index, now, token)
redis.call('HSET', job, unpack(ARGV, job_from, events_from - 1))
redis.call('RPUSH', queue, job_id)
redis.call('SADD', queues, queue)
redis.call('SET', job_index, token, 'EX', retention)
log_events(log, cap, events_from)
return {'requeued', 'queued', tostring(attempt)}
"""
)
