"""An import batch and its cursor are one database transaction: a failure between them (a real
SQLite trigger aborting the cursor's write) leaves neither, and a rerun counts exactly."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from redis import Redis

from runner.config import Settings
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from scripts.gen_posts import generate_posts, write_feed

# Aborts the write that moves an import's cursor past the first batch (of 3 posts).
_FAIL_SECOND_CURSOR = """
CREATE TRIGGER fail_second_cursor BEFORE UPDATE OF position ON imports
WHEN NEW.position > 3 BEGIN SELECT RAISE(ABORT, 'injected failure at the cursor'); END
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, tasks_module="jobs", queues=("imports", "default"))


def _store(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.home / "content.db", isolation_level=None)


def test_a_failure_between_a_batch_and_its_cursor_commits_neither(
    tmp_path: Path, redis: Redis, settings: Settings, runs: Runs,
    invoke: Callable[..., Result], drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a content store whose cursor cannot move past the first batch of 3 posts
    assert invoke("db", "init").exit_code == 0
    with _store(settings) as db:
        db.execute(_FAIL_SECOND_CURSOR)
    path = tmp_path / "feed.jsonl"
    with path.open("w") as out:
        write_feed(generate_posts(9, seed=5), out)
    # When an import of 9 posts (one attempt allowed) runs into that failure
    task = load_registry("jobs").get("import_posts")
    task = dataclasses.replace(task, retry=dataclasses.replace(task.retry, attempts=1))
    args = {"source": str(path), "batch_size": 3}
    token = Enqueuer(redis, settings).enqueue(Request(task, args, "import-atomic")).token
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "failed"
    # Then the store holds exactly the posts its committed cursor covers: the failed batch's
    # posts were rolled back together with its cursor
    with _store(settings) as db:
        [(position,)] = db.execute("SELECT position FROM imports WHERE token = ?", [token])
        [(stored,)] = db.execute("SELECT count(*) FROM posts")
    assert (position, stored) == (3, 3)
    # And once the fault is gone, a rerun counts every post exactly once
    with _store(settings) as db:
        db.execute("DROP TRIGGER fail_second_cursor")
    assert invoke("rerun", token).exit_code == 0
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded", record
    assert record.result["inserted"] == 9 and record.result["unchanged"] == 0
