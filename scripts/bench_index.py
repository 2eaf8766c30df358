"""The run indexes' side of the bench: one page of a filtered listing from the indexes
(`RunIndex.page`) against the listing that reads run records to filter them (`Runs.list`),
on the runs the console bench left in Redis (100,000 in the full bench)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from runner.record import RunState
from runner.runs.index import RunIndex, RunQuery
from runner.runs.transitions import Runs
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


def page_vs_list(env: BenchEnv, *, repeats: int = 7) -> IndexTimes:
    """Both listings of the same query on the Redis as it is (run after the console bench)."""
    settings = env.settings()
    index, runs = RunIndex(env.redis, settings), Runs(env.redis, settings)
    query = RunQuery(state=RunState.FAILED, task="import_posts", limit=LIMIT)
    found = [r.token for r in index.page(query).runs]
    listed = [r.token for r in runs.list(state=RunState.FAILED, task="import_posts", limit=LIMIT)]
    assert len(found) == len(listed) == LIMIT, (len(found), len(listed))
    index_ms = _median_ms(lambda: index.page(query), repeats)
    list_ms = _median_ms(
        lambda: runs.list(state=RunState.FAILED, task="import_posts", limit=LIMIT), repeats
    )
    return IndexTimes(index_ms, list_ms, int(env.redis.zcard(index.keys.runs)))
