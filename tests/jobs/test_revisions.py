"""Schema migrations (jobs/revisions.py): adopting today's create_all schema with its rows,
a worker's check, and `runner db upgrade|init` on a database that cannot be opened."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from redis import Redis

from jobs.database import make_engine
from jobs.posts import validate_post
from jobs.progress import begin_import
from jobs.revisions import SchemaMismatch, current, ensure_ready, head, upgrade
from jobs.store import apply_batch, get_post
from runner.cli.commands import cli
from runner.config import Settings
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from tests.jobs.test_posts import HASH_BEFORE_MSGSPEC, full_record

# The DDL `runner db init` ran before migrations (metadata.create_all), frozen as it was: the
# migration must adopt exactly this, whatever the models say now.
_TABLES_BEFORE = """
CREATE TABLE import_rejects (
    id {serial} NOT NULL, token VARCHAR NOT NULL, source TEXT NOT NULL,
    position INTEGER NOT NULL, source_id VARCHAR, reason TEXT NOT NULL,
    created_at {when} NOT NULL,
    CONSTRAINT pk_import_rejects PRIMARY KEY (id),
    CONSTRAINT uq_import_rejects_token_position UNIQUE (token, position)
);
CREATE INDEX ix_import_rejects_created_at ON import_rejects (created_at);
CREATE TABLE imports (
    token VARCHAR NOT NULL, source TEXT NOT NULL, state VARCHAR(16) NOT NULL,
    generation INTEGER NOT NULL, fence INTEGER NOT NULL, position INTEGER NOT NULL,
    inserted INTEGER DEFAULT '0' NOT NULL, updated INTEGER DEFAULT '0' NOT NULL,
    unchanged INTEGER DEFAULT '0' NOT NULL, stale INTEGER DEFAULT '0' NOT NULL,
    rejected INTEGER DEFAULT '0' NOT NULL, started_at {when} NOT NULL, finished_at {when},
    CONSTRAINT pk_imports PRIMARY KEY (token)
);
CREATE TABLE posts (
    id {serial} NOT NULL, source_id VARCHAR NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
    topic TEXT, summary TEXT, difficulty VARCHAR, reading_time INTEGER, view_count BIGINT,
    revision_version VARCHAR, last_reviewed DATE, needs_review BOOLEAN NOT NULL,
    freshness INTEGER, content_hash VARCHAR NOT NULL, meta {json} NOT NULL,
    imported_at {when} NOT NULL, updated_at {when} NOT NULL,
    CONSTRAINT pk_posts PRIMARY KEY (id), CONSTRAINT uq_posts_source_id_ UNIQUE (source_id)
);
CREATE INDEX ix_posts_last_reviewed ON posts (last_reviewed);
CREATE INDEX ix_posts_updated_at ON posts (updated_at)
"""
_TYPES = {
    "sqlite": {"serial": "INTEGER", "when": "DATETIME", "json": "JSON"},
    "postgresql": {"serial": "SERIAL", "when": "TIMESTAMP WITH TIME ZONE", "json": "JSONB"},
}


def make_store_before_migrations(engine: sa.Engine, posts: int) -> None:
    """Today's `db init` schema, filled: `posts` posts, an import and a reject each."""
    ddl = _TABLES_BEFORE.format(**_TYPES[engine.dialect.name])
    stamp = (
        "2026-11-30 10:00:00.000000" if engine.dialect.name == "sqlite" else "2026-11-30T10:00:00Z"
    )
    with engine.begin() as conn:
        for statement in ddl.split(";"):
            conn.exec_driver_sql(statement)
        for n in range(posts):
            conn.execute(
                sa.text(
                    "INSERT INTO posts (source_id, title, body, reading_time, view_count,"
                    " revision_version, last_reviewed, needs_review, content_hash, meta,"
                    " imported_at, updated_at) VALUES (:sid, :title, 'body ✓', :n, :big, '1.0',"
                    " :day, :flag, :hash, :meta, :at, :at)"
                ).bindparams(sa.bindparam("day", type_=sa.Date)),
                {"sid": f"old-{n}", "title": f"title {n}", "n": n, "big": 10**12 + n,
                 "day": date(2024, 1, 1 + n % 28), "flag": n % 2 == 0, "hash": f"h{n}",
                 "meta": json.dumps({"stack": ["python"], "n": n}), "at": stamp},
            )  # fmt: skip
            conn.exec_driver_sql(
                "INSERT INTO imports (token, source, state, generation, fence, position,"
                f" inserted, started_at) VALUES ('t{n}', 'feed', 'finished', 0, 1, {n}, {n},"
                f" '{stamp}')"
            )
            conn.exec_driver_sql(
                "INSERT INTO import_rejects (token, source, position, source_id, reason,"
                f" created_at) VALUES ('t{n}', 'feed', 1, NULL, 'reason {n}', '{stamp}')"
            )


