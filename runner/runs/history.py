"""History: finished runs kept in a database once they left Redis (DESIGN.md, Decisions 3-6).

The engine's own tables, `runner_` prefixed: `runner_runs` (the run record, keyed by token and
generation), `runner_steps` (its finished steps and their results) and `runner_log_events`
(its whole log). A run is written in one transaction that replaces whatever an earlier copy
of the same (token, generation) wrote, so copying it twice (a mover killed between the copy
and the delete from Redis) leaves one copy. The database is `RUNNER_HISTORY_URL`, by default
the SQLite file `$RUNNER_HOME/history.db`; its engine has connect and statement timeouts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine

from runner.config import Settings
from runner.connections.redis import redact
from runner.errors import HistoryUnavailable, UnknownRun
from runner.logs import Entry, decode_entries
from runner.record import RunRecord

T = TypeVar("T")
TIMEOUT_SECONDS = 5  # connect and statement timeouts
MIGRATIONS = "runner.runs:migrations"  # the engine's own Alembic tree
VERSION_TABLE = "runner_alembic_version"  # its version table: a site's `alembic_version` stays
HEAD = "h0001"  # the newest revision there (a test keeps the two equal)
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


@dataclass(frozen=True, slots=True)
class Copy:
    """What Redis held for one finished run, as the mover read it: its hash, its steps and
    its log entries (id, fields)."""

    token: str
    run: Mapping[str, str]
    steps: Mapping[str, str]
    log: Sequence[tuple[str, Mapping[str, str]]]

    @property
    def generation(self) -> int:
        return int(self.run.get("generation") or 0)


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


class HistoryStore:
    """Reads and writes the history tables (see the module's docstring)."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self._created = False

    def _engine(self, *, create: bool) -> Engine | None:
        if self.engine is None:
            self.engine = history_engine(self.settings.history_database_url, create=create)
        if self.engine is not None and create and not self._created:
            upgrade_history(self.engine)
            self._created = True
        return self.engine

    def write(self, copies: Sequence[Copy]) -> None:
        """Write `copies` in one transaction, replacing any earlier copy of the same runs (a
        run is its token and creation time: a token enqueued again after its marker expired
        is a new run, its next generation in history)."""
        engine = self._engine(create=True)
        assert engine is not None  # created on demand
        t = runs_table
        with engine.begin() as conn:
            runs, steps, events = [], [], []
            for c in copies:
                gen = _generation(conn, c)
                for table in (runs_table, steps_table, log_table):
                    conn.execute(table.delete().where(
                        table.c.token == c.token, table.c.generation == gen))  # fmt: skip
                runs.append({**_run_row(c), "generation": gen})
                steps += [{"token": c.token, "generation": gen, "name": name, "result": value}
                          for name, value in c.steps.items()]  # fmt: skip
                events += [{"token": c.token, "generation": gen, "seq": seq, "entry_id": entry,
                            "fields": json.dumps(dict(fields))}
                           for seq, (entry, fields) in enumerate(c.log)]  # fmt: skip
            for table, rows in ((t, runs), (steps_table, steps), (log_table, events)):
                if rows:
                    conn.execute(table.insert(), rows)

    def prune(self, *, before: float, batch: int = 500) -> int:
        """Delete up to `batch` runs that finished before `before` (epoch seconds), with their
        steps and log; returns how many."""
        engine = self._engine(create=False)
        if engine is None:
            return 0
        t = runs_table
        query = sa.select(t.c.token, t.c.generation).where(t.c.finished_at < before).limit(batch)
        with engine.begin() as conn:
            try:
                old = conn.execute(query).all()
            except sa.exc.OperationalError:
                return 0
            for table in (log_table, steps_table, runs_table):
                for token, generation in old:
                    conn.execute(table.delete().where(
                        table.c.token == token, table.c.generation == generation))  # fmt: skip
        return len(old)

    def get(self, token: str) -> RunRecord | None:
        """The newest generation of `token`'s run in history; None when it has none."""
        fields = self._fields(token)
        if fields is None:
            return None
        return RunRecord.from_hash({k.encode(): v.encode() for k, v in fields.items()})

    def find(self, ref: str) -> RunRecord | None:
        """The newest run in history whose token is `ref` or, failing that, the only one whose
        token starts with it; None when none does. Raises UnknownRun for an ambiguous prefix."""
        exact = self.get(ref)
        if exact is not None:
            return exact
        t = runs_table
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = sa.select(t.c.token).where(t.c.token.like(f"{escaped}%", escape="\\")).limit(4)
        rows: list[str] = self._read(lambda conn: list(conn.execute(query).scalars()), [])
        found = sorted({f for f in rows if f.startswith(ref)})  # SQLite's LIKE ignores case
        if len(found) > 1:
            shown = ", ".join(found[:3])
            raise UnknownRun(f"{ref!r} matches several runs in history ({shown}, ...)")
        return self.get(found[0]) if found else None

    def copy(self, token: str) -> Copy | None:
        """What the mover copied of `token`'s newest generation; None when history has none."""
        fields = self._fields(token)
        if fields is None:
            return None
        rows = self._rows(steps_table, token, steps_table.c.name)
        return Copy(token, fields, {r.name: r.result for r in rows}, self.log(token))

    def generations(self, token: str) -> list[int]:
        """Every generation of `token` in history, newest first."""
        query = sa.select(runs_table.c.generation).where(runs_table.c.token == token)
        found: list[int] = self._read(lambda conn: list(conn.execute(query).scalars()), [])
        return sorted((int(g) for g in found), reverse=True)

    def steps(self, token: str) -> dict[str, Any]:
        """The finished steps of `token`'s newest generation in the order they finished, as
        `Runs.steps` gives them: name -> {result, attempt, seconds, ...}."""
        rows = self._rows(steps_table, token, steps_table.c.name)
        steps = {row.name: json.loads(row.result) for row in rows}
        return dict(sorted(steps.items(), key=lambda item: item[1].get("finished_at", 0)))

    def log(self, token: str) -> list[tuple[str, dict[str, str]]]:
        """The log entries (id, fields) of `token`'s newest generation, oldest first."""
        rows = self._rows(log_table, token, log_table.c.seq)
        return [(row.entry_id, json.loads(row.fields)) for row in rows]

    def events(self, token: str) -> list[Entry]:
        """The log events of `token`'s newest generation, as `runner.logs.read_events`."""
        raw = [(eid.encode(), {k.encode(): v.encode() for k, v in fields.items()})
               for eid, fields in self.log(token)]  # fmt: skip
        return decode_entries(raw)

    def listing(
        self, *, state: str | None = None, task: str | None = None, since: float | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:  # fmt: skip
        """The newest finished runs (by creation; `limit` 0: all), optionally of one state or
        task, created (with a state: finished) after `since`."""
        t = runs_table
        query = sa.select(t.c.fields).order_by(t.c.created_at.desc())
        if limit:
            query = query.limit(limit)
        if state is not None:
            query = query.where(t.c.state == state)
        if task is not None:
            query = query.where(t.c.task == task)
        if since is not None:
            query = query.where((t.c.finished_at if state else t.c.created_at) >= since)
        raw: list[str] = self._read(lambda conn: list(conn.execute(query).scalars()), [])
        return [_record(json.loads(f)) for f in raw]

    def counts(self, *, task: str | None = None, since: float | None = None) -> dict[str, int]:
        """How many runs history holds per state, optionally of one task, created after
        `since`."""
        t = runs_table
        query = sa.select(t.c.state, sa.func.count()).group_by(t.c.state)
        if task is not None:
            query = query.where(t.c.task == task)
        if since is not None:
            query = query.where(t.c.created_at >= since)
        rows: list[Any] = self._read(lambda conn: list(conn.execute(query).all()), [])
        return {str(state): int(n) for state, n in rows}

    def _fields(self, token: str) -> dict[str, str] | None:
        t = runs_table
        query = sa.select(t.c.fields).where(t.c.token == token)
        query = query.order_by(t.c.generation.desc()).limit(1)
        raw = self._read(lambda conn: conn.execute(query).scalar(), None)
        return None if raw is None else dict(json.loads(raw))

    def _rows(self, table: sa.Table, token: str, order: Any) -> list[Any]:
        generations = self.generations(token)
        if not generations:
            return []
        query = sa.select(table).where(table.c.token == token)
        query = query.where(table.c.generation == generations[0]).order_by(order)
        return self._read(lambda conn: list(conn.execute(query).all()), list[Any]())

    def _read(self, read: Callable[[sa.Connection], T], empty: T) -> T:
        """`read` on a connection; `empty` when there is no database or no tables yet. Raises
        HistoryUnavailable (one line) when the database cannot be reached or read."""
        engine = self._engine(create=False)
        if engine is None:
            return empty
        try:
            with engine.connect() as conn:
                return read(conn)
        except sa.exc.DBAPIError as exc:
            if _no_tables(exc):
                return empty
            said = str(exc.orig or exc).strip().splitlines()[0][:200]
            url = redact(self.settings.history_database_url)
            raise HistoryUnavailable(
                f"the history database {url} cannot be read ({said}): check RUNNER_HISTORY_URL"
            ) from None


def _no_tables(exc: sa.exc.DBAPIError) -> bool:
    """Whether the error says the history tables are not there yet (nothing moved so far)."""
    return "no such table" in str(exc.orig) or getattr(exc.orig, "sqlstate", "") == "42P01"


def _generation(conn: sa.Connection, c: Copy) -> int:
    """The history generation of copy `c`: that of the row of the same run (same creation
    time) if there is one, else one past the token's newest, else the run's own."""
    t = runs_table
    rows = conn.execute(sa.select(t.c.generation, t.c.created_at).where(t.c.token == c.token))
    seen = {float(created): int(gen) for gen, created in rows}
    created = float(c.run.get("created_at") or 0.0)
    if created in seen:
        return seen[created]
    return max(seen.values()) + 1 if seen else c.generation


def _record(fields: Mapping[str, str]) -> RunRecord:
    return RunRecord.from_hash({k.encode(): v.encode() for k, v in fields.items()})


def _run_row(c: Copy) -> dict[str, Any]:
    run = c.run
    finished = run.get("finished_at") or run.get("updated_at")
    return {
        "token": c.token, "generation": c.generation, "task": run.get("task", ""),
        "queue": run.get("queue", "default"), "state": run.get("state", ""),
        "created_at": float(run.get("created_at") or 0.0),
        "finished_at": float(finished) if finished else None,
        "fields": json.dumps(dict(run)),
    }  # fmt: skip
