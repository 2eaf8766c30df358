"""Health: can this deployment do its work right now? Each check says what is wrong."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker

from runner.config import Settings
from runner.delivery import delivery_key
from runner.runs import Runs


@dataclass(frozen=True, slots=True)
class Check:
    """One health check: its name, whether it passed, and a one-line detail."""

    name: str
    ok: bool
    detail: str


def check_health(redis: Redis, settings: Settings) -> list[Check]:
    """Redis answers, some worker is alive, no run holds an expired lease or waits in an
    intermediate list with no worker alive to requeue it."""
    try:
        started = time.perf_counter()
        redis.ping()
        latency_ms = (time.perf_counter() - started) * 1000
    except RedisError as exc:
        return [Check("redis", False, f"unreachable: {exc}")]
    checks = [Check("redis", True, f"ping {latency_ms:.1f} ms")]
    workers = Worker.all(connection=redis)
    checks.append(
        Check(
            "workers",
            bool(workers),
            f"{len(workers)} alive" if workers else "none alive: start `runner worker`",
        )
    )
    backlog = {q: Queue(q, connection=redis).count for q in settings.queues}
    checks.append(Check("queues", True, ", ".join(f"{q}={n}" for q, n in backlog.items())))
    running, orphaned = Runs(redis, settings).leaseless()
    detail = f"{len(running)} running, {len(orphaned)} awaiting the reaper"
    checks.append(_reaper_work("leases", len(orphaned), detail, alive=bool(workers)))
    taken = sum(redis.llen(delivery_key(q)) for q in settings.queues)
    detail = f"{taken} taken off a queue and not yet begun"
    checks.append(_reaper_work("deliveries", taken, detail, alive=bool(workers)))
    return checks


def _reaper_work(name: str, waiting: int, detail: str, *, alive: bool) -> Check:
    """Runs waiting for a reaper are fine while some worker (whose reaper will act) is alive."""
    if not waiting or alive:
        return Check(name, True, detail)
    return Check(name, False, f"{detail}: no worker is alive to requeue them")
