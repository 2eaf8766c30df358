"""Backlog samples: each queue's depth once a minute, the first sample of a minute kept."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import Enqueued
from runner.runs.backlog import depths_now, sample, sampled
from runner.worker.reaper import Reaper


def test_the_reaper_samples_each_queues_depth_once_a_minute(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    for i in range(3):
        enqueue("greet", name=f"n{i}")
    reaper = Reaper(redis, settings)
    reaper.sweep()
    (seconds, _), minute = redis.time(), 0
    minute = int(seconds) // 60 * 60
    first = sampled(redis, settings, minute)
    assert first["default"].jobs == 3
    enqueue("greet", name="late")
    sample(redis, settings)  # another reaper, the same minute: the first sample stays
    assert sampled(redis, settings, minute)["default"] == first["default"]
    assert 0 < redis.ttl(Keys(settings.prefix).depth(minute)) <= 2 * 3600 + 300


def test_depths_now_reads_every_known_queue(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings
) -> None:
    enqueue("greet", name="ada")
    found = depths_now(redis, settings)
    assert found["default"].jobs == 1
    assert abs(found["default"].at - float(redis.time()[0])) < 5
