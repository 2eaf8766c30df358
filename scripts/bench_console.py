"""The console's side of the bench: how long /runs takes to answer with 100,000 runs in Redis.

Runs are made the way the runner makes them: `Enqueuer.enqueue_many` (import_posts runs of
files that do not exist, interleaved with no-op runs left queued), then a real burst worker
fails the imports (the fetch step finds no file), so every record and index is the engine's
own. Requests go through the whole app (guard, routing, templates) with FastAPI's TestClient.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
import time
from dataclasses import dataclass, replace

from fastapi.testclient import TestClient

from runner.runs.enqueue import Enqueuer, Request
from runner.tasks import load_registry
from runner.web import create_app
from scripts.bench_env import BenchEnv, wait_until

PAGES = ("/runs?state=failed&task=import_posts", "/runs")
IMPORT_EVERY = 50  # one import run in 50: 2,000 failed imports among 100,000 runs
BATCH = 1_000


@dataclass(frozen=True)
class ConsoleTimes:
    """Median milliseconds per page (of `repeats` requests after one warm-up)."""

    pages_ms: dict[str, float]
    runs: int
    failed: int

    @property
    def slowest_ms(self) -> float:
        return max(self.pages_ms.values())


def runs_page_ms(env: BenchEnv, runs: int, *, repeats: int = 7) -> ConsoleTimes:
    env.flush()
    database = env.sqlite_url("console")
    settings = replace(env.settings(database), queues=("imports",))
    registry = load_registry("jobs")
    imports, noop = registry.get("import_posts"), registry.get("noop")
    noop = replace(noop, queue="parked")  # queued for ever: no worker listens to it
    enqueuer = Enqueuer(env.redis, settings)
    for start in range(0, runs, BATCH):
        requests = [
            Request(imports, {"source": f"/nonexistent/feed-{i}.jsonl"})
            if i % IMPORT_EVERY == 0
            else Request(noop, {"n": i})
            for i in range(start, min(runs, start + BATCH))
        ]
        enqueuer.enqueue_many(requests)
    worker = env.runner_worker(database, name="console-bench")
    worker.wait(timeout=600)
    failed = -(-runs // IMPORT_EVERY)
    client = TestClient(create_app(settings, redis=env.redis), base_url="http://127.0.0.1")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request otherwise
    wait_until(lambda: _count_failed(client) > 0, timeout=10, what="failed imports listed")
    times: dict[str, float] = {}
    for page in PAGES:
        client.get(page)  # warm-up: templates compiled, scripts loaded
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            answer = client.get(page)
            samples.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text[:200]
        times[page] = round(statistics.median(samples), 1)
    return ConsoleTimes(times, runs, failed)


def _count_failed(client: TestClient) -> int:
    return client.get(PAGES[0]).text.count('class="token" href="/runs/')


def main(argv: list[str]) -> int:
    """`python -m scripts.bench_console [RUNS]`: this measurement alone (default 100,000)."""
    runs = int(argv[0]) if argv else 100_000
    with contextlib.ExitStack() as stack:
        env = BenchEnv.open(stack, lease_seconds=5.0)
        times = runs_page_ms(env, runs)
    for page, ms in times.pages_ms.items():
        print(f"{page}: {ms:.0f} ms (median of 7, {times.runs:,} runs)")
    print(f"console_runs_page_ms {times.slowest_ms:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
