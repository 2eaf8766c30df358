"""Putting work on the queue: idempotent enqueue, and the next attempt of an existing run.

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
from runner.keys import Keys
from runner.rqjobs import AttemptJobs, description, job_key, payload
from runner.runs import encode, texts
from runner.tasks import Task
from runner.tokens import canonical_json, check_token, derive_token, job_id

# KEYS: runs index, rq:queues, then per item: run, job index, rq job, rq queue, log stream.
# ARGV: now, retention, log cap, the RQ job fields shared per (queue, timeout) as a JSON list
# of flat pair lists, then per item: token, a JSON document {id: RQ job id, r: run hash
# pairs, t: index of its shared job fields, d: job description, e: the `run.queued` log
# event}, and the job's binary payload. (One JSON string per item, not ~70 arguments:
# redis-py packs each one.)
_ENQUEUE = """
local out, now, ttl, cap, pushed = {}, ARGV[1], tonumber(ARGV[2]), ARGV[3], {}
local shared = cjson.decode(ARGV[4])
for i = 0, (#KEYS - 2) / 5 - 1 do
  local k, a = 3 + 5*i, 5 + 3*i
  local run, jindex, job, queue, log = KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4]
  local seen = redis.call('HMGET', run, 'state', 'job_id')
  if seen[1] then
    out[#out + 1] = {seen[1], seen[2], 0}
  else
    local item = cjson.decode(ARGV[a + 1])
    redis.call('HSET', run, unpack(item.r))
    redis.call('ZADD', KEYS[1], now, ARGV[a])
    redis.call('HSET', job, 'data', ARGV[a + 2], 'description', item.d, unpack(shared[item.t]))
    redis.call('RPUSH', queue, item.id)
    pushed[queue] = true
    redis.call('SET', jindex, ARGV[a], 'EX', ttl)
    redis.call('XADD', log, 'MAXLEN', '~', cap, '*', 'e', item.e)
    out[#out + 1] = {'queued', item.id, 1}
  end
end
for queue in pairs(pushed) do redis.call('SADD', KEYS[2], queue) end
return out
"""

# Move an existing run to its next attempt, if it is still as the caller saw it.
# KEYS: run, lease, running, delayed, steps, job index, rq job, rq queue, rq:queues, log.
# ARGV: token, state, attempt, lease must be gone (0/1), wipe steps (0/1), retention,
#       n run pairs, pairs..., n job pairs, pairs... (no job pairs: the run ends and expires).
_ADVANCE = """
local seen = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if seen[1] ~= ARGV[2] or seen[2] ~= ARGV[3] then return 0 end
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local nrun = tonumber(ARGV[7])
local njob = tonumber(ARGV[8 + 2*nrun])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[5] == '1' then redis.call('DEL', KEYS[5]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 8, 7 + 2*nrun))
if njob > 0 then
  redis.call('PERSIST', KEYS[1]) redis.call('PERSIST', KEYS[5]) redis.call('PERSIST', KEYS[10])
  redis.call('HSET', KEYS[7], unpack(ARGV, 9 + 2*nrun, 8 + 2*nrun + 2*njob))
  redis.call('RPUSH', KEYS[8], redis.call('HGET', KEYS[1], 'job_id'))
  redis.call('SADD', KEYS[9], KEYS[8])
  redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[6])
else
  for _, i in ipairs({1, 5, 10}) do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
