"""An import stopped mid-way by the two users of the stop-at-checkpoint mechanism, with real
worker processes: a worker's SIGTERM (a deploy) hands the run over to another worker at once,
and an operator's cancel ends it `cancelled` until a rerun resumes it from its checkpoint."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis

from jobs.progress import imports
from jobs.sources import resolve
from jobs.store import engine_for, posts
from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.record import RunRecord, RunState
from runner.runs.cancel import CancelAction, cancel
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.rerun import RerunAction, rerun
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from scripts.gen_posts import generate_posts, write_feed
from tests.conftest import WorkerProcess, horses_of, wait_for

pytestmark = pytest.mark.slow
POSTS = 60_000  # long enough to outlast a second between two checkpoints to Redis
LEASE = "30"  # the default: a handover that waited for the lease would miss every deadline
STOP_SECONDS = 10.0  # RUNNER_STOP_SECONDS' default


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The site's own tasks (`jobs`), a SQLite store under the test's home."""
    return settings.with_changes(tasks_module="jobs", queues=("imports", "cron", "default"))


@pytest.fixture(scope="module")
def feed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feed of POSTS posts, written once for the module's tests."""
    path = tmp_path_factory.mktemp("feeds") / "feed.jsonl"
    with path.open("w") as out:
        write_feed(generate_posts(POSTS, seed=7), out)
    return path


@pytest.fixture
def import_feed(feed_file: Path, redis: Redis, settings: Settings) -> Callable[[], Enqueued]:
    """Enqueue (again) the import of the feed, in batches of 100."""
    [source] = resolve(str(feed_file))
    request = Request(
        load_registry("jobs").get("import_posts"), {"source": source.location, "batch_size": 100},
        source.token,
    )  # fmt: skip
    return lambda: Enqueuer(redis, settings).enqueue(request)


def done(record: RunRecord | None) -> int:
    return sum((record.counters or {}).values()) if record else 0


def progressed_on(runs: Runs, token: str, worker: str, *, beyond: int) -> bool:
    record = runs.get(token)
    return bool(record and record.worker.startswith(worker) and done(record) > beyond)


def events_of(redis: Redis, token: str) -> list[dict[str, object]]:
    return [e for _, e in read_events(redis, Keys(), token)]


def assert_every_post_once(settings: Settings, token: str) -> None:
    with engine_for(settings.store_url).connect() as conn:
        ids = list(conn.execute(sa.select(posts.c.source_id)).scalars())
        inserted = conn.execute(
            sa.select(imports.c.inserted).where(imports.c.token == token)
        ).scalar_one()
    assert len(ids) == POSTS and len(set(ids)) == POSTS
    assert inserted == POSTS


@pytest.mark.parametrize("whom", ["the supervisor", "every process"])
@pytest.mark.load_sensitive
def test_a_sigterm_mid_import_hands_the_run_over_to_the_other_worker_at_once(
    whom: str, redis: Redis, runs: Runs, settings: Settings,
    import_feed: Callable[[], Enqueued], start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given an import under way on worker A (lease 30 s), and worker B idle beside it
    token = import_feed().token
    a = start_worker("--name", "A", RUNNER_LEASE_SECONDS=LEASE)
    wait_for(lambda: done(runs.get(token)) >= 2_000, timeout=60, what="progress on A")
    start_worker("--name", "B", RUNNER_LEASE_SECONDS=LEASE)
    time.sleep(0.5)  # B is listening
    # When A is sent SIGTERM: its supervisor alone, or every process at once (as systemd,
    # Heroku and Kubernetes do)
    horse = horses_of(a.process.pid)[0]
    targets = [a.process.pid] + ([horse.pid] if whom == "every process" else [])
    at_signal = done(runs.get(token))
    for pid in targets:
        os.kill(pid, signal.SIGTERM)
    signalled = time.monotonic()
    # Then A exits within RUNNER_STOP_SECONDS, and the run has progressed on B within 5 s
    assert a.process.wait(timeout=STOP_SECONDS) == 0
    wait_for(lambda: progressed_on(runs, token, "B", beyond=at_signal), timeout=5,
             what="progress on B")  # fmt: skip
    assert time.monotonic() - signalled <= 5
    wait_for(lambda: runs.get(token).state == RunState.SUCCEEDED, timeout=120, what="success")  # type: ignore[union-attr]
    # And every post is there exactly once, with exact counters
    assert_every_post_once(settings, token)
    record = runs.get(token)
    assert record is not None and record.result["inserted"] == POSTS
    # And the record says a handover, not a failure: no attempt used up, no error
    assert record.handovers == 1 and record.attempt == 2 and record.error is None
    assert record.attempts_left == record.max_attempts - 1
    names = [e["event"] for e in events_of(redis, token)]
    assert names.count("attempt.handed_over") == 1
    assert not {"attempt.failed", "run.retrying", "run.requeued", "horse.killed"} & set(names)
    [handed] = [e for e in events_of(redis, token) if e["event"] == "attempt.handed_over"]
    assert handed["by"] == "worker" and handed["next_attempt"] == 2
    assert "horse.killed" not in a.output()  # it stopped at a checkpoint, not at the deadline


def test_a_cancelled_import_stops_stays_deduplicated_and_a_rerun_resumes_it(
    redis: Redis, runs: Runs, settings: Settings,
    import_feed: Callable[[], Enqueued], start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given an import under way on a worker
    token = import_feed().token
    worker = start_worker("--name", "A")
    wait_for(lambda: done(runs.get(token)) >= 2_000, timeout=60, what="progress")
    # When an operator cancels it from the console
    assert cancel(redis, settings, token, origin="web").action == CancelAction.STOPPING
    # Then it stops at its next checkpoint and ends cancelled, part-imported; the worker lives
    wait_for(lambda: runs.get(token).state == RunState.CANCELLED, timeout=10, what="cancelled")  # type: ignore[union-attr]
    record = runs.get(token)
    assert record is not None and 2_000 <= record.cursor < POSTS
    with engine_for(settings.store_url).connect() as conn:
        imported = conn.execute(sa.select(sa.func.count()).select_from(posts)).scalar_one()
    assert imported == done(record) < POSTS
    assert worker.process.poll() is None
    # And importing the same feed again is deduplicated: nothing new runs
    again = import_feed()
    assert again.deduplicated and again.state == RunState.CANCELLED
    time.sleep(1.0)
    assert runs.get(token).state == RunState.CANCELLED  # type: ignore[union-attr]
    # When it is rerun
    assert rerun(redis, settings, token).action == RerunAction.REQUEUED
    # Then it resumes from its checkpoint and finishes with every post exactly once
    wait_for(lambda: runs.get(token).state == RunState.SUCCEEDED, timeout=120, what="success")  # type: ignore[union-attr]
    assert_every_post_once(settings, token)
    events = events_of(redis, token)
    [resumed] = [e for e in events if e["event"] == "import.resumed"]
    assert resumed["attempt"] == 2 and resumed["position"] == record.cursor
    assert [(e["event"], e.get("origin")) for e in events if "cancel" in str(e["event"])] == [
        ("run.cancel_requested", "web"), ("run.cancelled", "web"),
    ]  # fmt: skip
