"""The runner's outbox table (`runner_outbox`): `Client.enqueue_on_commit` writes into it in
the site's own transactions, and the relay in every worker moves its rows to Redis.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op  # a module-level proxy of Operations

from runner import create_outbox_table, drop_outbox_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_table(op)


def downgrade() -> None:
    drop_outbox_table(op)
