"""Database fixtures: an empty content store per test, on SQLite and (when configured) PostgreSQL.

PostgreSQL runs when RUNNER_TEST_POSTGRES_URL is set (CI always sets it); each test gets its
own schema, dropped afterwards. Set but unreachable is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from jobs.database import make_engine
from jobs.revisions import upgrade

POSTGRES_ENV = "RUNNER_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'content.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a content store whose schema is initialised."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _postgres_schema_url() -> Iterator[str]:
    """Create a schema for one test, yield a URL whose search_path is it, then drop it."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set; export it to run the PostgreSQL tests")
    admin = make_engine(base)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        shown = admin.url.render_as_string(hide_password=True)
        pytest.fail(f"{POSTGRES_ENV}={shown} is unreachable: {exc.orig}", pytrace=False)
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
