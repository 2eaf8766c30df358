"""Limits per key (runner.runs.limits): a run over its key's limit waits in the key's wait set,
holding no worker and no lease, and goes back to the head of its queue when a slot frees."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from runner.config import Settings
from runner.delivery.dequeue import delivery_key
from runner.errors import ConfigError, InvalidArguments
from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunRecord, RunState
from runner.runs.cancel import CancelAction, cancel
from runner.runs.enqueue import Enqueued
from runner.runs.limits import Limits, limit_text
from runner.runs.transitions import Runs
from runner.tasks import Limit
from runner.worker.liveness import Liveness
from runner.worker.reaper import Reaper
from tests.conftest import WorkerProcess, state_of, wait_for

Begin = Callable[[Enqueued], tuple[str, RunRecord | None]]


@pytest.fixture
def begin(runs: Runs) -> Begin:
    """Claim a run's first attempt as a horse does (its job taken into the intermediate list)."""

    def begin(run: Enqueued) -> tuple[str, RunRecord | None]:
        queue = Queue("default", connection=runs.redis)
        assert runs.redis.lrem(queue.key, 1, run.job_id) == 1
        runs.redis.rpush(delivery_key("default"), run.job_id)
        status, record, _ = runs.begin(
            run.token, 1, holder=f"{run.job_id}.h", worker="w", version="v",
            delivery=delivery_key("default"), job_id=run.job_id,
        )  # fmt: skip
        return status, record

    return begin


def finish(runs: Runs, token: str) -> None:
    record = runs.get(token)
    assert record is not None
    fields = {"state": RunState.SUCCEEDED, "finished_at": 1.0}
    runs.release(record, f"{record.job_id}.h", fields, retention=60, version="v")


def queued_ids(redis: Redis) -> list[str]:
    return [i.decode() for i in redis.lrange(Queue("default", connection=redis).key, 0, -1)]


def test_a_run_over_its_keys_concurrency_waits_without_a_lease_and_its_job_put_aside(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings, begin: Begin
) -> None:
    keys = Keys(settings.prefix)
    one, two, three = (enqueue("limited", host="a.example", seconds=i) for i in range(3))
    other = enqueue("limited", host="b.example")
    assert begin(one)[0] == "ok" and begin(two)[0] == "ok"
    status, record = begin(three)
    assert status == "limited" and record is not None and record.state == RunState.QUEUED
    assert not redis.exists(keys.lease(three.token))
    assert not redis.exists(Job.key_for(three.job_id)), "its job hash is put aside"
    assert redis.exists(keys.limit("job", three.job_id))
    assert redis.zrange(keys.limit("waiting", "limited:a.example"), 0, -1) == [three.token.encode()]
    assert not redis.lrange(delivery_key("default"), 0, -1), "nor in the intermediate list"
    assert begin(other)[0] == "ok", "another key has its own slots"


def test_a_release_wakes_the_first_waiter_to_the_head_of_its_queue(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings, begin: Begin
) -> None:
    keys = Keys(settings.prefix)
    one, two, three, four = (enqueue("limited", host="a", seconds=i) for i in range(4))
    assert [begin(r)[0] for r in (one, two, three, four)] == ["ok", "ok", "limited", "limited"]
    later = enqueue("noop")
    finish(runs, one.token)
    assert queued_ids(redis) == [three.job_id, later.job_id], "the first waiter, at the head"
    job = redis.hgetall(Job.key_for(three.job_id))
    assert job[b"status"] == b"queued" and b"data" in job, "its own job hash is back"
    assert redis.zrange(keys.limit("waiting", "limited:a"), 0, -1) == [four.token.encode()]
    assert begin(three)[0] == "ok"
    assert begin(enqueue("limited", host="a", seconds=5))[0] == "limited", "two hold it again"


def test_a_woken_waiter_keeps_its_slot_from_a_run_that_comes_after_it(
    enqueue: Callable[..., Enqueued], runs: Runs, begin: Begin
) -> None:
    one, two, three = (enqueue("limited", host="a", seconds=i) for i in range(3))
    assert [begin(r)[0] for r in (one, two, three)] == ["ok", "ok", "limited"]
    finish(runs, one.token)  # three is woken and on its way
    newcomer = enqueue("limited", host="a", seconds=9)
    assert begin(newcomer)[0] == "limited", "the freed slot is three's"
    assert begin(three)[0] == "ok"


