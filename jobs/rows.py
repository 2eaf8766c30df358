"""Post rows as the database driver takes them: SQL written once per dialect, values encoded once.

The batch write is the import's hot path. Through SQLAlchemy's typed statements every value of
every row goes through its type's processing (`meta` through the stdlib's json, each time
stamp formatted anew); here `meta` is encoded by msgspec, the batch's one time stamp is
encoded once, and the driver's `executemany` gets plain tuples (psycopg 3 pipelines them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Dialect

from jobs.posts import Post

# The post's own columns after source_id, in the order of every statement here.
CONTENT = (
    *("title", "body", "topic", "summary", "difficulty", "reading_time", "view_count"),
    *("revision_version", "last_reviewed", "needs_review", "content_hash", "meta"),
)


@functools.cache
def _statements(dialect: str) -> tuple[str, str]:
    """The INSERT and UPDATE of post rows in `dialect`'s parameter style."""
    mark = "?" if dialect == "sqlite" else "%s"
    marks = [mark] * len(CONTENT)
    if dialect == "postgresql":
        marks[CONTENT.index("meta")] = "%s::jsonb"
    columns = ", ".join(("source_id", *CONTENT, "imported_at", "updated_at"))
    insert = f"INSERT INTO posts ({columns}) VALUES ({', '.join([mark, *marks, mark, mark])})"
    assigned = ", ".join(f"{c} = {m}" for c, m in zip(CONTENT, marks, strict=True))
    update = f"UPDATE posts SET {assigned}, updated_at = {mark} WHERE source_id = {mark}"
    return insert, update


def _processor(table: sa.Table, column: str, dialect: Dialect) -> Callable[[Any], Any]:
    """How the dialect stores a value of `column` (identity where the driver adapts it)."""
    process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


def _values(post: Post, day: Callable[[Any], Any]) -> tuple[Any, ...]:
    reviewed = day(post.last_reviewed) if post.last_reviewed is not None else None
    return (
        post.title, post.body, post.topic, post.summary, post.difficulty, post.reading_time,
        post.view_count, post.revision_version, reviewed, post.needs_review, post.content_hash,
        post.meta_json(),
    )  # fmt: skip


def insert_posts(conn: Connection, table: sa.Table, posts: Sequence[Post], now: datetime) -> None:
    """Insert new posts, stamped imported and updated `now`."""
    insert, _ = _statements(conn.dialect.name)
    stamp = _processor(table, "updated_at", conn.dialect)(now)
    day = _processor(table, "last_reviewed", conn.dialect)
    rows = [(post.source_id, *_values(post, day), stamp, stamp) for post in posts]
    conn.exec_driver_sql(insert, rows)


def update_posts(conn: Connection, table: sa.Table, posts: Sequence[Post], now: datetime) -> None:
    """Overwrite stored posts' content, stamped updated `now`."""
    _, update = _statements(conn.dialect.name)
    stamp = _processor(table, "updated_at", conn.dialect)(now)
    day = _processor(table, "last_reviewed", conn.dialect)
    rows = [(*_values(post, day), stamp, post.source_id) for post in posts]
    conn.exec_driver_sql(update, rows)
