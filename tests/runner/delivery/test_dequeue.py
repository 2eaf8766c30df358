"""Delivery: a job taken off its queue is in an intermediate list until its attempt claims the
lease, whatever the number of queues, and the reaper finds one whose worker died meanwhile."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend
from rq.worker import WorkerStatus

from runner.attempt.execute import Executor
from runner.config import Settings
from runner.delivery.dequeue import DeliveryQueue, Limbo, delivery_key
from runner.keys import Keys
from runner.record import texts
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.horse import Horse
from runner.worker.reaper import Reaper
from tests.conftest import wait_for


def queues(redis: Redis, *names: str) -> list[Queue]:
    return [DeliveryQueue(name, connection=redis, serializer=JSONSerializer) for name in names]


def take(redis: Redis, *names: str, timeout: int | None = None) -> tuple[str, str]:
    """What a worker of `names` does first with a job: (job id, queue name)."""
    taken = DeliveryQueue.dequeue_any(
        queues(redis, *names), timeout, connection=redis, serializer=JSONSerializer
    )
    assert taken is not None
    return taken[0].id, taken[1].name


def listed(redis: Redis, key: str) -> list[str]:
    return texts(redis.lrange(key, 0, -1))


@pytest.fixture
def reaper(redis: Redis, settings: Settings) -> Reaper:
    """A reaper with a short lease, so a job counts as lost after half a second in limbo."""
    return Reaper(redis, dataclasses.replace(settings, lease_seconds=0.5))


@pytest.mark.parametrize("timeout", [None, 5])
def test_a_worker_of_several_queues_moves_the_job_it_takes_into_the_intermediate_list(
    timeout: int | None, enqueue: Callable[..., Enqueued], redis: Redis
) -> None:
    first, second = enqueue("counting", items=1), enqueue("counting", items=2)
    assert take(redis, "urgent", "default", timeout=timeout) == (first.job_id, "default")
    assert listed(redis, delivery_key("default")) == [first.job_id]
    assert listed(redis, "rq:queue:default") == [second.job_id]


def test_queues_are_taken_in_the_order_given(
    settings: Settings, enqueue: Callable[..., Enqueued], redis: Redis
) -> None:
    later = enqueue("counting", items=1)
    counting = load_registry(settings.tasks_module).get("counting")
    urgent = Enqueuer(redis, settings).enqueue(
        Request(dataclasses.replace(counting, queue="urgent"), {"items": 2})
    )
    assert take(redis, "urgent", "default") == (urgent.job_id, "urgent")
    assert take(redis, "urgent", "default") == (later.job_id, "default")


def test_empty_queues_give_none_at_once_or_rqs_dequeue_timeout_when_waiting(
    redis: Redis,
) -> None:
    assert DeliveryQueue.dequeue_any(queues(redis, "urgent", "default"), None, redis) is None
    with pytest.raises(DequeueTimeout):
        take(redis, "urgent", "default", timeout=1)


def test_a_worker_of_one_queue_waits_for_its_whole_timeout_in_one_blocking_call(
    redis: Redis,
) -> None:
    # Given an empty queue, and a worker of that queue alone that waits up to 2 s
    redis.config_resetstat()
    # When its wait ends with no job
    with pytest.raises(DequeueTimeout):
        take(redis, "default", timeout=2)
    # Then it blocked once for the whole wait (only a worker of several queues wakes to look)
    stats: dict[str, dict[str, int]] = redis.info("commandstats")  # type: ignore[assignment]
    assert stats["cmdstat_blmove"]["calls"] == 1


def test_beginning_the_attempt_takes_the_job_out_of_the_intermediate_list(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, runs: Runs
) -> None:
    tokens = [enqueue("counting", items=1, seconds=0.0).token]
    tokens.append(enqueue("slow_steps", steps=2, seconds=0.0).token)
    drain()
    assert all(runs.get(t).state == "succeeded" for t in tokens)  # type: ignore[union-attr]
    assert listed(redis, delivery_key("default")) == []


def test_the_reaper_gives_the_next_attempt_to_a_run_whose_worker_took_its_job_and_died(
    settings: Settings, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    redis: Redis, runs: Runs, reaper: Reaper,
) -> None:  # fmt: skip
    # Given a job taken off the queue by a worker that then died (nothing else happens to it)
    queued = enqueue("counting", items=2, seconds=0.0)
    take(redis, "urgent", "default")
    # When the reaper has seen it in limbo for longer than a lease
    assert reaper.sweep() == 0  # first sighting: a live worker begins within moments
    time.sleep(0.6)
    # Then the run gets its next attempt, once, and the lost job is gone
    assert reaper.sweep() == 1
    assert reaper.sweep() == 0
    assert listed(redis, delivery_key("default")) == []
    assert not redis.exists(f"rq:job:{queued.job_id}")
    drain()
    record = runs.get(queued.token)
    assert record is not None and record.state == "succeeded" and record.attempt == 2
    # And had the dead worker only been frozen, its job would be stale when it woke up
    late = Executor(redis, settings, load_registry(settings.tasks_module), worker="late")
    outcome = late.perform(queued.token, 1, queued.job_id, delivery_key("default"))
    assert (outcome.state, outcome.detail) == ("skipped", "stale")


def test_a_stale_copy_in_limbo_is_cleared_without_a_new_attempt(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, runs: Runs,
    reaper: Reaper,
) -> None:  # fmt: skip
    queued = enqueue("counting", items=1, seconds=0.0)
    drain()
    redis.rpush(delivery_key("default"), queued.job_id)  # a second copy, taken and dropped
    reaper.sweep()
    time.sleep(0.6)
    assert reaper.sweep() == 0
    assert listed(redis, delivery_key("default")) == []
    record = runs.get(queued.token)
    assert record is not None and record.state == "succeeded" and record.attempt == 1


def test_the_reaper_leaves_a_job_that_is_not_the_runners_alone(
    redis: Redis, reaper: Reaper
) -> None:
    foreign = Queue("default", connection=redis, serializer=JSONSerializer).enqueue("len", "abc")
    assert take(redis, "default") == (foreign.id, "default")
    reaper.sweep()
    time.sleep(0.6)
    assert reaper.sweep() == 0
    assert listed(redis, delivery_key("default")) == [foreign.id]


def test_a_horse_runs_a_plain_rq_job_as_rq_does(
    redis: Redis, settings: Settings, runs: Runs
) -> None:
    # Given a job queued with RQ's own API (not a run: no token, no attempt)
    foreign = Queue("default", connection=redis, serializer=JSONSerializer).enqueue("len", "abc")
    # When a horse works the queue
    watched_horse(redis, settings).work(burst=True, logging_level="WARNING")
    # Then RQ's path ran it, to RQ's records, with no claim of a run in the way; its id left
    # the intermediate list as it started, as RQ's one-queue workers do (no claim takes it out)
    foreign.refresh()
    assert foreign.get_status() == "finished" and foreign.return_value() == 3
    assert listed(redis, delivery_key("default")) == []


class Watched(Horse):
    """The horse, noting what its queue's intermediate list holds when it tears down (before
    it puts back a job it took ahead), and suspending every worker after its first success
    when asked to, or deleting the next job's hash just before a success takes it ahead."""

    seen_at_teardown: list[str] | None = None
    suspend_after_first = False
    drop_next_hash = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state_writes: list[str] = []  # the worker states written on their own (no pipeline)
        self.piped_states: list[str] = []  # and those sent in a pipeline of RQ's records
        super().__init__(*args, **kwargs)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            self.piped_states.append(WorkerStatus(state).value)
        elif state != self._state:
            self.state_writes.append(WorkerStatus(state).value)
        super().set_state(state, pipeline)

    def handle_job_success(self, *args: Any, **kwargs: Any) -> None:
        if self.drop_next_hash:
            self.drop_next_hash = False
            [next_id] = listed(self.connection, "rq:queue:default")[:1]
            self.connection.delete(f"rq:job:{next_id}")
        super().handle_job_success(*args, **kwargs)
        if self.suspend_after_first:
            suspend(self.connection)

    def teardown(self) -> None:
        self.seen_at_teardown = listed(self.connection, delivery_key("default"))
        super().teardown()


