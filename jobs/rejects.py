"""An import's rejected lines, read back from the content store's `import_rejects` table.

`rejects_note` is loaded with the tasks; the store (SQLAlchemy) only when rejects are read."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from runner import RunRecord

if TYPE_CHECKING:
    from sqlalchemy import Engine

PAGE = 50


def list_rejects(
    engine: Engine, token: str, *, after: int = 0, limit: int = PAGE
) -> list[dict[str, Any]]:
    """The rejects of import run `token` whose position is past `after`, in position order,
    at most `limit` of them (0: all)."""
    import sqlalchemy as sa

    from jobs.progress import import_rejects

    query = (
        sa.select(import_rejects)
        .where(import_rejects.c.token == token, import_rejects.c.position > after)
        .order_by(import_rejects.c.position)
    )
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row.pop("id", None)
        stamp = row["created_at"]
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # SQLite drops the zone
        row["created_at"] = stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return rows


def has_rejects(engine: Engine, token: str) -> bool:
    """Whether `token` has any reject stored (its run record may have expired before them)."""
    import sqlalchemy as sa

    from jobs.progress import import_rejects

    query = sa.select(import_rejects.c.id).where(import_rejects.c.token == token).limit(1)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def rejects_note(record: RunRecord) -> str | None:
    """What `runner show` adds for an import with rejected lines: how many, and where."""
    rejected = (record.counters or {}).get("rejected", 0)
    if not rejected:
        return None
    lines = "line" if rejected == 1 else "lines"
    return f"{rejected} {lines} rejected: runner rejects {record.token}"
