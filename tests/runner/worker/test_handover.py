"""A stopping worker hands its run over (runner/worker/horse.py, runner/worker/handover.py): real
worker processes signalled the ways platforms signal them, a lease far longer than the test
waits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil
import pytest
from click.testing import Result
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from runner.tokens import job_id
from runner.worker.handover import hand_over_killed
from tests.conftest import WorkerProcess, horses_of, state_of, wait_for

LONG_LEASE = "30"  # a handover that waited for the lease would blow every wait below


def horse_of(worker: WorkerProcess) -> psutil.Process:
    children = wait_for(lambda: horses_of(worker.process.pid), what="a horse")
    return children[0]  # type: ignore[index,no-any-return]


def handovers(redis: Redis, token: str) -> list[dict[str, object]]:
    return [e for _, e in read_events(redis, Keys(), token) if e["event"] == "attempt.handed_over"]


def in_long_step(redis: Redis, token: str) -> bool:
    """Whether `stubborn`'s first attempt is inside its long step (past the step boundary,
    where a stop would be graceful)."""
    return redis.lindex(f"probe:exec:{token}", 0) is not None


@pytest.mark.slow
@pytest.mark.load_sensitive
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
    # Then A exits within its stop time (and the moment its exit takes), having killed its horse
    assert a.process.wait(timeout=3 + 1.5) == 0
    assert "horse.killed" in a.output()
    # And B continues the run long before A's lease could have expired
    wait_for(lambda: state_of(runs, token) == RunState.SUCCEEDED, timeout=15, what="success on B")
    assert time.monotonic() - signalled < int(LONG_LEASE) / 2
    record = runs.get(token)
    assert record is not None and record.worker.startswith("B") and record.result == {"attempt": 2}
    assert record.handovers == 1 and record.error is None and record.attempts_left == 4
    [event] = handovers(redis, token)
    assert event["by"] == "supervisor" and event["next_attempt"] == 2
    assert event["reason"] == "its horse was killed while the worker stopped"
    # And `runner show` and `runner logs` say so
    assert "handovers:  1" in invoke("show", token).stdout
    assert "attempt.handed_over" in invoke("logs", token).stdout


@pytest.mark.slow
def test_a_killed_horse_whose_run_was_being_cancelled_ends_it_cancelled_not_requeued(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    # Given a run inside one long step on worker A (30 s lease, 3 s to stop), B idle beside it
    token = enqueue("stubborn", seconds=120).token
    a = start_worker("--name", "A", RUNNER_LEASE_SECONDS=LONG_LEASE, RUNNER_STOP_SECONDS="3")
    wait_for(lambda: in_long_step(redis, token), what="the long step on A")
    start_worker("--name", "B", RUNNER_LEASE_SECONDS=LONG_LEASE)
    # And an operator asked for it to be cancelled (it would stop at its next step boundary)
    asked = invoke("cancel", token)
    assert asked.exit_code == 0 and "stopping" in asked.stdout, asked.output
    # When A's supervisor gets SIGTERM, and kills the busy horse at its stop deadline
    a.process.send_signal(signal.SIGTERM)
    assert a.process.wait(timeout=10) == 0
    assert "horse.killed" in a.output()
    # Then the supervisor ends the run cancelled, at once: no next attempt, not on B either
    wait_for(lambda: state_of(runs, token) == RunState.CANCELLED, timeout=10, what="cancelled")
    record = runs.get(token)
    assert record is not None and record.attempt == 1 and record.handovers == 0
    assert handovers(redis, token) == []
    [ended] = [e for _, e in read_events(redis, Keys(), token) if e["event"] == "run.cancelled"]
    assert ended["by"] == "supervisor"
    assert redis.llen("rq:queue:default") == 0
    time.sleep(1.0)  # B had every chance to take a requeued job
    assert [e.decode().split(":")[1] for e in redis.lrange(f"probe:exec:{token}", 0, -1)] == ["1"]
    assert state_of(runs, token) == RunState.CANCELLED


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_worker_signalled_with_its_horse_stops_cleanly(
    signum: signal.Signals,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Given an idle worker, its horse waiting for a job
    a = start_worker("--name", "A")
    wait_for(lambda: "horse.started" in a.output(), what="the horse")
    horse = horse_of(a)
    time.sleep(0.5)
    # When every process of it gets the signal at once (a platform's control-group stop)
    for pid in (a.process.pid, horse.pid):
        os.kill(pid, signum)
    # Then it exits cleanly and promptly, without a traceback or a killed horse
    assert a.process.wait(timeout=10) == 0
    out = a.output()
    assert "worker.stopped" in out and "Traceback" not in out and "horse.killed" not in out


@pytest.mark.slow
def test_the_shortest_stop_time_still_lets_a_run_hand_over_at_its_next_checkpoint(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given a run checkpointing every 50 ms on worker A, whose stop time is the shortest
    # allowed (1 s)
    token = enqueue("counting", items=600, probed=False).token
    a = start_worker("--name", "A", RUNNER_LEASE_SECONDS=LONG_LEASE, RUNNER_STOP_SECONDS="1")
    wait_for(lambda: (record := runs.get(token)) and record.cursor, what="checkpoints on A")
    # When A's supervisor gets SIGTERM
    a.process.send_signal(signal.SIGTERM)
    # Then the horse hands the run over itself, at its next checkpoint (the supervisor may
    # still kill it at the deadline while it exits, with nothing left to hand over)
    assert a.process.wait(timeout=10) == 0
    [event] = handovers(redis, token)
    assert event["by"] == "worker" and state_of(runs, token) == RunState.QUEUED


@pytest.mark.slow
def test_a_stop_that_reaches_a_horse_still_starting_stops_it_cleanly(
    redis: Redis, start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given a worker whose horse died (lease 30 s: its reaper sweeps every 5 s), the supervisor
    # past its sweep and about to start the next horse (in 1 s)
    a = start_worker("--name", "A", RUNNER_LEASE_SECONDS=LONG_LEASE)
    first = horse_of(a)
    first.kill()
    wait_for(lambda: "horse.exited" in a.output(), what="the supervisor seeing it die")
    time.sleep(0.3)
    # And Redis holding every command back for 3 s: the new horse stays in its start-up,
    # before it can install the signal handlers of a working horse
    redis.client_pause(3000)
    second = wait_for(
        lambda: [h for h in horses_of(a.process.pid) if h.pid != first.pid], what="a new horse"
    )[0]  # type: ignore[index]
    # When every process of the worker gets SIGTERM at once (a platform's control-group stop)
    for pid in (a.process.pid, second.pid):
        os.kill(pid, signal.SIGTERM)
    # Then the horse stops as soon as it can work, and the worker exits cleanly: no horse
    # left to be killed at the stop deadline
    assert a.process.wait(timeout=15) == 0
    out = a.output()
    assert "worker.stopped" in out and "Traceback" not in out and "horse.killed" not in out


def test_a_handover_is_fenced_by_the_lease_and_uses_no_attempt(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], settings: Settings,
) -> None:  # fmt: skip
    # Given a run whose attempt 1 holds the lease (claimed here, as a horse "w.horse1" would)
    token = enqueue("counting", items=3).token
    _, record, _ = runs.begin(token, 1, holder=job_id(token, 1), worker="w.horse1", version="v")
    assert record is not None
    # When someone that does not hold the lease tries to hand it over, nothing changes
    assert not runs.hand_over(record, holder="someone-else")
    assert state_of(runs, token) == RunState.RUNNING
    # When the horse's supervisor hands over what the (dead) horse held
    assert hand_over_killed(redis, settings, worker="w.horse1", why="test") == 1
    # Then the run is queued as attempt 2 at once, with attempt 1 not counted, and only once
    after = runs.get(token)
    assert after is not None and after.state == RunState.QUEUED and after.attempt == 2
    assert after.handovers == 1 and after.attempts_left == record.attempts_left
    assert not redis.exists(Keys().lease(token))
    assert hand_over_killed(redis, settings, worker="w.horse1", why="again") == 0
    assert not runs.hand_over(record, holder=job_id(token, 1))
    assert redis.lrange("rq:queue:default", 0, -1).count(job_id(token, 2).encode()) == 1


def test_the_supervisor_ends_a_dead_horses_run_cancelled_when_its_cancel_was_asked(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], settings: Settings,
    invoke: Callable[..., Result],
) -> None:  # fmt: skip
    # Given a run held by horse "w.horse1" whose cancel an operator asked for
    token = enqueue("counting", items=3).token
    runs.begin(token, 1, holder=job_id(token, 1), worker="w.horse1", version="v")
    assert "stopping" in invoke("cancel", token).stdout
    # When the horse's supervisor hands over what the (killed) horse held
    assert hand_over_killed(redis, settings, worker="w.horse1", why="test") == 1
    # Then the run ended cancelled, with no next attempt queued
    after = runs.get(token)
    assert after is not None and after.state == RunState.CANCELLED and after.attempt == 1
    assert after.handovers == 0 and not redis.exists(Keys().lease(token))
    assert job_id(token, 2).encode() not in redis.lrange("rq:queue:default", 0, -1)
    assert handovers(redis, token) == []
