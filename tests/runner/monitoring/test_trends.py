"""Health's trends (runner.monitoring.trends): did the last deploy make a task slower or failing,
from real worker processes of two code versions; failing runs rerun since."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from redis import Redis

from runner.config import Settings
from runner.runs.deploys import DeployMarks
from runner.runs.enqueue import Enqueued
from tests.conftest import WorkerProcess, cpu_hogs
from tests.runner.monitoring.test_health import deploy


@pytest.mark.slow
@pytest.mark.load_sensitive
def test_health_names_the_deploy_that_made_a_task_slower_and_failing(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    invoke: Callable[..., Result], start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    deploy(settings, redis, enqueue, start_worker, version="A")
    deploy(settings, redis, enqueue, start_worker, version="B", seconds=0.15, fail_every=3)

    result = invoke("health")
    print(result.output)
    answers = {line.split()[0]: line for line in result.output.splitlines()}

    assert result.exit_code == 1
    line = answers["deploy"]
    assert line.split()[1] == "warn"
    assert "B marked" in line and "(after A)" in line
    assert "deployed" in line and "p95 +" in line and "failures 0.0% -> 33.3%" in line
    assert answers["failing"].split()[1] == "FAIL"
    assert "deployed: 10 of 60 runs failed in the last hour" in answers["failing"]
    as_json = json.loads(invoke("health", "--json").output)
    assert as_json["ok"] is False and as_json["deploy"]["figures"]["changed"] == ["deployed"]


@pytest.mark.slow
@pytest.mark.load_sensitive
def test_health_says_unchanged_for_a_deploy_that_changed_nothing(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    invoke: Callable[..., Result], start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    deploy(settings, redis, enqueue, start_worker, version="A")
    deploy(settings, redis, enqueue, start_worker, version="B")

    line = next(x for x in invoke("health").output.splitlines() if x.startswith("deploy"))

    assert line.split()[1] == "ok"
    assert "B marked" in line and line.endswith("(after A): unchanged")


@pytest.mark.slow
@pytest.mark.load_sensitive
def test_a_deploy_that_changed_nothing_is_unchanged_though_the_host_was_busy_during_it(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    invoke: Callable[..., Result], start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given A on a quiet host, then the same code as B while two CPU hogs run
    deploy(settings, redis, enqueue, start_worker, version="A", cpu=0.2)
    with cpu_hogs(2):  # on 2 cores: each attempt waits for a CPU about as long as it works
        deploy(settings, redis, enqueue, start_worker, version="B", cpu=0.2)

    line = next(x for x in invoke("health").output.splitlines() if x.startswith("deploy"))

    # Then B is not "slower": CPU time and the time not spent waiting for a CPU did not move
    assert line.split()[1] == "ok", line
    assert line.endswith("(after A): unchanged"), line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "figure"), [({"cpu": 0.2}, "cpu p50 +"), ({"seconds": 1.02}, "busy p50 +")]
)
@pytest.mark.load_sensitive
def test_a_deploy_that_costs_more_cpu_or_waits_longer_is_slower(
    change: dict[str, float], figure: str, settings: Settings, redis: Redis,
    enqueue: Callable[..., Enqueued], invoke: Callable[..., Result],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given A, then B with a CPU regression, or with an added 1 s wait (an I/O stand-in)
    deploy(settings, redis, enqueue, start_worker, version="A", cpu=0.005)
    deploy(settings, redis, enqueue, start_worker, version="B", **{"cpu": 0.005, **change})

    line = next(x for x in invoke("health").output.splitlines() if x.startswith("deploy"))

    assert line.split()[1] == "warn", line
    assert "deployed slower: " in line and figure in line, line


def test_few_runs_never_make_a_verdict(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    marks = DeployMarks(redis, settings)
    marks.mark("A", by="t")
    redis.hset("probe:behaviour", mapping={"fail_every": 1})  # every run fails
    for n in range(3):
        enqueue("deployed", token=f"x-{n}", n=n)
    drain()

    result = invoke("health", "--json")
    report = json.loads(result.output)

    assert result.exit_code == 1
    assert report["failing"]["verdict"] == "warn"  # named, though too few for a rate
    assert report["failing"]["figures"]["tasks"] == ["deployed"]
    assert len(report["failing"]["figures"]["recent"]) == 3
    assert report["deploy"]["verdict"] == "ok"


def test_failing_says_when_the_failed_runs_were_rerun_and_are_no_longer_failed(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    redis.hset("probe:behaviour", mapping={"fail_every": 1})  # every run fails
    for n in range(2):
        enqueue("deployed", token=f"x-{n}", n=n)
    drain()
    before = json.loads(invoke("health", "--json").output)["failing"]
    redis.hset("probe:behaviour", mapping={"fail_every": 0})
    assert invoke("rerun", "--failed").exit_code == 0
    drain()

    after = json.loads(invoke("health", "--json").output)["failing"]

    assert before["verdict"] == "warn" and "none the day before" in before["text"]
    assert "2 failed now: x-" in before["text"] and "0.0% the day before" not in before["text"]
    assert after["verdict"] == "ok"
    assert "all rerun since, none failed now" in after["text"]
    assert after["figures"]["rerun"] == ["deployed"]
