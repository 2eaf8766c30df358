"""Several horses under one supervisor (`runner worker --concurrency N`), with real processes:
each horse keeps every guarantee on its own, a crash of one leaves the others alone, and a
SIGTERM hands every horse's run over."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from redis import Redis

from jobs.progress import imports
from jobs.sources import resolve
from jobs.store import engine_for, posts
from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunRecord, RunState
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.horse import WorkerOptions
from runner.worker.liveness import Liveness
from runner.worker.supervisor import HEALTHY_SECONDS, Supervisor
from scripts.gen_posts import generate_posts, write_feed
from tests.conftest import (
    ROOT,
    TEST_TASKS,
    WorkerProcess,
    horses_of,
    state_of,
    wait_for,
    worker_env,
)

POSTS = 6_000  # per feed, in batches of 50: long enough to be caught mid-way under load
FEEDS = 4
LONG_LEASE = "30"  # a handover that waited for the lease would miss every deadline
SAMPLE_TASKS = {"RUNNER_TASKS": TEST_TASKS, "RUNNER_QUEUES": "default"}  # tests/sample_tasks.py


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The site's own tasks (`jobs`), a SQLite store under the test's home."""
    return settings.with_changes(tasks_module="jobs", queues=("imports", "cron", "default"))


@pytest.fixture(scope="module")
def feed_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """FEEDS feeds of POSTS posts each, with distinct source ids, written once."""
    folder = tmp_path_factory.mktemp("feeds")
    paths = []
    for k in range(FEEDS):
        path = folder / f"feed-{k}.jsonl"
        with path.open("w") as out:
            write_feed(generate_posts(POSTS, seed=k, start=k * POSTS), out)
        paths.append(path)
    return paths


@pytest.fixture
def import_feeds(
    feed_files: list[Path], redis: Redis, settings: Settings
) -> Callable[[], list[str]]:
    """Enqueue the import of every feed, in batches of 50; returns their tokens."""
    task = load_registry("jobs").get("import_posts")

    def enqueue() -> list[str]:
        tokens = []
        for path in feed_files:
            [source] = resolve(str(path))
            request = Request(task, {"source": source.location, "batch_size": 50}, source.token)
            tokens.append(Enqueuer(redis, settings).enqueue(request).token)
        return tokens

    return enqueue


def done(record: RunRecord | None) -> int:
    return sum((record.counters or {}).values()) if record else 0


def records(runs: Runs, tokens: list[str]) -> list[RunRecord]:
    found = [runs.get(t) for t in tokens]
    assert all(found)
    return found  # type: ignore[return-value]


def all_under_way(runs: Runs, tokens: list[str], worker: str) -> bool:
    """Every run is running on its own horse of `worker`, and has made progress."""
    rs = records(runs, tokens)
    return (
        all(r.state == RunState.RUNNING and r.worker.startswith(f"{worker}.") for r in rs)
        and len({r.worker for r in rs}) == len(rs)
        and all(done(r) > 0 for r in rs)
    )


def start_ready(
    start_worker: Callable[..., WorkerProcess], redis: Redis, settings: Settings, name: str,
    **env: str,
) -> WorkerProcess:  # fmt: skip
    """Start worker `name` with FEEDS horses and wait until every horse is registered, so the
    imports enqueued next go one to a horse (a horse that started late on a loaded machine
    would otherwise find its import taken by a sibling that had already finished one)."""
    worker = start_worker("--name", name, "--concurrency", str(FEEDS), **env)
    wait_for(
        lambda: sum(w.name.startswith(f"{name}.") for w in Liveness(redis, settings).alive())
        == FEEDS,
        timeout=60, what=f"{FEEDS} live horses of {name}",
    )  # fmt: skip
    return worker


def describe(runs: Runs, tokens: list[str]) -> Callable[[], str]:
    """What each run looks like, for the failure message of a wait."""
    return lambda: "\n".join(
        f"{r.token[:12]} {r.state} on {r.worker} attempt {r.attempt} done {done(r)}"
        for r in records(runs, tokens)
    )