def watched_horse(redis: Redis, settings: Settings) -> Watched:
    horse = Watched(list(settings.queues), connection=redis, serializer=JSONSerializer)
    horse.executor = Executor(redis, settings, load_registry(settings.tasks_module), horse.name)
    horse.executor.install()
    return horse


def test_a_horse_takes_the_next_job_with_a_success_and_puts_it_back_when_it_stops(
    settings: Settings, enqueue: Callable[..., Enqueued], work: Callable[[], None],
    redis: Redis, runs: Runs,
) -> None:  # fmt: skip
    # Given three jobs, and a horse that stops after one
    first, second, third = (enqueue("counting", items=k, seconds=0.0) for k in (1, 2, 3))
    horse = watched_horse(redis, settings)
    # When it has run the first
    horse.work(burst=True, logging_level="WARNING", max_jobs=1)
    # Then it had taken the second with the first's success, and gave it back to the head of
    # its queue when it stopped: queued, not in limbo for the reaper
    assert horse.seen_at_teardown == [second.job_id]
    assert listed(redis, delivery_key("default")) == []
    assert listed(redis, "rq:queue:default") == [second.job_id, third.job_id]
    assert [runs.get(r.token).state for r in (first, second)] == ["succeeded", "queued"]  # type: ignore[union-attr]
    # And the next worker runs it as its first attempt
    work()
    record = runs.get(second.token)
    assert record is not None and record.state == "succeeded" and record.attempt == 1


