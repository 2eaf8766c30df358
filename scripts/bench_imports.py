"""Import measurements: against a plain script, crash recovery and redo, peak RSS, start-up.

Both sides are timed as a user runs them. The runner: `runner import FEED` (timed on its
own), then `runner worker --burst` from its spawn to its exit, start-up included, into an
empty database (the worker makes the schema). The plain script (`scripts/plain_import.py`,
what a user would write instead, pinned so that it cannot be made slow) as its own process,
`python plain_import.py FEED DB` from spawn to exit, into a fresh database whose `posts`
table the store's DDL made. Both read the same file in the same run.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from jobs.database import make_engine
from jobs.imports import BATCH_SIZE
from jobs.revisions import upgrade
from jobs.sources import resolve
from jobs.store import posts
from runner.config import Settings
from runner.record import RunRecord
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from scripts.bench_env import ROOT, BenchEnv, Proc, postgres_schema, wait_until

BATCH = BATCH_SIZE  # the import's default: redo is counted in its batches
MB = 1024 * 1024
WRITE_COUNTER = (
    "CREATE TABLE bench_writes (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT INTO bench_writes VALUES (1, 0)",
    "CREATE TRIGGER bench_posts_inserted AFTER INSERT ON posts"
    " BEGIN UPDATE bench_writes SET n = n + 1 WHERE id = 1; END",
    "CREATE TRIGGER bench_posts_updated AFTER UPDATE ON posts"
    " BEGIN UPDATE bench_writes SET n = n + 1 WHERE id = 1; END",
)


@dataclass(frozen=True)
class ImportRun:
    seconds: float  # the burst worker's spawn -> its exit
    enqueue_s: float  # `runner import FEED`'s spawn -> its exit
    upsert_posts_per_s: float  # N / `upsert` step seconds


@dataclass(frozen=True)
class Crash:
    recovery_s: float  # SIGKILL -> the cursor advancing under the next attempt
    redo_batches: float  # (committed writes to posts - N) / batch size
    writes: int
    cursor_at_kill: int


@dataclass(frozen=True)
class Rss:
    horse_mb: float  # the horse's peak RSS
    tree_mb: float  # peak RSS of supervisor + horse together
    posts_per_s: float


def prepare_store(url: str, *, count_writes: bool = False) -> None:
    """Create the content schema (and, for SQLite, the bench's write counter) before a run."""
    engine = make_engine(url)
    upgrade(engine)
    if count_writes:
        with engine.begin() as conn:
            for statement in WRITE_COUNTER:
                conn.exec_driver_sql(statement)
    engine.dispose()


def enqueue_import(env: BenchEnv, settings: Settings, path: Path) -> str:
    """Enqueue `import_posts` for a feed file the way `runner import` does; returns the token."""
    [source] = resolve(str(path))
    task = load_registry("jobs").get("import_posts")
    request = Request(task, {"source": source.location}, source.token)
    return Enqueuer(env.redis, settings).enqueue(request).token


def runs_of(env: BenchEnv, settings: Settings) -> Runs:
    return Runs(env.redis, settings)


def succeeded(runs: Runs, token: str, n: int) -> RunRecord:
    """The finished run; raises RuntimeError unless it succeeded with exactly N inserted."""
    record = runs.get(token)
    if record is None or record.state != "succeeded" or record.result["inserted"] != n:
        shown = (record.state, record.result, record.error) if record else None
        raise RuntimeError(f"import run {token} did not insert {n} posts: {shown}")
    return record


def runner_import(env: BenchEnv, url: str, n: int) -> ImportRun:
    """Import an N-post feed: `runner import FEED`, then `runner worker --burst` from its
    spawn to its exit (start-up included), into an empty database at `url`."""
    env.flush()
    settings = env.settings(url)
    path = env.feed(n)
    started = time.perf_counter()
    env.start([sys.executable, "-m", "runner", "import", str(path)], env.runner_env(url),
              "runner-import").wait(timeout=120)  # fmt: skip
    spawned = time.perf_counter()
    env.runner_worker(url).wait(timeout=300 + n / 50)
    exited = time.perf_counter()
    [source] = resolve(str(path))
    runs = runs_of(env, settings)
    succeeded(runs, source.token, n)
    upsert = runs.steps(source.token)["upsert"]["seconds"]
    return ImportRun(exited - spawned, spawned - started, n / upsert)


def worker_startup(env: BenchEnv, repeats: int) -> float:
    """The best of `repeats` burst workers on an empty queue, spawn to exit (SQLite store)."""
    url = env.sqlite_url("startup")
    best = float("inf")
    for _ in range(repeats):
        env.flush()
        started = time.perf_counter()
        env.runner_worker(url).wait(timeout=120)
        best = min(best, time.perf_counter() - started)
    env.drop_sqlite(url)
    return best


def naive_import(env: BenchEnv, url: str, path: Path, n: int) -> float:
    """Seconds of the plain script, `python scripts/plain_import.py FEED DB` from its spawn to
    its exit, on a fresh database whose `posts` table the store's own DDL made; raises
    RuntimeError unless it stored N posts."""
    engine = make_engine(url)  # the store's settings: WAL on SQLite
    posts.create(engine)
    engine.dispose()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plain_import.py"), str(path), url],
        env=env.base_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    stored = done.stdout.strip()
    if done.returncode != 0 or stored != str(n):
        raise RuntimeError(f"the plain script stored {stored or '?'} posts, not {n}: "
                           f"{done.stderr.strip().splitlines()[-1:]}")  # fmt: skip
    return elapsed


@contextlib.contextmanager
def fresh_store(env: BenchEnv, backend: str, postgres_url: str | None) -> Iterator[str]:
    """A fresh, empty database: a new SQLite file (deleted after) or a PostgreSQL schema."""
    if backend == "postgres":
        assert postgres_url is not None
        with postgres_schema(postgres_url) as url:
            yield url
        return
    url = env.sqlite_url("import")
    try:
        yield url
    finally:
        env.drop_sqlite(url)


def import_throughput(
    env: BenchEnv, n: int, repeats: int, backend: str, postgres_url: str | None = None
) -> tuple[ImportRun, float]:
    """Best-of-`repeats` (runner ImportRun, naive seconds) on `backend`, alternating the order."""
    path = env.feed(n)
    best_runner: ImportRun | None = None
    best_naive = float("inf")
    for rep in range(repeats):
        for side in ("runner", "naive") if rep % 2 == 0 else ("naive", "runner"):
            with fresh_store(env, backend, postgres_url) as url:
                if side == "naive":
                    best_naive = min(best_naive, naive_import(env, url, path, n))
                    continue
                run = runner_import(env, url, n)
                if best_runner is None or run.seconds < best_runner.seconds:
                    best_runner = run
    assert best_runner is not None
    return best_runner, best_naive


def horse_ready(env: BenchEnv, name: str) -> bool:
    """Whether the horse of worker `name` has registered with RQ (and so listens)."""
    return any(f"rq:worker:{name}.horse" in m.decode() for m in env.redis.smembers("rq:workers"))


def crash_import(env: BenchEnv, n: int) -> Crash:
    """SIGKILL worker A half-way through an N-post import while worker B runs; B resumes it."""
    env.flush()
    url = env.sqlite_url("crash")
    settings = env.settings(url)
    prepare_store(url, count_writes=True)
    token = enqueue_import(env, settings, env.feed(n))
    runs = runs_of(env, settings)
    first = env.runner_worker(url, burst=False, name="bench-a")
    wait_until(lambda: (r := runs.get(token)) and r.state == "running", timeout=60, what="A")
    second = env.runner_worker(url, burst=False, name="bench-b")
    wait_until(lambda: horse_ready(env, "bench-b"), timeout=60, what="worker B's horse")
    wait_until(lambda: (runs.get(token).cursor or 0) >= n // 2, timeout=600, what="half-way")
    killed_at = time.monotonic()
    first.kill()
    seen = runs.get(token)
    assert seen is not None
    if seen.state != "running" or seen.cursor >= n:
        raise RuntimeError(f"the import was over before the SIGKILL ({seen.state}); raise N")
    wait_until(
        lambda: (r := runs.get(token)).attempt > seen.attempt and (r.cursor or 0) > seen.cursor,
        timeout=4 * env.lease_seconds + 60, what="the next attempt to make progress",
    )  # fmt: skip
    recovery = time.monotonic() - killed_at
    wait_until(lambda: runs.get(token).state != "running", timeout=600, what="the import to end")
    succeeded(runs, token, n)
    second.kill()
    engine = make_engine(url)
    with engine.connect() as conn:
        writes = int(conn.exec_driver_sql("SELECT n FROM bench_writes").scalar_one())
    engine.dispose()
    env.drop_sqlite(url)
    return Crash(recovery, (writes - n) / BATCH, writes, int(seen.cursor))


def sample_rss(proc: Proc) -> tuple[int, int]:
    """Sample the worker's process tree every 0.1 s until it exits: (horse peak, tree peak)."""
    supervisor = psutil.Process(proc.pid)
    horse_peak = tree_peak = 0
    while proc.popen.poll() is None:
        with contextlib.suppress(psutil.Error):
            children = [c.memory_info().rss for c in supervisor.children(recursive=True)]
            horse_peak = max(horse_peak, *children, 0)
            tree_peak = max(tree_peak, supervisor.memory_info().rss + sum(children))
        time.sleep(0.1)
    return horse_peak, tree_peak


def peak_rss(env: BenchEnv, n: int) -> Rss:
    """Peak RSS of `runner worker --burst` importing an N-post feed into SQLite."""
    env.flush()
    url = env.sqlite_url("rss")
    settings = env.settings(url)
    prepare_store(url)
    token = enqueue_import(env, settings, env.feed(n))
    proc = env.runner_worker(url)
    horse, tree = sample_rss(proc)
    proc.wait(timeout=10)
    runs = runs_of(env, settings)
    succeeded(runs, token, n)
    upsert = runs.steps(token)["upsert"]["seconds"]
    env.drop_sqlite(url)
    return Rss(horse / MB, tree / MB, n / upsert)
