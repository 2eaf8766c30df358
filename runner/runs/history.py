"""History: finished runs kept in a database once they left Redis (DESIGN.md, Decisions 3-6).

The tables are runner.runs.history_tables'. A batch of runs is written in one transaction that
replaces whatever an earlier copy of the same (token, generation) wrote, so copying it twice
(a mover killed between the copy and the delete from Redis) leaves one copy. Each run's
search text (`search_text`) is written with it; runner.runs.search reads it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine

from runner.config import Settings
from runner.connections.redis import redact
from runner.errors import HistoryUnavailable, UnknownRun
from runner.logs import Entry, decode_entries
from runner.record import RunRecord
from runner.runs.history_tables import (
    RUN_TABLES,
    add_counts,
    counts_table,
    history_engine,
    log_table,
    runs_table,
    search_table,
    search_text,
    steps_table,
    upgrade_history,
)

T = TypeVar("T")
# What reading a history without its tables raises (SQLite: OperationalError; PostgreSQL:
# ProgrammingError, UndefinedTable): a reader then finds nothing.
NO_TABLES = (sa.exc.OperationalError, sa.exc.ProgrammingError)


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

    def reading(self) -> Engine | None:
        """The engine to read with; None while there is no history database."""
        return self._engine(create=False)

    def write(self, copies: Sequence[Copy]) -> None:
        """Write `copies` in one transaction, replacing any earlier copy of the same runs (a
        run is its token and creation time: a token enqueued again after its marker expired
        is a new run, its next generation in history)."""
        engine = self._engine(create=True)
        assert engine is not None  # created on demand
        with engine.begin() as conn:
            rows: dict[sa.Table, list[dict[str, Any]]] = {t: [] for t in RUN_TABLES}
            seen = _seen(conn, [c.token for c in copies])
            changes: Counter[str] = Counter()
            for c in copies:
                gen, again = _generation(seen.setdefault(c.token, {}), c)
                if again:  # an earlier copy of this run: replaced
                    t = runs_table
                    old = conn.execute(sa.select(t.c.state).where(
                        t.c.token == c.token, t.c.generation == gen)).scalar()  # fmt: skip
                    if old is not None:
                        changes[str(old)] -= 1
                    for table in RUN_TABLES:
                        conn.execute(table.delete().where(
                            table.c.token == c.token, table.c.generation == gen))  # fmt: skip
                rows[runs_table].append({**_run_row(c), "generation": gen})
                changes[rows[runs_table][-1]["state"]] += 1
                rows[steps_table] += [
                    {"token": c.token, "generation": gen, "name": name, "result": value}
                    for name, value in c.steps.items()]  # fmt: skip
                rows[log_table] += [{"token": c.token, "generation": gen, "seq": seq,
                                     "entry_id": entry, "fields": json.dumps(dict(fields))}
                                    for seq, (entry, fields) in enumerate(c.log)]  # fmt: skip
                rows[search_table].append(
                    {"token": c.token, "generation": gen, "text": search_text(c.run)}
                )
            for table, found in rows.items():
                if found:
                    conn.execute(table.insert(), found)
            add_counts(conn, changes)

    def prune(self, *, before: float, batch: int = 500) -> int:
        """Delete up to `batch` runs that finished before `before` (epoch seconds), with their
        steps and log; returns how many."""
        engine = self._engine(create=False)
        if engine is None:
            return 0
        t = runs_table
        query = sa.select(t.c.token, t.c.generation, t.c.state).where(t.c.finished_at < before)
        with engine.begin() as conn:
            try:
                old = conn.execute(query.limit(batch)).all()
            except NO_TABLES:
                return 0
            for table in RUN_TABLES:
                for token, generation, _ in old:
                    conn.execute(table.delete().where(
                        table.c.token == token, table.c.generation == generation))  # fmt: skip
            add_counts(conn, {s: -n for s, n in Counter(str(r.state) for r in old).items()})
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
        query = sa.select(t.c.token).where(t.c.token.like(f"{_escaped(ref)}%", escape="\\"))
        query = query.limit(4)
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
        self, *, state: str | None = None, task: str | None = None, queue: str | None = None,
        token_prefix: str = "", since: float | None = None,
        before: tuple[float, str] | None = None, limit: int = 50,
    ) -> list[RunRecord]:  # fmt: skip
        """The newest finished runs (`limit` 0: all), ordered as Redis's indexes order them:
        by when they finished with a state given, else by creation, then by token, both
        descending; optionally of one state, task or queue, with a token prefix, after `since`
        and (a page cursor) before (order key, token)."""
        t = runs_table
        key = t.c.finished_at if state else t.c.created_at
        query = sa.select(t.c.fields).order_by(key.desc(), t.c.token.desc())
        if limit:
            query = query.limit(limit)
        for column, wanted in ((t.c.state, state), (t.c.task, task), (t.c.queue, queue)):
            if wanted is not None:
                query = query.where(column == wanted)
        if token_prefix:
            query = query.where(t.c.token.like(f"{_escaped(token_prefix)}%", escape="\\"))
        if since is not None:
            query = query.where(key >= since)
        if before is not None:
            score, token = before
            query = query.where((key < score) | ((key == score) & (t.c.token < token)))
        raw: list[str] = self._read(lambda conn: list(conn.execute(query).scalars()), [])
        found = [_record(json.loads(f)) for f in raw]
        return [r for r in found if r.token.startswith(token_prefix)]  # LIKE may ignore case

    def counts(self, *, task: str | None = None, since: float | None = None) -> dict[str, int]:
        """How many runs history holds per state, optionally of one task, created after
        `since`."""
        engine = self._engine(create=False)
        if engine is None:
            return {}
        if task is None and since is None:  # all of history: the counts the writer keeps
            with engine.connect() as conn:
                if sa.inspect(conn).has_table(counts_table.name):
                    kept = conn.execute(sa.select(counts_table)).all()
                    return {str(state): int(n) for state, n in kept if n}
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


def _escaped(prefix: str) -> str:
    """`prefix` for a LIKE pattern with backslash as its escape: its own % and _ are literal."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _no_tables(exc: sa.exc.DBAPIError) -> bool:
    """Whether the error says the history tables are not there yet (nothing moved so far)."""
    return "no such table" in str(exc.orig) or getattr(exc.orig, "sqlstate", "") == "42P01"


def _seen(conn: sa.Connection, tokens: list[str]) -> dict[str, dict[float, int]]:
    """The runs history holds of `tokens`: token -> {created_at: generation}."""
    t = runs_table
    seen: dict[str, dict[float, int]] = {}
    for start in range(0, len(tokens), 500):
        query = sa.select(t.c.token, t.c.generation, t.c.created_at)
        for token, gen, created in conn.execute(query.where(
                t.c.token.in_(tokens[start : start + 500]))):  # fmt: skip
            seen.setdefault(token, {})[float(created)] = int(gen)
    return seen


def _generation(seen: dict[float, int], c: Copy) -> tuple[int, bool]:
    """The history generation of copy `c` and whether history holds it already: that of the
    row of the same run (same creation time) if there is one, else one past the token's
    newest, else the run's own. `seen` (created_at -> generation) learns it."""
    created = float(c.run.get("created_at") or 0.0)
    if created in seen:
        return seen[created], True
    gen = max(seen.values()) + 1 if seen else c.generation
    seen[created] = gen
    return gen, False


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