end
return 1
"""


def queued_event(token: str, task: Task, stamp: str, jid: str) -> str:
    """The first event of a run's log stream (JSON), written atomically with the run."""
    event = {
        "event": "run.queued", "state": "queued", "queue": task.queue, "token": token,
        "task": task.name, "attempt": 1, "job_id": jid, "level": "info", "timestamp": stamp,
    }  # fmt: skip
    return json.dumps(event, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Request:
    """One unit of work to enqueue: a task, its arguments and optionally the caller's token."""

    task: Task
    args: dict[str, Any]
    token: str | None = None

    def resolved_token(self) -> str:
        """The caller's token (checked), or one derived from the task and its arguments;
        raises InvalidArguments for a malformed token or arguments that are not JSON."""
        if self.token:
            canonical_json(self.args)
            return check_token(self.token)
        return derive_token(self.task.name, self.args)


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What enqueue did for one token: a new run (`deduplicated` false) or the existing one."""

    token: str
    job_id: str
    state: str
    deduplicated: bool


class Enqueuer:
    """Creates runs and pushes their attempts as RQ jobs (JSON payloads, nothing pickled)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._advance = redis.register_script(_ADVANCE)
        self.jobs = AttemptJobs(redis, failure_ttl=settings.retention_seconds)

    def enqueue(self, request: Request) -> Enqueued:
        """Enqueue one unit of work, or return its existing run (deduplicated)."""
        return self.enqueue_many([request])[0]

    def enqueue_many(self, requests: Sequence[Request]) -> list[Enqueued]:
        """Enqueue many in one atomic round trip; each token gets at most one run."""
        if not requests:
            return []
        now = time.time()
        at = datetime.fromtimestamp(now, UTC)
        stamp = at.isoformat().replace("+00:00", "Z")
        keys = [self.keys.runs, Queue.redis_queues_keys]
        args: list[Any] = []
        shared: dict[tuple[str, int], int] = {}  # (queue, timeout) -> 1-based index
        tokens = []
        for request in requests:
            token = request.resolved_token()
            tokens.append(token)
            jid = job_id(token, 1)
            queue, timeout = request.task.queue, request.task.timeout
            item = {
                "id": jid,
                "r": self._new_run_fields(request, token, now, jid),
                "t": shared.setdefault((queue, timeout), len(shared) + 1),
                "d": description(token, 1),
                "e": queued_event(token, request.task, stamp, jid),
            }
            keys += [self.keys.run(token), self.keys.job(jid), job_key(jid)]
            keys += [self.jobs.queue(queue).key, self.keys.log(token)]
            args += [token, json.dumps(item, separators=(",", ":")), payload(token, 1)]
        fields = [
            [str(v) for pair in self.jobs.shared_fields(queue, timeout, at).items() for v in pair]
            for queue, timeout in shared
        ]
        head: list[Any] = [now, self.settings.retention_seconds, self.settings.log_max_events]
        head.append(json.dumps(fields, separators=(",", ":")))
        replies = cast(list[list[Any]], self._enqueue(keys=keys, args=head + args))
        return [
            Enqueued(token, job_id=jid, state=state, deduplicated=not reply[2])
            for token, reply in zip(tokens, replies, strict=True)
            for state, jid in [texts(reply[:2])]
        ]

    def advance(
        self,
        token: str,
        *,
        seen_state: str,
        seen_attempt: int,
        run_fields: dict[str, Any],
        queue: str | None = None,
        timeout: int = 3600,
        lease_gone: bool = False,
        wipe_steps: bool = False,
    ) -> bool:
        """Move a run on from (seen_state, seen_attempt), atomically: with `queue`, push attempt
        `run_fields['attempt']` as a new RQ job; without, just write the fields. False if the
        run changed meanwhile (someone else moved it first)."""
        flat = encode({**run_fields, "updated_at": time.time()})
        job_fields: list[Any] = []
        new_job = queue_key = self.keys.job("-")
        if queue is not None:
            attempt = int(run_fields["attempt"])
            new_id = job_id(token, attempt)
            flat += ["job_id", new_id, "state", "queued"]
            new_job, queue_key = job_key(new_id), self.jobs.queue(queue).key
            fields = self.jobs.fields(queue, token, attempt, timeout, datetime.now(UTC))
            job_fields = [v for pair in fields.items() for v in pair]
        keys = [
            self.keys.run(token), self.keys.lease(token), self.keys.running, self.keys.delayed,
            self.keys.steps(token), self.keys.job(job_id(token, int(run_fields.get("attempt", 0)))),
            new_job, queue_key, Queue.redis_queues_keys, self.keys.log(token),
        ]  # fmt: skip
        args = [
            token, seen_state, seen_attempt, int(lease_gone), int(wipe_steps),
            self.settings.retention_seconds,
            len(flat) // 2, *flat, len(job_fields) // 2, *job_fields,
        ]  # fmt: skip
        return bool(self._advance(keys=keys, args=args))

    def _new_run_fields(self, request: Request, token: str, now: float, jid: str) -> list[Any]:
        task = request.task
        max_attempts = task.retry.attempts or self.settings.max_attempts
        return encode(
            {
                "token": token,
                "task": task.name,
                "args": request.args,
                "queue": task.queue,
                "timeout": task.timeout,
                "state": "queued",
                "attempt": 1,
                "attempt_base": 0,
                "max_attempts": max_attempts,
                "generation": 0,
                "job_id": jid,
                "created_at": now,
                "updated_at": now,
            }
        )
