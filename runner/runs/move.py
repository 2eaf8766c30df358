"""The move: finished runs go from Redis to the history tables (runner.runs.history).

One pass copies the runs that failed since the last pass to history at once (they also stay
in Redis), then takes a batch of runs that finished long enough ago (succeeded and cancelled ones
`history_delay_seconds` after they ended, failed ones `failed_seconds` after, so `rq requeue`
works meanwhile), reads what Redis holds for each (record, steps, log), writes it to history in
one transaction (replacing an earlier copy: idempotent), then removes them from Redis in one
call of `FORGET_MOVED`. That script compares each run with the copy (its state, generation,
last change and log length) and leaves a run that changed since (a rerun) for a later pass;
for each run it removes it writes the token's marker (`Keys.done`: `state|job id`, expiring
when the run's record would have), so enqueueing the token again stays deduplicated.

A mover killed between the copy and the delete leaves the run in both stores: readers prefer
Redis, and the next pass copies it again over the same rows. The move is database side-work
(DESIGN.md, Decisions 4): it runs in the relay's process, never on a job's path. The same
thread prunes history older than `history_seconds` (`RUNNER_HISTORY_DAYS`), in batches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

import structlog
from redis import Redis
from rq.registry import FailedJobRegistry
from sqlalchemy.exc import SQLAlchemyError

from runner.config import Settings
from runner.connections.lua import registered
from runner.errors import RunnerError
from runner.keys import Keys
from runner.record import RunState, texts
from runner.runs.history import Copy, HistoryStore
from runner.runs.retention import LEAVING
from runner.runs.rqjobs import job_key

log = structlog.get_logger("runner.runs.move")
BATCH = 200
POLL_SECONDS = 1.0
FAILED_OVERLAP_SECONDS = 5.0  # failed runs are copied again from this long before the last copy
PRUNE_SECONDS = 600.0  # history is pruned this often (in batches, until none is left)

# Remove the runs that were copied to history, each only if unchanged since the copy. Returns
# per item 1 (removed) or 0 (changed: left for a later pass).
FORGET_MOVED = """
local runs = KEYS[1]          -- the runs index
local succeeded = KEYS[2]     -- the state indexes a finished run is in
local cancelled = KEYS[3]
local failed = KEYS[4]
-- then per item nine keys: run hash, steps, log, marker, job index entry, RQ job hash, RQ
-- failed registry of its queue, the task's index, the queue's index
-- per item six arguments: token, state, generation, updated_at and log length as copied,
-- and the marker's TTL (seconds)
local ttl_floor = 1
local out = {}
for i = 0, (#KEYS - 4) / 9 - 1 do
  local k, a = 5 + 9*i, 1 + 6*i  -- this item's first key and first argument
  local run, steps, log, done = KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3]
  local job_index, job, failed_jobs = KEYS[k+4], KEYS[k+5], KEYS[k+6]
  local task_index, queue_index = KEYS[k+7], KEYS[k+8]
  local token, state, generation, updated = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3]
  local log_length, ttl = tonumber(ARGV[a+4]), tonumber(ARGV[a+5])
  local now = redis.call('HMGET', run, 'state', 'generation', 'updated_at', 'job_id')
  if now[1] == state and (now[2] or '0') == generation and now[3] == updated
      and redis.call('XLEN', log) == log_length then
    local job_id = now[4] or ''
    redis.call('DEL', run, steps, log, job_index, job)
    redis.call('ZREM', failed_jobs, job_id)
    for _, index in ipairs({runs, succeeded, cancelled, failed, task_index, queue_index}) do
      redis.call('ZREM', index, token)
    end
    redis.call('SET', done, state .. '|' .. job_id, 'EX', math.max(ttl_floor, ttl))
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


