"""runner.record: a run record is a read-only snapshot of the run hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import FrozenInstanceError

import pytest
from redis import Redis

from runner.config import Settings
from runner.record import RunState
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.rerun import rerun
from runner.runs.transitions import Runs
from runner.tasks import load_registry


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
    # And when that attempt fails too and is rerun again, attempt 3 has a whole budget
    drain()
    rerun(redis, settings, token)
    again = runs.get(token)
    assert again is not None and again.attempt == 3
    assert again.attempts_left == again.max_attempts - 1


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


def test_a_new_run_reads_as_never_handed_over_nor_rerun(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    record = runs.get(enqueue("noop").token)
    assert record is not None
    assert (record.handovers, record.rerun_attempt) == (0, 0)


def test_a_record_names_its_enqueuers_trace_only_from_a_w3c_traceparent(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given a run enqueued with a W3C traceparent, one with a malformed one, one without
    noop = load_registry(settings.tasks_module).get("noop")
    enqueuer = Enqueuer(redis, settings)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = enqueuer.enqueue(Request(noop, {"i": 1}, traceparent=parent))
    malformed = enqueuer.enqueue(Request(noop, {"i": 2}, traceparent=parent + "-00"))
    plain = enqueue("noop", i=3)
    # Then only the first names a trace: the traceparent's second field
    records = [runs.get(e.token) for e in (traced, malformed, plain)]
    assert [r.trace_id for r in records] == ["0af7651916cd43dd8448eb211c80319c", "", ""]  # type: ignore[union-attr]


def test_what_enqueue_reports_is_a_value_that_cannot_be_changed(
    enqueue: Callable[..., Enqueued],
) -> None:
    # Given a run enqueued, and the same token enqueued again
    first = enqueue("noop", token="once")
    again = enqueue("noop", token="once")
    # Then each report is a fixed value: read-only, and usable as a set member or dict key
    with pytest.raises(FrozenInstanceError):
        first.deduplicated = True  # type: ignore[misc]
    assert (first.deduplicated, again.deduplicated) == (False, True)
    assert len({first, again, first}) == 2
