"""Celery's solo pool, the no-op bench's peer (row `noop_vs_celery_solo`), defined so anyone
can rerun it: Celery 5, `celery worker --pool solo -c 1 -l WARNING`, its Redis broker on the
bench's redis-server (the same unix socket), no result backend, the default prefetch. The task
writes the wall time of its first and its N-th call into Redis, as the runner's side is timed
from its runs' own start and finish; jobs/s is N over the time between them.

The worker imports this module (`-A scripts.bench_celery`); the broker's URL and N come in its
environment (BENCH_CELERY_BROKER, BENCH_CELERY_JOBS).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from celery import Celery
from redis import Redis

if TYPE_CHECKING:
    from scripts.bench_env import BenchEnv

FIRST, LAST = "celery:first", "celery:last"
app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.task_ignore_result = True  # no result backend
app.conf.broker_connection_retry_on_startup = True
_calls = {"n": 0}


def _broker_redis() -> Redis:
    return Redis.from_url(os.environ["BENCH_CELERY_REDIS"])


@app.task(name="bench.noop")
def noop(**kwargs: object) -> None:
    """Does nothing; records the wall time of the first and the N-th call."""
    _calls["n"] += 1
    if _calls["n"] == 1:
        _broker_redis().set(FIRST, repr(time.time()))
    elif _calls["n"] == int(os.environ["BENCH_CELERY_JOBS"]):
        _broker_redis().set(LAST, repr(time.time()))


def broker_url(redis_url: str) -> str:
    """kombu's spelling of the bench's Redis URL (`unix:///path` -> `redis+socket:///path`)."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def drain(env: BenchEnv, n: int) -> float:
    """Jobs/s of `n` no-op Celery tasks (kwargs {"i": i}) drained by one solo worker."""
    env.flush()
    broker = broker_url(env.url)
    app.conf.broker_url = broker
    with app.connection_for_write() as connection, app.producer_or_acquire() as producer:
        del connection
        for i in range(n):
            noop.apply_async(kwargs={"i": i}, producer=producer)
    command = [sys.executable, "-m", "celery", "-A", "scripts.bench_celery", "worker",
               "--pool", "solo", "-c", "1", "-l", "WARNING"]  # fmt: skip
    worker_env = {**env.base_env(), "BENCH_CELERY_BROKER": broker,
                  "BENCH_CELERY_REDIS": env.url, "BENCH_CELERY_JOBS": str(n)}  # fmt: skip
    worker = env.start(command, worker_env, "celery-solo")
    deadline = time.monotonic() + 120 + n / 50
    try:
        while not env.redis.exists(LAST):
            if time.monotonic() > deadline or worker.popen.poll() is not None:
                raise RuntimeError(f"celery's worker did not finish {n} tasks: {worker.tail()}")
            time.sleep(0.05)
    finally:
        worker.kill()
    first, last = (float(env.redis.get(key) or 0) for key in (FIRST, LAST))
    return n / (last - first)
