"""Several horses under one supervisor (`runner worker --concurrency N`), with real processes:
each horse keeps every guarantee on its own, a crash of one leaves the others alone, and a
SIGTERM hands every horse's run over."""

from __future__ import annotations

import os
import signal
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
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.liveness import Liveness
from scripts.gen_posts import generate_posts, write_feed
from tests.conftest import WorkerProcess, horses_of, wait_for

POSTS = 6_000  # per feed, in batches of 50: long enough to be caught mid-way under load
FEEDS = 4
LONG_LEASE = "30"  # a handover that waited for the lease would miss every deadline


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
    # Given four imports under way on the four horses of one worker (lease 2 s)
    worker = start_ready(start_worker, redis, settings, "A")
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
