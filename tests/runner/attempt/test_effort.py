"""What an attempt cost (runner.attempt.effort): CPU seconds and wall seconds less run-queue
wait, on the record of a real run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runner.attempt import effort
from runner.attempt.effort import FIELDS, NO_EFFORT, Effort, run_queue_wait
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs


def test_a_meter_gives_both_fields_never_negative() -> None:
    meter = Effort.start()
    sum(i * i for i in range(50_000))  # some CPU for the meter to see

    fields = meter.fields()

    assert tuple(fields) == FIELDS
    assert all(value >= 0.0 for value in fields.values())
    assert dict.fromkeys(FIELDS, "") == NO_EFFORT


def test_without_schedstat_the_wait_is_unknown_and_busy_is_the_wall_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(effort, "SCHEDSTAT", tmp_path / "no-such-file")

    assert run_queue_wait() is None
    assert Effort.start().waited is None
    assert Effort.start().fields()["busy_seconds"] >= 0.0


def test_a_finished_run_carries_what_its_attempt_cost(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs
) -> None:
    token = enqueue("noop").token
    drain()

    record = runs.get(token)
    assert record is not None and record.state == "succeeded"
    raw = runs.redis.hmget(runs.keys.run(token), *FIELDS)
    assert all(value is not None and float(value) >= 0.0 for value in raw)