def every_row(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1")]
            for table in ("posts", "imports", "import_rejects")
        }


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_changes(tasks_module="jobs", queues=("imports", "cron", "default"))


@pytest.fixture
def bare(database_url: str) -> sa.Engine:
    """An engine on an empty database (no schema)."""
    engine = make_engine(database_url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def test_a_database_made_by_create_all_is_upgraded_keeping_every_row(bare: sa.Engine) -> None:
    # Given a store made by today's `db init`, with 30 posts, imports and rejects
    make_store_before_migrations(bare, posts=30)
    before = every_row(bare)
    # When it is upgraded (twice: the second finds nothing to do)
    assert upgrade(bare) == head()
    assert upgrade(bare) == head()
    # Then it is at head and every row is as it was (an import's row has its new column,
    # `sha256` of revision 0002, empty)
    with bare.connect() as conn:
        assert current(conn) == head()
    after = every_row(bare)
    assert after["imports"] == [(*row, None) for row in before["imports"]]
    assert {**after, "imports": before["imports"]} == before
    assert len(before["posts"]) == 30


def test_a_post_imported_before_msgspec_is_unchanged_after_the_upgrade(bare: sa.Engine) -> None:
    # Given a store made before migrations that holds the full record as the old code stored it
    make_store_before_migrations(bare, posts=0)
    record = full_record()
    now = datetime.now(UTC)
    with bare.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO posts (source_id, title, body, needs_review, content_hash, meta,"
                " imported_at, updated_at)"
                " VALUES (:sid, :title, :body, true, :hash, '{}', :at, :at)"
            ).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True))),
            {"sid": record["source_id"], "title": record["title"], "body": record["body"],
             "hash": HASH_BEFORE_MSGSPEC, "at": now},
        )  # fmt: skip
    # When the store is upgraded and the same record imported again
    upgrade(bare)
    begin_import(bare, token="again", source="feed", attempt=1, generation=0)
    counts = apply_batch(
        bare, token="again", attempt=1, source="feed",
        items=[validate_post(record, position=1)], position=1,
    )  # fmt: skip
    # Then it is unchanged, and the stored row was not rewritten
    assert counts.as_dict() == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 1,
        "stale": 0,
        "rejected": 0,
    }
    stored = get_post(bare, record["source_id"])
    assert stored is not None and stored["content_hash"] == HASH_BEFORE_MSGSPEC


def schema_of(engine: sa.Engine) -> dict[str, object]:
    """Every table's columns (name, type, nullable, default), keys, unique constraints and
    indexes, by name, as the database reports them."""
    found: dict[str, object] = {}
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in sorted(inspector.get_table_names()):
            found[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                            for c in inspector.get_columns(table)],
                "pk": inspector.get_pk_constraint(table),
                "unique": sorted((u["name"], tuple(u["column_names"]))
                                 for u in inspector.get_unique_constraints(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in inspector.get_indexes(table)),
            }  # fmt: skip
        found["version"] = current(conn)
    return found


def test_an_empty_database_made_at_head_at_once_has_the_schema_of_the_migrations(
    bare: sa.Engine,
) -> None:
    # Given an empty database brought to head by the migrations themselves (Alembic)
    from alembic import command

    from jobs.revisions import _config

    with bare.begin() as conn:
        command.upgrade(_config(conn), "head")
    migrated = schema_of(bare)
    # When its tables are dropped and it is brought to head by `upgrade` (the empty-database
    # path, which does not run the migrations)
    with bare.begin() as conn:
        for table in ("import_rejects", "imports", "posts", "alembic_version"):
            conn.exec_driver_sql(f"DROP TABLE {table}")
    assert upgrade(bare) == head()
    # Then the schema is the same, table by table, at the same revision
    assert schema_of(bare) == migrated
    assert migrated["version"] == head()


