"""Profile a no-op job's cost in the horse (docs/performance.md, issue 24).

    .venv/bin/python scripts/profile_noop.py [N]        (from the repo root; N = 2,000 jobs)

N no-op runs are enqueued on a throwaway redis-server (the bench's environment), then one
in-process horse (`Horse` and `Executor`, as tests/conftest.py's `work` fixture builds them)
drains them under cProfile, its events going to /tmp/noop-events.log as a worker's stdout
would; it prints jobs/s under the profiler and the top functions by their own time, and
leaves the whole profile in /tmp/noop.prof (`python -m pstats`).
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `scripts.*` when run as a file

from rq.serializers import JSONSerializer

from runner.attempt.execute import Executor
from runner.runs.enqueue import Enqueuer, Request
from runner.tasks import load_registry
from runner.worker.horse import Horse
from scripts.bench_env import BenchEnv

OUT, LOG = Path("/tmp/noop.prof"), Path("/tmp/noop-events.log")


def main(n: int) -> None:
    with contextlib.ExitStack() as stack:
        env = BenchEnv.open(stack, lease_seconds=5.0)
        settings = env.settings(env.sqlite_url("profile"))
        registry = load_registry("jobs")
        enqueuer = Enqueuer(env.redis, settings)
        for start in range(0, n, 500):
            part = range(start, min(n, start + 500))
            enqueuer.enqueue_many([Request(registry.get("noop"), {"i": i}) for i in part])
        horse = Horse(["default"], connection=env.redis, serializer=JSONSerializer)
        horse.executor = Executor(env.redis, settings, registry, worker=horse.name)
        horse.executor.install()
        profile = cProfile.Profile()
        began = time.perf_counter()
        with LOG.open("w") as events, contextlib.redirect_stdout(events):  # as a worker's log
            profile.runcall(horse.work, burst=True, logging_level="WARNING")
        took = time.perf_counter() - began
        profile.dump_stats(OUT)
    print(f"{n / took:,.0f} jobs/s under cProfile ({took / n * 1e6:,.0f} µs a job)")
    pstats.Stats(str(OUT), stream=sys.stdout).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
