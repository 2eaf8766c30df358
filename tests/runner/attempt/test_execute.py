"""Executing attempts: steps, retries inside a step and across attempts, failures, logs."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import Task


def events(redis: Redis, token: str) -> list[dict[str, object]]:
    return [e for _, e in read_events(redis, Keys(), token)]


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
