"""The history tables: runner_runs, runner_steps, runner_log_events (runner.runs.history).

Revision ID: h0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op  # a module-level proxy of Operations

revision = "h0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runner_runs",
        sa.Column("token", sa.String(200), primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("fields", sa.Text, nullable=False),
    )
    for column in ("task", "state", "created_at", "finished_at"):
        op.create_index(f"ix_runner_runs_{column}", "runner_runs", [column])
    op.create_table(
        "runner_steps",
        sa.Column("token", sa.String(200), primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("result", sa.Text, nullable=False),
    )
    op.create_table(
        "runner_log_events",
        sa.Column("token", sa.String(200), primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("runner_log_events")
    op.drop_table("runner_steps")
    op.drop_table("runner_runs")
