"""Figures recorded by workers inside the scripts that begin and release attempts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis import ConnectionPool, Redis, UnixDomainSocketConnection
from rq.serializers import JSONSerializer

from runner.attempt.execute import Executor
from runner.config import Settings
from runner.keys import Keys
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.figures import BOUNDS, Figures, Histogram, TaskFigures
from runner.tasks import load_registry
from runner.worker.horse import Horse

# Round trips of one no-op job (a burst with one job minus a burst with none), measured with
# `round_trips_of_one_noop_job`: 16 on b8f23eb, the commit before figures were recorded, and
# 16 with them; 10 since the horse writes RQ's records of a job in two pipelines
# (runner.delivery.bookkeeping) and reads the job hash in its dequeue's Lua call.
NOOP_JOB_ROUND_TRIPS = 10


class CountingConnection(UnixDomainSocketConnection):
    """A real connection that counts what it sends: one `send_packed_command` per round trip
    (a pipeline is one), and the name of every command packed."""

    trips = 0
    commands: list[str] = []  # noqa: RUF012

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.trips += 1
        super().send_packed_command(command, check_health)

    def pack_command(self, *args: Any) -> list[bytes]:
        CountingConnection.commands.append(str(args[0]).upper())
        return super().pack_command(*args)  # type: ignore[no-any-return]


def counting_client(redis: Redis) -> Redis:
    path = redis.connection_pool.connection_kwargs["path"]
    return Redis(connection_pool=ConnectionPool(connection_class=CountingConnection, path=path))


def round_trips_of_one_noop_job(redis: Redis, settings: Settings) -> tuple[int, list[str]]:
    client = counting_client(redis)
    registry = load_registry(settings.tasks_module)

    def burst() -> tuple[int, list[str]]:
        horse = Horse(list(settings.queues), connection=client, serializer=JSONSerializer)
        Executor(client, settings, registry, worker=horse.name).install()
        trips, sent = CountingConnection.trips, len(CountingConnection.commands)
        horse.work(burst=True, logging_level="WARNING")
        return CountingConnection.trips - trips, CountingConnection.commands[sent:]

    burst()  # the first burst loads the scripts (once per client)
    idle, _ = burst()
    Enqueuer(client, settings).enqueue(Request(registry.get("noop"), {}, None))
    busy, commands = burst()
    return busy - idle, commands


def test_figures_add_no_round_trip_to_a_job(redis: Redis, settings: Settings) -> None:
    trips, commands = round_trips_of_one_noop_job(redis, settings)

    assert trips == NOOP_JOB_ROUND_TRIPS
    assert not {"HINCRBY", "HINCRBYFLOAT"} & set(commands), "figures written outside a script"
    totals = Figures(redis, settings).totals()[("noop", "default")]
    assert totals.counts["started"] == 1
    assert totals.counts["succeeded"] == 1
    assert totals.duration.count == 1
    assert totals.wait.count == 1


def test_totals_windows_and_versions_count_every_outcome(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    for i in range(3):
        enqueue("noop", token=f"ok-{i}")
    enqueue("broken", token="bad")  # fails at once (permanent)
    enqueue("flaky", token="shaky", failures=1)  # one attempt retried, then succeeds

    drain()

    figures = Figures(redis, settings)
    total = figures.totals()
    assert total[("noop", "default")].counts["succeeded"] == 3
    assert total[("broken", "default")].counts["failed"] == 1
    flaky = total[("flaky", "default")]
    assert (flaky.counts["started"], flaky.counts["retried"], flaky.counts["succeeded"]) == (
        2, 1, 1,
    )  # fmt: skip
    assert flaky.failure_rate == 0.0
    assert total[("broken", "default")].failure_rate == 1.0
    version = Executor(redis, settings, load_registry(settings.tasks_module), "w").version
    by_version = figures.version(version)
    assert by_version["noop"].counts["succeeded"] == 3
    assert figures.version("some-other-version") == {}
    recent = figures.per_task(since=time.time() - 120)
    assert recent["noop"].counts == by_version["noop"].counts
    windows = [w for _, w in figures.windows(since=time.time() - 120)]
    assert any(("noop", "default", version) in w for w in windows)
    prefix = Keys(settings.prefix).prefix
    assert all(key.decode().startswith(prefix) for key in redis.keys("*fig*"))


def test_histogram_quantiles_interpolate_inside_buckets() -> None:
    h = Histogram()
    h.buckets[BOUNDS.index(1.0)] = 100  # 100 observations in (0.5, 1.0]

    assert h.quantile(0.5) == 0.75
    assert h.quantile(0.95) == 0.5 + 0.5 * 0.95
    assert h.cumulative()[-1] == 100
    assert Histogram().quantile(0.5) is None


def test_a_job_writes_its_figures_once_into_its_minute(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given 20 no-op runs queued
    for i in range(20):
        enqueue("noop", token=f"fig-{i}")
    redis.config_resetstat()
    # When a worker drains them
    drain()
    # Then each job wrote at most 8 figure fields (RQ's worker adds two counters of its own:
    # successful_job_count and total_working_time), all into minute hashes
    stats = redis.info("commandstats")
    calls = [
        int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hincrby", "hincrbyfloat")
    ]
    rq_counters = 2 * 20
    assert 20 * 6 <= sum(calls) - rq_counters <= 20 * 8
    keys = Keys(settings.prefix)
    assert not redis.exists(keys.figures_total), "a job wrote the totals itself"
    assert Figures(redis, settings).totals()[("noop", "default")].counts["succeeded"] == 20


def test_closed_minutes_roll_up_into_totals_hours_and_versions_exactly(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given runs of every outcome counted in their minutes (the reaper's sweep marked where
    # the roll-up starts: before them)
    for i in range(3):
        enqueue("noop", token=f"ok-{i}")
    enqueue("broken", token="bad")
    enqueue("flaky", token="shaky", failures=1)
    drain()
    figures = Figures(redis, settings)
    version = Executor(redis, settings, load_registry(settings.tasks_module), "w").version
    since = time.time() - 3 * 3600

    def exact(by: dict[Any, TaskFigures]) -> dict[Any, Any]:
        """Counts and buckets exactly, sums to a nanosecond (Redis adds in long double)."""
        return {
            key: (f.counts, [(h.buckets, round(h.total, 9)) for h in (f.wait, f.duration, f.cpu)])
            for key, f in by.items()
        }

    def seen() -> tuple[Any, ...]:
        hours = [(s, exact(w)) for s, w in figures.windows(since=since, shape="h") if w]
        return exact(figures.totals()), exact(figures.version(version)), hours

    before = seen()
    assert figures.totals()[("flaky", "default")].counts["retried"] == 1
    # When their minutes have closed and are rolled up (twice: a second roll-up adds nothing)
    later = time.time() + 10 * 60
    assert figures.roll_up(now=later) >= 1
    assert figures.roll_up(now=later) == 0
    # Then the rolled-up hashes hold them, and every reader says exactly what it said before
    raw = redis.hgetall(Keys(settings.prefix).figures_total)
    assert raw[b"noop|default|succeeded"] == b"3" and raw[b"broken|default|failed"] == b"1"
    assert seen() == before