def test_a_dead_holders_slot_frees_with_its_lease_and_the_reaper_wakes_the_waiter(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings, begin: Begin
) -> None:
    keys = Keys(settings.prefix)
    one, two, three = (enqueue("limited", host="a", seconds=i) for i in range(3))
    assert [begin(r)[0] for r in (one, two, three)] == ["ok", "ok", "limited"]
    limits = Limits(redis, settings)
    assert limits.wake_all(now=float(redis.time()[0])) == 0, "no slot is free"
    redis.delete(keys.lease(one.token))  # its worker died: the lease expires
    assert limits.wake_all(now=float(redis.time()[0])) == 1
    assert queued_ids(redis) == [three.job_id]


def test_the_reaper_leaves_a_waiting_run_alone_and_wakes_it_when_a_slot_frees(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings, begin: Begin
) -> None:
    keys = Keys(settings.prefix)
    one, two, three = (enqueue("limited", host="a", seconds=i) for i in range(3))
    assert [begin(r)[0] for r in (one, two, three)] == ["ok", "ok", "limited"]
    old = redis.time()[0] - 3600  # queued long ago: the search for lost runs looks at it
    redis.zadd(keys.by_state(RunState.QUEUED), {three.token: old})
    reaper = Reaper(redis, settings)
    for lease in (keys.lease(one.token), keys.lease(two.token)):
        redis.pexpire(lease, 60_000)  # both holders stay alive through the sweep
    reaper.sweep()
    record = runs.get(three.token)
    assert record is not None and record.attempt == 1 and record.state == RunState.QUEUED
    assert queued_ids(redis) == [], "not lost, not requeued: it waits"
    redis.delete(keys.lease(two.token))
    redis.zrem(keys.running, two.token)  # (the reaper would requeue a dead holder's run too)
    reaper.sweep()
    assert queued_ids(redis) == [three.job_id]


def test_a_rate_lets_through_n_starts_per_period(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings, begin: Begin
) -> None:
    keys = Keys(settings.prefix)
    made = [enqueue("rated", token=f"r{i}", host="a") for i in range(7)]
    statuses = []
    for run in made:
        statuses.append(begin(run)[0])
        if statuses[-1] == "ok":
            finish(runs, run.token)  # it ends at once: only the rate holds the others back
    assert statuses == ["ok"] * 5 + ["limited"] * 2
    limits = Limits(redis, settings)
    # (measured from the first start: the five starts may lie well apart on a loaded machine)
    first = float(redis.zrange(keys.limit("starts", "rated:a"), 0, 0, withscores=True)[0][1])
    assert limits.wake_all(now=first + 9.9) == 0, "the window has not moved on"
    assert limits.wake_all(now=first + 10.0) == 1, "the first start left the window"


def test_why_a_waiting_run_waits_names_the_key_the_limit_and_the_holders(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings, begin: Begin
) -> None:
    one, two, three = (enqueue("limited", host="a", seconds=i) for i in range(3))
    assert [begin(r)[0] for r in (one, two, three)] == ["ok", "ok", "limited"]
    record = runs.get(three.token)
    assert record is not None
    held = Limits(redis, settings).held(record, now=float(redis.time()[0]))
    assert held is not None
    assert held.holders == tuple(sorted((one.token, two.token)))
    assert (held.key, held.concurrency, held.position, held.waiting) == ("limited:a", 2, 1, 1)
    assert limit_text(record) == "limited:a (2 at once)"
    assert Limits(redis, settings).held(runs.get(one.token) or record, now=0.0) is None


