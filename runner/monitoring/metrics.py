"""`/metrics`: the runner in the Prometheus text format, computed from Redis at scrape time,
so one scrape of any web process is right for any number of worker processes and hosts.

Counters and histograms come from the figures' totals (runner.runs.figures), which only grow.
No label names a run or a token: cardinality is tasks × queues (× outcomes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue

from runner.config import Settings
from runner.keys import Keys
from runner.monitoring.forecast import backlogs
from runner.record import RunState
from runner.runs.deploys import DeployMarks, code_version
from runner.runs.figures import BOUNDS, OUTCOMES, Figures, Histogram
from runner.runs.rqjobs import known_queues
from runner.worker.liveness import Liveness

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RunnerCollector(Collector):
    """Reads Redis on every `collect()` (every scrape)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        yield from self._figures()
        yield from self._queues()
        runs = GaugeMetricFamily("runner_runs_by_state", "Runs by state (kept for the retention).",
                                 labels=["state"])  # fmt: skip
        pipe = self.redis.pipeline(transaction=False)
        for state in RunState:
            pipe.zcard(self.keys.by_state(state))
        for state, count in zip(RunState, pipe.execute(), strict=True):
            runs.add_metric([state.value], count)
        yield runs
        workers = len(Liveness(self.redis, self.settings).alive(now))
        yield GaugeMetricFamily("runner_workers", "Workers whose heartbeat is fresh.", workers)
        oldest = self.redis.zrange(self.keys.by_state(RunState.RUNNING), 0, 0, withscores=True)
        yield GaugeMetricFamily(
            "runner_oldest_running_seconds", "Age of the oldest running attempt (0: none).",
            max(0.0, now - float(oldest[0][1])) if oldest else 0.0,
        )  # fmt: skip
        tick = self.redis.get(self.keys.last_tick)
        yield GaugeMetricFamily(
            "runner_last_cron_tick_timestamp_seconds", "When the last cron tick ended (0: never).",
            float(tick) if tick else 0.0,
        )  # fmt: skip
        yield from self._deploy()

    def _figures(self) -> Iterator[Metric]:
        per_task = ["task", "queue"]
        runs = CounterMetricFamily(
            "runner_runs", "Attempts ended, by outcome ('retried': the run tries again).",
            labels=[*per_task, "outcome"],
        )  # fmt: skip
        started = CounterMetricFamily("runner_attempts_started", "Attempts begun.", labels=per_task)
        duration = HistogramMetricFamily(
            "runner_run_duration_seconds", "Attempt durations.", labels=per_task
        )
        wait = HistogramMetricFamily(
            "runner_queue_wait_seconds", "Enqueued or requeued to started.", labels=per_task
        )
        for (task, queue), figures in sorted(Figures(self.redis, self.settings).totals().items()):
            for outcome in OUTCOMES:
                runs.add_metric([task, queue, str(outcome)], figures.counts.get(outcome, 0))
            started.add_metric([task, queue], figures.counts.get("started", 0))
            duration.add_metric([task, queue], *_buckets(figures.duration))
            wait.add_metric([task, queue], *_buckets(figures.wait))
        yield from (runs, started, duration, wait)

    def _queues(self) -> Iterator[Metric]:
        names = known_queues(self.redis, self.settings)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        length = GaugeMetricFamily("runner_queue_length", "Jobs waiting.", labels=["queue"])
        for name, count in zip(names, pipe.execute(), strict=True):
            length.add_metric([name], count)
        yield length
        drain = GaugeMetricFamily(
            "runner_queue_drain_seconds", "Forecast seconds until the queue is empty at the last"
            " 10 minutes' pace (absent: no forecast; runner health says why).", labels=["queue"],
        )  # fmt: skip
        for backlog in backlogs(self.redis, self.settings):
            if backlog.drain_seconds is not None:
                drain.add_metric([backlog.queue], backlog.drain_seconds)
        yield drain

    def _deploy(self) -> Iterator[Metric]:
        latest = next(iter(DeployMarks(self.redis, self.settings).latest(1)), None)
        version = latest.version if latest else code_version(self.settings)
        info = GaugeMetricFamily("runner_build_info", "The code version deployed (the latest "
                                 "deploy mark's), always 1.", labels=["code_version"])  # fmt: skip
        info.add_metric([version], 1)
        yield info
        yield GaugeMetricFamily("runner_deploy_timestamp_seconds", "When the latest deploy was "
                                "marked (0: never).", latest.at if latest else 0.0)  # fmt: skip


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    cumulative = histogram.cumulative()
    buckets = [(_le(bound), float(n)) for bound, n in zip(BOUNDS, cumulative, strict=False)]
    return [*buckets, ("+Inf", float(cumulative[-1]))], histogram.total


def _le(bound: float) -> str:
    return repr(bound)


def render(redis: Redis, settings: Settings) -> bytes:
    """The metrics page, from Redis now."""
    registry = CollectorRegistry()
    registry.register(RunnerCollector(redis, settings))
    return generate_latest(registry)
