"""Delivery: how a job goes from its queue into an attempt, and how one lost on the way is found.

RQ moves a dequeued job id into its queue's intermediate list (LMOVE) when it works one queue,
and drops it from there before the job runs; with several queues it simply pops it (LPOP). A
horse killed between the pop and the attempt's claim of its lease loses the job: no queue, no
registry and no lease knows of it, and its run stays `queued` for ever.

The runner closes that gap. Every dequeue moves the job id into the intermediate list, whatever
the number of queues; the id leaves the list only in the Lua call that claims the run's lease
(`Runs.begin`); and the reaper gives the next attempt to a run whose job id has sat in an
intermediate list for longer than a lease period (`Limbo`). At every moment a job is in its
queue, in an intermediate list, or held under a lease, or (a run of a limited task over its
limit) waits in its key's wait set (runner.runs.limits): each of them is watched.

Before its job exists, a run can wait in one more place: the scheduled set (`Keys.delayed`,
tokens by due time), for a retry's backoff or a run enqueued with `at=` / `after=`. Its job
is made and pushed to the queue, in one Lua call with the run's move to `queued`, by the
reaper of any live worker once it is due (`Reaper.promote_due`): nothing is held by a worker
meanwhile, so the death of every worker loses nothing, and the first reaper that comes up
after the due time pushes it, once.

A horse takes its next job ahead, in the transaction that records the success of the job it
has just run (`stage_take`): the same move, one round trip fewer per job. A horse that stops,
or finds its worker suspended, before it begins that job gives it back to the head of its
queue (`put_back`); one that dies holding it leaves it in the intermediate list, to the
reaper like any other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job

from runner.config import Settings
from runner.connections.lua import registered
from runner.keys import Keys
from runner.record import texts
from runner.runs.rqjobs import known_queues

# A worker of several queues blocks on its first queue at most this long before it looks at
# the others again (Redis can block on several lists only with a pop, never with a move).
MULTI_QUEUE_WAIT_SECONDS = 1.0

# Move the first job id of the first non-empty queue into its intermediate list, and read its
# job hash, in one call; returns {queue, job id, job hash pairs}, or false when every queue is
# empty. (RQ moves, then fetches the hash: two round trips.)
_MOVE_FIRST = """
local function move_first(job_prefix, from)  -- RQ's job key prefix; KEYS from `from` on:
  for i = from, #KEYS, 2 do  -- pairs of (queue, its intermediate list), in priority order
    local queue, intermediate = KEYS[i], KEYS[i + 1]
    local id = redis.call('LMOVE', queue, intermediate, 'LEFT', 'RIGHT')
    if id then return {queue, id, redis.call('HGETALL', job_prefix .. id)} end
  end
  return false
end
"""
_MOVE_FIRST_JOB = (
    _MOVE_FIRST
    + """
local job_prefix = ARGV[1]    -- RQ's job key prefix
return move_first(job_prefix, 1)  -- KEYS: pairs of (queue, intermediate list)
"""
)

# The same move by a horse that has just finished a job, which stays `busy` while it holds
# the next one: its RQ worker hash says `idle` (ARGV[2]) only when every queue was empty.
_TAKE_AHEAD = (
    _MOVE_FIRST
    + """
local worker = KEYS[1]        -- the horse's RQ worker hash
local job_prefix = ARGV[1]    -- RQ's job key prefix
local idle = ARGV[2]          -- RQ's name of the idle state
local found = move_first(job_prefix, 2)  -- KEYS[2] on: pairs of (queue, intermediate list)
if not found then redis.call('HSET', worker, 'state', idle) end
return found
"""
)


def delivery_key(queue_name: str) -> str:
    """The intermediate list that holds a job of `queue_name` between dequeue and claim."""
    return IntermediateQueue.get_intermediate_queue_key(
        Queue.redis_queue_namespace_prefix + queue_name
    )


class ReaperWatched(IntermediateQueue):
    """An intermediate list whose stuck ids the runner's reaper handles (`Limbo`): RQ's own
    cleanup would only fail the job after a minute, and leave its run queued for ever."""

    def cleanup(self, worker: Any, queue: Queue) -> None:
        return None


class DeliveryQueue(Queue):
    """RQ's queue, dequeuing by a move into the intermediate list for any number of queues."""

    @property
    def intermediate_queue(self) -> IntermediateQueue:
        return ReaperWatched(self.key, connection=self.connection)

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        """The first job of the first non-empty queue, moved into that queue's intermediate
        list; None when all are empty (timeout None), DequeueTimeout after `timeout` seconds."""
        keys = [queue.key for queue in queues]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            taken = _take(connection, keys, deadline)
            if taken is None:
                return None
            queue_key, job_id, raw = taken
            if raw is None:  # taken by a blocking move: its hash is read as RQ does
                fetched = cls._fetch_dequeued_job(
                    connection, queue_key, job_id, job_class=job_class, serializer=serializer,
                    death_penalty_class=death_penalty_class,
                )  # fmt: skip
            else:
                queue = cls.from_queue_key(
                    queue_key, connection=connection, job_class=job_class or Job,
                    serializer=serializer, death_penalty_class=death_penalty_class,
                )  # fmt: skip
                fetched = cls._restore_dequeued_job(
                    queue, job_id, raw, job_class=job_class, serializer=serializer
                )
            if fetched is not None:
                return fetched

    @classmethod
    def restore_taken(
        cls, queue: Queue, taken: Taken, *, job_class: type[Job] | None, serializer: Any
    ) -> tuple[Job, Queue] | None:
        """The job a move taken ahead (`stage_take`) read from `queue` (the taker's own object
        for the queue: none is built per job), with its queue; None when its hash was gone."""
        _, job_id, raw = taken
        return cls._restore_dequeued_job(
            queue, job_id, raw or {}, job_class=job_class, serializer=serializer
        )

    @staticmethod
    def _restore_dequeued_job(
        queue: Queue, job_id: str, raw: dict[bytes, bytes], *, job_class: type[Job] | None,
        serializer: Any,
    ) -> tuple[Job, Queue] | None:  # fmt: skip
        """RQ's `_fetch_dequeued_job`, from the job hash the move read: None when the hash
        is gone (dequeue again, as RQ does)."""
        if not raw:
            return None
        job = (job_class or Job)(job_id, connection=queue.connection, serializer=serializer)
        try:
            job.restore(raw)
        except Exception as exc:  # RQ attaches where the job came from, for the worker's log
            exc.job_id = job_id  # type: ignore[attr-defined]
            exc.queue = queue  # type: ignore[attr-defined]
            raise
        return job, queue


