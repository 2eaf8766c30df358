"""Executing attempts: steps, retries inside a step and across attempts, failures, logs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis import Redis

from runner.config import Settings
from runner.errors import LeaseLost
from runner.keys import Keys
from runner.logs import read_events
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import Task


def events(redis: Redis, token: str) -> list[dict[str, object]]:
    return [e for _, e in read_events(redis, Keys(), token)]


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


def test_a_failed_attempt_is_retried_as_a_new_attempt_that_skips_finished_steps(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    token = enqueue("flaky", failures=2, mode="attempt").token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.attempt == 3
    log = events(redis, token)
    skipped = [e for e in log if e["event"] == "step.skipped"]
    assert [(e["attempt"], e["step"]) for e in skipped] == [(2, "before"), (3, "before")]
    assert [e["attempt"] for e in log if e["event"] == "run.retrying"] == [1, 2]
    assert record.error is None


def test_a_permanent_error_fails_the_run_at_once_with_a_readable_error(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs
) -> None:
    token = enqueue("broken", permanent=True).token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "failed" and record.attempt == 1
    assert record.error == {
        "type": "PermanentError",
        "message": "the source does not exist (simulated)",
        "step": None,
        "attempt": 1,
    }


def test_attempts_are_bounded_then_the_run_fails_with_the_reason(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, settings: Settings
) -> None:
    token = enqueue("broken", permanent=False).token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "failed"
    assert record.attempt == settings.max_attempts == 5
    assert record.error is not None and record.error["message"] == "still broken (simulated)"


def test_a_step_that_fails_names_the_step_in_the_error(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    token = enqueue("counting", items=5, seconds=0.0).token
    redis.set(f"probe:fail:{token}", 2)
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "failed"
    assert record.cursor == 2 and record.counters == {"done": 2}


def test_writes_with_a_lost_lease_are_rejected(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis
) -> None:
    # Given a run whose lease is held by attempt job "j-1"
    queued = enqueue("counting", items=1)
    assert runs.begin(queued.token, 1, holder="j-1", worker="w", version="t")[0] == "ok"
    # When another holder tries to write progress, or the lease expires
    with pytest.raises(LeaseLost):
        runs.write(queued.token, "j-2", {"cursor": 99})
    redis.delete(f"runner:lease:{queued.token}")
    with pytest.raises(LeaseLost):
        runs.write(queued.token, "j-1", {"cursor": 99})
    # Then nothing was written
    after = runs.get(queued.token)
    assert after is not None and after.cursor is None


def test_a_duplicate_delivery_of_a_running_token_does_not_run_the_body(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    token = enqueue("counting", items=1).token
    assert runs.begin(token, 1, holder="j-1", worker="w", version="t")[0] == "ok"
    assert runs.begin(token, 1, holder="j-1-dup", worker="w2", version="t")[0] == "running"
    assert runs.begin(token, 0, holder="j-0", worker="w2", version="t")[0] == "stale"


def test_a_claim_retried_by_its_own_holder_is_ok_again_and_the_job_id_is_kept(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given a claim whose reply was lost (a failover): the worker sends it again
    queued = enqueue("counting", items=1)
    args = {"holder": f"{queued.job_id}.a1", "worker": "w", "version": "t"}
    assert runs.begin(queued.token, 1, job_id=queued.job_id, **args)[0] == "ok"
    status, record, _ = runs.begin(queued.token, 1, job_id=queued.job_id, **args)
    # Then it is its own claim still, the run names the RQ job, not the holder
    assert status == "ok" and record is not None and record.job_id == queued.job_id
    # ... while another execution of the same job (a second delivery) is refused
    other = {**args, "holder": f"{queued.job_id}.b2"}
    assert runs.begin(queued.token, 1, job_id=queued.job_id, **other)[0] == "running"


def test_a_task_this_worker_does_not_know_fails_the_run_at_once(
    redis: Redis, settings: Settings, drain: Callable[..., None], runs: Runs
) -> None:
    # Given a run enqueued by code that has a task this worker's registry lacks
    ghost = Task(name="ghost", fn=lambda run: None)
    token = Enqueuer(redis, settings).enqueue(Request(ghost, {})).token
    # When a worker picks it up
    drain()
    # Then the run fails with the reason, instead of retrying until its attempts run out
    record = runs.get(token)
    assert record is not None and record.state == "failed" and record.attempt == 1
    assert record.error is not None and record.error["type"] == "UnknownTask"
    assert "unknown task 'ghost'" in record.error["message"]
