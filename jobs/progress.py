"""An import run's durable progress: its cursor, counters, rejects and the fence that guards them.

Every write is fenced by the attempt number: an attempt that lost its lease to a newer one
cannot move the cursor, change the counters or store rejects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from jobs.database import UtcDateTime, metadata, reading, retry_on_conflict
from jobs.posts import Rejected
from runner import LeaseLost, PermanentError

OUTCOMES = ("inserted", "updated", "unchanged", "stale", "rejected")
REASON_LIMIT = 1_000
imports = sa.Table(
    "imports",
    metadata,
    sa.Column("token", sa.String, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("fence", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in OUTCOMES),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("sha256", sa.String(64)),  # a URL import's body (revision 0002)
)

import_rejects = sa.Table(
    "import_rejects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token", sa.String, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("source_id", sa.String),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False, index=True),
    # Also the index on token (its leading column); makes a replayed batch unable to
    # store a reject twice.
    sa.UniqueConstraint("token", "position"),
    # No RETURNING of the new ids: they are never read, and a batch's writes on PostgreSQL
    # are pipelined (jobs.store), where a statement's rows are not at hand.
    implicit_returning=False,
)


@dataclass
class Counters:
    """How many records of an import ended in each outcome."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    rejected: int = 0

    def __add__(self, other: Counters) -> Counters:
        """Return the outcome-by-outcome sum."""
        return Counters(**{name: n + getattr(other, name) for name, n in self.as_dict().items()})

    def as_dict(self) -> dict[str, int]:
        """Return the counters by outcome name, in OUTCOMES order."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Counters:
        """Read the five outcome columns of an `imports` row."""
        return cls(**{f.name: int(row[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class ImportProgress:
    """Where an import run stands: the last consumed record position, counters and state."""

    position: int
    counters: Counters
    state: str


def begin_import(
    engine: Engine, *, token: str, source: str, attempt: int, generation: int,
    sha256: str | None = None,
) -> ImportProgress:  # fmt: skip
    """Claim `token`'s import for `attempt`, return where to resume; raises LeaseLost if fenced out.

    A higher `generation` than the stored one restarts the run from scratch. `sha256`: the
    body of a URL import, which `last_sha256` reads back once the import finished.
    """

    def begin() -> ImportProgress:
        return _begin(
            engine, token=token, source=source, attempt=attempt, generation=generation,
            sha256=sha256,
        )  # fmt: skip

    return retry_on_conflict(begin)


def last_sha256(engine: Engine, *, source: str, token: str) -> str | None:
    """The body hash of the newest finished import of `source` other than run `token`."""
    stmt = (
        sa.select(imports.c.sha256)
        .where(imports.c.source == source, imports.c.state == "finished")
        .where(imports.c.token != token)
        .order_by(imports.c.finished_at.desc())
        .limit(1)
    )
    with reading(engine) as conn:
        return conn.scalar(stmt)


def _begin(
    engine: Engine, *, token: str, source: str, attempt: int, generation: int,
    sha256: str | None,
) -> ImportProgress:  # fmt: skip
    """Do begin_import's work in one transaction; raises LeaseLost if a newer attempt owns it."""
    with engine.begin() as conn:
        row = _claim(conn, token=token, attempt=attempt)
        if row is None:
            values = {"token": token, "fence": attempt, "sha256": sha256,
                      **_restart(source, generation)}  # fmt: skip
            conn.execute(sa.insert(imports).values(values))
            return _progress(values)
        if row["generation"] >= generation:
            return _progress(row)
        changes = {**_restart(source, generation), "sha256": sha256}
        conn.execute(sa.delete(import_rejects).where(import_rejects.c.token == token))
        conn.execute(sa.update(imports).where(imports.c.token == token).values(changes))
        return _progress({**row, **changes})