@pytest.mark.parametrize("jobs", [1, 4])
def test_a_horse_writes_its_idle_state_on_its_own_only_once_its_queue_is_empty(
    jobs: int, settings: Settings, enqueue: Callable[..., Enqueued], redis: Redis
) -> None:
    # Given `jobs` queued runs
    for k in range(jobs):
        enqueue("counting", items=k + 1, seconds=0.0)
    # When a horse works them
    horse = watched_horse(redis, settings)
    horse.work(burst=True, logging_level="WARNING")
    # Then between two jobs it wrote no `idle` of its own (the next job's move, taken with
    # the success, keeps it busy): the states it wrote alone, the same for 1 job or 4, are
    # its start's and the one `idle` once nothing was left; and no `idle` rode in a success's
    # pipeline either (the take sent with it writes `idle` only when it found nothing)
    assert horse.state_writes == ["started", "idle"]
    assert "idle" not in horse.piped_states


def test_a_horse_that_takes_ahead_a_job_whose_hash_is_gone_dequeues_the_next_one(
    settings: Settings, enqueue: Callable[..., Enqueued], redis: Redis, runs: Runs,
) -> None:  # fmt: skip
    # Given three jobs, the second's RQ hash gone by the time the first succeeds
    first, second, third = (enqueue("counting", items=k, seconds=0.0) for k in (1, 2, 3))
    horse = watched_horse(redis, settings)
    horse.drop_next_hash = True
    # When a horse works them
    horse.work(burst=True, logging_level="WARNING")
    # Then the second's id, taken ahead with nothing to run, stays in the intermediate list
    # for the reaper, and the horse went on with the third
    assert listed(redis, delivery_key("default")) == [second.job_id]
    assert [runs.get(r.token).state for r in (first, second, third)] == [  # type: ignore[union-attr]
        "succeeded", "queued", "succeeded",
    ]  # fmt: skip


def test_a_horse_started_while_workers_are_suspended_takes_no_job(
    settings: Settings, enqueue: Callable[..., Enqueued], redis: Redis, runs: Runs,
) -> None:  # fmt: skip
    # Given a queued job and `rq suspend` in force
    queued = enqueue("counting", items=1)
    suspend(redis)
    # When a horse starts (its suspension check at its default pace: once a second)
    watched_horse(redis, settings).work(burst=True, logging_level="WARNING")
    # Then it took nothing: RQ's burst worker leaves at once when suspended
    assert listed(redis, "rq:queue:default") == [queued.job_id]
    assert runs.get(queued.token).state == "queued"  # type: ignore[union-attr]


