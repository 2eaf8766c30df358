"""The engine's own Alembic tree: the history tables (runner.runs.history)."""
