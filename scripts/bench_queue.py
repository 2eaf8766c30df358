"""Queue measurements: no-op job throughput of one worker process, 50 ms jobs with several
horses, and enqueue throughput.

jobs/s of a worker = jobs / (first job's start -> last job's end), read from Redis afterwards:
for RQ, the job hashes' `started_at` / `ended_at`; for the runner, whose RQ job hashes go at
once (result_ttl=0), the run records' `started_at` (lease taken) / `finished_at` (outcome
written). Worker start-up and shut-down fall outside the span, everything between jobs inside.
"""

from __future__ import annotations

import collections
import importlib
import pkgutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from runner.keys import Keys
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.tasks import Task, load_registry
from scripts import bench_celery, bench_tasks
from scripts.bench_env import ROOT, BenchEnv
from scripts.bench_jobs import NOOP
from scripts.bench_trips import script_names

CHUNK = 500
RQ_QUEUE = "default"


@dataclass(frozen=True)
class Drained:
    """One worker draining N jobs: jobs/s over the RQ job span, Redis commands per job, and
    the redis-server's CPU per job (µs, INFO cpu from CONFIG RESETSTAT to the worker's exit)
    with INFO commandstats' µs per job by command."""

    jobs_per_s: float
    commands_per_job: float
    redis_cpu_us: float = 0.0
    usec_by_command: dict[str, float] = field(default_factory=dict)


def server_figures(env: BenchEnv, n: int, cpu_before: float) -> Drained:
    """Redis's figures of a worker that drained `n` jobs, read just after its exit and before
    anything else runs (`cpu_before`: the server's CPU seconds at CONFIG RESETSTAT); its
    jobs/s is left at 0 for the caller to fill in."""
    cpu = env.redis_cpu_seconds() - cpu_before
    usec = {name: us / n for name, us in env.usec_by_command().items()}
    return Drained(0.0, env.commands_since_reset() / n, cpu * 1e6 / n, usec)


def chunks(n: int, size: int = CHUNK) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def best_of(
    sides: dict[str, Callable[[], Any]], repeats: int, key: Callable[[Any], float]
) -> dict[str, Any]:
    """Run every side `repeats` times, alternating the order; keep each side's best result."""
    names, best = list(sides), {}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            result = sides[name]()
            if name not in best or key(result) > key(best[name]):
                best[name] = result
    return best


def rounds(sides: dict[str, Callable[[], Any]], count: int) -> list[dict[str, Any]]:
    """`count` rounds of every side, one after the other, the order reversed each round, so
    a side's result can be paired with the others' of the same round."""
    names, results = list(sides), []
    for rep in range(count):
        order = names if rep % 2 == 0 else names[::-1]
        results.append({name: sides[name]() for name in order})
    return results


def median_ratio(results: Sequence[dict[str, Any]], side: str, baseline: str,
                 value: Callable[[Any], float]) -> float:  # fmt: skip
    """The median over rounds of side / baseline, each round's pair measured back to back."""
    return statistics.median(value(r[side]) / value(r[baseline]) for r in results)


def noop_task() -> Task:
    return load_registry("jobs").get("noop")


def rq_span(env: BenchEnv, job_ids: Sequence[str]) -> float:
    """Seconds from the first job's start to the last job's end; raises if any did not finish."""
    pipe = env.redis.pipeline(transaction=False)
    for jid in job_ids:
        pipe.hmget(Job.key_for(jid), "started_at", "ended_at", "status")
    rows = pipe.execute()
    unfinished = sum(1 for row in rows if row[2] != b"finished")
    if unfinished:
        raise RuntimeError(f"{unfinished} of {len(rows)} jobs did not finish")
    starts = [utcparse(row[0].decode()) for row in rows]
    ends = [utcparse(row[1].decode()) for row in rows]
    return (max(ends) - min(starts)).total_seconds()


# A no-op round's runs stay in Redis to be timed and their commands counted: a loaded round
# outlasts the 30 s after which a finished run moves to history (history_move_lag_s measures
# the move).
KEEP = {"RUNNER_HISTORY_DELAY_SECONDS": "3600"}


