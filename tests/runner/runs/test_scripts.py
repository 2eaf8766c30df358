"""runner.runs.scripts: what each script keeps besides the run hash (the state indexes, the
retry schedule, the figures' lifetimes), observed through runner.runs.transitions' calls of them."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis
from rq import Queue

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState
from runner.runs.enqueue import Enqueued
from runner.runs.figures import MINUTE_TTL, Figures
from runner.runs.index import RunIndex
from runner.runs.transitions import Runs
from runner.tokens import job_id


def indexed(redis: Redis, state: RunState, token: str) -> bool:
    return redis.zscore(Keys().by_state(state), token) is not None


def test_a_claimed_run_moves_from_the_queued_index_to_the_running_one(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings
) -> None:
    # Given a queued run
    token = enqueue("noop").token
    # When an attempt claims it
    status, _, _ = runs.begin(token, 1, holder=job_id(token, 1), worker="w", version="v")
    # Then it is counted and indexed as running, no longer as queued
    assert status == "ok"
    assert indexed(redis, RunState.RUNNING, token) and not indexed(redis, RunState.QUEUED, token)
    counts = RunIndex(redis, settings).counts()
    assert counts[RunState.RUNNING] == 1 and counts[RunState.QUEUED] == 0


def test_a_failed_runs_own_job_requeued_by_rq_leaves_the_failed_index(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    # Given a run that failed permanently
    token = enqueue("broken").token
    drain()
    assert indexed(redis, RunState.FAILED, token)
    # When its last job comes back (as `rq requeue` sends it) and an attempt claims it
    holder = job_id(token, 1) + ":again"
    status, record, _ = runs.begin(
        token, 1, holder=holder, worker="w", version="v", job_id=job_id(token, 1)
    )
    # Then it reruns as running, and is in the failed index no more
    assert status == "rerun" and record is not None and record.state == RunState.RUNNING
    assert not indexed(redis, RunState.FAILED, token)
    assert indexed(redis, RunState.RUNNING, token)


def test_a_retrying_run_moved_on_leaves_the_retry_schedule(
    enqueue: Callable[..., Enqueued], work: Callable[[], None], runs: Runs, redis: Redis
) -> None:
    # Given a run whose first attempt failed and waits for its retry
    token = enqueue("flaky", failures=1).token
    work()
    record = runs.get(token)
    assert record is not None and record.state == RunState.RETRYING
    assert redis.zscore(Keys().delayed, token) is not None
    # When it is moved on to its next attempt now (as the reaper's promotion does)
    moved = runs.promote_retry(record)
    # Then it is queued, and no longer due for a retry as well
    assert moved and runs.get(token).state == RunState.QUEUED  # type: ignore[union-attr]
    assert redis.zscore(Keys().delayed, token) is None


def test_a_run_that_ends_trims_what_its_state_index_holds_past_retention(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings
) -> None:
    # Given a failed run indexed longer ago than the retention, and a queued run
    old = time.time() - settings.retention_seconds - 60
    redis.zadd(Keys().by_state(RunState.FAILED), {"long-gone": old})
    token = enqueue("noop").token
    # When the queued run is failed as lost
    seen = runs.get(token)
    assert seen is not None
    moved = runs.fail_lost(seen, error={}, if_failed="{}", if_cancelled="{}")
    # Then the index holds it, and the entry past retention is gone
    assert moved and indexed(redis, RunState.FAILED, token)
    assert not indexed(redis, RunState.FAILED, "long-gone")


def test_an_attempts_figures_live_by_their_window(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    # Given a run that succeeded, its minute rolled up once closed
    token = enqueue("noop").token
    drain()
    assert runs.get(token).state == RunState.SUCCEEDED  # type: ignore[union-attr]
    assert Figures(redis, settings).roll_up(now=time.time() + 600) >= 1
    # When the figure hashes of its minutes and hours are read
    minutes = list(redis.scan_iter(Keys().figures_window("m", 0).replace(":0", ":*")))
    hours = list(redis.scan_iter(Keys().figures_window("h", 0).replace(":0", ":*")))
    # Then each minute's expires within the minute TTL, and each hour's outlives it
    assert minutes and hours
    assert all(0 < redis.ttl(key) <= MINUTE_TTL for key in minutes)
    assert all(redis.ttl(key) > MINUTE_TTL for key in hours)


def test_a_cancelled_retrying_run_leaves_the_retry_schedule(
    enqueue: Callable[..., Enqueued], work: Callable[[], None], runs: Runs, redis: Redis
) -> None:
    # Given a run whose first attempt failed and waits for its retry
    token = enqueue("flaky", failures=1).token
    work()
    record = runs.get(token)
    assert record is not None and record.state == RunState.RETRYING
    # When an operator cancels it
    assert runs.cancel_queued(record, origin="cli")
    # Then it is cancelled, and no longer due for a retry
    assert runs.get(token).state == RunState.CANCELLED  # type: ignore[union-attr]
    assert redis.zscore(Keys().delayed, token) is None


def test_a_run_handed_over_waits_from_its_handover_not_from_when_it_was_first_queued(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis
) -> None:
    # Given a run queued 100 s ago whose attempt 1 began and was handed over
    token = enqueue("noop").token
    redis.hset(Keys().run(token), "queued_at", time.time() - 100)
    _, record, _ = runs.begin(token, 1, holder=job_id(token, 1), worker="w", version="v")
    assert record is not None and record.waited is not None and record.waited >= 100
    assert runs.hand_over(record, holder=job_id(token, 1))
    # When attempt 2 begins
    status, again, _ = runs.begin(token, 2, holder=job_id(token, 2), worker="w", version="v")
    # Then its queue wait counts from the handover: well under the 100 s of the first
    assert status == "ok" and again is not None and again.waited is not None
    assert again.waited < 100


def test_a_cancelled_queued_run_moves_from_the_queued_index_to_the_cancelled_one(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis
) -> None:
    # Given a queued run
    token = enqueue("noop").token
    seen = runs.get(token)
    assert seen is not None
    # When an operator cancels it
    assert runs.cancel_queued(seen, origin="cli")
    # Then it is indexed as cancelled, no longer as queued
    assert indexed(redis, RunState.CANCELLED, token) and not indexed(redis, RunState.QUEUED, token)


def test_a_rerun_puts_its_queue_back_among_the_queues_rq_knows(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs, redis: Redis
) -> None:
    # Given a failed run whose queue RQ no longer lists (RQ drops an emptied queue it deletes)
    token = enqueue("broken").token
    drain()
    redis.delete(Queue.redis_queues_keys)
    failed = runs.get(token)
    assert failed is not None and failed.state == RunState.FAILED
    # When it is rerun
    verdict, _, _ = runs.rerun(failed)
    # Then its queue, holding the new job, is listed by RQ's tools (`rq info`) again
    assert verdict == "requeued"
    assert [q.name for q in Queue.all(connection=redis)] == [failed.queue]


def test_a_failed_runs_job_requeued_by_rq_begins_with_its_finished_steps(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given a run whose first attempt finished a step and then failed for good
    token = enqueue("noop").token
    holder = job_id(token, 1)
    _, record, _ = runs.begin(token, 1, holder=holder, worker="w", version="v")
    assert record is not None
    runs.write(token, holder, {}, step=("fetch", {"result": 7, "finished_at": time.time()}))
    runs.release(record, holder, {"state": RunState.FAILED}, retention=60, version="v")
    # When its job comes back (as `rq requeue` sends it) and an attempt claims it
    status, _, steps = runs.begin(
        token, 1, holder=holder + ":again", worker="w", version="v", job_id=holder
    )
    # Then the rerun resumes with the step it finished: it is not done again
    assert status == "rerun" and steps["fetch"]["result"] == 7