# Bring a run back from history into Redis, unless Redis has it (then it is left as it is).
# Returns 1 when restored, 0 when Redis had it.
RESTORE_RUN = """
local run = KEYS[1]           -- the run hash
local steps = KEYS[2]         -- its finished steps
local log = KEYS[3]           -- its log stream
local done = KEYS[4]          -- its marker (`Keys.done`)
local runs = KEYS[5]          -- the runs index
local state_index = KEYS[6]   -- its state's index
local task_index = KEYS[7]    -- its task's index
local queue_index = KEYS[8]   -- its queue's index
local tasks = KEYS[9]         -- the task names that have an index
local token = ARGV[1]
local fields = cjson.decode(ARGV[2])  -- the run hash as pairs
local step_pairs = cjson.decode(ARGV[3])  -- steps as pairs
local entries = cjson.decode(ARGV[4])  -- log entries: [id, [field, value, ...]]
local created, ended, task = ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', run) == 1 then return 0 end
redis.call('HSET', run, unpack(fields))
if #step_pairs > 0 then redis.call('HSET', steps, unpack(step_pairs)) end
redis.call('DEL', log)
for _, entry in ipairs(entries) do redis.call('XADD', log, entry[1], unpack(entry[2])) end
redis.call('ZADD', runs, created, token)
redis.call('ZADD', state_index, ended, token)
redis.call('ZADD', task_index, created, token)
redis.call('ZADD', queue_index, created, token)
redis.call('SADD', tasks, task)
redis.call('DEL', done)
return 1
"""


def restore(redis: Redis, settings: Settings, token: str, store: HistoryStore) -> bool:
    """Bring `token`'s run back from history into Redis with its steps and log (a rerun of
    a run that moved); False when history has no such run or Redis has it already."""
    copy = store.copy(token)
    if copy is None:
        return False
    keys = Keys(settings.prefix)
    run = copy.run
    task, queue = run.get("task", ""), run.get("queue", "default")
    ended = run.get("finished_at") or run.get("updated_at") or "0"
    pairs = [v for pair in run.items() for v in pair]
    steps = [v for pair in copy.steps.items() for v in pair]
    entries = [[eid, [v for pair in fields.items() for v in pair]] for eid, fields in copy.log]
    call_keys = [keys.run(token), keys.steps(token), keys.log(token), keys.done(token),
                 keys.runs, keys.by_state(run.get("state", "")), keys.by_task(task),
                 keys.by_queue(queue), keys.tasks]  # fmt: skip
    args = [token, json.dumps(pairs), json.dumps(steps), json.dumps(entries)]
    args += [run.get("created_at") or "0", ended, task]
    return bool(registered(redis, RESTORE_RUN)(keys=call_keys, args=args))


