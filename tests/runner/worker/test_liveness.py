"""Liveness that does not lie, and no run stuck for ever, with real worker processes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result
from redis import Redis
from rq import Queue, Worker
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcformat

from runner.config import Settings
from runner.logs import read_events
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from runner.worker.liveness import Liveness
from tests.conftest import WorkerProcess, state_of, wait_for

pytestmark = pytest.mark.slow


def token_job(runs: Runs, token: str, *, attempt: int) -> str:
    from runner.tokens import job_id

    return job_id(token, attempt)


def health(invoke: Callable[..., Result]) -> tuple[int, dict[str, object]]:
    result = invoke("health", "--json")
    return result.exit_code, json.loads(result.output)


def up_verdict(invoke: Callable[..., Result]) -> object:
    return health(invoke)[1]["up"]["verdict"]  # type: ignore[index]


def names(redis: Redis) -> set[str]:
    return {w.name for w in Worker.all(connection=redis)}


@pytest.mark.load_sensitive
def test_a_sigkilled_worker_group_is_not_alive_and_leaves_no_ghost(
    settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis,
    start_worker: Callable[..., WorkerProcess], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    # Given worker A busy with a long job, the only worker
    token = enqueue("sleepy", seconds=6.0).token
    a = start_worker("--name", "A")
    wait_for(lambda: state_of(runs, token) == "running", what="A runs the job")
    assert up_verdict(invoke) == "ok"
    started = StartedJobRegistry("default", connection=redis)
    old_job = token_job(runs, token, attempt=1)
    assert old_job in started.get_job_ids(cleanup=False)

    # When its whole process group is SIGKILLed
    a.kill_group()
    killed = time.monotonic()

    # Then health reports nobody alive (exit 1) within 2 x lease
    wait_for(lambda: health(invoke)[0] == 1, timeout=2 * settings.lease_seconds + 1,
             what="health to see A dead")  # fmt: skip
    assert time.monotonic() - killed <= 2 * settings.lease_seconds + 1
    assert "no worker alive" in health(invoke)[1]["up"]["text"]  # type: ignore[index]
    assert any(n.startswith("A.horse") for n in names(redis))  # RQ still lists the ghost

    # And once another worker lives, its reaper removes A's registration and started job
    start_worker("--name", "B")
    wait_for(lambda: not any(n.startswith("A.") for n in names(redis)), what="A's ghost gone")
    wait_for(lambda: old_job not in started.get_job_ids(cleanup=False),
             what="A's job out of the started registry")  # fmt: skip
    # (B's horse registers itself a moment after B's reaper has run)
    wait_for(lambda: up_verdict(invoke) == "ok", timeout=2 * settings.lease_seconds + 5,
             what="up to be ok", describe=lambda: str(health(invoke)[1]["up"]))  # fmt: skip


def test_a_horse_busy_for_three_leases_without_checkpoints_is_alive(
    settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis,
    start_worker: Callable[..., WorkerProcess], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    busy = 3 * settings.lease_seconds
    token = enqueue("sleepy", seconds=busy + 2).token
    start_worker("--name", "A")
    wait_for(lambda: state_of(runs, token) == "running", what="the job to start")

    deadline = time.monotonic() + busy
    while time.monotonic() < deadline:
        up = health(invoke)[1]["up"]
        assert up["verdict"] == "ok", up  # type: ignore[index]
        assert len(Liveness(redis, settings).alive()) == 1
        assert any(n.startswith("A.horse") for n in names(redis))
        time.sleep(0.5)
    assert state_of(runs, token) == "running"
    wait_for(lambda: state_of(runs, token) == "succeeded", what="the job to finish")
    assert runs.get(token).attempt == 1  # type: ignore[union-attr]


def test_a_queued_run_whose_rq_job_was_deleted_finishes_once(
    settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given a queued run whose RQ job is deleted from outside (rq-dashboard, `rq empty`)
    run = enqueue("counting", items=2, seconds=0.01)
    Queue("default", connection=redis).empty()
    assert not redis.exists(f"rq:job:{run.job_id}")

    # When a worker runs
    start_worker("--name", "A")

    # Then its reaper gives the run a new attempt, which finishes, once
    wait_for(lambda: state_of(runs, run.token) == "succeeded", timeout=30,
             what="the run to finish")  # fmt: skip
    record = runs.get(run.token)
    assert record is not None and record.attempt == 2
    assert redis.llen(f"probe:exec:{run.token}") == 2  # items 0 and 1, each once
    logged = [e for _, e in read_events(redis, runs.keys, run.token)]
    events = [e["event"] for e in logged]
    assert events.count("run.requeued") == 1 and events.count("run.succeeded") == 1
    requeued = next(e for e in logged if e["event"] == "run.requeued")
    assert "RQ job is gone" in str(requeued["reason"])


def test_the_reaper_buries_only_dead_runner_horses(redis: Redis, settings: Settings) -> None:

    long_ago = utcformat(datetime.now(UTC) - timedelta(seconds=10 * settings.lease_seconds))
    for name in ("W.horse41", "W.horse42", "someone-elses-rq-worker"):
        Worker(["default"], connection=redis, name=name, serializer=JSONSerializer).register_birth()
    for name in ("W.horse41", "someone-elses-rq-worker"):
        redis.hset(f"rq:worker:{name}", "last_heartbeat", long_ago)

    buried = Liveness(redis, settings).bury_dead()

    assert buried == ["W.horse41"]
    assert names(redis) == {"W.horse42", "someone-elses-rq-worker"}
    assert [w.name for w in Liveness(redis, settings).alive()] == ["W.horse42"]