def horse_pid(record: RunRecord) -> int:
    return int(record.worker.rsplit(".horse", 1)[1])


def events(redis: Redis, token: str) -> list[str]:
    return [e["event"] for _, e in read_events(redis, Keys(), token)]


def assert_every_post_once(settings: Settings, tokens: list[str]) -> None:
    with engine_for(settings.store_url).connect() as conn:
        ids = list(conn.execute(sa.select(posts.c.source_id)).scalars())
        inserted = conn.execute(
            sa.select(imports.c.token, imports.c.inserted).where(imports.c.token.in_(tokens))
        ).all()
    assert len(ids) == FEEDS * POSTS and len(set(ids)) == FEEDS * POSTS
    assert sorted(n for _, n in inserted) == [POSTS] * FEEDS


@pytest.mark.slow
def test_a_killed_horse_leaves_the_other_three_alone_and_its_run_resumes(
    redis: Redis, runs: Runs, settings: Settings, import_feeds: Callable[[], list[str]],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given four imports under way on the four horses of one worker (a lease of 6 s: on a
    # loaded machine a horse starved for 2 s would lose its run, which is not what this tests)
    worker = start_ready(start_worker, redis, settings, "A", RUNNER_LEASE_SECONDS="6")
    tokens = import_feeds()
    wait_for(
        lambda: all_under_way(runs, tokens, "A"), timeout=60, what="four imports",
        describe=describe(runs, tokens),
    )  # fmt: skip
    # When the horse of the least advanced import is SIGKILLed
    victim = min(records(runs, tokens), key=done)
    others = {r.token: r for r in records(runs, tokens) if r.token != victim.token}
    os.kill(horse_pid(victim), signal.SIGKILL)
    # Then every import succeeds, with every post exactly once
    wait_for(
        lambda: all(r.state == RunState.SUCCEEDED for r in records(runs, tokens)),
        timeout=120, what="four successes", describe=describe(runs, tokens),
    )  # fmt: skip
    assert_every_post_once(settings, tokens)
    # And the other three finished in their first attempt, on the same horse
    for token, before in others.items():
        after = runs.get(token)
        assert after is not None and after.attempt == 1 and after.worker == before.worker
        assert "run.requeued" not in events(redis, token)
    # And the killed one's run resumed in a second attempt, from its checkpoint
    resumed = runs.get(victim.token)
    assert resumed is not None and resumed.attempt == 2 and resumed.worker != victim.worker
    assert resumed.result["inserted"] == POSTS
    [again] = [e for _, e in read_events(redis, Keys(), victim.token)
               if e["event"] == "import.resumed"]  # fmt: skip
    assert again["attempt"] == 2 and int(again["position"]) > 0  # type: ignore[call-overload]
    # And the supervisor lived on, and replaced the dead horse: four live horses besides it
    assert worker.process.poll() is None
    wait_for(
        lambda: len({w.name for w in Liveness(redis, settings).alive()
                     if w.name.startswith("A.")} - {victim.worker}) == FEEDS,
        what="a new fourth horse of A",
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.load_sensitive
def test_a_sigterm_hands_every_horses_run_over(
    redis: Redis, runs: Runs, settings: Settings, import_feeds: Callable[[], list[str]],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given four imports under way on the four horses of worker A (lease 30 s), B idle
    a = start_ready(start_worker, redis, settings, "A", RUNNER_LEASE_SECONDS=LONG_LEASE)
    tokens = import_feeds()
    wait_for(
        lambda: all_under_way(runs, tokens, "A"), timeout=60, what="four imports on A",
        describe=describe(runs, tokens),
    )  # fmt: skip
    start_worker("--name", "B", "--concurrency", "4", RUNNER_LEASE_SECONDS=LONG_LEASE)
    # When A's supervisor gets SIGTERM
    a.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    # Then A exits within its stop time, and B finishes all four, long before A's leases
    assert a.process.wait(timeout=10) == 0
    wait_for(
        lambda: all(r.state == RunState.SUCCEEDED for r in records(runs, tokens)),
        timeout=120, what="four successes on B", describe=describe(runs, tokens),
    )  # fmt: skip
    assert_every_post_once(settings, tokens)
    for record in records(runs, tokens):
        assert record.worker.startswith("B.") and record.attempt == 2
        assert record.handovers == 1 and record.error is None
        assert events(redis, record.token).count("attempt.handed_over") == 1
    assert time.monotonic() - signalled < 120


@pytest.mark.slow
def test_liveness_counts_horses_each_under_its_supervisor(
    redis: Redis, settings: Settings, start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given a worker of three horses
    worker = start_worker("--name", "A", "--concurrency", "3")
    wait_for(lambda: len(horses_of(worker.process.pid)) == 3, what="three horses")

    # Then liveness counts three workers: its horses, each named under the supervisor
    # (read together: a child just forked may not be told from a horse yet, the relay
    # names itself first thing)
    def both() -> tuple[list[str], list[str]]:
        alive = sorted(w.name for w in Liveness(redis, settings).alive())
        return alive, sorted(f"A.horse{h.pid}" for h in horses_of(worker.process.pid))

    wait_for(lambda: (seen := both())[0] == seen[1] and len(seen[0]) == 3,
             what="three live horses, the supervisor's", describe=lambda: str(both()))  # fmt: skip


def test_concurrency_must_be_a_positive_number(invoke: Callable[..., Result]) -> None:
    result = invoke("worker", "--concurrency", "0")
    assert result.exit_code == 2
    assert "--concurrency" in result.output and "Traceback" not in result.output


def enqueue_sample(redis: Redis, settings: Settings, task: str, **args: object) -> Enqueued:
    """Enqueue one of tests/sample_tasks.py's tasks (this module's settings run the site's)."""
    return Enqueuer(redis, settings).enqueue(Request(load_registry(TEST_TASKS).get(task), args))


def logged(worker: WorkerProcess, event: str) -> list[dict[str, object]]:
    """The worker's log lines (JSON, one a line) of `event`, in order."""
    lines = (json.loads(line) for line in worker.output().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def new_horse(worker: WorkerProcess, redis: Redis, *, besides: set[int]) -> int:
    """Wait for a horse of worker A that is none of `besides` and has registered with RQ; its
    pid. (A child just forked may still be the outbox relay, not named yet: only a horse
    registers as A.horse<pid>.)"""
    found = wait_for(
        lambda: [h.pid for h in horses_of(worker.process.pid)
                 if h.pid not in besides and redis.exists(f"rq:worker:A.horse{h.pid}")],
        what="a new horse",
    )  # fmt: skip
    return found[0]  # type: ignore[index,no-any-return]


@pytest.mark.slow
def test_a_burst_worker_works_every_run_and_exits_0_once_the_queue_is_empty(
    redis: Redis, runs: Runs, settings: Settings, start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given six quick runs queued
    tokens = [enqueue_sample(redis, settings, "counting", items=2).token for _ in range(6)]
    # When a burst worker of two horses works them
    worker = start_worker("--burst", "--concurrency", "2", **SAMPLE_TASKS)
    # Then it exits 0 by itself, every run succeeded
    assert worker.process.wait(timeout=30) == 0
    assert [state_of(runs, t) for t in tokens] == [RunState.SUCCEEDED] * 6
    assert "worker.stopped" in worker.output() and "Traceback" not in worker.output()


@pytest.mark.slow
def test_a_horse_stopped_on_its_own_is_replaced(
    redis: Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker of one horse
    worker = start_worker("--name", "A", **SAMPLE_TASKS)
    first = new_horse(worker, redis, besides=set())
    # When someone stops that horse alone (SIGTERM: it exits cleanly, code 0)
    os.kill(first, signal.SIGTERM)
    # Then the supervisor, not stopping, starts another horse in its place
    new_horse(worker, redis, besides={first})
    assert worker.process.poll() is None
    exited = wait_for(lambda: logged(worker, "horse.exited"), what="the exit logged")
    assert [(e["pid"], e["code"]) for e in exited] == [(first, 0)]  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_horse_that_keeps_dying_is_restarted_with_a_doubling_backoff(
    redis: Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker of one horse
    worker = start_worker("--name", "A", **SAMPLE_TASKS)
    # When its horse is SIGKILLed (as by the OOM killer) three times, each soon after it starts
    killed: list[int] = []
    for _ in range(3):
        killed.append(new_horse(worker, redis, besides=set(killed)))
        os.kill(killed[-1], signal.SIGKILL)
    wait_for(lambda: len(logged(worker, "horse.exited")) == 3, what="three exits seen")
    # Then each restart waits twice as long as the one before, and the supervisor lives on
    exits = [(e["pid"], e["restart_in_s"]) for e in logged(worker, "horse.exited")]
    assert exits == [(killed[0], 1.0), (killed[1], 2.0), (killed[2], 4.0)]
    assert worker.process.poll() is None


def test_a_slots_restart_backoff_doubles_up_to_30_s_and_starts_over_after_a_healthy_horse(
    settings: Settings,
) -> None:
    # Given a supervisor's slot whose horses keep dying at once
    supervisor = Supervisor(settings, WorkerOptions(queues=("default",), concurrency=1))
    slot = supervisor.slots[0]

    def dies(*, lived: float) -> float:
        slot.pid, slot.started = 4242, time.monotonic() - lived
        died = time.monotonic()
        supervisor._ended(slot, 1)
        return round(slot.restart_at - died, 1)  # the wait before its next horse

    # Then each death doubles the wait before the next horse, up to 30 s (a crash loop is
    # retried twice a minute, not given up on)
    assert [dies(lived=0.1) for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # And a horse that lived past HEALTHY_SECONDS before dying is replaced after 1 s again
    assert dies(lived=HEALTHY_SECONDS + 1) == 1.0
    assert dies(lived=0.1) == 2.0


def read_until(fd: int, text: str, *, timeout: float = 20.0) -> str:
    """What a terminal shows (`fd` its master side) up to and including `text`."""
    seen = b""
    deadline = time.monotonic() + timeout
    poller = select.poll()  # not select(): this process may hold over 1024 descriptors
    poller.register(fd, select.POLLIN)
    while text.encode() not in seen and time.monotonic() < deadline:
        if poller.poll(100):
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the worker closed the terminal (exited)
                break
    return seen.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("concurrency", "banner", "stopping"),
    [
        ("1", "Ctrl-C: hand the current run over at its next checkpoint",
         "stopping: the current run is handed over at its next checkpoint;"),
        ("2", "2 horses. Ctrl-C: hand the current runs over at their next checkpoints",
         "stopping: the current runs are handed over at their next checkpoints;"),
    ],
)  # fmt: skip
def test_a_worker_on_a_terminal_tells_the_person_what_ctrl_c_does(
    settings: Settings, concurrency: str, banner: str, stopping: str,
) -> None:  # fmt: skip
    # Given a worker started from a terminal (its stderr), with one horse or two
    terminal, side = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "worker", "--concurrency", concurrency],
        env=worker_env(settings, **SAMPLE_TASKS), stdout=subprocess.DEVNULL, stderr=side,
        start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    os.close(side)
    try:
        # Then it says what Ctrl-C does, for a run or for runs
        assert banner in read_until(terminal, banner)
        # And when stopped, it says what becomes of the run (or runs)
        process.send_signal(signal.SIGINT)
        assert stopping in read_until(terminal, stopping)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        os.close(terminal)


def test_a_worker_started_while_redis_is_unreachable_says_so_and_starts_no_horse(
    settings: Settings,
) -> None:
    # Given a Redis that does not answer (nothing listens on port 1)
    env = worker_env(settings, RUNNER_REDIS_URL="redis://127.0.0.1:1/0", **SAMPLE_TASKS)
    # When a worker starts
    done = subprocess.run(
        [sys.executable, "-m", "runner", "worker", "--concurrency", "2"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    # Then it exits 1 with a line naming the Redis it tried, having started no horse
    assert done.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in done.stderr
    assert "horse.started" not in done.stdout and "Traceback" not in done.stderr
