"""Alembic's environment of the engine's own tables (runner.runs.history_tables): migrate
on the connection `upgrade_history` hands over, in its transaction, with its own
version table (`runner_alembic_version`), so a site's own Alembic tree is untouched."""

from __future__ import annotations

from alembic import context

from runner.runs.history_tables import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
