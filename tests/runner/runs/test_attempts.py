"""A run's attempts as its log tells them (runner.runs.attempts), read from real runs: who ran
each, when, and how each ended."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunState
from runner.runs.attempts import attempts, stamp
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs


def test_a_run_retried_twice_has_three_attempts_each_with_its_ending(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    token = enqueue("flaky", failures=2, mode="attempt").token
    drain()
    record = runs.get(token)
    assert record is not None

    found = attempts(record, [e for _, e in read_events(redis, Keys(), token)])

    assert [a.number for a in found] == [1, 2, 3]
    assert [a.outcome for a in found] == ["failed, retried", "failed, retried", RunState.SUCCEEDED]
    assert all(a.worker and a.seconds is not None and a.seconds >= 0 for a in found)
    assert found[-1].code_version == record.code_version


def test_an_event_without_a_readable_timestamp_has_no_stamp() -> None:
    assert stamp({"timestamp": "2026-12-02T06:00:00Z"}) == 1796191200.0
    assert stamp({"timestamp": "yesterday"}) is None
    assert stamp({}) is None
