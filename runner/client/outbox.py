"""The outbox: enqueue requests written into the caller's own database, in its transaction.

`Client.enqueue_on_commit(connection, task, args)` inserts one row into `runner_outbox` on the
caller's SQLAlchemy connection, inside the transaction it has open: a rollback takes the row
with it (nothing runs), and no relay sees the row before the commit (no run starts before the
data it reads is visible). The relay (runner.worker.relay) moves committed rows to Redis with the
ordinary enqueue, idempotent by token, and deletes them after.

The table ships as an Alembic operation a site calls from one of its own migrations
(`create_outbox_table(op)`, `drop_outbox_table(op)`), as Oban and Procrastinate ship theirs;
`outbox_table(metadata)` is the same table for `metadata.create_all`.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection

from runner.runs.enqueue import Request
from runner.runs.tracing import current_traceparent

if TYPE_CHECKING:
    from alembic.operations import Operations

TABLE = "runner_outbox"
CHANNEL = "runner_outbox"  # PostgreSQL NOTIFY channel: a commit wakes the relay at once


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("token", sa.String(200), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("args", sa.Text, nullable=False),  # canonical JSON
        sa.Column("queue", sa.String(200)),  # None: the task's queue
        sa.Column("due_at", sa.Float),  # epoch seconds of a delayed run; None: now
        sa.Column("traceparent", sa.String(55)),  # the enqueuer's W3C trace context
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("error", sa.Text),  # why the relay keeps this row (its task is gone, ...)
    ]


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The outbox table on `metadata` (for `create_all`, and the relay's queries)."""
    if TABLE in metadata.tables:
        return metadata.tables[TABLE]
    return sa.Table(TABLE, metadata, *_columns())


def create_outbox_table(op: Operations | Any) -> None:
    """The Alembic operation that makes the outbox table: call it from a site migration's
    `upgrade()` with `alembic.op` (`from runner import create_outbox_table`)."""
    op.create_table(TABLE, *_columns())


def drop_outbox_table(op: Operations | Any) -> None:
    """The reverse of `create_outbox_table`, for the migration's `downgrade()`."""
    op.drop_table(TABLE)


_table = outbox_table(sa.MetaData())


def write_request(connection: Connection, request: Request) -> str:
    """Insert `request` into the outbox in `connection`'s open transaction (one is begun if
    none is); returns its token. On PostgreSQL a NOTIFY rides in the same transaction."""
    token = request.resolved_token()
    row = {
        "token": token,
        "task": request.task.name,
        "args": json.dumps(request.args, sort_keys=True, separators=(",", ":")),
        "queue": request.queue,
        "due_at": request.at,
        "traceparent": request.traceparent or current_traceparent() or None,  # the producer's
        "created_at": time.time(),
    }
    connection.execute(_table.insert(), row)
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    return token


def rows_table() -> sa.Table:
    """The table the relay reads (one definition for both sides)."""
    return _table
