"""A run in a few words (runner.runs.summary), read from real runs: how long it took, its
error's first line, its arguments."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from runner.keys import Keys
from runner.logs import read_events
from runner.runs.attempts import attempts
from runner.runs.enqueue import Enqueued
from runner.runs.summary import argument_text, error_text, took
from runner.runs.transitions import Runs


def test_a_failed_run_shows_its_error_type_and_first_line_and_its_arguments(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs
) -> None:
    token = enqueue("broken", permanent=True).token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "failed"

    assert error_text(record).startswith("PermanentError: ")
    assert "\n" not in error_text(record)
    assert argument_text(record) == "permanent=true"


def test_a_retried_run_took_from_its_first_attempts_start_to_its_end(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    token = enqueue("flaky", failures=1, mode="attempt").token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.finished_at

    tried = attempts(record, [e for _, e in read_events(redis, Keys(), token)])
    whole, latest = took(record, tried), took(record)

    assert whole is not None and latest is not None and whole >= latest >= 0
    assert error_text(record) == ""  # a succeeded run shows no error
