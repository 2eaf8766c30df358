"""The drain forecast: verdicts on given figures, and the figures read from real Redis (depth
samples the reaper wrote, starts the workers counted) with an injected clock."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.monitoring.forecast import Rates, backlogs, forecast, rates
from runner.record import Enqueued
from runner.runs.backlog import Depth


def test_a_falling_queue_clears_at_its_pace() -> None:
    # 30 arrive and 40 start a minute: the depth of 350 falls by 10 a minute
    found = forecast("imports", 350, recent=Rates(30, 40), hour=Rates(20, 25),
                     starts_per_minute=[40, 38, 42, 40, 41, 39, 40, 40, 40])  # fmt: skip
    assert found.drain_seconds == pytest.approx(35 * 60)
    assert found.verdict == "clears in ~35.0 min"
    assert found.line() == ("imports: 350 queued (10 min in 30.0/min, out 40.0/min; 1 h in"
                            " 20.0/min, out 25.0/min): clears in ~35.0 min")  # fmt: skip


@pytest.mark.parametrize(
    ("depth", "recent", "starts", "verdict"),
    [
        (0, Rates(5, 5), [], "empty"),
        (10, None, [], "no forecast yet: the depth was not sampled 10 minutes ago"),
        (10, Rates(3, 0), [], "nothing started in 10 minutes: will not clear"),
        (500, Rates(52, 40), [40] * 9, "growing 12.0/min: will not clear at this rate"),
        (500, Rates(40, 40), [40] * 9, "not shrinking: will not clear at this rate"),
        (500, Rates(10, 40), [0, 0, 0, 0, 0, 0, 0, 0, 360], "the pace varies too much"),
    ],
)
def test_no_number_when_the_figures_do_not_give_one(
    depth: int, recent: Rates | None, starts: list[int], verdict: str
) -> None:
    found = forecast("q", depth, recent=recent, hour=None, starts_per_minute=starts)
    assert found.verdict.startswith(verdict)
    assert found.drain_seconds == (0.0 if depth == 0 else None)


def test_rates_are_what_started_plus_how_much_the_depth_grew() -> None:
    then = Depth(jobs=100, at=1_000.0)
    # 10 minutes later 250 are queued and 400 started: 550 arrived
    assert rates(250, then, 400, now=1_600.0) == Rates(arrived=55.0, started=40.0)
    assert rates(250, None, 400, now=1_600.0) is None
    assert rates(250, then, 400, now=1_030.0) is None, "a sample under a minute old: no rate"


def test_backlogs_read_the_samples_and_the_figures_with_an_injected_clock(
    enqueue: Callable[..., Enqueued], work: Callable[[], None], redis: Redis,
    settings: Settings, invoke: Callable[..., Result],
) -> None:  # fmt: skip
    import time

    for i in range(20):  # 20 start now, on the figures' clock
        enqueue("greet", name=f"done-{i}")
    work()
    for i in range(30):
        enqueue("greet", name=f"waiting-{i}")
    now = time.time()
    minute = int(now // 60) * 60
    ten_ago = Keys(settings.prefix).depth(minute - 600)
    redis.hset(ten_ago, "default", f"40 {now - 600:.3f}")  # as the reaper sampled it then
    [found] = backlogs(redis, settings, now=now)
    assert found.queue == "default" and found.depth == 30
    assert found.recent is not None  # 10 arrived, 20 started, in 10 minutes:
    assert (found.recent.arrived, found.recent.started) == (pytest.approx(1.0), pytest.approx(2.0))
    assert found.verdict == "clears in ~30.0 min" and found.drain_seconds == pytest.approx(
        1800, rel=1e-3
    )
    health = invoke("health", "--json")
    [shown] = json.loads(health.output)["backlog"]
    assert shown["queue"] == "default" and shown["depth"] == 30
    text = invoke("health").output
    assert "backlog        default: 30 queued" in text


def test_metrics_expose_the_forecast_seconds(
    enqueue: Callable[..., Enqueued], work: Callable[[], None], redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    import time

    from runner.monitoring.metrics import render

    for i in range(20):
        enqueue("greet", name=f"done-{i}")
    work()
    for i in range(30):
        enqueue("greet", name=f"waiting-{i}")
    now = time.time()
    redis.hset(Keys(settings.prefix).depth(int(now // 60) * 60 - 600), "default",
               f"40 {now - 600:.3f}")  # fmt: skip
    text = render(redis, settings).decode()
    line = next(x for x in text.splitlines() if x.startswith("runner_queue_drain_seconds{"))
    assert line.startswith('runner_queue_drain_seconds{queue="default"}')
    assert 1700 < float(line.split()[-1]) < 1900
