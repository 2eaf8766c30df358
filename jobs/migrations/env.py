"""Alembic's environment: migrate on the connection `jobs.revisions` hands over, in its
transaction (which holds the upgrade lock)."""

from __future__ import annotations

from alembic import context

import jobs.progress
import jobs.store
from jobs.database import metadata

assert jobs.progress and jobs.store  # imported for their tables on `metadata`

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
