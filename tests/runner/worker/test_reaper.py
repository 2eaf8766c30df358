"""The reaper: a dead attempt's run gets its next attempt once, whoever else acts on it."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis
from rq import Queue

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from runner.tokens import job_id
from runner.worker.reaper import Reaper


def _dead_attempt(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued]
) -> str:
    """A run whose attempt 1 began (took the lease) and whose worker then died: lease gone."""
    run = enqueue("slow_steps", steps=1)
    queue = Queue("default", connection=redis)
    assert queue.pop_job_id() == run.job_id  # the worker took the job off the queue
    status, _, _ = runs.begin(run.token, 1, holder=run.job_id, worker="w-dead", version="t")
    assert status == "ok"
    redis.delete(Keys(settings.prefix).lease(run.token))  # its lease expired: no renewals
    return run.token


def _queued_ids(redis: Redis) -> list[str]:
    return Queue("default", connection=redis).get_job_ids()


def test_the_reaper_requeues_a_run_whose_lease_expired(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued]
) -> None:
    # Given a run marked running whose lease is gone
    token = _dead_attempt(redis, settings, runs, enqueue)
    # When a reaper sweeps
    moved = Reaper(redis, settings).sweep()
    # Then the run is queued again as attempt 2, and the queue holds that attempt's job
    record = runs.get(token)
    assert moved == 1 and record is not None
    assert (record.state, record.attempt) == ("queued", 2)
    assert _queued_ids(redis) == [job_id(token, 2)]


def test_advancing_from_a_stale_view_does_nothing(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued]
) -> None:
    # Given two reapers that both saw attempt 1 of a run running with its lease gone
    token = _dead_attempt(redis, settings, runs, enqueue)
    seen = runs.get(token)
    assert seen is not None

    def advance() -> bool:
        return runs.advance(
            token, seen_state=RunState.RUNNING, seen_attempt=seen.attempt,
            run_fields={"attempt": seen.attempt + 1, "retry_at": None},
            queue=seen.queue, timeout=seen.timeout, lease_gone=True,
        )  # fmt: skip

    # When both advance it, one after the other
    first, second = advance(), advance()
    # Then only the first moves it on: the queue holds the next attempt once
    assert (first, second) == (True, False)
    assert _queued_ids(redis) == [job_id(token, 2)]
    record = runs.get(token)
    assert record is not None and (record.state, record.attempt) == ("queued", 2)


def test_the_sweep_takes_runs_past_the_retention_out_of_the_state_indexes(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a run that just succeeded, and one indexed as succeeded past the retention
    recent = enqueue("noop", token="recent").token
    drain()
    index = Keys(settings.prefix).by_state(RunState.SUCCEEDED)
    old = time.time() - settings.retention_seconds - 60
    redis.zadd(index, {"old": old})
    # When the reaper sweeps
    Reaper(redis, settings).sweep()
    # Then the old one left the index, the recent one is there
    assert redis.zscore(index, "old") is None
    assert redis.zscore(index, recent) is not None
