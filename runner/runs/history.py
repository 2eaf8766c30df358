"""History: finished runs kept in a database once they left Redis (DESIGN.md, Decisions 3-6).

The tables are runner.runs.history_tables'. A batch of runs is written in one transaction that
replaces whatever an earlier copy of the same (token, generation) wrote, so copying it twice
(a mover killed between the copy and the delete from Redis) leaves one copy. Each run's
search text (`search_text`) is written with it; runner.runs.search reads it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from runner.config import Settings
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

    def copy(self, token: str) -> Copy | None:
        """What the mover copied of `token`'s newest generation; None when history has none."""
        fields = self._fields(token)
        if fields is None:
            return None
        rows = self._rows(steps_table, token, steps_table.c.name)
        return Copy(token, fields, {r.name: r.result for r in rows}, self.log(token))

    def generations(self, token: str) -> list[int]:
        """Every generation of `token` in history, newest first."""
        engine = self._engine(create=False)
        if engine is None:
            return []
        t = runs_table
        with engine.connect() as conn:
            try:
                query = sa.select(t.c.generation).where(t.c.token == token)
                return sorted((int(g) for g in conn.execute(query).scalars()), reverse=True)
            except NO_TABLES:
                return []  # no tables yet

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
        engine = self._engine(create=False)
        if engine is None:
            return []
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
        with engine.connect() as conn:
            try:
                raw = list(conn.execute(query).scalars())
            except NO_TABLES:
                return []
        return [_record(json.loads(f)) for f in raw]

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
        with engine.connect() as conn:
            try:
                return {str(state): int(n) for state, n in conn.execute(query).all()}
            except NO_TABLES:
                return {}

    def _fields(self, token: str) -> dict[str, str] | None:
        engine = self._engine(create=False)
        if engine is None:
            return None
        t = runs_table
        query = sa.select(t.c.fields).where(t.c.token == token)
        with engine.connect() as conn:
            try:
                raw = conn.execute(query.order_by(t.c.generation.desc()).limit(1)).scalar()
            except NO_TABLES:
                return None
        return None if raw is None else dict(json.loads(raw))

    def _rows(self, table: sa.Table, token: str, order: Any) -> list[Any]:
        generations = self.generations(token)
        engine = self._engine(create=False)
        if not generations or engine is None:
            return []
        query = sa.select(table).where(table.c.token == token)
        query = query.where(table.c.generation == generations[0]).order_by(order)
        with engine.connect() as conn:
            return list(conn.execute(query).all())


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
