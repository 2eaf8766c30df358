"""The database: an engine for the content store's URL, SQLite or PostgreSQL.

SQLite is one file that several worker processes write through: WAL, and BEGIN IMMEDIATE so
two writers never deadlock upgrading read locks. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tenacity
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import ArgumentError

from jobs.progress import SQLITE_BEGIN
from runner import ConfigError

ACCEPTED_URLS = "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
SQLITE_BUSY_SECONDS = 30
_SQLITE_LOCKED_RETRY = tenacity.Retrying(
    retry=tenacity.retry_if_exception(lambda exc: "locked" in str(exc)),
    stop=tenacity.stop_after_delay(SQLITE_BUSY_SECONDS),
    wait=tenacity.wait_exponential_jitter(multiplier=0.01, max=0.5),
    reraise=True,
)


def make_engine(url: str) -> Engine:
    """Create the content store's engine; raises ConfigError for a URL it does not support."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        raise ConfigError(f"RUNNER_DATABASE_URL is not a database URL; {ACCEPTED_URLS}") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return _sqlite_engine(parsed)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return sa.create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    shown = parsed.render_as_string(hide_password=True)
    raise ConfigError(f"RUNNER_DATABASE_URL={shown} is not supported; {ACCEPTED_URLS}")


def _sqlite_engine(url: sa.URL) -> Engine:
    """Create a SQLite engine several processes can write through: WAL, BEGIN IMMEDIATE."""
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        # Turning a new file to WAL needs an exclusive lock, and SQLite answers "locked" at
        # once, without its busy timeout, while another process holds one: wait for it here.
        for attempt in _SQLITE_LOCKED_RETRY.copy():  # a copy: Retrying keeps state
            with attempt:
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: two writers that both read first
        # would otherwise deadlock upgrading their read locks.
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(SQLITE_BEGIN, 'IMMEDIATE')}")

    return engine