def drain_runner(env: BenchEnv, n: int) -> Drained:
    """N distinct `noop` runs (args {"i": i}) drained by `runner worker --burst`."""
    env.flush()
    settings = env.settings()
    enqueuer, task = Enqueuer(env.redis, settings), noop_task()
    enqueued = []
    for part in chunks(n):
        enqueued += enqueuer.enqueue_many([Request(task, {"i": i}) for i in part])
    cpu_before = env.redis_cpu_seconds()
    env.redis.config_resetstat()
    env.runner_worker(env.sqlite_url("noop"), environ=KEEP).wait(timeout=120 + n / 20)
    found = server_figures(env, n, cpu_before)
    return replace(found, jobs_per_s=n / run_span(env, Keys(settings.prefix), enqueued))


def run_span(env: BenchEnv, keys: Keys, enqueued: Sequence[Enqueued]) -> float:
    """Seconds from the first run's start to the last run's end; raises if any did not succeed."""
    pipe = env.redis.pipeline(transaction=False)
    for e in enqueued:
        pipe.hmget(keys.run(e.token), "state", "started_at", "finished_at")
    rows = pipe.execute()
    failed = sum(1 for row in rows if row[0] != b"succeeded")
    if failed:
        raise RuntimeError(f"{failed} of {len(rows)} noop runs did not succeed")
    return max(float(row[2]) for row in rows) - min(float(row[1]) for row in rows)


def drain_rq(env: BenchEnv, n: int, kind: str) -> Drained:
    """N no-op RQ jobs (JSON serializer, kwargs {"i": i}) drained by a burst RQ worker."""
    env.flush()
    queue = Queue(RQ_QUEUE, connection=env.redis, serializer=JSONSerializer)
    job_ids = []
    for part in chunks(n):
        jobs = queue.enqueue_many([Queue.prepare_data(NOOP, kwargs={"i": i}) for i in part])
        job_ids += [job.id for job in jobs]
    cpu_before = env.redis_cpu_seconds()
    env.redis.config_resetstat()
    env.rq_worker(kind, RQ_QUEUE).wait(timeout=120 + n / 5)
    found = server_figures(env, n, cpu_before)
    return replace(found, jobs_per_s=n / rq_span(env, job_ids))


def noop_throughput(env: BenchEnv, n: int, count: int) -> list[dict[str, Drained]]:
    """`count` interleaved rounds of Drained for `runner`, `simple` (SimpleWorker), `fork`
    (Worker): the same jobs, the same JSON serializer, the same RQ logging level (WARNING),
    the same Redis on the same unix socket; and `celery` (its solo pool, scripts.bench_celery:
    jobs/s only)."""
    sides = {
        "runner": lambda: drain_runner(env, n),
        "simple": lambda: drain_rq(env, n, "simple"),
        "fork": lambda: drain_rq(env, n, "fork"),
        "celery": lambda: Drained(jobs_per_s=bench_celery.drain(env, n), commands_per_job=0.0),
    }
    return rounds(sides, count)


def redis_cpu(env: BenchEnv, n: int, count: int) -> list[dict[str, Drained]]:
    """Redis CPU per no-op job: one warm-up round (not returned), then `count` interleaved
    rounds of `runner` and `simple` (SimpleWorker), as `noop_throughput` drains them."""
    sides = {
        "runner": lambda: drain_runner(env, n),
        "simple": lambda: drain_rq(env, n, "simple"),
    }
    rounds(sides, 1)
    return rounds(sides, count)


