"""The Lua scripts that change a run record: one script per transition of `RunState`'s table,
each one atomic write (called by the method of the same name in runner.runs.transitions).

Each declares its keys and arguments once (runner.connections.lua): the Lua prologue and the
Python call are made from that declaration. The state strings are `RunState`'s values.
"""

from __future__ import annotations

from runner.connections.lua import Arg, Declared, LuaScript, Pairs, Rest
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

# Is the run as the caller saw it (its state and attempt)? Every move outside an attempt is
# conditional on it: of two callers that saw the same run, one moves it.
AS_SEEN = """
local function as_seen(run, state, attempt)
  local seen = redis.call('HMGET', run, 'state', 'attempt')
  return seen[1] == state and seen[2] == attempt
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

# Queue a run's next attempt as the new RQ job `job_id`, its hash the pairs ARGV[from..to]:
# the run is queued (it leaves `k.from_index` for `k.queued_index`) and stops expiring.
QUEUE_NEXT = """
local function queue_next(k, token, job_id, now, retention, from, to)
  redis.call('HSET', k.run, 'state', 'queued', 'job_id', job_id, 'queued_at', now,
             'updated_at', now)
  for _, key in ipairs({k.run, k.steps, k.log}) do redis.call('PERSIST', key) end
  redis.call('ZREM', k.from_index, token)
  redis.call('ZADD', k.queued_index, now, token)
  redis.call('HSET', k.job, unpack(ARGV, from, to))
  redis.call('RPUSH', k.queue, job_id)
  redis.call('SADD', k.queues, k.queue)
  redis.call('SET', k.job_index, token, 'EX', retention)
end
"""

# End a run in `state` outside an attempt (lost, or cancelled before it began): it leaves
# `k.from_index` for `k.to_index` (whose entries past the retention go), it and its steps and
# log start expiring, and its outcome is counted in the figures of the minute (`k.fig`), like
# an attempt's at its release.
END_RUN = (
    RECORD_FIGURES
    + """
local function end_run(k, token, state, now, retention, task, queue, version)
  redis.call('HSET', k.run, 'state', state, 'finished_at', now, 'updated_at', now,
             'retry_at', '')
  redis.call('ZREM', k.from_index, token)
  redis.call('ZADD', k.to_index, now, token)
  for _, key in ipairs({k.run, k.steps, k.log}) do redis.call('EXPIRE', key, retention) end
  redis.call('ZREMRANGEBYSCORE', k.to_index, '-inf', now - tonumber(retention))
  record_figures(k.fig, task, queue, version, {[state] = 1}, {}, nil)
end
"""
)

# Is an operator asking the run to stop? Rides along with the writes an attempt makes anyway.
CANCEL_ASKED = """
local function cancel_asked(run)
  local origin = redis.call('HGET', run, 'cancel_requested')
  return origin and origin ~= ''
end
"""

# begin (queued -> running; failed -> running for a failed run's job requeued by RQ's tools).
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
BEGIN_ATTEMPT = LuaScript(
    uses=(RERUN_RULE, LIMITS),
    keys={
        "run": "the run hash",
        "lease": "the token's lease (holds the attempt's holder)",
        "steps": "the run's finished steps",
        "delivery": "the intermediate list the job id was dequeued into",
        "queued_index": "tokens of queued runs by when they were queued",
        "running_index": "tokens of running runs by when they started",
        "failed_index": "tokens of failed runs by when they failed",
        "log": "the run's log stream",
        "job": "the RQ job hash of `job_id`",
    },
    args={
        "attempt": "the attempt this job is for",
        "holder": "the job id and a nonce of this execution, the lease's holder",
        "lease_ms": "the lease's TTL",
        "now": "epoch seconds",
        "worker": "the worker's name",
        "token": "the run's token",
        "version": "the code version running the attempt",
        "job_id": "the RQ job id",
        "limit_prefix": "the limits' key prefix (runner.runs.limits)",
        "lease_prefix": "the leases' key prefix",
    },
    body="""
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
""",
)

# renew (no change of state). Returns 0 when `holder` lost the lease, 2 when it holds it and
# the run is to be cancelled, else 1.
RENEW_LEASE = LuaScript(
    uses=(CANCEL_ASKED,),
    keys={"lease": "the token's lease", "run": "the run hash (read for a cancel request)"},
    args={"holder": "the attempt's holder (see BEGIN_ATTEMPT)", "lease_ms": "the new TTL"},
    body="""
