"""The history's side of the bench: what a finished run leaves in Redis once it moved.

`runs` noop runs are drained by a real `runner worker --burst`, then moved to a fresh SQLite
history by the mover (in this process, its delay 0); the figure is `MEMORY USAGE` summed over
the keys that outlive an hour (no TTL, or one over an hour) and were not there before, per run.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.history import Copy, HistoryStore
from runner.runs.history_tables import HEAD, RUN_TABLES
from runner.runs.move import Mover
from runner.runs.search import Search, search_runs
from runner.tasks import load_registry
from runner.web.listing import RunFilter, runs_page
from scripts.bench_env import BenchEnv

HOUR = 3600


@dataclass(frozen=True)
class RedisBytes:
    """Bytes in Redis per finished run, before and after the move."""

    runs: int
    before_move: float
    after_move: float


def lasting_bytes(env: BenchEnv, *, ignore: set[bytes]) -> int:
    """MEMORY USAGE summed over the keys that outlive an hour, except `ignore`."""
    total = 0
    for key in env.redis.scan_iter(count=1000):
        if key in ignore:
            continue
        ttl = int(env.redis.ttl(key))
        if ttl == -1 or ttl > HOUR:
            total += int(env.redis.memory_usage(key, samples=0) or 0)
    return total


def redis_bytes_per_finished_run(env: BenchEnv, *, runs: int = 2_000) -> RedisBytes:
    env.flush()
    database_url = env.sqlite_url("history-content")
    settings = replace(env.settings(database_url), history_url=env.sqlite_url("history"),
                       history_delay_seconds=0.0)  # fmt: skip
    there = set(env.redis.scan_iter(count=1000))
    noop = load_registry("jobs").get("noop")
    enqueuer = Enqueuer(env.redis, settings)
    for start in range(0, runs, 500):
        enqueuer.enqueue_many([Request(noop, {"i": i}) for i in range(start, start + 500)])
    env.runner_worker(database_url).wait(timeout=120 + runs / 20)
    before = lasting_bytes(env, ignore=there)
    mover = Mover(env.redis, settings)
    while mover.move_once():
        pass
    after = lasting_bytes(env, ignore=there)
    return RedisBytes(runs, before / runs, after / runs)


# -- a million finished runs in history: the runs page, search, and the move's lag ----------

SEED_VERSION = 1  # bump when the seeded runs change: the cached file is then seeded again
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "site-runner"
PG_SCHEMA = "runner_bench_history"  # kept between runs, as the SQLite file is
SPAN = 14 * 86400.0  # the seeded runs were created over this long, up to now
FAILED_EVERY, CANCELLED_EVERY = 12, 50  # about 8% failed, 2% cancelled


def feed_name(i: int) -> str:
    """The file name run `i` imported (unique to it)."""
    return f"export-{i:07d}.jsonl"


def synthetic_copy(i: int, *, runs: int, now: float) -> Copy:
    """Run `i` of `runs` as the mover copies it: an import of one feed URL, its two steps and
    four log events; every FAILED_EVERY-th failed, every CANCELLED_EVERY-th cancelled."""
    created = now - SPAN + SPAN * i / runs
    state = (RunState.FAILED if i % FAILED_EVERY == 0 else
             RunState.CANCELLED if i % CANCELLED_EVERY == 0 else RunState.SUCCEEDED)  # fmt: skip
    token = f"import_posts-{i:07d}"
    counters = {"inserted": i % 40, "updated": i % 7, "unchanged": 3, "stale": 0, "rejected": 1}
    run = {
        "token": token, "task": "import_posts", "queue": "imports", "state": str(state),
        "args": json.dumps({"source": f"https://feeds.example.com/site-{i % 5000:04d}/"
                            f"{feed_name(i)}"}),
        "attempt": "1", "timeout": "3600", "max_attempts": "5", "generation": "0",
        "job_id": f"{i:08x}-0000-4000-8000-{i:012x}", "worker": "web-1.4021",
        "code_version": "3f2a9c1", "created_at": repr(created), "updated_at": repr(created + 4),
        "started_at": repr(created + 0.2), "finished_at": repr(created + 4),
        "counters": json.dumps(counters), "total": "51",
        "cursor": json.dumps({"line": 51}),
    }  # fmt: skip
    if state == RunState.FAILED:
        run["error"] = json.dumps(
            {
                "type": "PermanentError",
                "message": f"line {i % 997}: missing field 'title' in {feed_name(i)}",
            }
        )
    steps = {name: json.dumps({"result": None, "attempt": 1, "seconds": 1.5,
                               "finished_at": created + n}) for n, name in
             enumerate(("fetch", "import"), 1)}  # fmt: skip
    events = ["run.started", "step.finished", "step.finished", f"run.{state}"]
    log = [(f"{int(created * 1000) + n}-0", {"event": e, "level": "info", "token": token})
           for n, e in enumerate(events)]  # fmt: skip
    return Copy(token, run, steps, log)


def seed(
    store: HistoryStore, runs: int, *, batch: int = 20_000,
    analyze: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """Write `runs` synthetic finished runs through the history writer, `batch` at a time;
    `analyze` (a database's statistics refreshed) after the first batch and every 200,000."""
    now = time.time()
    started = time.monotonic()
    for start in range(0, runs, batch):
        store.write([synthetic_copy(i, runs=runs, now=now)
                     for i in range(start, min(runs, start + batch))])  # fmt: skip
        if start % 200_000 == 0:
            if analyze is not None:
                analyze()
            print(f"   seeded {start + batch:,} runs in {time.monotonic() - started:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip


def seeded_sqlite(settings: Settings, runs: int) -> str:
    """The URL of a SQLite history of `runs` seeded runs, cached under ~/.cache (seeded once
    per size, seed version and schema revision)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"bench-history-{runs}-{HEAD}-v{SEED_VERSION}.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        store = HistoryStore(replace(settings, history_url=f"sqlite:///{partial}"))
        seed(store, runs)
        assert store.engine is not None
        store.engine.dispose()
        partial.rename(path)
    return f"sqlite:///{path}"


def seeded_postgres(base: str, runs: int) -> str:
    """The URL of a PostgreSQL history of `runs` seeded runs in schema PG_SCHEMA, kept between
    runs (seeded again when its size or revision differs)."""
    admin = sa.create_engine(sa.make_url(base).set(drivername="postgresql+psycopg"))
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={PG_SCHEMA}"})
    rendered = url.render_as_string(hide_password=False)
    want = f"{runs}-{HEAD}-v{SEED_VERSION}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
        had = conn.execute(sa.text("SELECT obj_description(CAST(:s AS regnamespace))"),
                           {"s": PG_SCHEMA}).scalar()  # fmt: skip
    if had != want:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {PG_SCHEMA} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
        tables = ", ".join(f"{PG_SCHEMA}.{t.name}" for t in RUN_TABLES)

        def analyze() -> None:  # without statistics (autovacuum off, as on the bench's
            # machine) the writer's lookup of 500 tokens is a sequential scan that grows
            # with the table, until one passes the history's 5 s statement timeout
            with admin.begin() as conn:
                conn.execute(sa.text(f"ANALYZE {tables}"))

        store = HistoryStore(Settings(history_url=rendered))
        seed(store, runs, analyze=analyze)
        assert store.engine is not None
        store.engine.dispose()
        analyze()
        with admin.begin() as conn:
            conn.execute(sa.text(f"COMMENT ON SCHEMA {PG_SCHEMA} IS '{want}'"))
    admin.dispose()
    return rendered


@dataclass(frozen=True)
class Timings:
    """Milliseconds of one reader call over `runs` runs: the median and the slowest."""

    runs: int
    median_ms: float
    worst_ms: float


def timed(call: Callable[[int], object], *, rounds: int = 15) -> Timings:
    """`call(round)` `rounds` times after two unmeasured calls."""
    call(-1)
    call(-2)
    took = []
    for n in range(rounds):
        started = time.perf_counter()
        call(n)
        took.append((time.perf_counter() - started) * 1000)
    return Timings(0, statistics.median(took), max(took))


def runs_page_and_search(
    env: BenchEnv, history_url: str, runs: int
) -> tuple[Timings, Timings, Timings]:
    """The console's first runs page (per-state counts included), a search for one feed's
    file name, and one for an error text every FAILED_EVERY-th run has (the newest 50 of
    them), over a history of `runs` runs (Redis empty)."""
    env.flush()
    settings = replace(env.settings(), history_url=history_url)
    store = HistoryStore(settings)
    try:
        page = timed(lambda n: runs_page(env.redis, settings, RunFilter(), history=store))
        wanted = [feed_name((n * 7919 + 12345) % runs) for n in range(-2, 15)]
        searched = timed(lambda n: search_runs(env.redis, settings, store,
                                               Search(wanted[n + 2])))  # fmt: skip
        common = timed(lambda n: search_runs(env.redis, settings, store,
                                             Search("missing field")), rounds=3)  # fmt: skip
        one = search_runs(env.redis, settings, store, Search(wanted[5]))
        assert [r.token for r in one] == [f"import_posts-{(3 * 7919 + 12345) % runs:07d}"], one
    finally:
        if store.engine is not None:
            store.engine.dispose()
    return replace(page, runs=runs), replace(searched, runs=runs), replace(common, runs=runs)


@dataclass(frozen=True)
class MoveLag:
    """Seconds from a run's end to its leaving Redis, with the default settings."""

    runs: int
    p50: float
    p95: float
    delay: float


def move_lag(env: BenchEnv, *, runs: int = 200, over: float = 10.0) -> MoveLag:
    """`runs` noop runs enqueued over `over` seconds to a real `runner worker` (its relay moves
    them, every setting at its default: a fresh SQLite history under RUNNER_HOME); each run's
    lag is when it was seen gone from Redis (polled every 50 ms) minus its finished_at."""
    env.flush()
    settings = env.settings(env.sqlite_url("lag-content"))
    env.runner_worker(env.sqlite_url("lag-content"), burst=False, name="lag")
    noop = load_registry("jobs").get("noop")
    enqueuer = Enqueuer(env.redis, settings)
    keys = Keys(settings.prefix)
    tokens = []
    for i in range(runs):
        tokens.append(enqueuer.enqueue(Request(noop, {"lag": i})).token)
        time.sleep(over / runs)
    finished: dict[str, float] = {}
    gone: dict[str, float] = {}
    deadline = time.monotonic() + settings.history_delay_seconds + over + 60
    while len(gone) < runs and time.monotonic() < deadline:
        pipe = env.redis.pipeline(transaction=False)
        waiting = [t for t in tokens if t not in gone]
        for token in waiting:
            pipe.hget(keys.run(token), "finished_at")
        now = time.time()
        for token, ended in zip(waiting, pipe.execute(), strict=True):
            if ended:
                finished[token] = float(ended)
            elif token in finished:
                gone[token] = now
        time.sleep(0.05)
    if len(gone) < runs:
        raise RuntimeError(f"{runs - len(gone)} of {runs} runs still in Redis after the wait")
    lags = sorted(gone[t] - finished[t] for t in tokens)
    return MoveLag(runs, statistics.median(lags), lags[int(0.95 * (runs - 1))],
                   settings.history_delay_seconds)  # fmt: skip
