"""A stopping worker hands its run over (runner/worker.py, runner/handover.py): real worker
processes signalled the ways platforms signal them, a lease far longer than the test waits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil
import pytest
from click.testing import Result
from redis import Redis

from runner.enqueue import Enqueued
from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunState
from runner.runs import Runs
from tests.conftest import WorkerProcess, state_of, wait_for

pytestmark = pytest.mark.slow
LONG_LEASE = "30"  # a handover that waited for the lease would blow every wait below


def horse_of(worker: WorkerProcess) -> psutil.Process:
    children = wait_for(lambda: psutil.Process(worker.process.pid).children(), what="a horse")
    return children[0]  # type: ignore[index,no-any-return]


def handovers(redis: Redis, token: str) -> list[dict[str, object]]:
    return [e for _, e in read_events(redis, Keys(), token) if e["event"] == "attempt.handed_over"]


def in_long_step(redis: Redis, token: str) -> bool:
    """Whether `stubborn`'s first attempt is inside its long step (past the step boundary,
    where a stop would be graceful)."""
    return redis.lindex(f"probe:exec:{token}", 0) is not None


def test_a_task_that_never_checkpoints_is_killed_at_the_deadline_and_continued_at_once(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    # Given a run inside one long step on worker A (30 s lease, 3 s to stop), B idle beside it
    token = enqueue("stubborn", seconds=120).token
    a = start_worker("--name", "A", RUNNER_LEASE_SECONDS=LONG_LEASE, RUNNER_STOP_SECONDS="3")
    wait_for(lambda: in_long_step(redis, token), what="the long step on A")
    start_worker("--name", "B", RUNNER_LEASE_SECONDS=LONG_LEASE)
    # When A's supervisor gets SIGTERM
    a.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    # Then A exits within its stop time, having killed its horse
    assert a.process.wait(timeout=3) == 0
    assert "horse.killed" in a.output()
    # And B continues the run long before A's lease could have expired
    wait_for(lambda: state_of(runs, token) == RunState.SUCCEEDED, timeout=15, what="success on B")
    assert time.monotonic() - signalled < int(LONG_LEASE) / 2
    record = runs.get(token)
    assert record is not None and record.worker.startswith("B") and record.result == {"attempt": 2}
    assert record.handovers == 1 and record.error is None and record.attempts_left == 4
    [event] = handovers(redis, token)
    assert event["by"] == "supervisor" and event["next_attempt"] == 2
    # And `runner show` and `runner logs` say so
    assert "handovers:  1" in invoke("show", token).stdout
    assert "attempt.handed_over" in invoke("logs", token).stdout


def test_a_second_sigterm_stops_the_worker_at_once_and_still_hands_over(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given a run in a long step on A, whose stop time is a minute
    token = enqueue("stubborn", seconds=120).token
    a = start_worker("--name", "A", RUNNER_LEASE_SECONDS=LONG_LEASE, RUNNER_STOP_SECONDS="60")
    wait_for(lambda: in_long_step(redis, token), what="the long step on A")
    start_worker("--name", "B", RUNNER_LEASE_SECONDS=LONG_LEASE)
    # When A's supervisor gets SIGTERM, and a second one a moment later
    a.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert a.process.poll() is None, "the first SIGTERM alone must wait for a checkpoint"
    a.process.send_signal(signal.SIGTERM)
    # Then A stops at once (long before its minute), and B continues the run
    a.process.wait(timeout=10)
    wait_for(lambda: state_of(runs, token) == RunState.SUCCEEDED, timeout=15, what="success on B")
    [event] = handovers(redis, token)
    assert event["by"] == "supervisor"


def test_an_idle_worker_signalled_with_its_horse_stops_cleanly(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Given an idle worker, its horse waiting for a job
    a = start_worker("--name", "A")
    horse = horse_of(a)
    wait_for(lambda: "horse.started" in a.output(), what="the horse")
    time.sleep(0.5)
    # When every process of it gets SIGTERM at once (a platform's control-group stop)
    for pid in (a.process.pid, horse.pid):
        os.kill(pid, signal.SIGTERM)
    # Then it exits cleanly and promptly, without a traceback or a killed horse
    assert a.process.wait(timeout=10) == 0
    out = a.output()
    assert "worker.stopped" in out and "Traceback" not in out and "horse.killed" not in out
