"""`runner health` answers the four questions (runner.monitoring.health): up (workers, the
clock, the site's checks), runs no worker serves, the JSON; the deploy and failing verdicts
are in test_trends."""

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
from tests.conftest import WorkerProcess, state_of, wait_for

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
