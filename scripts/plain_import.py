"""The plain import script the runner is measured against: what a user writes instead of it.

    python scripts/plain_import.py FEED DATABASE_URL

Pinned so that it cannot be made slow, and standalone (stdlib, and psycopg for PostgreSQL: no
SQLAlchemy, nothing of this project), run as its own process: the feed read line by line with
the stdlib's `json.loads`, `meta` = `json.dumps` of the fields without a column, content hash
= sha256 of the line, DB-API `executemany` of INSERT ... ON CONFLICT (source_id) DO UPDATE of
the same columns, 500 rows per transaction, no validation. On SQLite the store's settings:
WAL, `synchronous=NORMAL`, BEGIN IMMEDIATE. The `posts` table must exist. Prints the number
of posts in the table at the end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any

BATCH = 500
COLUMNS = (
    *("source_id", "title", "body", "topic", "summary", "difficulty", "reading_time"),
    *("view_count", "revision_version", "last_reviewed", "needs_review", "content_hash"),
    *("meta", "imported_at", "updated_at"),
)
NAMED = ("source_id", "title", "body", "topic", "summary", "difficulty", "reading_time")
NAMED += ("view_count",)
UPSERT = "INSERT INTO posts ({}) VALUES ({}) ON CONFLICT (source_id) DO UPDATE SET {}".format(
    ", ".join(COLUMNS),
    "{}",
    ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in ("source_id", "imported_at")),
)


def row(line: bytes, now: str) -> tuple[Any, ...]:
    """One post as the plain script writes it: no validation, meta and hash the plain way."""
    record = json.loads(line)
    revision, flags = record.get("revision") or {}, record.get("flags") or {}
    meta = json.dumps({k: v for k, v in record.items() if k not in NAMED})
    return (
        *(record.get(name) for name in NAMED), revision.get("version"),
        revision.get("last_reviewed"), bool(flags.get("needs_human_review")),
        hashlib.sha256(line).hexdigest(), meta, now, now,
    )  # fmt: skip


def connect(url: str) -> tuple[Any, bool]:
    """A DB-API connection for a `sqlite:///PATH` or `postgresql[+psycopg]://` URL."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn, True
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)), False


def main(feed: str, url: str) -> int:
    conn, sqlite = connect(url)
    sql = UPSERT.format(", ".join(["?" if sqlite else "%s"] * len(COLUMNS)))
    cursor = conn.cursor()
    with open(feed, "rb") as lines_in:
        while lines := [line for line in itertools.islice(lines_in, BATCH) if line.strip()]:
            now = datetime.now(UTC).isoformat()
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(sql, [row(line, now) for line in lines])
            if sqlite:
                cursor.execute("COMMIT")
            else:
                conn.commit()
    cursor.execute("SELECT count(*) FROM posts")
    print(cursor.fetchone()[0])
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
