"""Putting work on the queue: idempotent enqueue of new runs (`Runs` moves existing ones).

Every write here is one Lua script, so a run record and its RQ job appear together or not
at all, whatever number of callers race: the same token is never queued twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis
from rq import Queue

from runner.config import Settings
from runner.connections.lua import registered
from runner.connections.redis import REDIS_DOWN, Durable
from runner.connections.replicas import Replicas
from runner.errors import NotReplicated
from runner.keys import Keys
from runner.record import Enqueued as Enqueued  # re-exported: its old home
from runner.record import RunState, encode, texts
from runner.runs.rqjobs import AttemptJobs, description, job_key, payload
from runner.runs.tracing import carrier
from runner.tasks import Task
from runner.tokens import canonical_json, check_token, derive_token, job_id

# Create each run that does not exist yet, with its first RQ job, in one call. Returns, per
# item, {state, job id, 1 if created else 0}. (One JSON string per item, not ~70 arguments:
# redis-py packs each one.)
ENQUEUE_RUNS = """
local runs = KEYS[1]          -- the runs index: token by creation time
local queues = KEYS[2]        -- RQ's set of queues
local queued_index = KEYS[3]  -- tokens of queued runs by when they were queued
local tasks = KEYS[4]         -- the names of the tasks that have a task index
local scheduled = KEYS[5]     -- the scheduled set: tokens by due time (`Keys.delayed`)
local scheduled_index = KEYS[6]  -- tokens of scheduled runs by when they were scheduled
-- then per item eight keys: run hash, job index (job id -> token), RQ job, RQ queue, log,
-- the task's index, the queue's index (tokens by creation time) and the token's marker of a
-- finished run that moved to history (`state|job id`)
local now = ARGV[1]           -- epoch seconds
local retention = tonumber(ARGV[2])  -- TTL of the job index entry
local cap = ARGV[3]           -- the log stream's cap
local shared = cjson.decode(ARGV[4])  -- RQ job fields per (queue, timeout): flat pair lists
-- then per item three arguments: token; JSON {id: RQ job id, r: run hash pairs, t: index
-- into `shared`, d: job description, e: the `run.queued` log event, n: task name, s: the
-- due time of a scheduled run (absent: queued now)}; the job's payload