def engine_scripts() -> dict[str, str]:
    """The sha1 of every Lua script of the engine's packages -> its module and name."""
    modules = []
    for package in ("runner.runs", "runner.delivery", "runner.attempt", "runner.worker"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            modules.append(importlib.import_module(f"{package}.{info.name}"))
    return {sha: name.replace(":", ".") for sha, name in script_names(modules).items()}


def usec_by_script(env: BenchEnv, n: int) -> dict[str, float]:
    """µs per job of each command, a script's calls by script (SLOWLOG of every command, its
    time in the command alone), over one more runner round of `n` jobs."""
    env.flush()
    settings, task = env.settings(), noop_task()
    enqueuer = Enqueuer(env.redis, settings)
    for part in chunks(n):
        enqueuer.enqueue_many([Request(task, {"i": i}) for i in part])
    before = env.redis.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    env.redis.config_set("slowlog-max-len", 200 * n)
    env.redis.config_set("slowlog-log-slower-than", 0)
    env.redis.slowlog_reset()
    try:
        env.runner_worker(env.sqlite_url("noop"), environ=KEEP).wait(timeout=120 + n / 20)
        entries = env.redis.slowlog_get(200 * n)
    finally:
        env.redis.config_set("slowlog-log-slower-than", before)
    scripts, usec = engine_scripts(), collections.Counter[str]()
    for entry in entries:
        command = entry["command"]
        text = command.decode(errors="replace") if isinstance(command, bytes) else command
        words = text.split()
        name = words[0].lower()
        if name == "evalsha" and len(words) > 1:
            name = scripts.get(words[1], words[1][:8])
        usec[name] += entry["duration"] / n
    return dict(usec)


def has_concurrency_option() -> bool:
    """Whether this checkout's `runner worker` takes `--concurrency`."""
    command = [sys.executable, "-m", "runner", "worker", "--help"]
    shown = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    return "--concurrency" in shown.stdout


def drain_sleepers(env: BenchEnv, n: int, concurrency: int) -> float:
    """Jobs/s of N `sleep_50ms` runs drained by `runner worker --burst --concurrency C`."""
    env.flush()
    settings = env.settings().with_changes(tasks_module=bench_tasks.MODULE)
    enqueuer, task = Enqueuer(env.redis, settings), bench_tasks.registry.get("sleep_50ms")
    enqueued = []
    for part in chunks(n):
        enqueued += enqueuer.enqueue_many([Request(task, {"i": i}) for i in part])
    worker = env.runner_worker(
        env.sqlite_url("sleep"), extra=["--concurrency", str(concurrency)],
        tasks=bench_tasks.MODULE,
    )  # fmt: skip
    worker.wait(timeout=120 + n * bench_tasks.SLEEP_SECONDS * 2)
    return n / run_span(env, Keys(settings.prefix), enqueued)


def concurrency_throughput(env: BenchEnv, n: int, count: int) -> list[dict[str, float]]:
    """`count` interleaved rounds of 50 ms jobs/s with one horse (`one`) and four (`four`)."""
    sides = {"one": lambda: drain_sleepers(env, n, 1), "four": lambda: drain_sleepers(env, n, 4)}
    return rounds(sides, count)


def enqueue_runner(env: BenchEnv, n: int, *, bulk: bool) -> float:
    """Enqueues/s of the runner's idempotent enqueue: one call per item, or 500 per call."""
    env.flush()
    enqueuer, task = Enqueuer(env.redis, env.settings()), noop_task()
    started = time.perf_counter()
    if bulk:
        for part in chunks(n):
            enqueuer.enqueue_many([Request(task, {"i": i}) for i in part])
    else:
        for i in range(n):
            enqueuer.enqueue(Request(task, {"i": i}))
    return n / (time.perf_counter() - started)


def enqueue_rq(env: BenchEnv, n: int, *, bulk: bool) -> float:
    """Enqueues/s of RQ: `q.enqueue` per item, or `q.enqueue_many` of 500 (one pipeline)."""
    env.flush()
    queue = Queue(RQ_QUEUE, connection=env.redis, serializer=JSONSerializer)
    started = time.perf_counter()
    if bulk:
        for part in chunks(n):
            queue.enqueue_many([Queue.prepare_data(NOOP, kwargs={"i": i}) for i in part])
    else:
        for i in range(n):
            queue.enqueue(NOOP, i=i)
    return n / (time.perf_counter() - started)


def enqueue_throughput(env: BenchEnv, n: int, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` enqueues/s: runner_one, runner_bulk, rq_one, rq_bulk."""
    sides = {
        "runner_one": lambda: enqueue_runner(env, n, bulk=False),
        "rq_one": lambda: enqueue_rq(env, n, bulk=False),
        "runner_bulk": lambda: enqueue_runner(env, n, bulk=True),
        "rq_bulk": lambda: enqueue_rq(env, n, bulk=True),
    }
    return best_of(sides, repeats, key=float)
