"""The history tables and their database (runner.runs.history reads and writes them).

The engine's own tables, `runner_` prefixed: `runner_runs` (the run record, keyed by token and
generation), `runner_steps` (its finished steps and their results), `runner_log_events` (its
whole log) and `runner_run_search` (the text a search looks in: runner.runs.search). They come
from the engine's own Alembic tree (`runner.runs:migrations`, version table
`runner_alembic_version`, so a site's `alembic_version` stays its own). The database is
`RUNNER_HISTORY_URL`, by default the SQLite file `$RUNNER_HOME/history.db`; its engine has
connect and statement timeouts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

TIMEOUT_SECONDS = 5  # connect and statement timeouts
MIGRATIONS = "runner.runs:migrations"  # the engine's own Alembic tree
VERSION_TABLE = "runner_alembic_version"  # its version table: a site's `alembic_version` stays
HEAD = "h0002"  # the newest revision there (a test keeps the two equal)
_LOCK_KEY = 0x726E6E72  # "rnnr": the advisory lock that serializes upgrades on PostgreSQL

metadata = sa.MetaData()
runs_table = sa.Table(
    "runner_runs", metadata,
    sa.Column("token", sa.String(200), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("task", sa.String(200), nullable=False, index=True),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("finished_at", sa.Float, nullable=True, index=True),
    sa.Column("fields", sa.Text, nullable=False),  # JSON: the Redis hash, field -> text
)  # fmt: skip
steps_table = sa.Table(
    "runner_steps", metadata,
    sa.Column("token", sa.String(200), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("result", sa.Text, nullable=False),  # JSON, as the steps hash holds it
)  # fmt: skip
log_table = sa.Table(
    "runner_log_events", metadata,
    sa.Column("token", sa.String(200), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("entry_id", sa.String(40), nullable=False),  # the stream entry's id
    sa.Column("fields", sa.Text, nullable=False),  # JSON: the entry's field -> text
)  # fmt: skip
# An explicit integer key (a rowid alias on SQLite, which VACUUM keeps): the FTS5 index is
# keyed by it.
search_table = sa.Table(
    "runner_run_search", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("token", sa.String(200), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),  # the arguments' texts and the error
    sa.UniqueConstraint("token", "generation", name="uq_runner_run_search_run"),
)  # fmt: skip
RUN_TABLES = (runs_table, steps_table, log_table, search_table)  # what one run writes
# How many runs `runner_runs` holds per state, kept by the writer and the pruner in their own
# transactions: the console's counts over all of history, without counting a million rows.
counts_table = sa.Table(
    "runner_state_counts", metadata,
    sa.Column("state", sa.String(20), primary_key=True),
    sa.Column("runs", sa.BigInteger, nullable=False),
)  # fmt: skip
SEARCH_TEXT_CHARS = 4000  # what of a run's texts is searched, at most


def search_text(fields: Mapping[str, str]) -> str:
    """The text a search finds a run by: every text of its arguments (an import's file name or
    URL) and its error's type and message, one per line (the run hash's `args` and `error`)."""

    def leaves(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for item in value.values():
                yield from leaves(item)
        elif isinstance(value, list):
            for item in value:
                yield from leaves(item)
        elif value is not None and not isinstance(value, bool):
            yield str(value)

    def loaded(name: str) -> Any:
        raw = fields.get(name) or "null"
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    error = loaded("error")
    if isinstance(error, dict):
        error = [error.get("type"), error.get("message")]
    return "\n".join([*leaves(loaded("args")), *leaves(error)])[:SEARCH_TEXT_CHARS]


def add_counts(conn: sa.Connection, changes: Mapping[str, int]) -> None:
    """Add `changes` (state -> runs, negative for runs gone) to `runner_state_counts`."""
    t = counts_table
    for state, n in sorted(changes.items()):  # always in one order: no deadlock between two
        if (
            n
            and not conn.execute(
                t.update().where(t.c.state == state).values(runs=t.c.runs + n)
            ).rowcount
        ):
            conn.execute(t.insert().values(state=state, runs=n))


def history_engine(url: str, *, create: bool) -> Engine | None:
    """An engine for the history database with connect and statement timeouts; None for a
    SQLite file that does not exist unless `create` (a reader never creates one)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database:
            return None
        path = Path(parsed.database)
        if not path.exists():
            if not create:
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
        return sa.create_engine(parsed, connect_args={"timeout": TIMEOUT_SECONDS})
    ms = TIMEOUT_SECONDS * 1000
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    given = parsed.query.get("options") or ""  # the URL's own (a search_path, say) stay
    given = " ".join(given) if isinstance(given, tuple) else given
    options = f"{given} -c statement_timeout={ms} -c lock_timeout={ms}".strip()
    parsed = parsed.difference_update_query(["options"])
    connect_args = {
        "connect_timeout": TIMEOUT_SECONDS,
        "options": options,
        # a connection whose packets vanish (a black-holed host) fails in seconds, not after
        # the kernel's retransmits give up (~15 min): the mover then retries on a new one
        "tcp_user_timeout": 2 * ms,
        "keepalives": 1,
        "keepalives_idle": TIMEOUT_SECONDS,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    return sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)


def history_revision(conn: sa.Connection) -> str | None:
    """The history tables' revision (None: no version table yet)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()


def upgrade_history(engine: Engine) -> str:
    """Bring the history tables to the head revision (Alembic, under a lock: two at once are
    safe); returns it. At head already: one query, Alembic not loaded."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        if history_revision(conn) == HEAD:
            return HEAD
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        return history_revision(conn) or ""
