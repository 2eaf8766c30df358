"""`runner health` answers the four questions; here: did the last deploy change anything."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from click.testing import Result
from redis import Redis

from runner.config import Settings
from runner.cron.ticks import Cron
from runner.delivery.dequeue import delivery_key
from runner.monitoring.answers import Verdict
from runner.monitoring.health import check_health
from runner.runs.deploys import DeployMarks
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from runner.tasks import Check as HealthCheck
from runner.tasks import load_registry
from runner.worker.liveness import Liveness
from tests.conftest import WorkerProcess, cpu_hogs, state_of, wait_for

RUNS = 30


def deploy(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess], *, version: str, seconds: float = 0.02,
    fail_every: int = 0, cpu: float = 0.0,
) -> None:  # fmt: skip
    """Two workers of `version` (real processes), started before the work arrives so the
    queue wait is the queue's and not a process start-up, run RUNS runs of `deployed`."""
    redis.hset("probe:behaviour", mapping={"seconds": seconds, "fail_every": fail_every,
                                           "cpu": cpu})  # fmt: skip
    workers = [start_worker(RUNNER_CODE_VERSION=version) for _ in range(2)]
    wait_for(lambda: len(Liveness(redis, settings).alive()) == 2, what=f"two {version} workers")
    tokens = [enqueue("deployed", token=f"{version}-{n}", n=n).token for n in range(RUNS)]
    runs = Runs(redis, settings)
    wait_for(lambda: all(state_of(runs, t) in ("succeeded", "failed") for t in tokens),
             timeout=60, what=f"the {version} runs")  # fmt: skip
    for worker in workers:
        worker.stop()


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


def test_the_clock_is_part_of_up_when_the_schedule_has_entries(
    redis: Redis, settings: Settings
) -> None:
    scheduled = load_registry("tests.cron_tasks")
    assert scheduled.schedule
    assert "clock never ticked" in check_health(redis, settings, scheduled=True).up.text

    Cron(redis, settings, registry=scheduled).tick(datetime.now(UTC))
    ticked = check_health(redis, settings, scheduled=True).up.text
    assert "clock ticked" in ticked

    later = check_health(redis, settings, scheduled=True, now=time.time() + 200)
    assert later.up.verdict == "FAIL" and "clock last ticked 3.3 min ago" in later.up.text
    unscheduled = check_health(redis, settings, scheduled=False, now=time.time() + 200)
    assert "the clock stopped" not in unscheduled.up.text and "clock ticked" in unscheduled.up.text


@pytest.mark.slow
def test_a_stopped_clock_fails_up_while_a_worker_is_alive(
    redis: Redis, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a live worker whose heartbeat stays fresh for 2 x 300 s, and a clock that ticked
    long_lease = replace(settings, lease_seconds=300.0)
    start_worker(RUNNER_LEASE_SECONDS="300")
    wait_for(lambda: Liveness(redis, long_lease).alive(), what="a live worker")
    Cron(redis, long_lease, registry=load_registry("tests.cron_tasks")).tick(datetime.now(UTC))
    ticking = check_health(redis, long_lease, scheduled=True).up
    assert ticking.verdict == Verdict.OK, ticking.text

    # When the clock has not ticked for 200 s (over clock_seconds, 180 s)
    stopped = check_health(redis, long_lease, scheduled=True, now=time.time() + 200).up

    # Then up fails for the clock alone: the worker is still alive
    assert stopped.figures["workers"] == 1 and "no worker alive" not in stopped.text
    assert stopped.verdict == Verdict.FAIL
    assert "clock last ticked 3.3 min ago" in stopped.text


def test_runs_queued_long_on_a_queue_no_live_worker_serves_are_counted(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued]
) -> None:

    enqueue("noop", token="waiting")
    fresh = check_health(redis, settings)
    assert "queued over" not in fresh.up.text

    later = check_health(redis, settings, now=time.time() + settings.health.stuck_seconds + 1)
    assert "1 runs queued over 10.0 min with no live worker on their queue" in later.up.text


def test_a_job_taken_from_any_known_queue_and_not_begun_awaits_the_reaper(
    redis: Redis, settings: Settings
) -> None:
    # Given a job id held between dequeue and claim on a queue RQ knows but the settings do
    # not list (a task declared on its own queue), as the reaper's Limbo sees it
    redis.sadd("rq:queues", "rq:queue:special")
    redis.rpush(delivery_key("special"), "some-job")
    # When health is asked
    up = check_health(redis, settings).up
    # Then it counts that job as awaiting the reaper
    assert up.figures["awaiting_reaper"] == 1


def test_the_sites_own_checks_are_part_of_up(redis: Redis, settings: Settings) -> None:
    def store(settings: Settings) -> HealthCheck:
        return HealthCheck("content store", False, "schema behind: run `runner db init`")

    def broken(settings: Settings) -> HealthCheck:
        raise OSError("disk on fire")

    up = check_health(redis, settings, site_checks=[store, broken]).up

    assert up.verdict == "FAIL"
    assert "content store FAIL: schema behind: run `runner db init`" in up.text
    assert "broken FAIL: the check itself failed: OSError('disk on fire')" in up.text


def test_a_deploy_marked_by_hand_with_no_run_of_its_version_says_so(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    marks = DeployMarks(redis, settings)
    marks.mark("v1", by="t", at=time.time() - 60)
    invoke("deploy", "mark", "--version", "v2")

    line = next(x for x in invoke("health").output.splitlines() if x.startswith("deploy"))
    as_json = json.loads(invoke("health", "--json").output)["deploy"]

    assert line.split()[1] == "ok"
    assert "(after v1): no runs of v2 yet" in line and "unchanged" not in line
    assert as_json["figures"]["at"].endswith("Z")  # ISO 8601 UTC, not an epoch float


def test_health_notes_live_workers_of_two_code_versions(
    settings: Settings, redis: Redis, invoke: Callable[..., Result],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    start_worker(RUNNER_CODE_VERSION="A")
    start_worker(RUNNER_CODE_VERSION="B")
    wait_for(lambda: len(Liveness(redis, settings).alive()) == 2, what="two workers")

    line = next(x for x in invoke("health").output.splitlines() if x.startswith("deploy"))

    assert line.endswith("live workers run 2 versions: A, B")


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


def test_health_json_carries_the_figures_its_text_prints(
    settings: Settings, redis: Redis, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    # Given a few runs of a task, one of them failed
    redis.hset("probe:behaviour", mapping={"fail_every": 3})
    for n in range(4):
        enqueue("deployed", token=f"r-{n}", n=n)
    drain()

    report = json.loads(invoke("health", "--json").output)

    # Then each answer's figures hold what its line says, as numbers
    up, slow, failing = report["up"]["figures"], report["slow"]["figures"], report["failing"]
    assert {"redis_ms", "workers", "heartbeat_age", "clock_age", "awaiting_reaper"} <= set(up)
    assert set(slow["wait_p95"]) == {"default"} and slow["wait_p95"]["default"] >= 0
    assert slow["duration_p95"]["deployed"]["hour"] > 0
    rates = failing["figures"]["rates"]["deployed"]
    assert rates == {"runs_failed": 2, "ended": 4, "day_before": None}
    assert "deployed: 2 of 4 runs failed in the last hour" in failing["text"]
