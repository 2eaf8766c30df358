"""Cancelling runs (runner/runs/cancel.py, `runner cancel`): queued, retrying, running, finished;
the cancel request reaches a running attempt in the replies of its own writes."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from click.testing import Result
from redis import Redis

from runner.attempt.lease import LeaseRenewer, StopReason
from runner.config import Settings
from runner.errors import InvalidArguments
from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunState
from runner.runs.cancel import CancelAction, cancel
from runner.runs.enqueue import Enqueued
from runner.runs.figures import Figures
from runner.runs.rerun import RerunAction, rerun
from runner.runs.transitions import Hold, Runs
from runner.worker.reaper import Reaper
from tests.conftest import state_of, wait_for


def events_of(redis: Redis, token: str) -> list[dict[str, object]]:
    return [e for _, e in read_events(redis, Keys(), token)]


def in_background(fn: Callable[[], object]) -> list[object]:
    """Run `fn` in a thread (the worker must run in the main thread: it installs signal
    handlers); its result lands in the returned list."""
    out: list[object] = []
    threading.Thread(target=lambda: out.append(fn()), daemon=True).start()
    return out


def executed(redis: Redis, token: str) -> list[str]:
    return [e.decode() for e in redis.lrange(f"probe:exec:{token}", 0, -1)]


def test_a_cancelled_queued_run_never_starts_and_its_token_stays_deduplicated(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    invoke: Callable[..., Result], settings: Settings,
) -> None:  # fmt: skip
    # Given a queued run
    token = enqueue("counting", items=3, seconds=0.0).token
    assert redis.llen("rq:queue:default") == 1
    # When an operator cancels it from the CLI
    result = invoke("cancel", token[:12])
    # Then it is cancelled at once, its job is dropped from the queue, and nothing runs
    assert result.exit_code == 0, result.output
    assert f"cancelled: {token} (counting) it was queued" in result.stdout
    assert state_of(runs, token) == RunState.CANCELLED
    assert redis.llen("rq:queue:default") == 0
    drain()
    assert executed(redis, token) == []
    # And enqueueing the same token again is deduplicated, not a new run
    again = enqueue("counting", items=3, seconds=0.0)
    assert again.token == token and again.deduplicated and again.state == RunState.CANCELLED
    # And the log says who cancelled it
    [event] = [e for e in events_of(redis, token) if e["event"] == "run.cancelled"]
    assert event["origin"] == "cli" and event["state"] == RunState.CANCELLED
    # And the figures count it cancelled (not started, not failed: no failure rate)
    counted = Figures(redis, settings).totals()[("counting", "default")]
    assert (counted.counts["cancelled"], counted.counts["started"]) == (1, 0)
    assert counted.failure_rate is None


def test_a_job_a_worker_took_before_the_cancel_is_refused(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], work: Callable[[], None],
    settings: Settings,
) -> None:  # fmt: skip
    # Given a queued run whose job a worker has already taken off the queue
    token = enqueue("counting", items=3, seconds=0.0).token
    redis.lmove("rq:queue:default", "rq:queue:default:intermediate", "LEFT", "RIGHT")
    # When it is cancelled, and the job (put back, as if the worker now went on) is executed
    assert cancel(redis, settings, token, origin="web").action == CancelAction.CANCELLED
    redis.lmove("rq:queue:default:intermediate", "rq:queue:default", "LEFT", "RIGHT")
    work()
    # Then the attempt refuses to run the body
    assert executed(redis, token) == []
    assert state_of(runs, token) == RunState.CANCELLED
    skipped = [e for e in events_of(redis, token) if e["event"] == "attempt.skipped"]
    assert skipped and "cancelled" in str(skipped[0]["reason"])


def test_a_retrying_run_is_cancelled_and_never_retried(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], work: Callable[[], None],
    settings: Settings,
) -> None:  # fmt: skip
    # Given a run waiting for its retry
    token = enqueue("flaky", failures=5).token
    work()
    assert state_of(runs, token) == RunState.RETRYING
    # When it is cancelled
    assert cancel(redis, settings, token, origin="cli").action == CancelAction.CANCELLED
    # Then the reaper never promotes it, even once its retry is due
    redis.zadd(Keys().delayed, {token: 0})
    assert Reaper(redis, settings).promote_due() == 0
    assert state_of(runs, token) == RunState.CANCELLED


def test_a_running_run_stops_at_its_next_checkpoint_and_a_rerun_resumes_there(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], work: Callable[[], None],
    settings: Settings, drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a checkpointing run executing in a worker
    token = enqueue("counting", items=200, seconds=0.02).token
    # When it is cancelled from the console while it runs
    asked = in_background(
        lambda: (
            wait_for(lambda: (runs.get(token).cursor or 0) >= 3, what="progress")  # type: ignore[union-attr]
            and cancel(redis, settings, token, origin="web")
        )
    )
    work()
    assert asked[0].action == CancelAction.STOPPING and asked[0].state == RunState.RUNNING
    # Then it stopped at a checkpoint, well before its end, and ended cancelled
    record = runs.get(token)
    assert record is not None and record.state == RunState.CANCELLED
    stopped_at = record.cursor
    assert 3 <= stopped_at < 200 and record.counters == {"done": stopped_at}
    names = [(e["event"], e.get("origin")) for e in events_of(redis, token)]
    assert ("run.cancel_requested", "web") in names and ("run.cancelled", "web") in names
    # When it is rerun
    assert rerun(redis, settings, token).action == RerunAction.REQUEUED
    drain()
    # Then it resumed from its checkpoint and did each item once
    record = runs.get(token)
    assert record is not None and record.state == RunState.SUCCEEDED
    assert record.result == {"done": 200, "resumed_from": stopped_at}
    assert record.attempt == 2 and not record.cancel_requested
    items = [e.split(":")[0] for e in executed(redis, token)]
    assert sorted(items) == sorted(f"item{i}" for i in range(200))  # it stopped after a write


def test_a_run_stops_at_the_next_step_when_it_never_checkpoints(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], work: Callable[[], None],
    settings: Settings,
) -> None:  # fmt: skip
    # Given a run of three steps, in its first step
    token = enqueue("slow_steps", steps=3, seconds=0.5).token
    # When it is cancelled mid-step
    in_background(
        lambda: (
            wait_for(lambda: executed(redis, token), what="the first step")
            and cancel(redis, settings, token, origin="cli")
        )
    )
    work()
    # Then the step finished and was recorded, and the next one never started
    assert state_of(runs, token) == RunState.CANCELLED
    assert list(runs.steps(token)) == ["s0"]
    assert [e.split(":")[0] for e in executed(redis, token)] == ["s0"]


def test_an_attempt_that_died_after_its_cancel_was_asked_ends_cancelled(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], settings: Settings,
) -> None:  # fmt: skip
    # Given a run marked running whose worker died (its lease is gone) after a cancel
    token = enqueue("counting", items=3).token
    status, record, _ = runs.begin(token, 1, holder="job-1", worker="w", version="v")
    assert status == "ok" and record is not None
    assert cancel(redis, settings, token, origin="cli").action == CancelAction.STOPPING
    redis.delete(Keys().lease(token))
    # When the reaper finds it
    Reaper(redis, settings).requeue_expired()
    # Then it is cancelled, not given another attempt
    record = runs.get(token)
    assert record is not None and record.state == RunState.CANCELLED and record.attempt == 1


def test_the_lease_renewal_alone_brings_a_cancel_request_to_its_attempt(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], settings: Settings,
) -> None:  # fmt: skip
    # Given an attempt holding its run's lease, renewed in the background, writing nothing
    token = enqueue("counting", items=3).token
    status, _, _ = runs.begin(token, 1, holder="job-1", worker="w", version="v")
    assert status == "ok" and runs.renew(token, "job-1") == Hold.HELD
    renewer = LeaseRenewer(runs)
    lease = renewer.hold(token, "job-1")
    try:
        # When an operator cancels the run
        assert cancel(redis, settings, token, origin="cli").action == CancelAction.STOPPING
        # Then a renewal's reply says so (and still refuses any other holder)
        assert runs.renew(token, "job-1") == Hold.CANCEL
        assert runs.renew(token, "job-2") == Hold.LOST
        # And the renewer, with no write of the attempt's, asks it to stop for a cancel
        wait_for(lambda: lease.stop == StopReason.CANCEL, timeout=10, what="the stop request")
        assert not lease.lost and redis.pttl(Keys().lease(token)) > 0
    finally:
        renewer.release(lease)


def test_a_finished_run_is_not_cancelled_and_the_cli_says_why(
    runs: Runs, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    invoke: Callable[..., Result],
) -> None:  # fmt: skip
    token = enqueue("counting", items=1, seconds=0.0).token
    drain()
    result = invoke("cancel", token)
    assert result.exit_code == 1
    assert f"skipped: {token}" in result.output and "succeeded already" in result.output
    assert state_of(runs, token) == RunState.SUCCEEDED
    assert invoke("cancel", "no-such-run").exit_code == 2


def test_an_origin_that_is_not_one_word_is_refused(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    token = enqueue("counting", items=1).token
    with pytest.raises(InvalidArguments, match="one lowercase word"):
        cancel(redis, settings, token, origin="<script>")
    assert state_of(runs, token) == RunState.QUEUED