def test_a_worker_brings_an_empty_database_to_head(bare: sa.Engine) -> None:
    ensure_ready(bare)
    with bare.connect() as conn:
        assert current(conn) == head()


def test_a_worker_refuses_a_database_made_before_migrations_and_leaves_it(
    bare: sa.Engine,
) -> None:
    # Given a database made by today's create_all (its tables, no revision)
    make_store_before_migrations(bare, posts=1)
    # When a worker checks it, then it is refused with one line saying what to run
    with pytest.raises(SchemaMismatch, match=r"run `runner db upgrade`") as refused:
        ensure_ready(bare)
    assert "\n" not in str(refused.value)
    # And it is left as it was
    with bare.connect() as conn:
        assert current(conn) is None


def test_an_import_into_a_store_that_is_behind_fails_with_one_line_and_the_worker_goes_on(
    redis: Redis,
    settings: Settings,
    runs: Runs,
    drain: Callable[..., None],
) -> None:
    # Given a store made before migrations and an import queued
    engine = make_engine(settings.store_url)
    make_store_before_migrations(engine, posts=1)
    engine.dispose()
    feed = settings.home / "feed.jsonl"
    feed.write_text(json.dumps(full_record()) + "\n")
    task = load_registry("jobs").get("import_posts")
    Enqueuer(redis, settings).enqueue(Request(task, {"source": str(feed)}, "behind"))
    # When a worker takes it
    drain()
    # Then the run failed saying what to run
    record = runs.get("behind")
    assert record is not None and record.state == "failed" and record.error is not None
    assert "run `runner db upgrade`" in record.error["message"]


def run_cli(database_url: str, settings: Settings, *args: str) -> Result:
    env = {"RUNNER_HOME": str(settings.home), "RUNNER_DATABASE_URL": database_url,
           "RUNNER_TASKS": "jobs", "RUNNER_REDIS_URL": settings.redis_url or ""}  # fmt: skip
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("command", ["upgrade", "init"])
def test_db_upgrade_on_a_refused_connection_says_so_in_one_line(
    settings: Settings, command: str
) -> None:
    # Given a PostgreSQL URL with a password, on a port where nothing listens
    url = "postgresql+psycopg://site:s3cret-pw@127.0.0.1:1/content"
    # When the schema is upgraded
    result = run_cli(url, settings, "db", command)
    # Then one line names the store (password hidden) and what to check; exit 1
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert (
        "cannot open the content store postgresql+psycopg://site:***@127.0.0.1:1/content"
        in lines[0]
    )
    assert "s3cret-pw" not in result.output


def test_db_upgrade_of_a_database_that_does_not_exist_says_so_in_one_line(
    settings: Settings,
) -> None:
    base = os.environ.get("RUNNER_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNNER_TEST_POSTGRES_URL is not set")
    url = sa.make_url(base).set(database="no_such_database", password="s3cret-pw")
    result = run_cli(url.render_as_string(hide_password=False), settings, "db", "upgrade")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert 'database "no_such_database" does not exist' in result.output
    assert "s3cret-pw" not in result.output


def test_health_checks_the_content_store_and_names_what_is_wrong(
    settings: Settings, bare: sa.Engine, database_url: str
) -> None:
    # Given a store made before migrations
    make_store_before_migrations(bare, posts=1)
    # When health is asked, then "up" fails on the store, saying what to run
    result = run_cli(database_url, settings, "health")
    assert result.exit_code == 1
    assert "content store FAIL: " in result.output
    assert (
        "has no schema revision (empty, or made before migrations): run `runner db upgrade`"
        in result.output
    )
    # When it is upgraded, then the store's check passes and names the revision
    upgrade(bare)
    result = run_cli(database_url, settings, "health")
    assert "content store FAIL" not in result.output
    assert f"at revision {head()}" in result.output


def test_health_says_in_one_line_when_the_store_cannot_be_opened(settings: Settings) -> None:
    url = "postgresql+psycopg://site:s3cret-pw@127.0.0.1:1/content"
    result = run_cli(url, settings, "health")
    assert result.exit_code == 1
    assert (
        "content store FAIL: cannot open the content store postgresql+psycopg://site:***@"
        in result.output
    )
    assert "s3cret-pw" not in result.output


def test_the_head_a_worker_checks_is_the_newest_migration_script() -> None:
    from jobs.revisions import script_head

    assert script_head() == head()
