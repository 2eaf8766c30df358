"""The outbox table (runner.client.outbox): a request written in the caller's transaction goes
with it, committed or rolled back; the table ships as Alembic operations (SQLite file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from redis import Redis
from sqlalchemy import Engine

from runner.client.outbox import TABLE, create_outbox_table, drop_outbox_table, outbox_table
from runner.client.sync import Client
from runner.config import Settings


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'site.db'}")
    outbox_table(sa.MetaData()).create(engine)
    return engine


def outbox_rows(engine: Engine) -> list[dict[str, object]]:
    table = outbox_table(sa.MetaData())
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(table))]


def test_a_committed_request_is_one_row_and_a_rolled_back_one_is_none(
    engine: Engine, redis: Redis, settings: Settings
) -> None:
    client = Client(redis, settings)
    with engine.connect() as conn:
        conn.begin()
        client.enqueue_on_commit(conn, "greet", {"name": "bob"})
        conn.rollback()
    with engine.begin() as conn:
        token = client.enqueue_on_commit(conn, "greet", {"name": "ada", "loud": True})

    rows = outbox_rows(engine)
    assert [(r["token"], r["task"]) for r in rows] == [(token, "greet")]
    assert json.loads(str(rows[0]["args"])) == {"loud": True, "name": "ada"}
    assert rows[0]["error"] is None
    assert redis.llen("rq:queue:default") == 0  # nothing reaches Redis before the relay


def test_the_table_comes_and_goes_by_alembic_operations(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.begin() as conn:
        op = Operations(MigrationContext.configure(conn))
        create_outbox_table(op)
        assert TABLE in sa.inspect(conn).get_table_names()
        columns = {c["name"] for c in sa.inspect(conn).get_columns(TABLE)}
        assert {"token", "task", "args", "queue", "due_at", "error"} <= columns
        drop_outbox_table(op)
        assert TABLE not in sa.inspect(conn).get_table_names()
