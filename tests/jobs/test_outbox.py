"""Enqueue on commit: the outbox table in the site's own store (migration 0003) and the relay
that moves committed rows to Redis (SQLite, and PostgreSQL when RUNNER_TEST_POSTGRES_URL is
set)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy import Connection, Engine

from jobs.database import reading
from runner import Client, RunState
from runner.config import Settings
from runner.monitoring.health import check_health
from runner.worker.relay import Relay, relay_engine
from tests.conftest import ROOT, WorkerProcess, wait_for, worker_env

OUTBOX = sa.table("runner_outbox", sa.column("token"), sa.column("task"), sa.column("error"))


@pytest.fixture
def outbox_settings(settings: Settings, database_url: str, engine: Engine) -> Settings:
    return replace(settings, outbox_url=database_url)


@pytest.fixture
def client(redis: Redis, outbox_settings: Settings) -> Client:
    return Client(redis, outbox_settings)


@pytest.fixture
def relay(redis: Redis, outbox_settings: Settings) -> Iterator[Relay]:
    relay = Relay(redis, outbox_settings)
    yield relay
    if relay.engine is not None:
        relay.engine.dispose()


def rows(engine: Engine) -> list[tuple[str, str, str | None]]:
    with reading(engine) as conn:
        return [tuple(r) for r in conn.execute(sa.select(OUTBOX))]  # type: ignore[misc]


def run_tokens(redis: Redis, task: str) -> list[str]:
    return [t.decode() for t in redis.zrange(f"runner:runs:task:{task}", 0, -1)]


def test_a_committed_request_is_relayed_once_and_deleted(
    client: Client, relay: Relay, engine: Engine, redis: Redis
) -> None:
    with engine.begin() as conn:
        token = client.enqueue_on_commit(conn, "greet", {"name": "ada"}, traceparent="00-ab-cd-01")
        client.enqueue_on_commit(conn, "greet", {"name": "ada"})  # the same token twice

    assert relay.relay_once() == 2

    assert rows(engine) == []
    assert run_tokens(redis, "greet") == [token]
    assert redis.llen("rq:queue:default") == 1
    record = client.get(token)
    assert record is not None and (record.state, record.traceparent) == ("queued", "00-ab-cd-01")


def test_a_rolled_back_transaction_leaves_nothing_to_run(
    client: Client, relay: Relay, engine: Engine, redis: Redis
) -> None:
    with engine.connect() as conn:
        conn.begin()
        client.enqueue_on_commit(conn, "greet", {"name": "ada"})
        conn.rollback()

    assert relay.relay_once() == 0
    assert rows(engine) == []
    assert run_tokens(redis, "greet") == []


def test_no_run_exists_before_its_transaction_committed(
    client: Client, relay: Relay, engine: Engine, redis: Redis
) -> None:
    with engine.connect() as conn:
        conn.begin()
        token = client.enqueue_on_commit(conn, "greet", {"name": "ada"})
        assert relay.relay_once() == 0  # the relay reads while the writer's transaction is open
        assert client.get(token) is None
        conn.commit()

    assert relay.relay_once() == 1
    assert client.get(token) is not None


def test_a_row_whose_task_is_gone_is_kept_with_its_reason_and_counted_by_health(
    client: Client, relay: Relay, engine: Engine, redis: Redis, outbox_settings: Settings
) -> None:
    with engine.begin() as conn:
        client.enqueue_on_commit(conn, "greet", {"name": "ada"})
        conn.execute(sa.update(OUTBOX).values(task="renamed_task"))  # a deploy renamed it
        client.enqueue_on_commit(conn, "greet", {"name": "bob"})

    assert relay.relay_once() == 1

    [(_, task, error)] = rows(engine)
    assert task == "renamed_task" and error is not None
    assert error.startswith("unknown task 'renamed_task'; known tasks:")
    assert relay.relay_once() == 0  # kept, not retried on every pass
    up = check_health(redis, outbox_settings).up
    assert not up.ok
    assert "1 outbox rows kept by the relay (unknown task 'renamed_task'" in up.text


@contextmanager
def outbox_locked(engine: Engine) -> Iterator[Connection]:
    """Hold a lock that lets the relay read the outbox but not delete from it."""
    with engine.connect() as conn:
        conn.begin()  # SQLite: BEGIN IMMEDIATE, the write lock (readers go on in WAL)
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("LOCK TABLE runner_outbox IN SHARE MODE"))
        yield conn
        conn.rollback()


def start_relay(settings: Settings, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    env = worker_env(settings, RUNNER_OUTBOX_URL=settings.outbox_url or "")
    code = (
        "import os; from runner.config import Settings; from runner.worker.relay import relay_main;"
    )
    code += " relay_main(Settings.from_env(), os.getppid())"
    with open(tmp_path / f"{name}.log", "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def test_a_relay_sigkilled_between_queueing_and_deleting_makes_one_run(
    client: Client, engine: Engine, redis: Redis, outbox_settings: Settings, tmp_path: Path
) -> None:
    # Given a committed request, and a relay process that can read it but not delete it yet
    with engine.begin() as conn:
        token = client.enqueue_on_commit(conn, "greet", {"name": "ada"})
    with outbox_locked(engine):
        first = start_relay(outbox_settings, tmp_path, "relay-1")
        try:
            # When it has queued the run in Redis, and is SIGKILLed before it deleted the row
            wait_for(lambda: client.get(token), timeout=60, what="the run queued by the relay")
            assert len(rows(engine)) == 1
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
    # Then the next relay relays the row again and deletes it, and the token has one run
    second = start_relay(outbox_settings, tmp_path, "relay-2")
    try:
        wait_for(lambda: not rows(engine), timeout=60, what="the row deleted by the next relay")
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=10)
    assert run_tokens(redis, "greet") == [token]
    assert redis.llen("rq:queue:default") == 1
    record = client.get(token)
    assert record is not None and (record.state, record.attempt) == (RunState.QUEUED, 1)
    assert "outbox" not in (tmp_path / "relay-2.log").read_text()  # relayed quietly


def test_every_worker_relays_the_outbox(
    client: Client, engine: Engine, outbox_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    with engine.begin() as conn:
        token = client.enqueue_on_commit(conn, "greet", {"name": "ada", "loud": True})

    start_worker(RUNNER_OUTBOX_URL=outbox_settings.outbox_url or "")

    wait_for(lambda: client.get(token), timeout=60, what="the run the worker's relay queued")
    assert client.wait(token, timeout=60).result == "ADA"
    assert rows(engine) == []


def test_the_relay_leaves_a_database_without_an_outbox_alone(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    assert relay_engine(f"sqlite:///{missing}") is None
    assert not missing.exists()
