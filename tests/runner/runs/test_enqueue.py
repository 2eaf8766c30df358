"""Enqueue: one token, one run, however many callers race."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

import pytest
from redis import Redis
from rq import Queue

from runner.config import Settings
from runner.errors import InvalidArguments
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.index import RunIndex
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.tokens import derive_token
from tests.conftest import TEST_TASKS

TASK_ARGS = {"steps": 1, "seconds": 0.0}


def rq_jobs(redis: Redis) -> list[str]:
    return Queue("default", connection=redis).get_job_ids()


def enqueue_from_process(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    registry = load_registry(TEST_TASKS)
    enqueuer = Enqueuer(Redis.from_url(url), Settings(redis_url=url))
    barrier.wait()
    enqueuer.enqueue(Request(registry.get("slow_steps"), TASK_ARGS, token="same-work"))


def test_fifty_concurrent_threads_make_one_run_and_one_job(
    redis: Redis, settings: Settings, index: RunIndex
) -> None:
    # Given 50 threads, each with its own connection, released at the same instant
    registry = load_registry(settings.tasks_module)
    barrier = threading.Barrier(50)
    results: list[Enqueued] = []

    def call() -> None:
        enqueuer = Enqueuer(Redis.from_url(settings.redis_url or ""), settings)
        barrier.wait()
        results.append(enqueuer.enqueue(Request(registry.get("slow_steps"), TASK_ARGS)))

    threads = [threading.Thread(target=call) for _ in range(50)]
    # When they all enqueue the same work
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one created the run and one RQ job exists; 49 got it back deduplicated
    assert sorted(r.deduplicated for r in results) == [False] + [True] * 49
    assert len({r.token for r in results}) == 1
    assert len({r.job_id for r in results}) == 1
    assert rq_jobs(redis) == [results[0].job_id]
    assert len(index.runs()) == 1


def test_fifty_concurrent_processes_make_one_run_and_one_job(
    redis: Redis, settings: Settings, index: RunIndex
) -> None:
    # Given 50 processes racing to enqueue the same token
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(50)
    procs = [
        ctx.Process(target=enqueue_from_process, args=(settings.redis_url, barrier))
        for _ in range(50)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    # Then every process succeeded, and there is one run with one RQ job
    assert [p.exitcode for p in procs] == [0] * 50
    assert len(rq_jobs(redis)) == 1
    [run] = index.runs()
    assert run.token == "same-work" and run.state == "queued" and run.attempt == 1


def test_token_is_derived_from_task_and_canonical_arguments(
    enqueue: Callable[..., Enqueued],
) -> None:
    # Given the same arguments in two key orders, and different arguments
    first = enqueue("counting", items=3, seconds=0.1)
    same = enqueue("counting", seconds=0.1, items=3)
    other = enqueue("counting", items=4, seconds=0.1)
    # Then the first two are one run, the third another
    assert first.token == same.token == derive_token("counting", {"items": 3, "seconds": 0.1})
    assert same.deduplicated and not other.deduplicated
    assert other.token != first.token


def test_bulk_enqueue_is_one_call_and_dedups_within_and_across_batches(
    redis: Redis, settings: Settings
) -> None:
    registry = load_registry(settings.tasks_module)
    enqueuer = Enqueuer(redis, settings)
    task = registry.get("counting")
    # Given a batch with a repeated token
    batch = [Request(task, {"items": i}) for i in (1, 2, 3, 2)]
    results = enqueuer.enqueue_many(batch)
    # Then the repeat inside the batch is deduplicated
    assert [r.deduplicated for r in results] == [False, False, False, True]
    # And enqueueing the batch again creates nothing
    again = enqueuer.enqueue_many(batch)
    assert all(r.deduplicated for r in again)
    assert len(rq_jobs(redis)) == 3


def test_succeeded_token_is_not_run_again_within_retention(
    enqueue: Callable[..., Enqueued], work: Callable[[], None], runs: Runs, redis: Redis
) -> None:
    # Given a run that succeeded
    first = enqueue("slow_steps", token="nightly-2026-11-27", steps=1, seconds=0.0)
    work()
    assert runs.get(first.token).state == "succeeded"  # type: ignore[union-attr]
    # When cron or an operator enqueues the same token again
    again = enqueue("slow_steps", token="nightly-2026-11-27", steps=1, seconds=0.0)
    work()
    # Then nothing new was queued or run: the step executed once, and the run expires later
    assert again.deduplicated and again.state == "succeeded"
    assert redis.llen(f"probe:exec:{first.token}") == 1
    assert 0 < redis.ttl(f"runner:run:{first.token}") <= 14 * 86400


def test_failed_token_is_returned_as_failed_until_rerun(
    enqueue: Callable[..., Enqueued], work: Callable[[], None]
) -> None:
    first = enqueue("broken", permanent=True)
    work()
    again = enqueue("broken", permanent=True)
    assert again.deduplicated and again.state == "failed" and again.token == first.token


@pytest.mark.parametrize("token", ["", "has space", "x" * 201, "tab\there"])
def test_malformed_tokens_are_refused(enqueue: Callable[..., Enqueued], token: str) -> None:
    with pytest.raises(InvalidArguments, match="token"):
        enqueue("counting", token=token or " ")


def test_arguments_must_be_json(enqueue: Callable[..., Enqueued]) -> None:
    with pytest.raises(InvalidArguments, match="JSON"):
        enqueue("counting", items={1, 2})
