"""The run indexes' side of the bench: one page of a filtered listing from the indexes
(`RunIndex.page`) against a listing that reads run records to filter them (`scan_listing`,
the way runs were listed before the indexes; the engine no longer has it), on the runs the
console bench left in Redis (100,000 in the full bench)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from runner.keys import Keys
from runner.record import RunRecord, RunState, texts
from runner.runs.index import RunIndex, RunQuery
from scripts.bench_env import BenchEnv

LIMIT = 50


@dataclass(frozen=True)
class IndexTimes:
    """Median milliseconds of one page of failed import_posts runs, both ways."""

    index_ms: float
    list_ms: float
    runs: int

    @property
    def speedup(self) -> float:
        return self.list_ms / self.index_ms


def _median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: scripts loaded
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def scan_listing(redis: Redis, keys: Keys, *, state: str, task: str, limit: int) -> list[str]:
    """The baseline: walk every run newest first, 500 at a time, reading each record to
    filter it by state and task, until `limit` match."""
    found: list[str] = []
    for start in range(0, int(redis.zcard(keys.runs)), 500):
        pipe = redis.pipeline(transaction=False)
        for token in texts(redis.zrevrange(keys.runs, start, start + 499)):
            pipe.hgetall(keys.run(token))
        for raw in pipe.execute():
            run = RunRecord.from_hash(raw) if raw else None
            if run and run.state == state and run.task == task:
                found.append(run.token)
                if len(found) >= limit:
                    return found
    return found


def page_vs_list(env: BenchEnv, *, repeats: int = 7) -> IndexTimes:
    """Both listings of the same query on the Redis as it is (run after the console bench)."""
    settings = env.settings()
    index = RunIndex(env.redis, settings)
    query = RunQuery(state=RunState.FAILED, task="import_posts", limit=LIMIT)

    def scan() -> list[str]:
        return scan_listing(
            env.redis, index.keys, state=RunState.FAILED, task="import_posts", limit=LIMIT
        )

    found = [r.token for r in index.page(query).runs]
    listed = scan()
    assert len(found) == len(listed) == LIMIT, (len(found), len(listed))
    index_ms = _median_ms(lambda: index.page(query), repeats)
    list_ms = _median_ms(scan, repeats)
    return IndexTimes(index_ms, list_ms, int(env.redis.zcard(index.keys.runs)))