class Mover:
    """Moves finished runs from Redis to history (see the module's docstring)."""

    def __init__(
        self, redis: Redis, settings: Settings, *, store: HistoryStore | None = None,
        batch: int = BATCH,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.store = store or HistoryStore(settings)
        self.batch = batch
        self._forget = registered(redis, FORGET_MOVED)

    def due(self, *, now: float | None = None) -> list[str]:
        """Tokens of finished runs due to move, at most a batch."""
        now = time.time() if now is None else now
        tokens: list[str] = []
        for state in LEAVING:
            wait = self.settings.failed_seconds if state == RunState.FAILED else None
            cutoff = now - (self.settings.history_delay_seconds if wait is None else wait)
            left = self.batch - len(tokens)
            if left > 0:
                found = self.redis.zrangebyscore(self.keys.by_state(state), "-inf", cutoff,
                                                 start=0, num=left)  # fmt: skip
                tokens += texts(found)
        return tokens

    def copy(self, tokens: list[str]) -> list[Copy]:
        """What Redis holds for each finished run of `tokens` (a run gone or not finished is
        left out)."""
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.hgetall(self.keys.run(token))
            pipe.hgetall(self.keys.steps(token))
            pipe.xrange(self.keys.log(token))
        replies = pipe.execute()
        copies = []
        for i, token in enumerate(tokens):
            run, steps, entries = replies[3 * i : 3 * i + 3]
            fields = _decoded(run)
            if fields.get("state") not in LEAVING:
                continue
            events = [(texts([eid])[0], _decoded(f)) for eid, f in entries]
            copies.append(Copy(token, fields, _decoded(steps), events))
        return copies

    def forget(self, copies: list[Copy], *, now: float | None = None) -> int:
        """Remove the copied runs from Redis, each only if unchanged since the copy; returns
        how many were removed."""
        if not copies:
            return 0
        now = time.time() if now is None else now
        keys = [self.keys.runs, *(self.keys.by_state(s) for s in LEAVING)]
        args: list[Any] = []
        for c in copies:
            run = c.run
            jid, queue = run.get("job_id", ""), run.get("queue", "default")
            ended = float(run.get("finished_at") or run.get("updated_at") or now)
            keys += [self.keys.run(c.token), self.keys.steps(c.token), self.keys.log(c.token)]
            keys += [self.keys.done(c.token), self.keys.job(jid), job_key(jid)]
            keys.append(FailedJobRegistry.key_template.format(queue))
            keys += [self.keys.by_task(run.get("task", "")), self.keys.by_queue(queue)]
            ttl = int(self.settings.retention_seconds - (now - ended))
            args += [c.token, run.get("state", ""), run.get("generation") or "0"]
            args += [run.get("updated_at", ""), len(c.log), ttl]
        return sum(int(x) for x in self._forget(keys=keys, args=args))

    def move_once(self) -> int:
        """One pass: copy the runs that failed since the last pass to history (they stay in
        Redis), and a batch of due runs, then remove those from Redis; returns how many left
        Redis. Raises SQLAlchemyError and RedisError."""
        self.copy_failed()
        copies = self.copy(self.due())
        if not copies:
            return 0
        self.store.write(copies)
        return self.forget(copies)

    def copy_failed(self, *, now: float | None = None) -> int:
        """Copy to history the runs that failed since the last copy (from a few seconds
        before it: another host's clock; copying again is harmless), leaving them in Redis;
        returns how many."""
        now = time.time() if now is None else now
        raw = self.redis.get(self.keys.failed_copied)
        found = cast(list[tuple[bytes, float]], self.redis.zrangebyscore(
            self.keys.by_state(RunState.FAILED), float(raw) if raw else "-inf", now,
            start=0, num=self.batch, withscores=True))  # fmt: skip
        if not found:
            return 0
        copies = self.copy(texts([token for token, _ in found]))
        if copies:
            self.store.write(copies)
        full = len(found) >= self.batch  # more to copy: on from the last one
        done = float(found[-1][1]) if full else now - FAILED_OVERLAP_SECONDS
        self.redis.set(self.keys.failed_copied, repr(done))
        return len(copies)

    def prune_once(self, *, now: float | None = None) -> int:
        """Delete a batch of history older than `history_seconds`; returns how many runs."""
        now = time.time() if now is None else now
        return self.store.prune(before=now - self.settings.history_seconds, batch=self.batch)

    def run(self, *, stopped: Callable[[], bool] = lambda: False) -> None:
        """Move (and prune) until `stopped()`; a database or Redis outage only delays them."""
        pruned_at = 0.0
        while not stopped():
            pause = POLL_SECONDS
            try:
                if self.move_once() >= self.batch:
                    pause = 0.0
                elif time.monotonic() - pruned_at > PRUNE_SECONDS and (
                    self.prune_once() < self.batch  # more to prune: again next pass
                ):
                    pruned_at = time.monotonic()
            except (SQLAlchemyError, RunnerError, OSError) as exc:
                log.warning("history.move_failed", error=str(exc).splitlines()[0][:300])
                pause = 5.0
            except Exception as exc:  # a Redis error: the thread must keep going
                log.warning("history.move_failed", error=repr(exc)[:300])
                pause = 5.0
            time.sleep(pause)


def _decoded(raw: Any) -> dict[str, str]:
    return {texts([k])[0]: texts([v])[0] for k, v in dict(raw).items()}
