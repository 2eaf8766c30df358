"""runner.record: a run record is a read-only snapshot of the run hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import FrozenInstanceError

import pytest

from runner.enqueue import Enqueued
from runner.record import RunState
from runner.runs import Runs


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
