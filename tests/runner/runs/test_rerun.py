"""Operator reruns: from the last checkpoint by default, from scratch on request."""

from __future__ import annotations

import json
from collections.abc import Callable

from redis import Redis

from runner.config import Settings
from runner.logs import read_events
from runner.record import RunRecord
from runner.runs.enqueue import Enqueued
from runner.runs.rerun import rerun
from runner.runs.transitions import Runs


def items_executed(redis: Redis, token: str) -> list[str]:
    return [e.decode().split(":")[0] for e in redis.lrange(f"probe:exec:{token}", 0, -1)]


def failed_at_item_three(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis
) -> str:
    token = enqueue("counting", items=5, seconds=0.0).token
    redis.set(f"probe:fail:{token}", 3)
    drain()
    return token


def test_a_failed_run_reruns_from_its_checkpoint(
    enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
    redis: Redis,
    runs: Runs,
    settings: Settings,
) -> None:
    # Given a run that failed permanently at item 3, with items 0-2 checkpointed
    token = failed_at_item_three(enqueue, drain, redis)
    assert runs.get(token).state == "failed"  # type: ignore[union-attr]
    redis.delete(f"probe:fail:{token}", f"probe:exec:{token}")
    # When the operator reruns it
    result = rerun(redis, settings, token)
    drain()
    # Then it resumed at item 3 and finished, as a new attempt with a fresh attempt budget
    assert result.action == "requeued"
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.attempt == 2
    assert items_executed(redis, token) == ["item3", "item4"]
    assert record.result == {"done": 5, "resumed_from": 3}


def test_from_scratch_forgets_steps_and_cursor(
    enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
    redis: Redis,
    runs: Runs,
    settings: Settings,
) -> None:
    token = failed_at_item_three(enqueue, drain, redis)
    redis.delete(f"probe:fail:{token}", f"probe:exec:{token}")
    rerun(redis, settings, token, from_scratch=True)
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.generation == 1
    assert items_executed(redis, token) == [f"item{i}" for i in range(5)]
    assert record.result == {"done": 5, "resumed_from": 0}


def test_dry_run_changes_nothing_and_other_states_are_skipped(
    enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
    redis: Redis,
    runs: Runs,
    settings: Settings,
) -> None:
    token = failed_at_item_three(enqueue, drain, redis)
    assert rerun(redis, settings, token, dry_run=True).action == "would requeue"
    assert runs.get(token).state == "failed"  # type: ignore[union-attr]
    fine = enqueue("counting", items=1, seconds=0.0).token
    drain()
    skipped = rerun(redis, settings, fine)
    assert skipped.action == "skipped" and "succeeded" in skipped.reason
    assert runs.get(fine).attempt == 1  # type: ignore[union-attr]


def test_a_rerun_run_no_longer_expires_until_it_ends_again(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, settings: Settings
) -> None:
    token = failed_at_item_three(enqueue, drain, redis)
    assert redis.ttl(f"runner:run:{token}") > 0
    rerun(redis, settings, token)
    assert redis.ttl(f"runner:run:{token}") == -1


def test_a_rerun_of_a_run_that_moved_on_since_it_was_read_writes_nothing(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, runs: Runs,
) -> None:  # fmt: skip
    # Given a failed run read by two operators, and rerun by the first
    token = enqueue("broken").token
    drain()
    read = runs.get(token)
    assert read is not None and rerun_with(runs, read)[0] == "requeued"
    # When the second reruns it as they read it
    verdict, state, attempt = rerun_with(runs, read)
    # Then nothing is written: it is queued once, at attempt 2, with one job
    assert (verdict, state, attempt) == ("changed", "queued", 2)
    assert redis.llen("rq:queue:default") == 1
    events = [e for _, e in read_events(redis, runs.keys, token) if e["event"] == "run.rerun"]
    assert len(events) == 1


def test_the_rule_refuses_an_active_run_and_a_succeeded_one_unless_forced(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs,
) -> None:  # fmt: skip
    queued = runs.get(enqueue("noop", token="waiting").token)
    assert queued is not None and rerun_with(runs, queued) == ("refused", "queued", 1)
    drain()
    done = runs.get("waiting")
    assert done is not None and rerun_with(runs, done) == ("refused", "succeeded", 1)
    assert runs.rerun(done, force=True, dry_run=True) == ("would", "succeeded", 1)
    assert runs.rerun(done, force=True) == ("requeued", "queued", 2)
    again = runs.get("waiting")
    assert again is not None and again.rerun_attempt == 2 and again.attempt_base == 1


def rerun_with(runs: Runs, record: RunRecord) -> tuple[str, str, int]:
    return runs.rerun(record, events=[json.dumps({"event": "run.rerun"})])


def test_a_rerun_asked_for_nothing_more_keeps_the_checkpoint(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, runs: Runs,
) -> None:  # fmt: skip
    # Given a run that failed permanently at item 3, with items 0-2 checkpointed
    token = failed_at_item_three(enqueue, drain, redis)
    failed = runs.get(token)
    assert failed is not None and failed.cursor is not None
    # When it is rerun with no option (neither from scratch nor forced)
    assert rerun_with(runs, failed) == ("requeued", "queued", 2)
    # Then its next attempt keeps the cursor to resume from, in the same generation
    again = runs.get(token)
    assert again is not None and again.cursor == failed.cursor
    assert again.generation == failed.generation


def test_each_rerun_runs_as_the_next_attempt(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs,
) -> None:  # fmt: skip
    # Given a run that fails for good on every attempt
    token = enqueue("broken").token
    drain()
    for attempt in (2, 3):
        # When it is rerun, and its job is worked
        failed = runs.get(token)
        assert failed is not None and rerun_with(runs, failed) == ("requeued", "queued", attempt)
        drain()
        # Then that attempt ran (and failed again)
        record = runs.get(token)
        assert record is not None and (record.state, record.attempt) == ("failed", attempt)