if redis.call('GET', lease) ~= holder then return 0 end
redis.call('PEXPIRE', lease, lease_ms)
if cancel_asked(run) then return 2 end
return 1
""",
)

# write (no change of state: an attempt's progress). Returns 1, 2 when the run is also to be
# cancelled, or 0 (nothing written) when `holder` no longer holds the lease.
FENCED_WRITE = LuaScript(
    uses=(LOG_EVENTS, CANCEL_ASKED),
    keys={
        "lease": "the token's lease",
        "run": "the run hash",
        "steps": "the run's finished steps",
        "log": "the run's log stream",
    },
    args={
        "holder": "the attempt's holder (see BEGIN_ATTEMPT)",
        "cap": "the log stream's cap",
        "run_fields": Pairs("the run's fields"),
        "step": Pairs("a finished step's name and result (JSON), or none"),
        "events": Rest("the log events (JSON)"),
    },
    body="""
if redis.call('GET', lease) ~= holder then return 0 end
if run_fields_n > 0 then redis.call('HSET', run, unpack(ARGV, run_fields_from, run_fields_to)) end
if step_n > 0 then redis.call('HSET', steps, unpack(ARGV, step_from, step_to)) end
log_events(log, cap, events_from)
if cancel_asked(run) then return 2 end
return 1
""",
)

# release (running -> succeeded, failed, retrying or cancelled: the attempt's outcome).
# Returns 1, or 0 (nothing written) when `holder` no longer holds the lease. The attempt is
# counted here, once (runner.runs.figures): no round trip of its own.
RELEASE_ATTEMPT = LuaScript(
    uses=(LOG_EVENTS, RECORD_FIGURES, LIMITS),
    keys={
        "lease": "the token's lease",
        "run": "the run hash",
        "delayed": "retries by due time",
        "steps": "the run's finished steps",
        "log": "the run's log stream",
        "running_index": "tokens of running runs by when they started",
        "state_index": "tokens of runs in the state written, by when they got there",
        "fig_minute": "the minute's figures (runner.runs.figures)",
    },
    args={
        "holder": "the attempt's holder (see BEGIN_ATTEMPT)",
        "token": "the run's token",
        "retention": "seconds a finished run is kept",
        "retry_at": "due time of the retry; '' unless retrying",
        "cap": "the log stream's cap",
        "now": Arg("epoch seconds", number=True),
        "ttl_minute": "the minute's figures' TTL",
        # what the figures count: the run as its attempt began, and the outcome
        "outcome": "the state written",
        "task": "the run's task",
        "queue": "the run's queue",
        "version": "the code version that ran the attempt",
        "started": Arg("when the attempt began", number=True),
        "waited": Arg("its queue wait, '' if none", number=True),
        "cpu": Arg("its CPU seconds (runner.attempt.effort)", number=True),
        "busy": Arg("its busy seconds", number=True),
        "lease_ms": "the lease's TTL",
        "limit_key": "the run's limit key, '' if none (runner.runs.limits)",
        "limit_prefix": "the limits' key prefix",
        "lease_prefix": "the leases' key prefix",
        "run_prefix": "the runs' key prefix",
        "run_fields": Pairs("the run's fields, the state among them"),
        "events": Rest("the log events (JSON)"),
    },
    body="""
local held = redis.call('GETDEL', lease)  -- the check and the drop in one command
if held ~= holder then  -- lost: another attempt's lease goes back, with a whole lease period
  if held then redis.call('SET', lease, held, 'PX', lease_ms) end
  return 0
end
redis.call('HSET', run, unpack(ARGV, run_fields_from, run_fields_to))
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
local fig = {minute = fig_minute, ttl = ttl_minute}
record_figures(fig, task, queue, version, {started = 1, [outcome] = 1}, observed,
               {cpu = cpu, busy = busy})
return 1
""",
)


# The keys and arguments of a move that queues a run's next attempt as a new RQ job
# (QUEUE_NEXT): the requeues, the handover and the rerun.
NEXT_JOB_KEYS = {
    "run": "the run hash",
    "steps": "the run's finished steps",
    "log": "the run's log stream",
    "from_index": "tokens of runs in `seen_state`",
    "queued_index": "tokens of queued runs by when they were queued",
    "job_index": "job id -> token, for the new attempt's job id",
    "job": "the new attempt's RQ job hash",
    "queue": "the RQ queue it goes to",
    "queues": "RQ's set of queues",
}
NEXT_JOB_ARGS: dict[str, Declared] = {
    "token": "the run's token",
    "seen_state": "the state the caller saw",
    "seen_attempt": "the attempt the caller saw",
    "now": Arg("epoch seconds", number=True),
    "retention": "seconds the job id -> token entry is kept",
    "cap": "the log stream's cap",
    "job_id": "the new attempt's RQ job id",
    "job_fields": Pairs("the new attempt's RQ job hash"),
}


def _requeue(guard: str) -> LuaScript:
    """A move of a run to its next attempt, queued as a new RQ job at once, when `guard`
    (Lua that returns 0 to refuse, with nothing written) lets it. Returns 1, or 0."""
    return LuaScript(
        uses=(LOG_EVENTS, AS_SEEN, QUEUE_NEXT),
        keys={
            **NEXT_JOB_KEYS,
            "lease": "the token's lease",
            "delayed": "retries and scheduled runs by due time",
        },
        args={
            **NEXT_JOB_ARGS,
            "holder": "the attempt handing it over ('' when none)",
            "run_fields": Pairs("the run's fields for its next attempt"),
            "events": Rest("the log events (JSON)"),
        },
        body=guard
        + """