def test_a_limits_key_function_that_fails_is_refused_at_enqueue(
    enqueue: Callable[..., Enqueued],
) -> None:
    with pytest.raises(InvalidArguments, match="task limited needs argument 'host'"):
        enqueue("limited")
    with pytest.raises(InvalidArguments, match="limit key must give a text of 1 to 200"):
        enqueue("limited", host="")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs concurrency=N, rate=N"),
        ({"concurrency": 0}, "concurrency must be a whole number, at least 1: not 0"),
        ({"rate": 5, "per": 0}, "per must be a positive number of seconds"),
    ],
)
def test_a_limit_without_a_sound_bound_is_a_config_error(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Limit(key=str, **kwargs)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of `spans` (start, end) that overlap at any moment."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in edges:  # at a tie an end (-1) comes first: touching spans do not overlap
        now += step
        peak = max(peak, now)
    return peak


def step_span(runs: Runs, token: str) -> tuple[float, float]:
    """When the run's step ran in its last attempt (inside its lease); an empty span when an
    earlier attempt finished it (killed before its release: its lease span is taken then)."""
    record, step = runs.get(token), runs.steps(token)["fetch"]
    assert record is not None and record.state == RunState.SUCCEEDED
    if step["attempt"] != record.attempt:
        return (step["finished_at"], step["finished_at"])
    return (step["finished_at"] - step["seconds"], step["finished_at"])


def stopped_holding(
    workers: dict[str, WorkerProcess], made: list[Enqueued], runs: Runs, redis: Redis
) -> tuple[WorkerProcess, list[tuple[str, tuple[float, float]]]] | None:
    """A worker SIGSTOPped while it holds runs, and those runs with their lease spans (their
    start, and when their lease expires); None (and the worker let go on) when it held none."""
    running = [r for r in map(runs.get, (m.token for m in made)) if r and r.state == "running"]
    if not running:
        return None
    name = running[0].worker.split(".")[0]
    os.killpg(workers[name].process.pid, signal.SIGSTOP)
    held = []
    for record in map(runs.get, (m.token for m in made)):
        if record and record.state == "running" and record.worker.split(".")[0] == name:
            before, ttl = time.time(), redis.pttl(Keys().lease(record.token))
            if ttl > 0 and record.started_at is not None:
                held.append((record.token, (record.started_at, before + ttl / 1000)))
    if not held:
        os.killpg(workers[name].process.pid, signal.SIGCONT)
        return None
    return workers[name], held


@pytest.mark.slow
def test_forty_runs_of_one_key_on_three_workers_never_hold_more_than_two_leases_at_once(
    settings: Settings,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
    redis: Redis,
) -> None:
    # Given three workers and forty runs of one host, limited to two at once
    keys = Keys(settings.prefix)
    workers = {name: start_worker("--name", name) for name in "ABC"}
    wait_for(lambda: len(Liveness(redis, settings).alive()) == 3, timeout=60, what="3 workers")
    made = [enqueue("limited", token=f"l{i}", host="h", seconds=0.3) for i in range(40)]
    # When a worker holding a run is SIGKILLed mid-way (stopped first, to read its leases)
    wait_for(lambda: sum(state_of(runs, r.token) == "succeeded" for r in made) >= 10,
             timeout=60, what="ten runs done")  # fmt: skip
    stopped = wait_for(lambda: stopped_holding(workers, made, runs, redis), what="a holder")
    victim, killed = cast(tuple[WorkerProcess, list[tuple[str, tuple[float, float]]]], stopped)
    victim.kill_group()
    # Then every run succeeds, the killed ones at their next attempt
    wait_for(lambda: all(state_of(runs, r.token) == "succeeded" for r in made), timeout=120,
             what="every run to succeed")  # fmt: skip
    assert killed and all(runs.get(t).attempt == 2 for t, _ in killed)  # type: ignore[union-attr]
    # and, from the runs' own records (each finished step's time, and a killed attempt's
    # start until its lease expired), never more than two held the host at once; two often did
    spans = [span for _, span in killed] + [step_span(runs, r.token) for r in made]
    assert most_at_once(spans) == 2
    # and a run over the limit waited rather than spun: few parkings per run
    parked = sum(e["event"] == "run.limited" for r in made for _, e in read_events(
        redis, keys, r.token))  # fmt: skip
    print(f"{parked} parkings of 40 runs; {len(killed)} killed")
    assert 0 < parked <= 80


@pytest.mark.slow
def test_a_rate_of_five_per_ten_seconds_is_never_exceeded_in_any_ten_second_window(
    settings: Settings,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
    redis: Redis,
) -> None:
    for name in "AB":
        start_worker("--name", name)
    made = [enqueue("rated", token=f"r{i}", host="h") for i in range(12)]
    wait_for(lambda: all(state_of(runs, r.token) == "succeeded" for r in made), timeout=90,
             what="every run to succeed")  # fmt: skip
    records = [runs.get(m.token) for m in made]
    starts = sorted(r.started_at for r in records if r and r.started_at)
    assert len(starts) == 12
    windows = [sum(s <= t < s + 10.0 for t in starts) for s in starts]
    print(f"starts in each 10 s window from a start: {windows}")
    assert max(windows) == 5


def test_a_waiting_run_cancelled_ends_there_and_its_slot_goes_to_the_next_waiter(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings, begin: Begin
) -> None:
    keys = Keys(settings.prefix)
    one, two, three, four = (enqueue("limited", host="a", seconds=i) for i in range(4))
    assert [begin(r)[0] for r in (one, two, three, four)] == ["ok", "ok", "limited", "limited"]
    assert cancel(redis, settings, three.token, origin="cli").action == CancelAction.CANCELLED
    finish(runs, one.token)
    assert queued_ids(redis) == [four.job_id], "the cancelled waiter is passed over"
    assert not redis.exists(keys.limit("job", three.job_id)), "its put-aside job is dropped"
    assert state_of(runs, three.token) == RunState.CANCELLED
    assert not redis.zcard(keys.limit("waiting", "limited:a"))
    assert not redis.sismember(keys.limit_keys, "limited:a"), "no key left to wake"
