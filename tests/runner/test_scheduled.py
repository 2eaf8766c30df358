"""Delayed runs (`at=`, `after=`): scheduled, deduplicated, pushed by the reaper when due,
through the death of every worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result
from redis import Redis

from runner import Client, InvalidArguments, RunState
from runner.config import Settings
from runner.keys import Keys
from runner.logs import decode_entries
from runner.monitoring.health import check_health
from runner.tokens import job_id
from runner.worker.reaper import Reaper
from tests.conftest import WorkerProcess, wait_for

KEYS = Keys()


@pytest.fixture
def client(redis: Redis, settings: Settings) -> Client:
    return Client(redis, settings)


def test_a_run_due_later_waits_in_the_scheduled_set_without_a_job(
    client: Client, redis: Redis, settings: Settings
) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    first = client.enqueue("greet", {"name": "ada"}, at=due)
    again = client.enqueue("greet", {"name": "ada"}, after=5)

    assert (first.state, first.deduplicated) == (RunState.SCHEDULED, False)
    assert (again.state, again.deduplicated) == (RunState.SCHEDULED, True)
    assert redis.zscore(KEYS.delayed, first.token) == pytest.approx(due.timestamp())
    assert redis.llen("rq:queue:default") == 0
    assert not redis.exists(f"rq:job:{first.job_id}")
    Reaper(redis, settings).sweep()
    record = client.get(first.token)
    assert record is not None and record.state == RunState.SCHEDULED
    assert record.due_at == pytest.approx(due.timestamp())


def test_a_due_run_is_pushed_by_the_reaper_and_runs_once(
    client: Client, redis: Redis, settings: Settings, work: Callable[[], None]
) -> None:
    enqueued = client.enqueue("greet", {"name": "ada"}, at=time.time() - 1)
    assert enqueued.state == RunState.SCHEDULED

    moved = Reaper(redis, settings).sweep()
    again = Reaper(redis, settings).sweep()

    assert (moved, again) == (1, 0)
    assert redis.lrange("rq:queue:default", 0, -1) == [job_id(enqueued.token, 1).encode()]
    assert redis.zscore(KEYS.delayed, enqueued.token) is None
    work()
    record = client.wait(enqueued.token, timeout=10)
    assert (record.state, record.attempt, record.result) == (RunState.SUCCEEDED, 1, "ada")
    events = [e["event"] for _, e in decode_entries(redis.xrange(KEYS.log(enqueued.token)))]
    assert events[0] == "run.scheduled" and events[-1] == "run.succeeded"


def test_a_scheduled_run_is_listed_and_cancelled(
    client: Client, redis: Redis, settings: Settings, invoke: Callable[..., Result]
) -> None:
    token = client.enqueue("greet", {"name": "ada"}, after=timedelta(minutes=5)).token

    listed = invoke("runs", "--state", "scheduled", "--json")
    assert [json.loads(line)["token"] for line in listed.output.splitlines()] == [token]
    assert "due at:" in invoke("show", token).output

    assert client.cancel(token).state == RunState.CANCELLED
    assert redis.zscore(KEYS.delayed, token) is None
    assert Reaper(redis, settings).sweep() == 0


def test_both_at_and_after_or_a_naive_time_are_refused(client: Client, redis: Redis) -> None:
    with pytest.raises(InvalidArguments, match="give at= or after=, not both"):
        client.enqueue("greet", {"name": "ada"}, at=time.time(), after=1)
    with pytest.raises(InvalidArguments, match="has no time zone"):
        client.enqueue("greet", {"name": "ada"}, at=datetime(2030, 1, 1))
    assert redis.dbsize() == 0


def test_a_delayed_run_survives_a_sigkill_of_every_worker_and_runs_once_when_due(
    client: Client,
    redis: Redis,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Given two live workers and a run due in a few seconds
    workers = [start_worker("--name", "A"), start_worker("--name", "B")]
    wait_for(lambda: len(redis.keys("rq:worker:*")) >= 2, timeout=30, what="two workers up")
    due = time.time() + 6
    token = client.enqueue("slow_steps", {"steps": 1, "seconds": 0.1}, at=due).token
    # When every worker is SIGKILLed before it is due
    for worker in workers:
        worker.kill_group()
    record = client.get(token)
    assert record is not None and record.state == RunState.SCHEDULED
    # Then it waits through its due time with no worker alive, which health points out...
    late = due + settings.lease_seconds + 0.5
    wait_for(lambda: time.time() > late, timeout=30, what="the due time to pass")
    record = client.get(token)
    assert record is not None and record.state == RunState.SCHEDULED
    assert "1 runs awaiting the reaper" in check_health(redis, settings).up.text
    # ...and the next worker to come up runs it, once, as its first attempt
    start_worker("--name", "C")
    record = client.wait(token, timeout=60)
    assert (record.state, record.attempt) == (RunState.SUCCEEDED, 1)
    executions = [e.split(b":")[:2] for e in redis.lrange(f"probe:exec:{token}", 0, -1)]
    assert executions == [[b"s0", b"1"]]
