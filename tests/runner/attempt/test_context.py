"""A task's `run` (runner.attempt.context): its steps recorded, retried inside the attempt,
named in errors."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from tests.runner.attempt.test_execute import events


def test_a_multi_step_run_records_each_step_and_its_result(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    token = enqueue("slow_steps", steps=3, seconds=0.0).token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.attempt == 1
    assert record.result == {"steps": 3}
    steps = runs.steps(token)
    assert list(steps) == ["s0", "s1", "s2"]
    assert [s["result"] for s in steps.values()] == [0, 1, 2]
    names = [e["event"] for e in events(redis, token)]
    assert names.count("step.started") == 3 and names.count("step.finished") == 3
    assert names[:2] == ["run.queued", "run.state"] and names[-1] == "run.succeeded"


def test_transient_fault_in_a_step_is_retried_inside_the_attempt(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    token = enqueue("flaky", failures=2, mode="step").token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.attempt == 1
    retries = [e for e in events(redis, token) if e["event"] == "step.retry"]
    assert [r["try_number"] for r in retries] == [1, 2]
    assert all(r["step"] == "fragile" for r in retries)


def test_a_step_that_fails_names_the_step_in_the_error(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    token = enqueue("counting", items=5, seconds=0.0).token
    redis.set(f"probe:fail:{token}", 2)
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "failed"
    assert record.cursor == 2 and record.counters == {"done": 2}
