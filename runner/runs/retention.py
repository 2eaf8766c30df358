"""Retention: removing from Redis what is past the retention window.

Finished runs expire by TTL on their own; pruning catches what slipped through: entries of
the runs index whose run record is gone, and finished runs past retention that have no TTL.
Each run is judged and removed in one Lua call, so a run that is queued, running or retrying
(or that is recreated meanwhile) is never touched. `waiting_to_move` counts the finished runs
past their time in Redis (runner.runs.move takes them to history), for `runner health`.
"""

from __future__ import annotations

import time
from collections import Counter

from redis import Redis

from runner.config import Settings
from runner.connections.lua import registered
from runner.keys import Keys
from runner.record import RunState, texts
from runner.runs.rqjobs import known_queues

CHUNK = 500
LEAVING = (RunState.SUCCEEDED, RunState.CANCELLED, RunState.FAILED)  # states that move to history

# Judge one run and remove it if it is past retention; returns what it found.
_PRUNE_RUN = """
local runs = KEYS[1]          -- the runs index
local run = KEYS[2]           -- the run hash
local steps = KEYS[3]         -- the run's finished steps
local log = KEYS[4]           -- the run's log stream
local token = ARGV[1]
local cutoff = tonumber(ARGV[2])  -- epoch seconds: a run that ended before it expires

local state = redis.call('HGET', run, 'state')
if not state then
  if redis.call('ZREM', runs, token) == 0 then return 'gone' end
  redis.call('DEL', steps, log)
  return 'orphaned'
end
if state ~= 'succeeded' and state ~= 'failed' then return 'active' end
local at = redis.call('HMGET', run, 'finished_at', 'updated_at', 'created_at')
local ended = tonumber(at[1]) or tonumber(at[2]) or tonumber(at[3]) or 0
if ended > cutoff then return 'kept' end
redis.call('DEL', run, steps, log)
redis.call('ZREM', runs, token)
return 'expired'
"""


def prune_runs(redis: Redis, settings: Settings, *, now: float | None = None) -> dict[str, int]:
    """Remove index entries whose run is gone ('orphaned') and finished runs that ended more
    than `settings.retention_seconds` before `now` with their steps and log ('expired');
    returns those counts and how many runs were 'kept' or 'active'. Raises RedisError."""
    keys = Keys(settings.prefix)
    cutoff = (time.time() if now is None else now) - settings.retention_seconds
    script = registered(redis, _PRUNE_RUN)
    # ZSCAN may return a member twice; judge each token once.
    tokens = sorted({texts([member])[0] for member, _ in redis.zscan_iter(keys.runs)})
    counts: Counter[str] = Counter({"expired": 0, "orphaned": 0, "kept": 0, "active": 0})
    indexes = _indexes(redis, settings)
    for start in range(0, len(tokens), CHUNK):
        pipe = redis.pipeline(transaction=False)
        chunk = tokens[start : start + CHUNK]
        for token in chunk:
            run_keys = [keys.runs, keys.run(token), keys.steps(token), keys.log(token)]
            script(keys=run_keys, args=[token, cutoff], client=pipe)
        outcomes = texts(pipe.execute())
        counts.update(outcomes)
        removed = [t for t, o in zip(chunk, outcomes, strict=True) if o in ("expired", "orphaned")]
        if removed:  # out of the listings' indexes too
            pipe = redis.pipeline(transaction=False)
            for index in indexes:
                pipe.zrem(index, *removed)
            pipe.execute()
    counts.pop("gone", None)
    return dict(counts)


def _indexes(redis: Redis, settings: Settings) -> list[str]:
    """Every index a run's token may be in: per state, per task, per queue."""
    keys = Keys(settings.prefix)
    tasks = texts(redis.smembers(keys.tasks))
    return [
        *(keys.by_state(s) for s in RunState),
        *(keys.by_task(t) for t in tasks),
        *(keys.by_queue(q) for q in known_queues(redis, settings)),
    ]


def waiting_to_move(redis: Redis, settings: Settings, *, now: float, grace: float = 0.0) -> int:
    """How many finished runs were due to move more than `grace` seconds ago and are still in
    Redis (`runner health`: the mover, or its database, is behind)."""
    keys = Keys(settings.prefix)
    total = 0
    for state in LEAVING:
        wait = settings.failed_seconds if state == RunState.FAILED else None
        cutoff = now - grace - (settings.history_delay_seconds if wait is None else wait)
        total += int(redis.zcount(keys.by_state(state), "-inf", cutoff))
    return total
