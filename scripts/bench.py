"""Benchmark the runner against plain RQ and a naive import script, side by side, on one machine.

    .venv/bin/python scripts/bench.py [--quick] [--only ROW[,ROW]]   (from the repo root)

after ./scripts/test. `--only import_vs_naive_sqlite,url_enqueue_s` runs the sections that
yield those rows, alone.

Before anything is timed, the project's and the installed packages' bytecode is compiled, so
that no side pays for writing .pyc files. One embedded redis-server (in a temp dir) serves
every measurement; it is flushed before each.
Workers run as real processes (`runner worker --burst`, RQ's Worker and SimpleWorker) with
their logs in files. The no-op and 50 ms job ratios are the median of interleaved rounds (each
round measures every side back to back, the order reversed each round); the enqueue figures
the best of 2-3 runs, the order of the sides alternating.
Set RUNNER_TEST_POSTGRES_URL to also measure imports into PostgreSQL (a fresh schema each).

Prints a table (runner, baseline, ratio, target), the definitions, the machine, and as its last
line one JSON object with the headline figures. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `scripts.*` when run as a file

from scripts import (
    bench_console,
    bench_drain,
    bench_history,
    bench_imports,
    bench_index,
    bench_outbox,
    bench_queue,
    bench_urls,
)
from scripts.bench_env import POSTGRES_ENV, ROOT, BenchEnv, compile_bytecode, machine

LEASE_SECONDS = 5.0
COMMANDS_PER_JOB = 45  # a no-op job's budget (worker start and stop amortised: + 0.5 at most)
RSS_LIMIT_MB = 150.0
RSS_FLAT = 1.2  # peak at N may be at most 20% above the peak at N/10
NOOP_ROUNDS = 3  # no-op throughput: the median of this many interleaved rounds
REDIS_CPU_TARGET = 0.35  # Redis CPU per no-op job, runner over SimpleWorker: a target


@dataclass(frozen=True)
class Sizes:
    noop_jobs: int
    enqueue_items: int
    import_posts: int
    crash_posts: int
    rss_posts: int
    console_runs: int
    repeats: int  # enqueue throughput: best of this many
    import_repeats: int
    crash_repeats: int  # recovery and redo: the worst of this many
    sleep_jobs: int = 400  # 50 ms jobs per worker run, for --concurrency
    sleep_rounds: int = 3  # ... the median of this many rounds
    history_runs: int = 1_000_000  # finished runs in history for its page and search
    drain: bool = True  # the drain forecast against a real drain (about 12 minutes)


QUICK = Sizes(
    500, 2_000, 20_000, 20_000, 100_000, 20_000, repeats=2, import_repeats=1, crash_repeats=1,
    sleep_jobs=200, sleep_rounds=1, history_runs=100_000, drain=False,
)  # fmt: skip
FULL = Sizes(
    2_000,
    10_000,
    100_000,
    50_000,
    1_000_000,
    100_000,
    repeats=3,
    import_repeats=2,
    crash_repeats=2,
)


@dataclass(frozen=True)
class Row:
    """One line of the table; `key` and `value` also go into the final JSON object."""

    key: str
    runner: str
    baseline: str
    value: float | None
    target: str
    ok: bool | None


def ratio_row(key: str, runner: float, baseline: float, unit: str, *, at_least: float) -> Row:
    ratio = runner / baseline
    return Row(
        key, f"{runner:,.0f} {unit}", f"{baseline:,.0f} {unit}", round(ratio, 3),
        f">= {at_least:g}", ratio >= at_least,
    )  # fmt: skip


def failed_rows(keys: list[str], reason: str) -> list[Row]:
    return [Row(key, "error", reason[:60], None, "", False) for key in keys]


def median_row(
    key: str, results: list[dict[str, Any]], side: str, baseline: str, *, at_least: float,
    value: Callable[[Any], float], unit: str,
) -> Row:  # fmt: skip
    """The median over rounds of the paired ratio side/baseline; the jobs/s shown are the
    medians of each side."""
    ratio = bench_queue.median_ratio(results, side, baseline, value)
    runner = statistics.median(value(r[side]) for r in results)
    base = statistics.median(value(r[baseline]) for r in results)
    return Row(
        key, f"{runner:,.0f} {unit}", f"{base:,.0f} {unit}", round(ratio, 3),
        f">= {at_least:g}", ratio >= at_least,
    )  # fmt: skip


def noop_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    results = bench_queue.noop_throughput(env, sizes.noop_jobs, NOOP_ROUNDS)
    jobs_per_s: Callable[[Any], float] = lambda d: d.jobs_per_s  # noqa: E731
    commands = {
        side: statistics.median(r[side].commands_per_job for r in results)
        for side in ("runner", "simple", "fork")
    }
    each = "; ".join(
        f"{side} " + ", ".join(f"{r[side].jobs_per_s:,.0f}" for r in results)
        for side in ("runner", "simple", "fork", "celery")
    )
    notes.append(
        f"noop: {sizes.noop_jobs:,} jobs per worker run, {NOOP_ROUNDS} interleaved rounds, the"
        " ratio is the median of the rounds' ratios; jobs/s = jobs / (first job start -> last"
        " job end: RQ job started_at/ended_at; runner run started_at/finished_at; Celery: its"
        " task's first and N-th call, scripts/bench_celery.py: `celery worker --pool solo -c 1"
        " -l WARNING`, Redis broker, no result backend, default prefetch); the RQ sides on the"
        " JSON serializer, RQ logging at WARNING; every side on the same unix socket; per round:"
        f" {each} jobs/s. Redis commands per job (INFO commandstats, Lua inner calls included,"
        f" worker start and stop amortised, median): runner {commands['runner']:.1f},"
        f" SimpleWorker {commands['simple']:.1f}, Worker {commands['fork']:.1f}"
    )
    return [
        median_row("noop_vs_simpleworker", results, "runner", "simple", at_least=1.5,
                   value=jobs_per_s, unit="jobs/s"),
        median_row("noop_vs_worker", results, "runner", "fork", at_least=3.0,
                   value=jobs_per_s, unit="jobs/s"),
        median_row("noop_vs_celery_solo", results, "runner", "celery", at_least=0.9,
                   value=jobs_per_s, unit="jobs/s"),
        Row("redis_commands_per_job", f"{commands['runner']:.1f}",
            f"SimpleWorker {commands['simple']:.1f}", round(commands["runner"], 1),
            f"<= {COMMANDS_PER_JOB}", commands["runner"] <= COMMANDS_PER_JOB + 0.5),
    ]  # fmt: skip


def usec_breakdown(results: list[dict[str, Any]], side: str, top: int = 6) -> str:
    """`side`'s costliest commands by INFO commandstats µs per job (the mean over rounds; a
    script's total includes the commands it runs, which are also listed on their own)."""
    names = {name for r in results for name in r[side].usec_by_command} - {"info", "config"}
    mean = {n: statistics.mean(r[side].usec_by_command.get(n, 0.0) for r in results) for n in names}
    costliest = sorted(mean.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name} {us:.1f}" for name, us in costliest)


