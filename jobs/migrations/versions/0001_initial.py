"""The schema `runner db init` made with create_all before migrations: posts, imports,
import_rejects. A database made then is adopted at this revision (stamped, not changed).

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("source_id", sa.String, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("topic", sa.Text),
        sa.Column("summary", sa.Text),
        sa.Column("difficulty", sa.String),
        sa.Column("reading_time", sa.Integer),
        sa.Column("view_count", sa.BigInteger),
        sa.Column("revision_version", sa.String),
        sa.Column("last_reviewed", sa.Date),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("freshness", sa.Integer),
        sa.Column("content_hash", sa.String, nullable=False),
        sa.Column("meta", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("imported_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
        sa.UniqueConstraint("source_id", name="uq_posts_source_id_"),
    )
    op.create_index("ix_posts_last_reviewed", "posts", ["last_reviewed"])
    op.create_index("ix_posts_updated_at", "posts", ["updated_at"])
    counters = [
        sa.Column(name, sa.Integer, nullable=False, server_default="0")
        for name in ("inserted", "updated", "unchanged", "stale", "rejected")
    ]
    op.create_table(
        "imports",
        sa.Column("token", sa.String, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("fence", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        *counters,
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN),
        sa.PrimaryKeyConstraint("token", name="pk_imports"),
    )
    op.create_table(
        "import_rejects",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("token", sa.String, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("source_id", sa.String),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_import_rejects"),
        sa.UniqueConstraint("token", "position", name="uq_import_rejects_token_position"),
    )
    op.create_index("ix_import_rejects_created_at", "import_rejects", ["created_at"])


def downgrade() -> None:
    for table in ("import_rejects", "imports", "posts"):
        op.drop_table(table)
