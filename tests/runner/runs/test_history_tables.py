"""The history tables: the engine's own Alembic tree and version table, on SQLite and (with
RUNNER_TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from runner.config import Settings


def test_the_history_tables_come_from_the_engines_own_alembic_tree(
    history_settings: Settings,
) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from runner.runs.history_tables import HEAD, MIGRATIONS, history_engine, upgrade_history

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    engine = history_engine(history_settings.history_database_url, create=True)
    assert engine is not None
    try:
        assert upgrade_history(engine) == HEAD
        assert upgrade_history(engine) == HEAD  # again: nothing to do
        tables = set(sa.inspect(engine).get_table_names())
        assert {"runner_runs", "runner_steps", "runner_log_events"} <= tables
        assert "runner_alembic_version" in tables and "alembic_version" not in tables
    finally:
        engine.dispose()