def lock_import(conn: Connection, *, token: str, attempt: int) -> int:
    """Lock the import row for `attempt` and return its cursor; raises LeaseLost if fenced out.

    Plain SQL, as the batch's other statements: it runs once per batch."""
    postgres = conn.dialect.name == "postgresql"
    lock = _LOCK_POSTGRES if postgres else _LOCK
    position = conn.exec_driver_sql(lock, (token, attempt)).scalar()
    if position is None:
        raise lease_lost(token, attempt)
    return int(position)


_LOCK = "SELECT position FROM imports WHERE token = ? AND fence = ?"
_LOCK_POSTGRES = "SELECT position FROM imports WHERE token = %s AND fence = %s FOR UPDATE"


def record_batch(conn: Connection, *, token: str, position: int, counts: Counters) -> None:
    """Move `token`'s cursor to `position` and add a batch's counts (after lock_import)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    added = [(name, n) for name, n in counts.as_dict().items() if n]
    assigned = "".join(f", {name} = {name} + {mark}" for name, _ in added)
    statement = f"UPDATE imports SET position = {mark}{assigned} WHERE token = {mark}"
    conn.exec_driver_sql(statement, (position, *(n for _, n in added), token))


def record_rejects(
    conn: Connection, *, token: str, source: str, rejects: Sequence[Rejected]
) -> None:
    """Store one `import_rejects` row per rejected record, reason cut to REASON_LIMIT."""
    if not rejects:
        return
    now = datetime.now(UTC)
    rows = [
        dict(
            token=token,
            source=source,
            position=r.position,
            source_id=r.source_id,
            reason=r.reason[:REASON_LIMIT],
            created_at=now,
        )
        for r in rejects
    ]
    conn.execute(sa.insert(import_rejects), rows)


def finish_import(engine: Engine, *, token: str, attempt: int) -> Counters:
    """Mark `token`'s import finished and return its counters; raises LeaseLost if a newer
    attempt claimed it. The attempt claims the import here itself: the attempt that began it
    and upserted every batch may have been killed just before finishing it."""
    with engine.begin() as conn:
        if _claim(conn, token=token, attempt=attempt) is None:
            raise PermanentError(f"import {token!r} never began: nothing to finish")
        running = (imports.c.token == token) & (imports.c.state != "finished")
        finished = {"state": "finished", "finished_at": datetime.now(UTC)}
        conn.execute(sa.update(imports).where(running).values(finished))
        row = conn.execute(sa.select(imports).where(imports.c.token == token)).mappings().one()
        return Counters.from_row(row)


def read_import(engine: Engine, token: str) -> ImportProgress | None:
    """Return `token`'s committed progress, or None if it never began."""
    with reading(engine) as conn:
        row = conn.execute(sa.select(imports).where(imports.c.token == token)).mappings().first()
        return None if row is None else _progress(row)


def _claim(conn: Connection, *, token: str, attempt: int) -> Mapping[Any, Any] | None:
    """Lock `token`'s import row, move its fence to `attempt` and return it as it was (None
    if there is none: the caller inserts it); raises LeaseLost if a newer attempt claimed it."""
    stmt = sa.select(imports).where(imports.c.token == token).with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    if row["fence"] > attempt:
        raise lease_lost(token, attempt)
    if row["fence"] < attempt:
        conn.execute(sa.update(imports).where(imports.c.token == token).values(fence=attempt))
    return row


def _restart(source: str, generation: int) -> dict[str, Any]:
    """Return the columns of a run that starts from the first record."""
    return {
        "source": source,
        "generation": generation,
        "state": "running",
        "position": 0,
        **Counters().as_dict(),
        "started_at": datetime.now(UTC),
        "finished_at": None,
    }


def _progress(row: Mapping[Any, Any]) -> ImportProgress:
    """Return the progress recorded in an `imports` row."""
    return ImportProgress(int(row["position"]), Counters.from_row(row), str(row["state"]))


def lease_lost(token: str, attempt: int) -> LeaseLost:
    """Return the error for an attempt a newer one has fenced out (or whose import row the
    fence moved past)."""
    return LeaseLost(
        f"import {token!r}: attempt {attempt} lost its lease to a newer attempt; "
        "it stops without writing (the newer attempt continues the import)"
    )
