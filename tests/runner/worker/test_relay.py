"""The outbox relay (runner.worker.relay): committed rows become runs, once by token, and are
deleted; a row whose task is gone is kept with its reason (SQLite file, real Redis)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa
from redis import Redis

from runner.client.outbox import outbox_table
from runner.client.sync import Client
from runner.config import Settings
from runner.record import RunState
from runner.worker.relay import Relay, relay_engine
from tests.runner.client.test_outbox import outbox_rows


def test_committed_rows_become_one_run_per_token_and_leave_the_outbox(
    tmp_path: Path, redis: Redis, settings: Settings
) -> None:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    assert relay_engine(url) is None  # no file yet: the relay never creates one
    engine = sa.create_engine(url)
    outbox_table(sa.MetaData()).create(engine)
    client = Client(redis, settings)
    with engine.begin() as conn:
        first = client.enqueue_on_commit(conn, "greet", {"name": "ada"})
        again = client.enqueue_on_commit(conn, "greet", {"name": "ada"})
        client.enqueue_on_commit(conn, "greet", {"name": "bob"})
    relay = Relay(redis, replace(settings, outbox_url=url), engine=engine)

    assert relay.relay_once() == 3
    assert relay.relay_once() == 0

    assert first == again
    record = client.get(first)
    assert record is not None and record.state == RunState.QUEUED
    assert redis.llen("rq:queue:default") == 2
    assert outbox_rows(engine) == []


def test_a_row_whose_task_is_gone_is_kept_with_its_reason_and_reported(
    tmp_path: Path, redis: Redis, settings: Settings
) -> None:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    engine = sa.create_engine(url)
    table = outbox_table(sa.MetaData())
    table.create(engine)
    with engine.begin() as conn:
        row = {"token": "t-1", "task": "retired_task", "args": "{}", "created_at": 0.0}
        conn.execute(table.insert(), row)
    relay = Relay(redis, replace(settings, outbox_url=url), engine=engine)

    assert relay.relay_once() == 0

    kept = outbox_rows(engine)
    assert len(kept) == 1 and "retired_task" in str(kept[0]["error"])
    assert relay.report(engine) == 1
    assert redis.get(relay.key) is not None
