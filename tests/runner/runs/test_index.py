"""Paging through runs by the indexes every state-changing script keeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.index import RunIndex, RunQuery
from runner.runs.rerun import rerun
from runner.runs.transitions import Runs


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


def test_a_listing_is_newest_first_and_filtered_by_state_task_and_creation_time(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, index: RunIndex
) -> None:
    # Given a run of `noop` that succeeded, then a queued run of `slow_steps` and one of `noop`
    enqueue("noop", token="old-noop")
    drain()
    enqueue("slow_steps", token="new-steps", steps=1, seconds=0.0)
    enqueue("noop", token="new-noop")
    old = runs.get("old-noop")
    new = runs.get("new-steps")
    assert old is not None and old.state == "succeeded" and new is not None

    # When they are listed with each filter
    def tokens(limit: int = 0, **filters: Any) -> list[str]:
        return [r.token for r in index.runs(RunQuery(**filters), limit=limit)]

    # Then each filter keeps exactly its runs, the newest first
    assert set(tokens()) == {"old-noop", "new-steps", "new-noop"}
    assert tokens()[-1] == "old-noop"
    assert tokens(state=RunState.SUCCEEDED) == ["old-noop"]
    assert set(tokens(state=RunState.QUEUED)) == {"new-steps", "new-noop"}
    assert set(tokens(task="noop")) == {"old-noop", "new-noop"}
    assert tokens(task="slow_steps") == ["new-steps"]
    assert set(tokens(since=new.created_at)) == {"new-steps", "new-noop"}
    assert len(tokens(limit=2)) == 2 and "old-noop" not in tokens(limit=2)


def test_a_long_listing_stops_at_its_limit(
    enqueue: Callable[..., Enqueued], index: RunIndex
) -> None:
    # Given more runs than a limit past Python's small integers (a limit is an int, compared
    # by value) and more than one page
    for n in range(701):
        enqueue("noop", token=f"run-{n}")
    # When they are listed with a limit of 300, then of 600
    # Then exactly that many come back, the newest
    assert [r.token for r in index.runs(limit=300)] == [f"run-{n}" for n in range(700, 400, -1)]
    assert len(index.runs(limit=600)) == 600


def test_a_listing_reads_every_page_of_the_index(
    enqueue: Callable[..., Enqueued], index: RunIndex
) -> None:
    # Given exactly one page of runs and one more (the index is read 500 at a time)
    for n in range(501):
        enqueue("noop", token=f"run-{n}")
    # When they are listed without a limit
    listed = [r.token for r in index.runs()]
    # Then every run comes back, once
    assert sorted(listed) == sorted(f"run-{n}" for n in range(501))


def test_a_listing_skips_runs_whose_record_is_gone_and_still_fills_its_limit(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings, index: RunIndex
) -> None:
    # Given six runs, the newest three of which lost their record (expired) but not yet
    # their index entries
    made = [enqueue("noop", token=f"r-{n}").token for n in range(6)]
    for token in made[3:]:
        redis.delete(Keys(settings.prefix).run(token))
    # When three are listed
    # Then the three with a record come back
    assert [r.token for r in index.runs(limit=3)] == made[2::-1]
