"""The content store's schema revision: Alembic upgrades under a lock, and a worker's check.

`upgrade` brings a database to the head revision. A database made by `runner db init` before
migrations (its tables, no `alembic_version`) is adopted first: stamped at revision 0001,
which is that schema, without a change. Upgrades hold a lock for their whole transaction
(SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two at once are safe: the second
finds the work done. A worker upgrades only an empty database (first use); one with tables
at another revision makes its imports fail with one line saying to run `runner db upgrade`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from jobs.database import make_engine, reading, shown_url, unreachable
from runner import ConfigError, HealthCheck, PermanentError, Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = "jobs:migrations"
FIRST = "0001"
# The newest revision in jobs/migrations/versions (a test keeps the two equal): a worker checks
# a database against it with one query, without loading Alembic (a fifth of its start-up).
HEAD = "0003"
# The tables of revision 0001: a database that has them and no version was made by create_all.
ADOPTED = frozenset({"posts", "imports", "import_rejects"})
_LOCK_KEY = 0x6A6F6273  # "jobs": the advisory lock that serializes upgrades on PostgreSQL


class SchemaMismatch(PermanentError):
    """The content store's schema is not at the revision this code needs."""


def _config(conn: Connection | None) -> Config:
    # Alembic logs each plugin and step at INFO, some on import: keep that out of our output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic.config import Config  # only to upgrade: see HEAD

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = conn
    return config


def head() -> str:
    """The revision this code needs."""
    return HEAD


def script_head() -> str | None:
    """The newest revision of the migration scripts themselves (what HEAD must say)."""
    from alembic.script import ScriptDirectory  # only to upgrade: see HEAD

    return ScriptDirectory.from_config(_config(None)).get_current_head()


def current(conn: Connection) -> str | None:
    """The database's revision (None: no `alembic_version`)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(engine: Engine) -> str:
    """Bring the database to the head revision under the upgrade lock; return it. An empty
    database gets the head schema at once, from the tables' own definitions, and is stamped
    there (without loading Alembic: a worker's first import pays for it); a test keeps that
    schema equal to the migrations'."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        if current(conn) != head():
            tables = set(sa.inspect(conn).get_table_names())
            if not tables & (ADOPTED | {"alembic_version"}):
                _create_at_head(conn)
                return head()
            config = _config(conn)
            from alembic import command  # only to upgrade: see HEAD

            if "alembic_version" not in tables and tables >= ADOPTED:
                command.stamp(config, FIRST)
            command.upgrade(config, "head")
        return current(conn) or ""


def _create_at_head(conn: Connection) -> None:
    """Create the head schema in an empty database and stamp it, as Alembic would."""
    import jobs.progress
    import jobs.store
    from jobs.database import metadata

    assert jobs.progress and jobs.store  # imported for their tables on `metadata`
    metadata.create_all(conn)
    conn.exec_driver_sql(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL,"
        " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
    )
    conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})


def ensure_ready(engine: Engine) -> None:
    """Make sure the schema is at head before a worker writes: an empty database is upgraded;
    raises SchemaMismatch (one line: what to run) for one at another revision."""
    with reading(engine) as conn:
        found = current(conn)
        tables = set(sa.inspect(conn).get_table_names())
    if found == head():
        return
    if found is None and not tables & ADOPTED:
        upgrade(engine)
        return
    shown = found or "none (made before migrations)"
    raise SchemaMismatch(
        f"the content store's schema is at revision {shown}, this code needs {head()}:"
        " run `runner db upgrade`, then rerun the failed imports"
    )


def store_health(settings: Settings) -> HealthCheck:
    """`runner health`'s check of the content store: it opens, and its schema is at head."""
    url = settings.store_url
    try:
        engine = make_engine(url)
    except (ConfigError, OSError) as exc:
        return HealthCheck("content store", False, str(exc))
    try:
        with reading(engine) as conn:
            found = current(conn)
    except (OperationalError, InterfaceError) as exc:
        return HealthCheck("content store", False, unreachable(url, exc))
    finally:
        engine.dispose()
    if found == head():
        return HealthCheck("content store", True, f"{shown_url(url)} at revision {found}")
    if found is None:
        problem = "has no schema revision (empty, or made before migrations)"
    else:
        problem = f"is at revision {found}, this code needs {head()}"
    return HealthCheck(
        "content store", False, f"{shown_url(url)} {problem}: run `runner db upgrade`"
    )