if run_fields_n > 0 then redis.call('HSET', run, unpack(ARGV, run_fields_from, run_fields_to)) end
local k = {run = run, steps = steps, log = log, from_index = from_index, queue = queue,
           queued_index = queued_index, job = job, queues = queues, job_index = job_index}
queue_next(k, token, job_id, now, retention, job_fields_from, job_fields_to)
log_events(log, cap, events_from)
return 1
""",
    )


# requeue_lost_lease (running -> queued, its next attempt): its lease expired, its worker died.
REQUEUE_LOST_LEASE = _requeue("""
if seen_state ~= 'running' or not as_seen(run, seen_state, seen_attempt) then return 0 end
if redis.call('EXISTS', lease) == 1 then return 0 end  -- its attempt is alive after all
""")

# requeue_undelivered (queued -> queued, its next attempt): its job was taken off the queue by
# a worker that died before it began it, or is gone from RQ's lists.
REQUEUE_UNDELIVERED = _requeue("""
if seen_state ~= 'queued' or not as_seen(run, seen_state, seen_attempt) then return 0 end
""")

# promote_retry (retrying -> queued; scheduled -> queued, its first job): its due time came.
PROMOTE_RETRY = _requeue("""
if seen_state ~= 'retrying' and seen_state ~= 'scheduled' then return 0 end
if not as_seen(run, seen_state, seen_attempt) then return 0 end
redis.call('ZREM', delayed, token)
""")

# hand_over (running -> queued, its next attempt at once): a stopping worker's attempt, or the
# supervisor of its killed horse, hands the run on while that attempt holds the lease.
HAND_OVER = _requeue("""
if seen_state ~= 'running' or not as_seen(run, seen_state, seen_attempt) then return 0 end
if redis.call('GET', lease) ~= holder then return 0 end
redis.call('DEL', lease)
""")

# fail_lost (running or queued -> failed, or cancelled when a cancel was asked): its attempt
# died (lease gone, or `holder`'s lease, dropped here: its horse was killed) with no attempt
# left, or before it could stop. Returns the state it ended in, or '' (nothing written) when
# the run moved on meanwhile.
FAIL_LOST = LuaScript(
    uses=(AS_SEEN, CANCEL_ASKED, END_RUN),
    keys={
        "run": "the run hash",
        "lease": "the token's lease",
        "steps": "the run's finished steps",
        "log": "the run's log stream",
        "from_index": "tokens of runs in `seen_state`",
        "failed_index": "tokens of failed runs",
        "cancelled_index": "tokens of cancelled runs",
        "fig_minute": "the minute's figures (runner.runs.figures)",
    },
    args={
        "token": "the run's token",
        "seen_state": "the state the caller saw",
        "seen_attempt": "the attempt the caller saw",
        "holder": "'': no attempt may hold the lease; else the dead attempt that holds it",
        "error": "the failure (JSON) if it fails",
        "now": Arg("epoch seconds", number=True),
        "retention": "seconds a finished run is kept",
        "cap": "the log stream's cap",
        "ttl_minute": "the minute's figures' TTL",
        "task": "the run's task",
        "queue": "the run's queue",
        "version": "the code version of its last attempt",
        "if_failed": "the log event (JSON) if it fails",
        "if_cancelled": "the log event (JSON) if it ends cancelled",
    },
    body="""
if seen_state ~= 'running' and seen_state ~= 'queued' then return '' end
if not as_seen(run, seen_state, seen_attempt) then return '' end
if holder == '' then
  if redis.call('EXISTS', lease) == 1 then return '' end  -- its attempt is alive after all
elseif redis.call('GET', lease) == holder then redis.call('DEL', lease)
else return ''
end
local state, event, to_index = 'failed', if_failed, failed_index
if cancel_asked(run) then state, event, to_index = 'cancelled', if_cancelled, cancelled_index
else redis.call('HSET', run, 'error', error) end
local k = {run = run, steps = steps, log = log, from_index = from_index, to_index = to_index,
           fig = {minute = fig_minute, ttl = ttl_minute}}
