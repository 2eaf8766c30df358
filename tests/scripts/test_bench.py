"""The bench's own instruments: the round-trip counter and the pairing of interleaved rounds."""

from __future__ import annotations

import pytest
from redis import Redis

from runner.config import Settings
from runner.runs.scripts import RENEW_LEASE
from scripts.bench import FULL, chosen, sections
from scripts.bench_queue import median_ratio, rounds
from scripts.bench_trips import (
    TripLog,
    Trips,
    counting_client,
    runner_trips,
    simple_worker_trips,
)


def url_of(redis: Redis) -> str:
    return f"unix://{redis.connection_pool.connection_kwargs['path']}"


def test_a_command_a_pipeline_and_a_lua_call_are_one_round_trip_each(redis: Redis) -> None:
    trips = TripLog()
    client = counting_client(url_of(redis), trips)
    keys, args = {"lease": "lease", "run": "run"}, {"holder": "holder", "lease_ms": 1000}
    RENEW_LEASE(client, keys=keys, args=args)  # connects, loads the script
    start = len(trips.trips)

    client.set("a", 1)
    pipe = client.pipeline(transaction=True)
    pipe.incr("a").get("a").incr("a")
    pipe.execute()
    RENEW_LEASE(client, keys=keys, args=args)

    assert trips.trips[start:] == ["SET", "pipeline(INCRBY GET)", "EVALSHA RENEW_LEASE"]


def test_round_trips_per_job_count_each_jobs_claim_and_release_once(
    redis: Redis, settings: Settings
) -> None:
    runner = runner_trips(url_of(redis), settings, 10)
    simple = simple_worker_trips(url_of(redis), 10)

    def per_job(trips: Trips, script: str) -> float:
        return sum(count for name, count in trips.kinds if script in name)

    assert per_job(runner, "EVALSHA BEGIN_ATTEMPT") == 1  # alone, or in a pipeline
    assert per_job(runner, "EVALSHA RELEASE_ATTEMPT") == 1
    assert runner.per_job == round(sum(count for _, count in runner.kinds), 2)
    assert per_job(simple, "HGETALL") == 1  # RQ fetches each job's hash once
    assert per_job(simple, "BEGIN_ATTEMPT") == 0


def test_rounds_alternate_the_order_and_ratios_pair_sides_of_one_round() -> None:
    calls: list[str] = []
    speed = {"a": iter([10.0, 30.0, 20.0]), "b": iter([5.0, 10.0, 20.0])}

    def side(name: str) -> float:
        calls.append(name)
        return next(speed[name])

    results = rounds({"a": lambda: side("a"), "b": lambda: side("b")}, 3)

    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert median_ratio(results, "a", "b", float) == 2.0  # ratios 2, 3, 1: the median pair


def test_only_picks_the_sections_that_yield_the_named_rows_and_refuses_unknown_ones() -> None:
    every = sections(FULL)

    picked = chosen(every, {"import_vs_naive_sqlite", "url_enqueue_s"})

    assert [s.name for s in picked] == [
        "import throughput (sqlite, 100,000)",
        "start-up and URL enqueue",
    ]
    assert chosen(every, None) == every
    with pytest.raises(ValueError, match="no such row: nope"):
        chosen(every, {"nope", "url_enqueue_s"})


def test_the_seeded_history_is_what_the_page_and_search_rows_read(
    redis: Redis, settings: Settings
) -> None:
    from dataclasses import replace

    from runner.runs.history import HistoryStore
    from runner.runs.search import Search, search_runs
    from scripts.bench_history import FAILED_EVERY, feed_name, seed

    store = HistoryStore(replace(settings, history_url=f"sqlite:///{settings.home}/h.db"))
    held_at_analyze: list[int] = []  # the statistics are refreshed once the first batch is in
    seed(
        store, 600, batch=250, analyze=lambda: held_at_analyze.append(sum(store.counts().values()))
    )
    assert held_at_analyze == [250]
    counts = store.counts()
    assert sum(counts.values()) == 600 and counts["failed"] == 600 // FAILED_EVERY
    found = search_runs(redis, settings, store, Search(feed_name(421)))
    assert [r.token for r in found] == ["import_posts-0000421"]
    failed = search_runs(redis, settings, store, Search("missing field", limit=0))
    assert len(failed) == 600 // FAILED_EVERY
    assert store.listing(limit=1)[0].token == "import_posts-0000599", "newest first"


def test_celerys_broker_url_is_the_benchs_redis_in_kombus_spelling() -> None:
    from scripts.bench_celery import broker_url

    assert broker_url("unix:///tmp/x/redis.sock") == "redis+socket:///tmp/x/redis.sock"
    assert broker_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_drain_compares_each_forecast_with_the_time_that_was_really_left() -> None:
    from scripts.bench_drain import Drain

    found = Drain(out_per_s=20.0, in_per_s=10.0, forecasts=[(100.0, 180.0), (160.0, 130.0)])
    found.emptied_at = 300.0
    assert found.ratios() == [(200.0, 0.9), (140.0, 130.0 / 140.0)]
