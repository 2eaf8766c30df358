"""The database: an engine for the content store's URL (SQLite or PostgreSQL), the metadata
every table joins, and the two ways to use a connection (`reading`, `retry_on_conflict`).

SQLite is one file that several worker processes write through: WAL, and BEGIN IMMEDIATE so
two writers never deadlock upgrading read locks. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import tenacity
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError

from runner import ConfigError, RunnerError, outbox_table

T = TypeVar("T")

ACCEPTED_URLS = "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
# Execution option read by the store's SQLite begin hook: readers ask for a deferred
# transaction, so a long read (a sitemap walk) never holds the write lock.
SQLITE_BEGIN = "sqlite_begin"


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back as an aware UTC datetime, on SQLite too (which
    keeps no zone: a naive value read as local time would shift by the server's offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The runner's outbox (`Client.enqueue_on_commit`), made by migration 0003, on the same metadata
# so that Alembic's autogenerate sees it as the site's own.
outbox = outbox_table(metadata)

SQLITE_BUSY_SECONDS = 30
_SQLITE_LOCKED_RETRY = tenacity.Retrying(
    retry=tenacity.retry_if_exception(lambda exc: "locked" in str(exc)),
    stop=tenacity.stop_after_delay(SQLITE_BUSY_SECONDS),
    wait=tenacity.wait_exponential_jitter(multiplier=0.01, max=0.5),
    reraise=True,
)


class StoreUnavailable(RunnerError):
    """The content store cannot be opened: no such database, refused, or bad credentials."""


def shown_url(url: str) -> str:
    """The database URL with its password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def unreachable(url: str, error: Exception) -> str:
    """One line for a failure to open the store: what the database said, password hidden."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    said = reason[0] if reason else type(error).__name__
    password = sa.make_url(url).password
    if password:
        said = said.replace(str(password), "***")
    return (
        f"cannot open the content store {shown_url(url)}: {said}; check RUNNER_DATABASE_URL"
        " (the database must exist, and the server accept its user and password)"
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
        return _postgres_engine(parsed.set(drivername="postgresql+psycopg"))
    shown = parsed.render_as_string(hide_password=True)
    raise ConfigError(f"RUNNER_DATABASE_URL={shown} is not supported; {ACCEPTED_URLS}")


# A worker host that vanishes mid-transaction (network cut, host lost) must not keep its row
# locks for long: PostgreSQL does not notice a silent client by itself, and the attempt that
# takes over would wait on them for as long as the cut lasts. The server ends a session idle
# in a transaction after a few seconds (no transaction of ours waits on its client that
# long), a lock wait gives up after LOCK_TIMEOUT (the attempt then fails and is retried), and
# keepalives on both ends find a dead peer in seconds instead of hours.
PG_SESSION_SETTINGS = {
    "idle_in_transaction_session_timeout": "6s",
    "lock_timeout": "15s",
    "tcp_keepalives_idle": "3",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "6000",  # ms: results a vanished client never acknowledges end it
}
PG_CLIENT_OPTIONS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms: unacknowledged data to a vanished server fails then
}


def _postgres_engine(url: sa.URL) -> Engine:
    """Create a PostgreSQL engine whose sessions cannot hold locks long after their client
    vanished (PG_SESSION_SETTINGS, PG_CLIENT_OPTIONS); the URL's own options win."""
    options = {k: v for k, v in PG_CLIENT_OPTIONS.items() if k not in url.query}
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=options)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            for name, value in PG_SESSION_SETTINGS.items():
                cursor.execute(f"SET {name} = '{value}'")
        dbapi_conn.commit()

    return engine


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


def reading(engine: Engine) -> Connection:
    """Open a connection for reads only (a deferred transaction on SQLite)."""
    return engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"})


def retry_on_conflict(
    work: Callable[[], T],
    *,
    errors: tuple[type[Exception], ...] = (IntegrityError,),
    tries: int = 3,
) -> T:
    """Run `work` (one whole transaction) again if a concurrent writer made it fail with `errors`.

    Raises the last error after `tries` runs.
    """
    for _ in range(tries - 1):
        with suppress(*errors):
            return work()
    return work()
