"""The outbox's side of the bench: the delay from a transaction's commit to its run queued in
Redis, through the relay of a real `runner worker` (its relay process: a poll on SQLite,
LISTEN/NOTIFY on PostgreSQL).

Each request is committed with `Client.enqueue_on_commit` at a random moment (0-50 ms apart);
its delay is the run's `created_at` (stamped by the enqueue script the relay calls) minus the
moment the commit returned, so the measuring side polls nothing.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

from jobs.database import make_engine
from jobs.revisions import upgrade
from runner.client.sync import Client
from runner.worker.relay import POLL_SECONDS
from scripts.bench_env import BenchEnv

__all__ = ["POLL_SECONDS", "RelayDelays", "relay_delays"]


@dataclass(frozen=True)
class RelayDelays:
    """Seconds from commit to queued, per request."""

    delays: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.delays)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.delays, n=20)[-1]


def relay_delays(env: BenchEnv, database_url: str, *, requests: int = 200) -> RelayDelays:
    """Commit `requests` noop requests into the outbox of `database_url` while a worker's
    relay moves them; returns each one's delay."""
    engine = make_engine(database_url)
    upgrade(engine)
    env.flush()
    settings = env.settings(database_url)
    client = Client(env.redis, settings)
    worker = env.runner_worker(database_url, burst=False, name="outbox")
    committed: dict[str, float] = {}
    try:
        time.sleep(3.0)  # the worker and its relay up (their start is not the delay)
        for i in range(requests):
            with engine.begin() as conn:
                token = client.enqueue_on_commit(conn, "noop", {"i": i})
            committed[token] = time.time()
            time.sleep(random.uniform(0, 0.05))
        deadline = time.monotonic() + 60
        created: dict[str, float] = {}
        while len(created) < requests and time.monotonic() < deadline:
            for token in committed.keys() - created.keys():
                stamp = env.redis.hget(settings.prefix + f"run:{token}", "created_at")
                if stamp is not None:
                    created[token] = float(stamp)
            time.sleep(0.1)
    finally:
        worker.kill()
        engine.dispose()
    if len(created) < requests:
        raise RuntimeError(f"the relay queued {len(created)} of {requests} requests in 60 s")
    return RelayDelays([max(0.0, created[t] - committed[t]) for t in committed])