def test_a_suspended_horse_keeps_the_first_suspension_time_and_clears_it_when_resumed(
    settings: Settings, enqueue: Callable[..., Enqueued], redis: Redis, runs: Runs,
) -> None:  # fmt: skip
    # Given `rq suspend` in force, first seen by another horse (its time noted), a job queued
    since = Keys(settings.prefix).suspended_since
    redis.set(since, "100.000")
    suspend(redis)
    queued = enqueue("counting", items=1)
    horse = watched_horse(redis, settings)
    seen: list[bytes | None] = []

    def look_then_resume() -> None:
        try:
            wait_for(lambda: redis.hget(horse.key, "state") == b"suspended", timeout=60,
                     what="the horse waiting out the suspension")  # fmt: skip
            seen.append(redis.get(since))
        finally:
            resume(redis)  # whatever happens: else the horse would wait forever

    # When a (not burst) horse waits out the suspension until it is resumed
    resuming = threading.Thread(target=look_then_resume)
    resuming.start()
    try:
        horse.work(logging_level="WARNING", max_jobs=1)
    finally:
        resuming.join()
    # Then it kept the earlier time while suspended (what `runner why` tells), cleared it once
    # resumed, and ran the job
    assert seen == [b"100.000"] and not redis.exists(since)
    assert runs.get(queued.token).state == "succeeded"  # type: ignore[union-attr]


def test_a_horse_that_finds_its_worker_suspended_puts_the_job_it_took_ahead_back(
    settings: Settings, enqueue: Callable[..., Enqueued], redis: Redis, runs: Runs,
) -> None:  # fmt: skip
    first, second = enqueue("counting", items=1, seconds=0.0), enqueue("counting", items=2)
    horse = watched_horse(redis, settings)
    horse.suspend_after_first, horse.suspension_every = True, 0.0
    horse.work(burst=True, logging_level="WARNING")  # RQ's burst worker exits when suspended
    assert horse.seen_at_teardown == []  # given back before RQ's wait for a resume
    assert listed(redis, "rq:queue:default") == [second.job_id]
    assert [runs.get(r.token).state for r in (first, second)] == ["succeeded", "queued"]  # type: ignore[union-attr]


@pytest.mark.parametrize("names", [("default",), ("urgent", "default")])
def test_a_job_that_arrives_while_a_worker_waits_is_taken_by_that_worker(
    names: tuple[str, ...], enqueue: Callable[..., Enqueued], redis: Redis
) -> None:
    # Given a worker waiting up to 30 s on empty queues, and a job enqueued half a second in
    arrival = threading.Timer(0.5, enqueue, args=("counting",), kwargs={"items": 1})
    arrival.start()
    try:
        # When the worker's wait ends
        job_id, queue = take(redis, *names, timeout=30)
    finally:
        arrival.join()
    # Then it took that job, into the intermediate list, and waits no more
    assert queue == "default" and listed(redis, "rq:queue:default") == []
    assert listed(redis, delivery_key("default")) == [job_id]


def test_limbo_gives_out_every_job_first_seen_longer_ago_than_asked_and_no_other(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings
) -> None:
    # Given two jobs taken off the queue by a worker that then died
    enqueue("counting", items=1)
    enqueue("counting", items=2)
    ids = [take(redis, "default")[0], take(redis, "default")[0]]
    limbo = Limbo(redis, settings)
    # When they are first seen, and seen again soon after, against an hour
    # Then neither is overdue yet
    assert limbo.overdue(3600.0) == [] and limbo.overdue(3600.0) == []
    # When they were first seen 100 s ago (the sightings' record rewritten so)
    redis.hset(limbo.key, mapping={job_id: time.time() - 100 for job_id in ids})
    # Then both are overdue against 50 s, in their intermediate list, and neither against 150 s
    assert sorted(limbo.overdue(50.0)) == sorted((delivery_key("default"), i) for i in ids)
    assert limbo.overdue(150.0) == []


def test_limbo_gives_out_no_job_first_seen_by_a_reaper_whose_clock_runs_ahead(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings
) -> None:
    # Given a job taken off the queue, first seen by a reaper on a host whose clock is 30 s
    # ahead of this one's (the sightings' record rewritten so)
    enqueue("counting", items=1)
    job_id = take(redis, "default")[0]
    limbo = Limbo(redis, settings)
    redis.hset(limbo.key, job_id, time.time() + 30)
    # When this host's reaper looks, against a lease of 50 s
    # Then the job is not overdue: it has not been seen there for 50 s by either clock
    assert limbo.overdue(50.0) == []
