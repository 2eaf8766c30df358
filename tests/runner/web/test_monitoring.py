"""GET /health and GET /metrics, through HTTP, on this test's real Redis and workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from runner.config import Settings
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from runner.worker.liveness import Liveness
from tests.conftest import WorkerProcess, state_of, wait_for


def families(text: str) -> dict[str, Any]:
    """Parsed by prometheus_client's own parser, each family once, one family per name (a
    counter `x` is exposed as `x_total`: no other family may be named `x`)."""
    found: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        key = family.name + ("_total" if family.type == "counter" else "")
        assert key not in found and family.name not in found, f"{family.name} twice"
        found[key] = family
    return found


def samples(family: Any, name: str, **labels: str) -> list[float]:
    return [
        s.value for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]  # fmt: skip


def test_health_is_503_only_when_up_fails(
    client: TestClient, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    down = client.get("/health")  # no worker alive: "up" fails
    assert down.status_code == 503
    assert down.json()["up"]["verdict"] == "FAIL" and down.json()["ok"] is False

    start_worker("--name", "A")
    wait_for(lambda: client.get("/health").status_code == 200, what="a live worker")
    enqueue("broken", token="bad")  # "failing" is not ok now, but the service is up
    wait_for(lambda: client.get("/health").json()["failing"]["verdict"] != "ok",
             what="the failure counted")  # fmt: skip
    answer = client.get("/health")
    assert answer.status_code == 200 and answer.json()["ok"] is False
    assert set(answer.json()) == {"ok", "up", "slow", "failing", "deploy", "backlog"}
    assert isinstance(answer.json()["backlog"], list)  # busy queues and their forecasts


@pytest.mark.slow
def test_metrics_parse_and_count_every_run_made_by_two_worker_processes(
    client: TestClient, settings: Settings, redis: Redis, runs: Runs,
    enqueue: Callable[..., Enqueued], start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    first, second = (start_worker("--name", n, RUNNER_CODE_VERSION="v1") for n in "AB")
    # both up and waiting before the runs arrive (one started first could drain them all)
    wait_for(lambda: len(Liveness(redis, settings).alive()) == 2, timeout=60, what="A and B")
    tokens = [enqueue("noop", token=f"ok-{i}").token for i in range(40)]
    tokens += [enqueue("broken", token=f"bad-{i}").token for i in range(5)]
    wait_for(lambda: all(state_of(runs, t) in ("succeeded", "failed") for t in tokens),
             timeout=60, what="every run to end")  # fmt: skip
    by_worker = {r.worker.split(".")[0] for t in tokens if (r := runs.get(t))}
    assert by_worker == {"A", "B"}, "both processes wrote figures"

    page = client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    found = families(page.text)

    total = found["runner_runs_total"]
    assert samples(total, "runner_runs_total", task="noop", outcome="succeeded") == [40.0]
    assert samples(total, "runner_runs_total", task="broken", outcome="failed") == [5.0]
    duration = found["runner_run_duration_seconds"]
    assert samples(duration, "runner_run_duration_seconds_count", task="noop") == [40.0]
    assert samples(duration, "runner_run_duration_seconds_bucket", task="noop", le="+Inf") == [40.0]
    buckets = samples(duration, "runner_run_duration_seconds_bucket", task="noop")
    assert buckets == sorted(buckets), "cumulative buckets never fall"
    assert samples(found["runner_queue_wait_seconds"], "runner_queue_wait_seconds_count",
                   task="broken") == [5.0]  # fmt: skip
    by_state = found["runner_runs_by_state"]
    assert samples(by_state, "runner_runs_by_state", state="succeeded") == [40.0]
    assert samples(by_state, "runner_runs_by_state", state="failed") == [5.0]
    assert samples(found["runner_workers"], "runner_workers") == [2.0]
    assert samples(found["runner_queue_length"], "runner_queue_length", queue="default") == [0.0]
    assert found["runner_build_info"].samples[0].value == 1.0
    assert samples(found["runner_deploy_timestamp_seconds"],
                   "runner_deploy_timestamp_seconds")[0] > 0  # fmt: skip
    assert "runner_last_cron_tick_timestamp_seconds" in found
    assert "runner_oldest_running_seconds" in found
    labels = {k for f in found.values() for s in f.samples for k in s.labels}
    assert labels <= {"task", "queue", "outcome", "state", "le", "code_version"}
    assert not any(t in page.text for t in tokens), "never a per-run label"
    first.stop(), second.stop()