def redis_cpu_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    results = bench_queue.redis_cpu(env, sizes.noop_jobs, NOOP_ROUNDS)
    cpu: Callable[[Any], float] = lambda d: d.redis_cpu_us  # noqa: E731
    ratio = bench_queue.median_ratio(results, "runner", "simple", cpu)
    runner = statistics.median(cpu(r["runner"]) for r in results)
    simple = statistics.median(cpu(r["simple"]) for r in results)
    each = "; ".join(
        f"{side} " + ", ".join(f"{cpu(r[side]):.0f}" for r in results)
        for side in ("runner", "simple")
    )
    notes.append(
        f"redis cpu: the redis-server's used_cpu_sys + used_cpu_user (INFO cpu) from CONFIG"
        f" RESETSTAT to the burst worker's exit, over its {sizes.noop_jobs:,} no-op jobs; one"
        f" warm-up round, then {NOOP_ROUNDS} interleaved rounds, the median of the rounds'"
        f" ratios; per round: {each} µs per job. INFO commandstats µs per job, costliest:"
        f" runner {usec_breakdown(results, 'runner')}; SimpleWorker"
        f" {usec_breakdown(results, 'simple')}"
    )
    scripts = bench_queue.usec_by_script(env, sizes.noop_jobs)
    costliest = sorted(scripts.items(), key=lambda item: -item[1])[:8]
    notes.append(
        "redis cpu, the runner's µs per job by command, a script's by script (its inner"
        " commands included, and also listed on their own), SLOWLOG of every command over"
        " one more round: " + ", ".join(f"{name} {us:.1f}" for name, us in costliest)
    )
    return [
        Row("redis_cpu_vs_simpleworker", f"{runner:.0f} µs/job", f"{simple:.0f} µs/job",
            round(ratio, 3), f"<= {REDIS_CPU_TARGET:g}", ratio <= REDIS_CPU_TARGET),
    ]  # fmt: skip


