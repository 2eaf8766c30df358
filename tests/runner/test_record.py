"""runner.record: a run record is a read-only snapshot of the run hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import FrozenInstanceError

import pytest
from redis import Redis

from runner.config import Settings
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.rerun import rerun
from runner.runs.transitions import Runs


def test_a_run_record_is_a_snapshot_that_cannot_be_changed_in_place(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given a queued run, read twice
    token = enqueue("noop").token
    record, again = runs.get(token), runs.get(token)
    assert record is not None
    # When code tries to change the record it holds
    with pytest.raises(FrozenInstanceError):
        record.state = RunState.FAILED  # type: ignore[misc]
    # Then nothing changed, and two reads of the same hash are equal values
    assert record == again and record.state == RunState.QUEUED
    assert record.updated_at >= record.created_at > 0  # the times written, decoded


def test_a_rerun_starts_with_a_whole_attempt_budget(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    # Given a run that failed permanently in its first attempt
    token = enqueue("broken").token
    drain()
    failed = runs.get(token)
    assert failed is not None and failed.state == RunState.FAILED and failed.attempt == 1
    # When an operator reruns it
    rerun(redis, settings, token)
    # Then its next attempt (2) counts as the first of a fresh budget
    record = runs.get(token)
    assert record is not None and record.attempt == 2
    assert record.attempts_left == record.max_attempts - 1


def test_a_records_limit_decodes_from_its_fields_and_is_none_without_them(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    limited = runs.get(enqueue("limited", host="a.example", seconds=1).token)
    rated = runs.get(enqueue("rated", host="a.example").token)
    plain = runs.get(enqueue("noop").token)
    assert limited is not None and rated is not None and plain is not None
    assert (limited.limit_key, limited.limit_concurrency, limited.limit_rate) == (
        "limited:a.example", 2, 0,
    )  # fmt: skip
    assert (rated.limit_concurrency, rated.limit_rate, rated.limit_per) == (0, 5, 10.0)
    assert (plain.limit_key, plain.limit_concurrency, plain.limit_rate, plain.limit_per) == (
        "", 0, 0, 0.0,
    )  # fmt: skip