Taken = tuple[str, str, dict[bytes, bytes] | None]


def stage_take(
    connection: Redis, pipeline: Pipeline, keys: Sequence[str], *, worker: str, idle: str
) -> None:
    """Queue the move of the first job of the first non-empty queue of `keys` in `pipeline`
    (a caller's transaction), by the script's sha alone; `taken` reads its reply. RQ worker
    hash `worker` gets state `idle` when every queue is empty (else it stays as it is)."""
    take_ahead = registered(connection, _TAKE_AHEAD)
    pairs = [worker, *_with_intermediate(keys)]
    pipeline.evalsha(take_ahead.sha, len(pairs), *pairs, Job.redis_job_namespace_prefix, idle)


def load_take(connection: Redis) -> None:
    """Load the script `stage_take` calls by its sha (after a NoScriptError reply: the first
    take of a process, or Redis lost its scripts)."""
    connection.script_load(_TAKE_AHEAD)


def taken(reply: Any) -> Taken | None:
    """What a staged move took: None when every queue was empty, or the reply is an error
    (Redis lost the script, the move was not made)."""
    if not reply or isinstance(reply, Exception):
        return None
    queue_key, job_id = texts(reply[:2])
    return queue_key, job_id, dict(zip(reply[2][0::2], reply[2][1::2], strict=True))


def put_back(connection: Redis, queue_key: str, job_id: str) -> None:
    """Put a job taken ahead and never begun back at the head of its queue, at once (the
    reaper would give it out only after a lease period)."""
    with connection.pipeline() as pipeline:
        pipeline.lrem(IntermediateQueue.get_intermediate_queue_key(queue_key), 1, job_id)
        pipeline.lpush(queue_key, job_id)
        pipeline.execute()


def _with_intermediate(keys: Sequence[str]) -> list[str]:
    """Pairs of (queue key, its intermediate list), in the order of `keys`."""
    return [k for key in keys for k in (key, IntermediateQueue.get_intermediate_queue_key(key))]


def _take(connection: Redis, keys: Sequence[str], deadline: float | None) -> Taken | None:
    """Move the first job id of the first non-empty queue into its intermediate list:
    (queue key, job id, its job hash, or None when a blocking move took it)."""
    pairs = _with_intermediate(keys)
    move_first = registered(connection, _MOVE_FIRST_JOB)
    while True:
        found = taken(move_first(keys=pairs, args=[Job.redis_job_namespace_prefix]))
        if found:
            return found
        if deadline is None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DequeueTimeout(remaining, keys)
        wait = remaining if len(keys) == 1 else min(remaining, MULTI_QUEUE_WAIT_SECONDS)
        moved = connection.blmove(keys[0], pairs[1], math.ceil(wait))
        if moved is not None:
            return keys[0], texts([moved])[0], None


class Limbo:
    """Job ids in the intermediate lists, and since when the reaper has seen each there."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.key = Keys(settings.prefix).limbo

    def overdue(self, after_seconds: float) -> list[tuple[str, str]]:
        """(intermediate list, job id) of every job seen there for longer than `after_seconds`.
        Records ids seen for the first time and forgets ids that have left."""
        lists = [delivery_key(q) for q in known_queues(self.redis, self.settings)]
        pipe = self.redis.pipeline(transaction=False)
        for name in lists:
            pipe.lrange(name, 0, -1)
        present = {
            job_id: name for name, ids in zip(lists, pipe.execute(), strict=True)
            for job_id in texts(ids)
        }  # fmt: skip
        raw: dict[bytes, bytes] = self.redis.hgetall(self.key)  # type: ignore[assignment]
        seen = {field.decode(): float(first) for field, first in raw.items()}
        now = time.time()
        fresh = {job_id: now for job_id in present if job_id not in seen}
        gone = [job_id for job_id in seen if job_id not in present]
        pipe = self.redis.pipeline(transaction=False)
        if fresh:
            pipe.hset(self.key, mapping=fresh)  # type: ignore[arg-type]
        if gone:
            pipe.hdel(self.key, *gone)
        pipe.execute()
        return [
            (present[job_id], job_id)
            for job_id, first in seen.items()
            if job_id in present and now - first > after_seconds
        ]

    def release(self, name: str, job_id: str, *, drop_job: bool = False) -> None:
        """Take a job id out of its intermediate list for good (and, with `drop_job`, delete
        the RQ job: its run has moved on to a new job)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrem(name, 1, job_id)
        pipe.hdel(self.key, job_id)
        if drop_job:
            pipe.delete(Job.key_for(job_id))
        pipe.execute()
