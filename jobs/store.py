"""The content store: the `posts` table, its schema made ready, and applying one import batch.

SQLite (one file, several worker processes) by default, PostgreSQL in production. An import's
progress and fencing live in `jobs.progress`.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.types import TypeEngine

from jobs.database import UtcDateTime, make_engine, metadata, reading, retry_on_conflict
from jobs.posts import Item, Post, Rejected, version_key
from jobs.progress import Counters, lease_lost, lock_import, record_batch, record_rejects
from jobs.revisions import ensure_ready
from jobs.rows import insert_posts, update_posts

SELECT_CHUNK = 1_000


class _Meta(sa.types.TypeDecorator[Any]):
    """JSON, and JSONB on PostgreSQL: its dialect is imported only there (it is a third of
    what importing the store costs a worker on SQLite)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


posts = sa.Table(
    "posts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.String, nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("topic", sa.Text),
    sa.Column("summary", sa.Text),
    sa.Column("difficulty", sa.String),
    sa.Column("reading_time", sa.Integer),
    sa.Column("view_count", sa.BigInteger),
    sa.Column("revision_version", sa.String),
    sa.Column("last_reviewed", sa.Date, index=True),
    sa.Column("needs_review", sa.Boolean, nullable=False, default=False),
    sa.Column("freshness", sa.Integer),
    sa.Column("content_hash", sa.String, nullable=False),
    sa.Column("meta", _Meta(), nullable=False),
    sa.Column("imported_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index("ix_posts_updated_at", "updated_at"),
)


@functools.cache
def engine_for(url: str) -> Engine:
    """This process's engine for `url`, on first use checked to be at the schema's head
    revision (an empty database is brought there); raises SchemaMismatch if it is not."""
    engine = make_engine(url)
    try:
        ensure_ready(engine)
    except Exception:
        engine.dispose()
        raise
    return engine


def apply_batch(
    engine: Engine,
    *,
    token: str,
    attempt: int,
    source: str,
    items: Sequence[Item],
    position: int,
) -> Counters:
    """Upsert a batch and move the cursor to `position` atomically; raises LeaseLost if fenced out.

    Items at or before the committed cursor were applied by an earlier attempt and are skipped.
    Raises ValueError if a post has no content hash.
    """
    missing = [
        i.post.source_id for i in items if not isinstance(i, Rejected) and not i.post.content_hash
    ]
    if missing:
        raise ValueError(f"posts without a content_hash (validate them first): {missing[:5]}")

    def work() -> Counters:
        with engine.connect() as conn, _pipelined(conn), conn.begin():
            return _apply(
                conn, token=token, attempt=attempt, source=source, items=items, position=position
            )

    # A concurrent import of another token may insert one of our new posts first.
    return retry_on_conflict(work)


@dataclass
class _Plan:
    """What one batch writes: rows by source_id, rejects, and the outcome tally."""

    inserts: dict[str, Post] = field(default_factory=dict)
    updates: dict[str, Post] = field(default_factory=dict)
    rejects: list[Rejected] = field(default_factory=list)
    tally: Counter[str] = field(default_factory=Counter)


def _apply(
    conn: Connection, *, token: str, attempt: int, source: str, items: Sequence[Item], position: int
) -> Counters:
    """Do apply_batch's work inside `conn`'s transaction; raises LeaseLost if fenced out."""
    ids = {item.post.source_id for item in items if not isinstance(item, Rejected)}
    if conn.dialect.name == "postgresql":
        committed, stored = _locked_with_versions(conn, token=token, attempt=attempt, ids=ids)
    else:
        committed = lock_import(conn, token=token, attempt=attempt)
        stored = _stored_versions(conn, ids)
    fresh = [item for item in items if item.position > committed]
    now = datetime.now(UTC)
    plan = _plan(fresh, stored)
    # In source_id order, so two batches that write the same posts lock them in one order.
    if plan.inserts:
        insert_posts(conn, posts, [plan.inserts[sid] for sid in sorted(plan.inserts)], now)
    if plan.updates:
        update_posts(conn, posts, [plan.updates[sid] for sid in sorted(plan.updates)], now)
    record_rejects(conn, token=token, source=source, rejects=plan.rejects)
    counts = Counters(**plan.tally)
    record_batch(conn, token=token, position=max(committed, position), counts=counts)
    return counts


@contextmanager
def _pipelined(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, psycopg's pipeline mode for the batch's transaction: BEGIN goes with the
    first query, and every write after the one read, with COMMIT, in one round trip."""
    if conn.dialect.name != "postgresql":
        yield
        return
    try:
        with conn.connection.driver_connection.pipeline():  # type: ignore[union-attr]
            yield
    except sa.exc.DBAPIError as exc:
        # A failed statement aborts the pipeline, so the transaction's rollback fails too
        # ("pipeline aborted") and hides the error that matters: a concurrent import that
        # inserted one of our posts first, which apply_batch retries.
        conflict = _integrity_error_behind(exc)
        if conflict is None:
            raise
        raise conflict from None


def _integrity_error_behind(exc: BaseException) -> sa.exc.IntegrityError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.exc.IntegrityError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _locked_with_versions(
    conn: Connection, *, token: str, attempt: int, ids: set[str]
) -> tuple[int, dict[str, tuple[str, str | None]]]:
    """lock_import and _stored_versions in one PostgreSQL statement (one round trip): the
    cursor, and the content hash and revision of the stored posts among `ids`."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(_LOCK_WITH_VERSIONS, (token, attempt, sorted(ids)))
    rows = cursor.fetchall()
    if not rows:
        raise lease_lost(token, attempt)
    stored = {sid: (content_hash, version) for _, sid, content_hash, version in rows if sid}
    return int(rows[0][0]), stored


_LOCK_WITH_VERSIONS = (
    "SELECT i.position, p.source_id, p.content_hash, p.revision_version"
    " FROM (SELECT position FROM imports WHERE token = %s AND fence = %s FOR UPDATE) AS i"
    " LEFT JOIN posts AS p ON p.source_id = ANY(%s)"
)


def _stored_versions(conn: Connection, ids: set[str]) -> dict[str, tuple[str, str | None]]:
    """Return content hash and revision of the stored posts among `ids` (plain SQL: built
    once per chunk size, not constructed and compiled as a statement per batch)."""
    wanted = sorted(ids)
    stored: dict[str, tuple[str, str | None]] = {}
    for start in range(0, len(wanted), SELECT_CHUNK):  # stay under bound-parameter limits
        chunk = wanted[start : start + SELECT_CHUNK]
        rows = conn.exec_driver_sql(_versions_of(len(chunk), conn.dialect.paramstyle), tuple(chunk))
        stored.update((sid, (content_hash, version)) for sid, content_hash, version in rows)
    return stored


@functools.lru_cache(maxsize=8)
def _versions_of(count: int, paramstyle: str) -> str:
    """The SELECT of the stored versions of `count` posts, in the driver's parameter style."""
    mark = "?" if paramstyle == "qmark" else "%s"
    return (
        "SELECT source_id, content_hash, revision_version FROM posts"
        f" WHERE source_id IN ({', '.join([mark] * count)})"
    )


def _plan(items: Sequence[Item], stored: dict[str, tuple[str, str | None]]) -> _Plan:
    """Decide each record's outcome in order; a later duplicate sees an earlier one's result."""
    plan = _Plan()
    for item in items:
        if isinstance(item, Rejected):
            plan.rejects.append(item)
            plan.tally["rejected"] += 1
            continue
        post = item.post
        outcome = _outcome(post, stored.get(post.source_id))
        plan.tally[outcome] += 1
        if outcome in ("inserted", "updated"):
            stored[post.source_id] = (post.content_hash, post.revision_version)
            new = outcome == "inserted" or post.source_id in plan.inserts
            (plan.inserts if new else plan.updates)[post.source_id] = post
    return plan


def _outcome(post: Post, stored: tuple[str, str | None] | None) -> str:
    """Return inserted, unchanged, stale (the stored revision is newer) or updated."""
    if stored is None:
        return "inserted"
    stored_hash, stored_version = stored
    if stored_hash == post.content_hash:
        return "unchanged"
    older = stored_version and post.revision_version
    if older and version_key(stored_version) > version_key(post.revision_version):
        return "stale"
    return "updated"


def iter_post_urls(engine: Engine) -> Iterator[tuple[str, datetime]]:
    """Yield (source_id, updated_at) of every post by source_id, streaming from the database."""
    stmt = sa.select(posts.c.source_id, posts.c.updated_at).order_by(posts.c.source_id)
    with reading(engine) as conn:
        for source_id, updated_at in conn.execution_options(yield_per=1_000).execute(stmt):
            yield source_id, _utc(updated_at)


def count_posts(engine: Engine) -> int:
    """Return how many posts the store holds."""
    with reading(engine) as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(posts)) or 0)


def get_post(engine: Engine, source_id: str) -> dict[str, Any] | None:
    """Return the stored post as a dict (meta decoded, times in UTC), or None."""
    stmt = sa.select(posts).where(posts.c.source_id == source_id)
    with reading(engine) as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    return {**row, "imported_at": _utc(row["imported_at"]), "updated_at": _utc(row["updated_at"])}


def _utc(moment: datetime) -> datetime:
    """Attach UTC to the naive datetimes SQLite returns."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
