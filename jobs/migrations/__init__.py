"""Alembic's script directory for the content store (`jobs.revisions` runs it)."""