end_run(k, token, state, now, retention, task, queue, version)
redis.call('XADD', log, 'MAXLEN', '~', cap, '*', 'e', event)
return state
""",
)

# cancel_queued (queued, retrying or scheduled -> cancelled): an operator cancels a run that has
# not begun, as they saw it; its job leaves the queue (a copy already taken by a worker is
# refused by BEGIN_ATTEMPT). Returns 1, or 0 (nothing written) when the run moved on meanwhile.
CANCEL_QUEUED = LuaScript(
    uses=(LOG_EVENTS, AS_SEEN, END_RUN),
    keys={
        "run": "the run hash",
        "delayed": "retries and scheduled runs by due time",
        "steps": "the run's finished steps",
        "log": "the run's log stream",
        "queue": "the RQ queue its job waits in",
        "job": "its RQ job hash",
        "from_index": "tokens of runs in `seen_state`",
        "cancelled_index": "tokens of cancelled runs",
        "fig_minute": "the minute's figures (runner.runs.figures)",
    },
    args={
        "token": "the run's token",
        "seen_state": "the state the caller saw",
        "seen_attempt": "the attempt the caller saw",
        "origin": "who cancels: 'cli', 'web', ...",
        "now": Arg("epoch seconds", number=True),
        "retention": "seconds a finished run is kept",
        "cap": "the log stream's cap",
        "job_id": "the job id of its current attempt",
        "ttl_minute": "the minute's figures' TTL",
        "task": "the run's task",
        "queue_name": "the run's queue",
        "version": "the code version of its last attempt ('' if none began)",
        "events": Rest("the log events (JSON)"),
    },
    body="""
if seen_state ~= 'queued' and seen_state ~= 'retrying' and seen_state ~= 'scheduled' then
  return 0
end
if not as_seen(run, seen_state, seen_attempt) then return 0 end
redis.call('HSET', run, 'cancel_requested', origin)
log_events(log, cap, events_from)
if redis.call('LREM', queue, 0, job_id) > 0 then redis.call('DEL', job) end
redis.call('ZREM', delayed, token)
local k = {run = run, steps = steps, log = log, from_index = from_index,
           to_index = cancelled_index, fig = {minute = fig_minute, ttl = ttl_minute}}
end_run(k, token, 'cancelled', now, retention, task, queue_name, version)
return 1
""",
)

# ask_to_cancel (running, then -> cancelled by its release): an operator asks a running run to
# stop at its next checkpoint (`cancel_requested`), which its attempt reads in the reply of its
# next write or lease renewal. Returns 1, or 0 (nothing written) when the run moved on.
ASK_TO_CANCEL = LuaScript(
    uses=(LOG_EVENTS, AS_SEEN),
    keys={"run": "the run hash", "log": "the run's log stream"},
    args={
        "seen_attempt": "the attempt the caller saw",
        "origin": "who cancels: 'cli', 'web', ...",
        "now": "epoch seconds",
        "cap": "the log stream's cap",
        "events": Rest("the log events (JSON)"),
    },
    body="""
if not as_seen(run, 'running', seen_attempt) then return 0 end
redis.call('HSET', run, 'cancel_requested', origin, 'updated_at', now)
log_events(log, cap, events_from)
return 1
""",
)

# rerun (failed, cancelled, or with force succeeded -> queued): an operator reruns a run, if it
# is still as they saw it and the rule allows it (RERUN_RULE): it is queued as its next attempt
# (a new RQ job). Returns {verdict, state, attempt}: verdict 'requeued' (with the new state and
# attempt), 'would' (a dry run: nothing written), or why not: 'missing', 'changed' (it moved on
# since it was read) or 'refused' (the rule), with the run's state and attempt as they are.
RERUN_RUN = LuaScript(
    uses=(LOG_EVENTS, RERUN_RULE, QUEUE_NEXT),
    keys=NEXT_JOB_KEYS,
    args={
        **NEXT_JOB_ARGS,
        "force": "'1': a succeeded run is rerun too",
        "from_scratch": "'1': forget the finished steps, cursor and counters",
        "dry_run": "'1': say what would happen, write nothing",
        "events": Rest("the log events (JSON)"),
    },
    body="""
local seen = redis.call('HMGET', run, 'state', 'attempt')
if not seen[1] then return {'missing', '', ''} end
if seen[1] ~= seen_state or seen[2] ~= seen_attempt then return {'changed', seen[1], seen[2]} end
if not rerunnable(seen[1], force == '1') then return {'refused', seen[1], seen[2]} end
if dry_run == '1' then return {'would', seen[1], seen[2]} end
local attempt = rerun(run, steps, log, from_index, token, seen[2], from_scratch == '1')
local k = {run = run, steps = steps, log = log, from_index = from_index, queue = queue,
           queued_index = queued_index, job = job, queues = queues, job_index = job_index}
queue_next(k, token, job_id, now, retention, job_fields_from, job_fields_to)
log_events(log, cap, events_from)
return {'requeued', 'queued', tostring(attempt)}
""",
)
