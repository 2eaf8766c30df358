"""Fixtures of the engine's tests in more than one folder: the history tables a run moves
to (SQLite, and PostgreSQL when RUNNER_TEST_POSTGRES_URL is set) and the mover."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from redis import Redis

from runner.config import Settings
from runner.runs.move import Mover

POSTGRES = os.environ.get("RUNNER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason="RUNNER_TEST_POSTGRES_URL is not set"))]  # fmt: skip


@pytest.fixture(params=BACKENDS)
def history_settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    moved = replace(settings, history_delay_seconds=0.0)
    if request.param == "sqlite":
        yield moved
        return
    schema = f"h{uuid.uuid4().hex[:10]}"  # one schema per test: tests may run side by side
    assert POSTGRES
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.make_url(POSTGRES).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield replace(moved, history_url=url.render_as_string(hide_password=False))
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def mover(redis: Redis, history_settings: Settings) -> Iterator[Mover]:
    mover = Mover(redis, history_settings)
    yield mover
    if mover.store.engine is not None:
        mover.store.engine.dispose()


def run_keys(redis: Redis, token: str) -> list[str]:
    return sorted(k.decode() for k in redis.scan_iter(f"*{token}*"))
