"""Retention (runner.runs.retention): pruning what is past the retention window."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.index import RunIndex, RunQuery


def test_pruning_takes_expired_runs_out_of_the_indexes(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    from runner.runs.retention import prune_runs

    enqueue("noop", token="old")
    drain()
    index = RunIndex(redis, settings)
    assert [r.token for r in index.page(RunQuery(task="noop")).runs] == ["old"]

    prune_runs(redis, settings, now=time.time() + settings.retention_seconds + 60)

    keys = Keys(settings.prefix)
    assert redis.zscore(keys.by_task("noop"), "old") is None
    assert redis.zscore(keys.by_state(RunState.SUCCEEDED), "old") is None
    assert index.counts()[RunState.SUCCEEDED] == 0
