"""An attempt's lease (runner.attempt.lease): writes of an attempt that lost it are refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis import Redis

from runner.errors import LeaseLost
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs


def test_writes_with_a_lost_lease_are_rejected(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis
) -> None:
    # Given a run whose lease is held by attempt job "j-1"
    queued = enqueue("counting", items=1)
    assert runs.begin(queued.token, 1, holder="j-1", worker="w", version="t")[0] == "ok"
    # When another holder tries to write progress, or the lease expires
    with pytest.raises(LeaseLost):
        runs.write(queued.token, "j-2", {"cursor": 99})
    redis.delete(f"runner:lease:{queued.token}")
    with pytest.raises(LeaseLost):
        runs.write(queued.token, "j-1", {"cursor": 99})
    # Then nothing was written
    after = runs.get(queued.token)
    assert after is not None and after.cursor is None
