"""The move (runner.runs.move): a finished run leaves Redis for the history tables and only its
marker stays; a run changed since its copy, a failed one within its window, a mover killed
mid-way and a refused database are each handled (SQLite, and PostgreSQL when
RUNNER_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis

from runner.client.sync import Client
from runner.keys import Keys
from runner.record import Enqueued, RunState
from runner.runs.history_tables import metadata
from runner.runs.move import Mover
from tests.conftest import ROOT
from tests.runner.conftest import run_keys

MOVE_AND_DIE = """
import os, signal, sys
from runner.config import Settings
from runner.connections.redis import connect
from runner.runs.move import Mover

settings = Settings.from_env()
mover = Mover(connect(settings), settings)
copies = mover.copy(mover.due())
mover.store.write(copies)
print(len(copies), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # between "written to the database" and the delete
"""


def test_a_finished_run_moves_and_only_its_marker_stays(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    drain()
    assert mover.move_once() == 1
    keys = Keys(mover.settings.prefix)
    assert run_keys(redis, token) == [keys.done(token)]
    assert 0 < redis.ttl(keys.done(token)) <= mover.settings.retention_seconds
    assert not any(redis.zscore(k, token) for k in redis.scan_iter(f"{keys.prefix}runs*")
                   if redis.type(k) == b"zset")  # fmt: skip
    moved = Client(redis, mover.settings).get(token)
    assert moved is not None
    assert (moved.state, moved.result) == (RunState.SUCCEEDED, "ada")
    assert mover.move_once() == 0  # nothing left to move


def test_a_moved_token_is_deduplicated_with_its_state(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    first = enqueue("greet", name="ada")
    drain()
    mover.move_once()
    again = enqueue("greet", name="ada")
    assert again.deduplicated
    assert (again.token, again.state, again.job_id) == (first.token, "succeeded", first.job_id)
    assert not redis.exists(Keys(mover.settings.prefix).run(first.token))


def test_a_run_that_changed_since_its_copy_stays_in_redis(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    drain()
    copies = mover.copy(mover.due())
    mover.store.write(copies)
    redis.hset(Keys(mover.settings.prefix).run(token), "updated_at", "1")  # a rerun, say
    assert mover.forget(copies) == 0
    assert redis.exists(Keys(mover.settings.prefix).run(token))
    assert not redis.exists(Keys(mover.settings.prefix).done(token))


def test_a_failed_run_stays_in_redis_for_the_failed_window(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("broken").token
    drain()
    assert mover.move_once() == 0
    keys = Keys(mover.settings.prefix)
    assert redis.exists(keys.run(token))
    copied = mover.store.get(token)
    assert copied is not None and copied.state == RunState.FAILED, "copied at once"
    failed = [k for k in redis.scan_iter("rq:failed:*") if redis.zcard(k)]
    assert failed, "the RQ failed job stays, so `rq requeue` works"
    later = replace(mover.settings, failed_seconds=0)
    assert Mover(redis, later, store=mover.store).move_once() == 1
    assert run_keys(redis, token) == [keys.done(token)]
    assert not any(redis.zcard(k) for k in redis.scan_iter("rq:failed:*"))
    moved = Client(redis, mover.settings).get(token)
    assert moved is not None and moved.state == RunState.FAILED


def test_a_mover_killed_between_copy_and_delete_moves_each_run_once(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
    tmp_path: Path,
) -> None:  # fmt: skip
    tokens = [enqueue("greet", name=f"n{i}").token for i in range(5)]
    drain()
    s = mover.settings
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNNER_HOME": str(s.home),
           "RUNNER_REDIS_URL": s.redis_url or "", "RUNNER_HISTORY_DELAY_SECONDS": "0",
           "RUNNER_HISTORY_URL": s.history_database_url}  # fmt: skip
    script = tmp_path / "move_and_die.py"
    script.write_text(textwrap.dedent(MOVE_AND_DIE))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "5"
    keys = Keys(s.prefix)
    assert all(redis.exists(keys.run(t)) for t in tokens), "killed before the delete"
    assert mover.move_once() == 5  # copied again over the same rows, then removed
    engine = mover.store.engine
    assert engine is not None
    with engine.connect() as conn:
        table = metadata.tables["runner_runs"]
        rows = conn.execute(sa.select(table.c.token)).scalars().all()
    assert sorted(rows) == sorted(tokens)
    assert all(run_keys(redis, t) == [keys.done(t)] for t in tokens)


def test_a_refused_history_database_only_delays_the_move(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    from sqlalchemy.exc import SQLAlchemyError

    token = enqueue("greet", name="ada").token
    drain()
    refused = replace(mover.settings, history_url="postgresql+psycopg://u:pw@127.0.0.1:1/h")
    with pytest.raises(SQLAlchemyError):
        Mover(redis, refused).move_once()
    keys = Keys(mover.settings.prefix)
    assert redis.exists(keys.run(token)) and not redis.exists(keys.done(token))
    again = Client(redis, mover.settings).enqueue("greet", {"name": "ada"})
    assert again.deduplicated and again.state == "succeeded"
    assert mover.move_once() == 1  # the database is back: the run moves
