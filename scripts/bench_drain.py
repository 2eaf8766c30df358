"""The drain forecast against a real drain (bench row `drain_forecast_vs_real`).

One real `runner worker` drains 50 ms runs (scripts.bench_tasks) while a feeder enqueues more
at half the pace the worker showed on its own: a steady backlog that shrinks. The forecast is
what `runner health` says (runner.monitoring.forecast.backlogs), read each minute once the
reaper's depth sample of 10 minutes ago exists; the real drain is when the queue was first
seen empty. The row is the first forecast (the longest horizon) over the real time it took;
the notes list every forecast. It takes about 12 minutes (the forecast needs 10 minutes of
samples), so `--quick` leaves it out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rq import Queue

from runner.monitoring.forecast import backlogs
from runner.runs.enqueue import Enqueuer, Request
from runner.tasks import Task, load_registry
from scripts.bench_env import BenchEnv, wait_until
from scripts.bench_tasks import MODULE

MINUTE = 60.0
CLEAR_AFTER_FIRST_FORECAST = 2.5  # minutes of backlog left when the first forecast is made


@dataclass
class Drain:
    """Forecasts made (when, seconds it said) and when the queue really emptied."""

    out_per_s: float
    in_per_s: float
    forecasts: list[tuple[float, float]] = field(default_factory=list)
    emptied_at: float | None = None

    def ratios(self) -> list[tuple[float, float]]:
        """(real seconds left, forecast over real) for every forecast."""
        assert self.emptied_at is not None
        return [
            (self.emptied_at - at, said / (self.emptied_at - at)) for at, said in self.forecasts
        ]


class Feeder(threading.Thread):
    """Enqueues one run every 1/`per_s` seconds until stopped."""

    def __init__(self, enqueuer: Enqueuer, task: Task, per_s: float) -> None:
        super().__init__(daemon=True)
        self.enqueuer, self.task, self.per_s = enqueuer, task, per_s
        self.stopped = threading.Event()

    def run(self) -> None:
        start, n = time.monotonic(), 0
        while not self.stopped.is_set():
            n += 1
            self.enqueuer.enqueue(Request(self.task, {"fed": n}))
            self.stopped.wait(max(0.0, start + n / self.per_s - time.monotonic()))


def drain(env: BenchEnv) -> Drain:
    env.flush()
    database_url = env.sqlite_url("drain-content")
    settings = env.settings(database_url)
    task = load_registry(MODULE).get("sleep_50ms")
    enqueuer = Enqueuer(env.redis, settings)
    queue = Queue("default", connection=env.redis)
    enqueuer.enqueue_many([Request(task, {"warm": i}) for i in range(2_000)])
    env.runner_worker(database_url, burst=False, name="drain", tasks=MODULE)
    wait_until(lambda: queue.count < 1_950, timeout=60, what="the worker to start")
    before, at = queue.count, time.monotonic()
    time.sleep(20)
    out_per_s = (before - queue.count) / (time.monotonic() - at)
    result = Drain(out_per_s, out_per_s / 2)
    first_forecast = (time.time() // MINUTE + 11) * MINUTE + 5  # its sample 10 minutes ago
    left = (first_forecast - time.time()) * (out_per_s - result.in_per_s)
    left += CLEAR_AFTER_FIRST_FORECAST * MINUTE * (out_per_s - result.in_per_s)
    top_up = int(left) - queue.count
    enqueuer.enqueue_many([Request(task, {"top": i}) for i in range(max(0, top_up))])
    feeder = Feeder(enqueuer, task, result.in_per_s)
    feeder.start()
    try:
        while time.time() < first_forecast:
            time.sleep(1)
        next_forecast = time.time()
        while queue.count > 0:
            if time.time() >= next_forecast:
                said = next(b for b in backlogs(env.redis, settings) if b.queue == "default")
                if said.drain_seconds is not None and said.drain_seconds > 0:
                    result.forecasts.append((time.time(), said.drain_seconds))
                next_forecast += MINUTE
            time.sleep(0.2)
        result.emptied_at = time.time()
    finally:
        feeder.stopped.set()
        feeder.join(timeout=10)
        env.stop_all()
    if not result.forecasts:
        raise RuntimeError("no forecast was made before the queue emptied")
    return result
