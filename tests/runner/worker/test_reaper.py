"""The reaper: a dead attempt's run gets its next attempt once, whoever else acts on it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest
import structlog.testing
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.figures import Figures
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
    with structlog.testing.capture_logs() as logged:
        moved = Reaper(redis, settings).sweep()
    # Then the run is queued again as attempt 2, and the queue holds that attempt's job
    record = runs.get(token)
    assert moved == 1 and record is not None
    assert (record.state, record.attempt) == ("queued", 2)
    assert _queued_ids(redis) == [job_id(token, 2)]
    # And the reaper's log line says why and which attempt comes next
    [requeued] = [e for e in logged if e["event"] == "run.requeued"]
    assert (requeued["reason"], requeued["next_attempt"]) == ("lease expired", 2)


def test_advancing_from_a_stale_view_does_nothing(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued]
) -> None:
    # Given two reapers that both saw attempt 1 of a run running with its lease gone
    token = _dead_attempt(redis, settings, runs, enqueue)
    seen = runs.get(token)
    assert seen is not None

    # When both requeue it, one after the other
    first, second = runs.requeue_lost_lease(seen), runs.requeue_lost_lease(seen)
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


def test_a_reapers_lock_lasts_four_intervals_during_its_sweep_and_is_dropped_after_it(
    redis: Redis, settings: Settings
) -> None:
    # Given a reaper sweeping every 5 s (a 20 s lease), seen from inside its sweep
    slow = dataclasses.replace(settings, lease_seconds=20.0)
    lock = Keys(slow.prefix).reaper_lock
    ttls: list[int] = []

    class Watched(Reaper):
        def requeue_expired(self) -> int:
            ttls.append(int(redis.pttl(lock)))  # type: ignore[arg-type]
            return super().requeue_expired()

    # When it sweeps
    Watched(redis, slow).sweep()
    # Then its lock lasted four intervals (20 s) while it swept, and is gone after
    assert slow.reaper_interval == 5.0
    assert len(ttls) == 1 and 19_000 < ttls[0] <= 20_000
    assert not redis.exists(lock)


def test_a_sweep_while_another_reaper_holds_the_lock_moves_nothing(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued]
) -> None:
    # Given a dead attempt, and the reaper lock held by another reaper
    token = _dead_attempt(redis, settings, runs, enqueue)
    lock = Keys(settings.prefix).reaper_lock
    redis.set(lock, "another-reaper")
    # When this reaper sweeps
    moved = Reaper(redis, settings).sweep()
    # Then it moved nothing, and the other reaper's lock stays
    record = runs.get(token)
    assert moved == 0 and record is not None and (record.state, record.attempt) == ("running", 1)
    assert redis.get(lock) == b"another-reaper"


def test_a_sweep_counts_each_run_it_moved_on_a_due_retry_among_them(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued]
) -> None:
    # Given a dead attempt, and a run whose retry is due
    dead = _dead_attempt(redis, settings, runs, enqueue)
    retry = enqueue("noop", token="retrying").token
    holder = job_id(retry, 1)
    _, record, _ = runs.begin(retry, 1, holder=holder, worker="w", version="t")
    assert record is not None
    due = time.time() - 1
    fields = {"state": RunState.RETRYING, "retry_at": due}
    runs.release(record, holder, fields, retention=60, version="t", retry_at=due)
    # When a reaper sweeps
    moved = Reaper(redis, settings).sweep()
    # Then both were moved on and counted: each is queued as its next attempt
    assert moved == 2
    for token, attempt in ((dead, 2), (retry, 1)):
        after = runs.get(token)
        assert after is not None and (after.state, after.attempt) == ("queued", attempt)


def test_queued_runs_whose_job_is_gone_are_requeued_once_they_waited_a_lease(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued]
) -> None:
    # Given three queued runs: two queued over a lease ago, one of them with its RQ job
    # deleted (`rq empty`, a dashboard), and one just queued whose job is deleted too
    keep, lost, fresh = (enqueue("noop", token=t) for t in ("keep", "lost", "fresh"))
    index = Keys(settings.prefix).by_state(RunState.QUEUED)
    long_ago = time.time() - settings.lease_seconds - 60
    redis.zadd(index, {keep.token: long_ago, lost.token: long_ago})
    queue = Queue("default", connection=redis)
    for gone in (lost, fresh):
        queue.remove(gone.job_id)
        redis.delete(f"rq:job:{gone.job_id}")
    # When a reaper sweeps
    moved = Reaper(redis, settings).sweep()
    # Then only the old run whose job is gone is queued again, as attempt 2
    assert moved == 1
    states = {r.token: (r.state, r.attempt) for r in map(runs.get, ("keep", "lost", "fresh")) if r}
    assert states == {"keep": ("queued", 1), "lost": ("queued", 2), "fresh": ("queued", 1)}
    assert _queued_ids(redis) == [keep.job_id, job_id("lost", 2)]


def test_a_reaper_samples_the_queue_depths_once_per_minute_of_its_clock(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued]
) -> None:
    # Given a reaper that sampled the depths in the minute starting at 600 s, and a sample
    # since gone
    enqueue("noop")
    reaper = Reaper(redis, settings)
    pattern = Keys(settings.prefix).depth(0).removesuffix("0") + "*"
    reaper.sample_depths(now=600.0)
    assert redis.keys(pattern)
    redis.delete(*redis.keys(pattern))
    # When it is asked again later in that minute, then in the next one
    reaper.sample_depths(now=659.0)
    again = redis.keys(pattern)
    reaper.sample_depths(now=660.0)
    # Then it samples only in the next minute
    assert not again
    assert redis.keys(pattern)


@pytest.mark.parametrize("max_attempts", [1, 0])
def test_a_dead_attempt_with_no_attempt_left_fails_the_run_as_worker_lost(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued],
    max_attempts: int,
) -> None:  # fmt: skip
    # Given a dead attempt 1 of a run allowed one attempt (or, its budget lowered, none)
    token = _dead_attempt(redis, settings, runs, enqueue)
    redis.hset(Keys(settings.prefix).run(token), "max_attempts", max_attempts)
    # When a reaper sweeps
    moved = Reaper(redis, settings).sweep()
    # Then the run failed as lost by its worker, and no next attempt is queued
    record = runs.get(token)
    assert moved == 1 and record is not None and record.state == RunState.FAILED
    assert record.error is not None and record.error["type"] == "WorkerLost"
    assert _queued_ids(redis) == []


@pytest.mark.parametrize("cancel_asked, ends", [("", "failed"), ("cli", "cancelled")])
def test_a_lost_run_the_reaper_ends_counts_in_the_figures_of_its_attempts_version(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued],
    cancel_asked: str, ends: str,
) -> None:  # fmt: skip
    # Given a dead attempt of code version 't' with no attempt left (its cancel asked or not)
    token = _dead_attempt(redis, settings, runs, enqueue)
    redis.hset(Keys(settings.prefix).run(token), mapping={
        "max_attempts": 1, "cancel_requested": cancel_asked})  # fmt: skip
    seen = runs.get(token)
    assert seen is not None
    # When a reaper ends it, and another that saw it as lost too tries after it
    reaper = Reaper(redis, settings)
    assert reaper.sweep() == 1
    assert reaper._next_attempt(seen, reason="lease expired") == 0, "ended once, counted once"
    # Then it ended as its cancel asked, and the figures count that outcome for version 't'
    assert runs.get(token).state == ends  # type: ignore[union-attr]
    # and RQ's failed job registry holds its job only if it failed, as RQ's own would
    registry = FailedJobRegistry("default", connection=redis, serializer=JSONSerializer)
    assert registry.get_job_ids() == ([seen.job_id] if ends == "failed" else [])
    figures = Figures(redis, settings)
    assert figures.totals()[("slow_steps", "default")].counts[ends] == 1
    assert figures.version("t")["slow_steps"].counts[ends] == 1
    assert (figures.version("t")["slow_steps"].failure_rate == 1.0) is (ends == "failed")
    # and its log says how it ended, once
    events = [e["event"] for _, e in read_events(redis, Keys(settings.prefix), token)]
    assert events.count(f"run.{ends}") == 1
