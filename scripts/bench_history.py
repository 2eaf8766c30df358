"""The history's side of the bench: what a finished run leaves in Redis once it moved.

`runs` noop runs are drained by a real `runner worker --burst`, then moved to a fresh SQLite
history by the mover (in this process, its delay 0); the figure is `MEMORY USAGE` summed over
the keys that outlive an hour (no TTL, or one over an hour) and were not there before, per run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runner.runs.enqueue import Enqueuer, Request
from runner.runs.move import Mover
from runner.tasks import load_registry
from scripts.bench_env import BenchEnv

HOUR = 3600


@dataclass(frozen=True)
class RedisBytes:
    """Bytes in Redis per finished run, before and after the move."""

    runs: int
    before_move: float
    after_move: float


def lasting_bytes(env: BenchEnv, *, ignore: set[bytes]) -> int:
    """MEMORY USAGE summed over the keys that outlive an hour, except `ignore`."""
    total = 0
    for key in env.redis.scan_iter(count=1000):
        if key in ignore:
            continue
        ttl = int(env.redis.ttl(key))
        if ttl == -1 or ttl > HOUR:
            total += int(env.redis.memory_usage(key, samples=0) or 0)
    return total


def redis_bytes_per_finished_run(env: BenchEnv, *, runs: int = 2_000) -> RedisBytes:
    env.flush()
    database_url = env.sqlite_url("history-content")
    settings = replace(env.settings(database_url), history_url=env.sqlite_url("history"),
                       history_delay_seconds=0.0)  # fmt: skip
    there = set(env.redis.scan_iter(count=1000))
    noop = load_registry("jobs").get("noop")
    enqueuer = Enqueuer(env.redis, settings)
    for start in range(0, runs, 500):
        enqueuer.enqueue_many([Request(noop, {"i": i}) for i in range(start, start + 500)])
    env.runner_worker(database_url).wait(timeout=120 + runs / 20)
    before = lasting_bytes(env, ignore=there)
    mover = Mover(env.redis, settings)
    while mover.move_once():
        pass
    after = lasting_bytes(env, ignore=there)
    return RedisBytes(runs, before / runs, after / runs)
