"""Paging through runs by the indexes every state-changing script keeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.index import RunIndex, RunQuery
from runner.runs.rerun import rerun


def all_pages(index: RunIndex, query: RunQuery) -> list[str]:
    tokens: list[str] = []
    after = None
    while True:
        page = index.page(replace(query, after=after))
        assert len(page.runs) <= query.limit
        tokens += [r.token for r in page.runs]
        if page.next is None:
            return tokens
        after = page.next


def test_every_state_change_moves_the_run_between_the_state_indexes(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    index = RunIndex(redis, settings)
    enqueue("noop", token="ok")
    enqueue("broken", token="bad")
    enqueue("flaky", token="shaky", failures=1)
    assert index.counts()[RunState.QUEUED] == 3

    drain()
    assert index.counts() == {
        "scheduled": 0, "queued": 0, "running": 0, "retrying": 0, "succeeded": 2, "failed": 1,
        "cancelled": 0,
    }  # fmt: skip
    assert [r.token for r in index.page(RunQuery(state=RunState.FAILED)).runs] == ["bad"]

    rerun(redis, settings, "bad")  # failed -> queued
    assert index.counts()[RunState.FAILED] == 0
    assert [r.token for r in index.page(RunQuery(state=RunState.QUEUED)).runs] == ["bad"]


def test_pages_are_newest_first_and_filter_by_task_queue_prefix_and_time(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
) -> None:  # fmt: skip
    made = [enqueue("noop", token=f"n-{i:03d}").token for i in range(120)]
    made_b = [enqueue("broken", token=f"b-{i:03d}").token for i in range(30)]
    index = RunIndex(redis, settings)

    newest_first = all_pages(index, RunQuery(task="noop", limit=25))
    assert newest_first == made[::-1]
    assert all_pages(index, RunQuery(state=RunState.QUEUED, task="broken", limit=7)) == made_b[::-1]
    assert all_pages(index, RunQuery(token_prefix="n-11", limit=3)) == [
        f"n-{i}" for i in range(119, 109, -1)
    ]
    assert all_pages(index, RunQuery(queue="default", task="broken", limit=50)) == made_b[::-1]
    assert all_pages(index, RunQuery(queue="elsewhere")) == []
    assert all_pages(index, RunQuery(since=time.time() + 60)) == []
    page = index.page(RunQuery(limit=10))
    assert len(page.runs) == 10 and page.counts[RunState.QUEUED] == 150


def test_ties_in_time_are_paged_without_loss_or_repeat(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.prefix)
    for i in range(40):  # forty runs created in the same instant
        token = f"t-{i:02d}"
        redis.hset(keys.run(token), mapping={"token": token, "task": "noop", "state": "queued"})
        redis.zadd(keys.runs, {token: 1000.0})

    tokens = all_pages(RunIndex(redis, settings), RunQuery(limit=6))

    assert tokens == sorted(tokens, reverse=True) and len(set(tokens)) == 40


def test_a_malformed_cursor_is_a_clear_error(redis: Redis, settings: Settings) -> None:
    with pytest.raises(ValueError, match="page cursor"):
        RunIndex(redis, settings).page(RunQuery(after="nonsense"))


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
