"""`imports.sha256`: the body of a URL import, so that a feed without validators whose body
did not change since its last import skips the upsert.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("imports", sa.Column("sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("sha256")
