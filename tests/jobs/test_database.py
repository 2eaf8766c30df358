"""The database: engines for SQLite (WAL, a directory made on demand) and PostgreSQL, and
one clear line for a URL it does not support."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.database import make_engine
from jobs.revisions import upgrade
from runner.errors import ConfigError


def test_sqlite_store_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    # Given a SQLite URL in a directory that does not exist yet
    path = tmp_path / "var" / "data" / "content.db"
    # When the engine is made and the schema initialised
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    # Then the file exists, in WAL mode with synchronous=NORMAL
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    engine.dispose()
    assert path.exists()


@pytest.mark.parametrize(
    "url", ["mysql+pymysql://admin:s3cret@db.internal/content", "redis://:s3cret@x", "s3cret"]
)
def test_unsupported_url_names_the_variable_and_hides_the_password(url: str) -> None:
    # Given a URL the store does not support; When an engine is made
    with pytest.raises(ConfigError) as raised:
        make_engine(url)
    # Then the message names the variable and the accepted forms, without the password
    message = str(raised.value)
    assert "RUNNER_DATABASE_URL" in message
    assert "sqlite:///" in message and "postgresql+psycopg://" in message
    assert "s3cret" not in message