local out, pushed = {}, {}
for i = 0, (#KEYS - 6) / 8 - 1 do
  local k, a = 7 + 8*i, 5 + 3*i  -- this item's first key and first argument
  local run, job_index, job, queue, log = KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4]
  local task_index, queue_index, done = KEYS[k+5], KEYS[k+6], KEYS[k+7]
  local token, item_json, data = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local seen = redis.call('HMGET', run, 'state', 'job_id')
  local moved = (not seen[1]) and redis.call('GET', done)
  if seen[1] then
    out[#out + 1] = {seen[1], seen[2], 0}
  elseif moved then
    local bar = string.find(moved, '|', 1, true)
    out[#out + 1] = {string.sub(moved, 1, bar - 1), string.sub(moved, bar + 1), 0}
  else
    local item = cjson.decode(item_json)
    redis.call('HSET', run, unpack(item.r))
    redis.call('ZADD', runs, now, token)
    redis.call('ZADD', task_index, now, token)
    redis.call('ZADD', queue_index, now, token)
    redis.call('SADD', tasks, item.n)
    redis.call('SET', job_index, token, 'EX', retention)
    redis.call('XADD', log, 'MAXLEN', '~', cap, '*', 'e', item.e)
    if item.s then  -- its job is made when it is due (`Reaper.promote_due`)
      redis.call('ZADD', scheduled, item.s, token)
      redis.call('ZADD', scheduled_index, now, token)
      out[#out + 1] = {'scheduled', item.id, 1}
    else
      redis.call('ZADD', queued_index, now, token)
      redis.call('HSET', job, 'data', data, 'description', item.d, unpack(shared[item.t]))
      redis.call('RPUSH', queue, item.id)
      pushed[queue] = true
      out[#out + 1] = {'queued', item.id, 1}
    end
  end
end
for queue in pairs(pushed) do redis.call('SADD', queues, queue) end
return out
"""


def queued_event(request: Request, token: str, stamp: str, jid: str) -> str:
    """The first event of a run's log stream (JSON), written atomically with the run:
    `run.queued`, or `run.scheduled` with its due time."""
    event: dict[str, Any] = {
        "event": "run.queued", "state": RunState.QUEUED, "queue": request.queue_name,
        "token": token, "task": request.task.name, "attempt": 1, "job_id": jid,
        "level": "info", "timestamp": stamp,
    }  # fmt: skip
    if request.at is not None:
        event |= {"event": "run.scheduled", "state": RunState.SCHEDULED, "due_at": request.at}
    return json.dumps(event, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Request:
    """One unit of work to enqueue: a task, its arguments and optionally the caller's token,
    another queue than the task's, a due time (epoch seconds: the run is scheduled until
    then) and the caller's W3C `traceparent`."""

    task: Task
    args: dict[str, Any]
    token: str | None = None
    queue: str | None = None
    at: float | None = None
    traceparent: str | None = None

    @property
    def queue_name(self) -> str:
        return self.queue or self.task.queue

    def __post_init__(self) -> None:
        """Raises InvalidArguments when the arguments do not fit the task's signature (or
        its limit's key function fails on them)."""
        self.task.check_args(self.args)
        if self.task.limit is not None:
            self.task.limit.key_of(self.task.name, self.args)

    def resolved_token(self) -> str:
        """The caller's token (checked), or one derived from the task and its arguments;
        raises InvalidArguments for a malformed token or arguments that are not JSON."""
        if self.token:
            canonical_json(self.args)
            return check_token(self.token)
        return derive_token(self.task.name, self.args)


@dataclass(frozen=True, slots=True)
class EnqueueCall:
    """One call of the enqueue script: the tokens it enqueues, its keys and arguments."""

    tokens: tuple[str, ...]
    keys: list[str]
    args: list[Any]

    def results(self, replies: Sequence[Sequence[Any]]) -> list[Enqueued]:
        """The script's replies, one per token: what enqueue did for it."""
        return [
            Enqueued(token, job_id=jid, state=RunState(state), deduplicated=not int(reply[2]))
            for token, reply in zip(self.tokens, replies, strict=True)
            for state, jid in [texts(reply[:2])]
        ]


class Enqueuer:
    """Creates runs and pushes their attempts as RQ jobs (JSON payloads, nothing pickled)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._enqueue = registered(redis, ENQUEUE_RUNS)
        self.jobs = AttemptJobs(redis, failure_ttl=settings.retention_seconds)
        self.replicas = Replicas(redis, self.keys, needed=settings.min_replicas)
        self.durable = Durable(settings.redis_outage_seconds)

    def enqueue(self, request: Request) -> Enqueued:
        """Enqueue one unit of work, or return its existing run (deduplicated)."""
        return self.enqueue_many([request])[0]

    def enqueue_many(self, requests: Sequence[Request]) -> list[Enqueued]:
        """Enqueue many in one atomic round trip; each token gets at most one run."""
        if not requests:
            return []
        call = self.call(requests)
        return call.results(self._enqueue_replicated(call.keys, call.args))

    def call(self, requests: Sequence[Request]) -> EnqueueCall:
        """The keys and arguments of the enqueue script for `requests` (`ENQUEUE_RUNS`: the
        asyncio client runs the same call)."""
        now = time.time()
        at = datetime.fromtimestamp(now, UTC)
        stamp = at.isoformat().replace("+00:00", "Z")
        keys = [self.keys.runs, Queue.redis_queues_keys]
        keys += [self.keys.by_state(RunState.QUEUED), self.keys.tasks, self.keys.delayed]
        keys.append(self.keys.by_state(RunState.SCHEDULED))
        args: list[Any] = []
        shared: dict[tuple[str, int], int] = {}  # (queue, timeout) -> 1-based index
        tokens = []
        for request in requests:
            token = request.resolved_token()
            tokens.append(token)
            jid = job_id(token, 1)
            queue, timeout = request.queue_name, request.task.timeout
            item: dict[str, Any] = {
                "id": jid,
                "r": self._new_run_fields(request, token, now, jid),
                "t": shared.setdefault((queue, timeout), len(shared) + 1),
                "d": description(token, 1),
                "e": queued_event(request, token, stamp, jid),
                "n": request.task.name,
            }
            if request.at is not None:
                item["s"] = repr(float(request.at))
            keys += [self.keys.run(token), self.keys.job(jid), job_key(jid)]
            keys += [self.jobs.queue(queue).key, self.keys.log(token)]
            keys += [self.keys.by_task(request.task.name), self.keys.by_queue(queue)]
            keys.append(self.keys.done(token))
            args += [token, json.dumps(item, separators=(",", ":")), payload(token, 1)]
        fields = [
            [str(v) for pair in self.jobs.shared_fields(queue, timeout, at).items() for v in pair]
            for queue, timeout in shared
        ]
        head: list[Any] = [now, self.settings.retention_seconds, self.settings.log_max_events]
        head.append(json.dumps(fields, separators=(",", ":")))
        return EnqueueCall(tuple(tokens), keys, head + args)

    def _enqueue_replicated(self, keys: list[str], args: list[Any]) -> list[list[Any]]:
        """Run the enqueue script; behind Sentinel, return only once a replica has its writes
        (raises NotReplicated after the outage budget). A failover before that may have lost
        them: the script runs again on the new master (a run that survived is deduplicated,
        and still reported as new)."""
        replies = cast(list[list[Any]], self._enqueue(keys=keys, args=args))
        deadline = time.monotonic() + self.settings.redis_outage_seconds
        while True:
            try:
                self.replicas.confirm()
                return replies
            except NotReplicated:
                if time.monotonic() > deadline:
                    raise
            except REDIS_DOWN:
                again = cast(list[list[Any]], self.durable(self._enqueue, keys=keys, args=args))
                replies = [[*new[:2], max(int(old[2]), int(new[2]))]
                           for old, new in zip(replies, again, strict=True)]  # fmt: skip

    def _new_run_fields(self, request: Request, token: str, now: float, jid: str) -> list[Any]:
        task = request.task
        max_attempts = task.retry.attempts or self.settings.max_attempts
        scheduled = request.at is not None
        extra: dict[str, Any] = {"due_at": request.at} if scheduled else {}
        # the caller's trace context, or the enqueuing code's current span's ({}: none)
        extra |= {"traceparent": request.traceparent} if request.traceparent else carrier()
        if task.limit is not None:  # read by BEGIN_ATTEMPT (runner.runs.limits)
            extra["limit_key"] = task.limit.key_of(task.name, request.args)
            extra["limit_concurrency"] = task.limit.concurrency or 0
            extra["limit_rate"] = task.limit.rate or 0
            extra["limit_per"] = task.limit.per
        return encode(
            {
                **extra,
                "token": token,
                "task": task.name,
                "args": request.args,
                "queue": request.queue_name,
                "timeout": task.timeout,
                "state": RunState.SCHEDULED if scheduled else RunState.QUEUED,
                "attempt": 1,
                "attempt_base": 0,
                "max_attempts": max_attempts,
                "generation": 0,
                "job_id": jid,
                "created_at": now,
                "queued_at": now,
                "updated_at": now,
            }
        )