def round_trip_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    env.flush()
    command = [sys.executable, "-m", "scripts.bench_trips", str(sizes.noop_jobs)]
    done = subprocess.run(
        command, env=env.runner_env(env.sqlite_url("trips")), cwd=ROOT, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench_trips failed: {done.stderr.strip().splitlines()[-1:]}")
    trips = json.loads(done.stdout.strip().splitlines()[-1])

    def kinds(side: str) -> str:
        return ", ".join(f"{name} x{count:g}" for name, count in trips[f"{side}_kinds"][:12])

    notes.append(
        f"round trips: the horse's client instrumented (one per command, pipeline or Lua call"
        f" sent), {sizes.noop_jobs:,} no-op jobs drained by a burst minus an idle burst, per"
        f" job (heartbeats at their real rate). Runner: {kinds('runner')}. SimpleWorker,"
        f" {trips['simple']:g}: {kinds('simple')}"
    )
    return [
        Row("round_trips_per_job", f"{trips['runner']:g}", f"SimpleWorker {trips['simple']:g}",
            trips["runner"], "<= 3", trips["runner"] <= 3),
    ]  # fmt: skip


def concurrency_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    key = "concurrency_4_vs_1"
    if not bench_queue.has_concurrency_option():
        notes.append(f"{key}: missing, `runner worker` has no --concurrency option yet")
        return [Row(key, "missing", "no --concurrency", None, ">= 3.5", None)]
    results = bench_queue.concurrency_throughput(env, sizes.sleep_jobs, sizes.sleep_rounds)
    notes.append(
        f"concurrency: {sizes.sleep_jobs:,} jobs of one 50 ms sleep step, drained by `runner"
        f" worker --burst --concurrency 4` vs `--concurrency 1`; median of {len(results)}"
        " interleaved rounds; jobs/s as for noop"
    )
    return [median_row(key, results, "four", "one", at_least=3.5, value=float, unit="jobs/s")]


def enqueue_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    best = bench_queue.enqueue_throughput(env, sizes.enqueue_items, sizes.repeats)
    notes.append(
        f"enqueue: {sizes.enqueue_items:,} distinct no-op jobs; one at a time: Enqueuer.enqueue"
        " vs q.enqueue; bulk: Enqueuer.enqueue_many vs q.enqueue_many(prepare_data), 500 a call"
    )
    return [
        ratio_row("enqueue_vs_rq", best["runner_one"], best["rq_one"], "/s", at_least=0.8),
        ratio_row("bulk_enqueue_vs_rq", best["runner_bulk"], best["rq_bulk"], "/s", at_least=0.8),
    ]


IMPORT_TARGETS = {"sqlite": 0.8, "postgres": 0.9}


def import_row(
    env: BenchEnv, sizes: Sizes, notes: list[str], backend: str, *, n: int, key: str
) -> Row:
    target = IMPORT_TARGETS[backend]
    postgres = os.environ.get(POSTGRES_ENV) or None
    if backend == "postgres" and postgres is None:
        return Row(key, "not run", f"set {POSTGRES_ENV}", None, f">= {target:g}", None)
    run, naive = bench_imports.import_throughput(env, n, sizes.import_repeats, backend, postgres)
    notes.append(
        f"{key}: {n:,} posts; runner = `runner worker --burst` from its spawn to its exit,"
        f" start-up included ({run.seconds:.2f} s; its `upsert` step"
        f" {run.upsert_posts_per_s:,.0f} posts/s; the `runner import FEED` before it"
        f" {run.enqueue_s:.2f} s, not counted); plain = `python scripts/plain_import.py FEED"
        " DB` from its spawn to its exit: stdlib json.loads per line, meta json.dumps, hash"
        f" sha256 of the line, executemany upsert 500 per transaction, no validation"
        f" ({naive:.2f} s); best of {sizes.import_repeats}, the order alternating"
    )
    return ratio_row(key, n / run.seconds, n / naive, "posts/s", at_least=target)


def startup_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    startup = bench_imports.worker_startup(env, repeats=3)
    check_s = 3.0  # RUNNER_URL_CHECK_SECONDS' default
    enqueue = bench_urls.url_enqueue_seconds(env, repeats=2)
    notes.append(
        "worker_startup_s: `runner worker --burst` on an empty queue, spawn to exit, best of 3;"
        " url_enqueue_s: `runner import URL --json` against a local server that sends a byte"
        f" of its headers every {bench_urls.TRICKLE_S:g} s, spawn to exit, best of 2 (it must"
        " say queued)"
    )
    return [
        Row("worker_startup_s", f"{startup:.2f} s", "empty queue", round(startup, 2),
            "(information)", None),
        Row("url_enqueue_s", f"{enqueue:.2f} s", "trickled headers", round(enqueue, 2),
            f"<= {check_s + 1:g} s", enqueue <= check_s + 1),
    ]  # fmt: skip


def crash_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    crashes = [
        bench_imports.crash_import(env, sizes.crash_posts) for _ in range(sizes.crash_repeats)
    ]
    recovery = max(c.recovery_s for c in crashes)
    worst = max(crashes, key=lambda c: c.redo_batches)
    limit = 2 * LEASE_SECONDS
    notes.append(
        f"crash: {sizes.crash_posts:,}-post SQLite import, worker A's process group SIGKILLed"
        f" once its cursor passed half-way (at {[c.cursor_at_kill for c in crashes]}), worker B"
        " already running; recovery = SIGKILL -> cursor advancing under the next attempt;"
        f" redo = (committed writes to posts, counted by triggers, - N) / {bench_imports.BATCH:,}"
        f" (the import's batch); worst of"
        f" {len(crashes)}"
    )
    return [
        Row("recovery_s", f"{recovery:.1f} s", f"lease {LEASE_SECONDS:g} s", round(recovery, 2),
            f"<= {limit:g} s", recovery <= limit),
        Row("redo_batches", f"{worst.writes:,} writes", f"{sizes.crash_posts:,} posts",
            worst.redo_batches, "<= 1", worst.redo_batches <= 1),
    ]  # fmt: skip


def rss_row(env: BenchEnv, sizes: Sizes, notes: list[str]) -> Row:
    big_n, small_n = sizes.rss_posts, sizes.rss_posts // 10
    small = bench_imports.peak_rss(env, small_n)
    big = bench_imports.peak_rss(env, big_n)
    flat = big.horse_mb <= small.horse_mb * RSS_FLAT
    notes.append(
        f"peak RSS: the horse's peak (psutil, every 0.1 s) importing {big_n:,} and {small_n:,}"
        f" posts into SQLite; supervisor + horse: {big.tree_mb:.0f} / {small.tree_mb:.0f} MB;"
        f" {big.posts_per_s:,.0f} posts/s at {big_n:,}; flat = at most +20% for 10x the posts"
    )
    return Row(
        "peak_rss_mb", f"{big.horse_mb:.0f} MB @ {big_n:,}",
        f"{small.horse_mb:.0f} MB @ {small_n:,}",
        round(big.horse_mb, 1), f"<= {RSS_LIMIT_MB:g} MB, flat",
        big.horse_mb <= RSS_LIMIT_MB and flat,
    )  # fmt: skip


def console_row(env: BenchEnv, sizes: Sizes, notes: list[str]) -> Row:
    times = bench_console.runs_page_ms(env, sizes.console_runs)
    shown = ", ".join(f"{page} {ms:.0f} ms" for page, ms in times.pages_ms.items())
    notes.append(
        f"console: {times.runs:,} runs in Redis ({times.failed:,} failed import_posts, the rest"
        f" queued no-ops), made by Enqueuer.enqueue_many and a real worker; median of 7"
        f" requests through the whole app (TestClient): {shown}; the figure is the slower"
    )
    return Row(
        "console_runs_page_ms", f"{times.slowest_ms:.0f} ms", f"{times.runs:,} runs",
        times.slowest_ms, "<= 300 ms", times.slowest_ms <= 300,
    )  # fmt: skip


def index_row(env: BenchEnv, notes: list[str]) -> Row:
    times = bench_index.page_vs_list(env)
    notes.append(
        f"run index: a page of {bench_index.LIMIT} failed import_posts runs among"
        f" {times.runs:,}: RunIndex.page (the state/task indexes, one Lua call)"
        f" {times.index_ms:.1f} ms against a scan that reads records to filter"
        f" {times.list_ms:.1f} ms; median of 7"
    )
    return Row(
        "index_page_vs_list", f"{times.index_ms:.1f} ms", f"{times.list_ms:.1f} ms",
        round(times.speedup, 1), ">= 5", times.speedup >= 5,
    )  # fmt: skip


def outbox_row(env: BenchEnv, notes: list[str]) -> Row:
    delays = bench_outbox.relay_delays(env, env.sqlite_url("outbox"))
    notes.append(
        f"outbox relay: commit to queued in Redis for {len(delays.delays)} requests committed"
        f" 0-50 ms apart into a SQLite store, moved by a `runner worker`'s relay (a"
        f" {bench_outbox.POLL_SECONDS:g} s poll; LISTEN/NOTIFY on PostgreSQL): p50"
        f" {delays.p50:.3f} s, p95 {delays.p95:.3f} s"
    )
    return Row(
        "outbox_relay_p95_s", f"{delays.p95:.3f} s", f"p50 {delays.p50:.3f} s",
        round(delays.p95, 3), "<= 1", delays.p95 <= 1.0,
    )  # fmt: skip


def history_row(env: BenchEnv, notes: list[str]) -> Row:
    found = bench_history.redis_bytes_per_finished_run(env)
    notes.append(
        f"history: {found.runs:,} noop runs drained by `runner worker --burst`, then moved to a"
        f" SQLite history: MEMORY USAGE of the keys that outlive an hour, per run,"
        f" {found.before_move:,.0f} B before the move, {found.after_move:,.0f} B after"
    )
    return Row(
        "redis_bytes_per_finished_run", f"{found.after_move:,.0f} B",
        f"{found.before_move:,.0f} B before", round(found.after_move, 1), "<= 300",
        found.after_move <= 300,
    )  # fmt: skip


HISTORY_READ_MS = 300.0  # the runs page with its counts, and a search, over the history


def history_read_rows(env: BenchEnv, sizes: Sizes, notes: list[str]) -> list[Row]:
    n = sizes.history_runs
    backends: list[tuple[str, Callable[[], str]]] = [
        ("sqlite", lambda: bench_history.seeded_sqlite(env.settings(), n))
    ]
    if postgres := os.environ.get(POSTGRES_ENV):
        backends.append(("postgres", lambda: bench_history.seeded_postgres(postgres, n)))
    rows = []
    for backend, url in backends:
        page, search, common = bench_history.runs_page_and_search(env, url(), n)
        suffix = "" if backend == "sqlite" else "_postgres"
        notes.append(
            f"history ({backend}): {n:,} finished import runs written by HistoryStore.write"
            f" in batches of 20,000 (cached: ~/.cache/site-runner or schema"
            f" {bench_history.PG_SCHEMA}), Redis empty; the console's first runs page"
            f" (runs_page: Redis's indexes, then history's newest 50 and its per-state counts)"
            f" median {page.median_ms:.1f} ms, worst {page.worst_ms:.1f} ms; a search for one"
            f" feed's file name (search_runs: Redis, then history's index) median"
            f" {search.median_ms:.1f} ms, worst {search.worst_ms:.1f} ms; 15 calls each; a"
            f" search for an error text one run in {bench_history.FAILED_EVERY} has (the"
            f" newest 50 of its matches) median {common.median_ms:.0f} ms of 3"
        )
        for key, t in (("history_runs_page_ms", page), ("history_search_ms", search)):
            rows.append(Row(
                key + suffix, f"{t.median_ms:.1f} ms", f"{n:,} runs", round(t.median_ms, 1),
                f"< {HISTORY_READ_MS:g} ms", t.median_ms < HISTORY_READ_MS,
            ))  # fmt: skip
    if not os.environ.get(POSTGRES_ENV):
        for key in ("history_runs_page_ms_postgres", "history_search_ms_postgres"):
            rows.append(Row(key, "not run", f"set {POSTGRES_ENV}", None, "< 300 ms", None))
    return rows


def move_lag_row(env: BenchEnv, notes: list[str]) -> Row:
    lag = bench_history.move_lag(env)
    notes.append(
        f"history move lag: {lag.runs} noop runs enqueued over 10 s to a real `runner worker`"
        f" (its relay moves them; every setting at its default: RUNNER_HISTORY_DELAY_SECONDS"
        f" {lag.delay:g}); a run's end to its leaving Redis: p50 {lag.p50:.1f} s,"
        f" p95 {lag.p95:.1f} s"
    )
    limit = lag.delay + 5
    return Row(
        "history_move_lag_s", f"{lag.p95:.1f} s", f"p50 {lag.p50:.1f} s", round(lag.p95, 1),
        f"<= {limit:g} (delay + 5)", lag.p95 <= limit,
    )  # fmt: skip


def drain_row(env: BenchEnv, sizes: Sizes, notes: list[str]) -> Row:
    key, target = "drain_forecast_vs_real", "0.75 - 1.25"
    if not sizes.drain:
        return Row(key, "not run", "12 min: full run only", None, target, None)
    found = bench_drain.drain(env)
    ratios = found.ratios()
    notes.append(
        f"drain forecast: one `runner worker` on 50 ms runs ({found.out_per_s:.1f}/s alone), a"
        f" feeder adding {found.in_per_s:.1f}/s; `runner health`'s forecast each minute from"
        " the first one (10 minutes of depth samples) against when the queue really emptied: "
        + ", ".join(f"{left / 60:.1f} min left, forecast x{ratio:.2f}" for left, ratio in ratios)
    )
    left, first = ratios[0]
    return Row(
        key, f"x{first:.2f}", f"real {left / 60:.1f} min", round(first, 3), target,
        0.75 <= first <= 1.25,
    )  # fmt: skip


def section(name: str, keys: list[str], measure: Callable[[], list[Row]]) -> list[Row]:
    """Run one measurement; an error is reported and becomes failed rows, the rest still runs."""
    started = time.monotonic()
    print(f"== {name} ...", file=sys.stderr, flush=True)
    try:
        rows = measure()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        rows = failed_rows(keys, str(exc))
    print(f"   {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


@dataclass(frozen=True)
class Section:
    """One measurement of the bench: its name, the rows it yields, and how to measure them."""

    name: str
    keys: tuple[str, ...]
    measure: Callable[[BenchEnv, Sizes, list[str]], list[Row]]


def sections(sizes: Sizes) -> list[Section]:
    """Every measurement, in the order a full run makes them."""
    imports = [
        ("sqlite", sizes.import_posts, "import_vs_naive_sqlite"),
        ("sqlite", sizes.import_posts // 2, "import_vs_naive_sqlite_50k"),
        ("postgres", sizes.import_posts, "import_vs_naive_postgres"),
    ]

    def importing(backend: str, n: int, key: str) -> Section:
        return Section(
            f"import throughput ({backend}, {n:,})", (key,),
            lambda env, sizes, notes: [import_row(env, sizes, notes, backend, n=n, key=key)],
        )  # fmt: skip

    return [
        Section("noop throughput", ("noop_vs_simpleworker", "noop_vs_worker",
                                    "noop_vs_celery_solo", "redis_commands_per_job"), noop_rows),
        Section("redis cpu per job", ("redis_cpu_vs_simpleworker",), redis_cpu_rows),
        Section("round trips per job", ("round_trips_per_job",), round_trip_rows),
        Section("several horses", ("concurrency_4_vs_1",), concurrency_rows),
        Section("enqueue throughput", ("enqueue_vs_rq", "bulk_enqueue_vs_rq"), enqueue_rows),
        *(importing(backend, n, key) for backend, n, key in imports),
        Section("start-up and URL enqueue", ("worker_startup_s", "url_enqueue_s"), startup_rows),
        Section("crash recovery and redo", ("recovery_s", "redo_batches"), crash_rows),
        Section("peak RSS", ("peak_rss_mb",),
                lambda env, sizes, notes: [rss_row(env, sizes, notes)]),
        Section("console runs page", ("console_runs_page_ms",),
                lambda env, sizes, notes: [console_row(env, sizes, notes)]),
        Section("run index page", ("index_page_vs_list",),
                lambda env, sizes, notes: [index_row(env, notes)]),
        Section("outbox relay", ("outbox_relay_p95_s",),
                lambda env, sizes, notes: [outbox_row(env, notes)]),
        Section("history", ("redis_bytes_per_finished_run",),
                lambda env, sizes, notes: [history_row(env, notes)]),
        Section("history reads", ("history_runs_page_ms", "history_search_ms",
                                  "history_runs_page_ms_postgres", "history_search_ms_postgres"),
                history_read_rows),
        Section("history move lag", ("history_move_lag_s",),
                lambda env, sizes, notes: [move_lag_row(env, notes)]),
        Section("drain forecast", ("drain_forecast_vs_real",),
                lambda env, sizes, notes: [drain_row(env, sizes, notes)]),
    ]  # fmt: skip


def chosen(all_sections: list[Section], only: set[str] | None) -> list[Section]:
    """The sections that yield a row named in `only` (every section when it is None); raises
    ValueError naming the rows that no section yields."""
    if only is None:
        return all_sections
    known = {key for s in all_sections for key in s.keys}
    if unknown := sorted(only - known):
        raise ValueError(f"no such row: {', '.join(unknown)} (rows: {', '.join(sorted(known))})")
    return [s for s in all_sections if only & set(s.keys)]


def run(env: BenchEnv, sizes: Sizes, only: set[str] | None = None) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    rows: list[Row] = []
    for each in chosen(sections(sizes), only):
        rows += section(each.name, list(each.keys), lambda m=each.measure: m(env, sizes, notes))
    return rows, notes


def render(rows: list[Row], notes: list[str], about: dict[str, str], mode: str) -> str:
    header = ("measurement", "runner", "baseline", "ratio/figure", "target", "ok")
    cells = [header] + [
        (r.key, r.runner, r.baseline, "-" if r.value is None else f"{r.value:g}", r.target,
         {True: "ok", False: "MISS", None: "-"}[r.ok])
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"runner bench ({mode})", ""]
    for index, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += ["", *(f"* {note}" for note in notes), ""]
    lines.append("machine: " + ", ".join(f"{k} {v}" for k, v in about.items()))
    return "\n".join(lines)


def summary(rows: list[Row]) -> dict[str, Any]:
    """Every row's value by its key, in the order of a full run (None: not measured)."""
    values = {r.key: r.value for r in rows}
    return {key: values.get(key) for section in sections(FULL) for key in section.keys}


def rows_named(text: str) -> set[str]:
    """The row names of `--only`, comma-separated."""
    return {name.strip() for name in text.split(",") if name.strip()}


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: about 2 minutes")
    parser.add_argument(
        "--only", metavar="ROW[,ROW]", type=rows_named, default=None,
        help="measure only the sections that yield these rows (e.g. import_vs_naive_sqlite)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    try:
        chosen(sections(sizes), args.only)
    except ValueError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)  # clean up as on Ctrl-C
    print("== compiling bytecode ...", file=sys.stderr, flush=True)
    compile_bytecode()
    with contextlib.ExitStack() as stack:
        env = BenchEnv.open(stack, lease_seconds=LEASE_SECONDS)
        about = machine(env.redis)
        rows, notes = run(env, sizes, args.only)
    mode = ("quick" if args.quick else "full") + (
        f", only {','.join(sorted(args.only))}" if args.only else ""
    )
    print(render(rows, notes, about, mode))
    print(json.dumps(summary(rows)))
    return 1 if any(r.runner == "error" for r in rows) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
