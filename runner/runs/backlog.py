"""Backlog: each queue's depth, sampled once a minute by the reaper (off any job's path), so a
reader can tell how fast runs arrive on a queue. The figures count the attempts that started
there (runner.runs.figures); what arrived over a window is what started plus how much the
depth grew. One hash per minute (`Keys.depth`), queue -> 'depth at', its first sample kept
(several reapers may sample the same minute), kept two hours.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from rq import Queue

from runner.config import Settings
from runner.keys import Keys
from runner.record import texts
from runner.runs.figures import HOUR, MINUTE
from runner.runs.rqjobs import known_queues

DEPTH_TTL = 2 * HOUR + 5 * MINUTE


@dataclass(frozen=True, slots=True)
class Depth:
    """A queue's depth and when it was read (epoch seconds)."""

    jobs: int
    at: float


def depths_now(redis: Redis, settings: Settings) -> dict[str, Depth]:
    """Every known queue's depth, read now (one round trip)."""
    queues = known_queues(redis, settings)
    pipe = redis.pipeline(transaction=False)
    pipe.time()  # Redis's clock: every sample of every reaper on one clock
    for queue in queues:
        pipe.llen(Queue.redis_queue_namespace_prefix + queue)
    (seconds, micros), *lengths = pipe.execute()
    now = float(seconds) + float(micros) / 1e6
    return {q: Depth(int(n), now) for q, n in zip(queues, lengths, strict=True)}


def sample(redis: Redis, settings: Settings) -> dict[str, Depth]:
    """Record every queue's depth in the current minute's hash, unless a sample of that
    queue is there already; returns what was read."""
    found = depths_now(redis, settings)
    if not found:
        return found
    at = next(iter(found.values())).at
    key = Keys(settings.prefix).depth(int(at // MINUTE) * MINUTE)
    pipe = redis.pipeline(transaction=False)
    for queue, depth in found.items():
        pipe.hsetnx(key, queue, f"{depth.jobs} {depth.at:.3f}")
    pipe.expire(key, DEPTH_TTL)
    pipe.execute()
    return found


def sampled(redis: Redis, settings: Settings, minute: int) -> dict[str, Depth]:
    """The depths sampled in the minute starting at `minute` (none: {})."""
    raw = redis.hgetall(Keys(settings.prefix).depth(minute))
    out = {}
    for queue, value in zip(texts(list(raw)), texts(list(raw.values())), strict=True):
        jobs, _, at = value.partition(" ")
        out[queue] = Depth(int(jobs), float(at))
    return out
