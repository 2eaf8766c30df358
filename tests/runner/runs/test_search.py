"""Search: runs found by an argument (a feed's file name) or their error's text, moved to
history or still in Redis, each once, in the CLI and the console (SQLite, and PostgreSQL when
RUNNER_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from click.testing import Result
from fastapi.testclient import TestClient
from redis import Redis

from runner.config import Settings
from runner.record import Enqueued, RunState
from runner.runs.move import Mover
from runner.runs.search import Search, search_runs
from runner.web.app import create_app

FEED = "feeds/alpha-2026-12.jsonl"
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def mover(redis: Redis, history_settings: Settings) -> Iterator[Mover]:
    mover = Mover(redis, replace(history_settings, failed_seconds=0))
    yield mover
    if mover.store.engine is not None:
        mover.store.engine.dispose()


@pytest.fixture
def cli(
    invoke: Callable[..., Result], mover: Mover, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """The CLI reading this test's history database."""
    if mover.settings.history_url:
        monkeypatch.setenv("RUNNER_HISTORY_URL", mover.settings.history_url)
    return invoke


def found(mover: Mover, text: str) -> list[str]:
    return [r.token for r in search_runs(mover.redis, mover.settings, mover.store, Search(text))]


def moved_all(mover: Mover) -> None:
    while mover.move_once():
        pass


def test_a_moved_run_is_found_by_its_file_name_in_any_case_and_by_part_of_it(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
    cli: Callable[..., Result],
) -> None:  # fmt: skip
    token = enqueue("greet", name=FEED).token
    other = enqueue("greet", name="feeds/beta.jsonl").token
    drain()
    moved_all(mover)
    assert not mover.redis.exists(mover.keys.run(token)), "moved to history"
    assert found(mover, FEED) == [token]
    assert found(mover, "ALPHA-2026") == [token]
    assert sorted(found(mover, ".jsonl")) == sorted([token, other])
    listed = cli("runs", "--search", "alpha-2026", "--json")
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["token"] for line in listed.stdout.splitlines()] == [token]


def test_a_moved_failed_run_is_found_by_its_error_text(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
    cli: Callable[..., Result],
) -> None:  # fmt: skip
    failed = enqueue("broken").token
    enqueue("greet", name="ada")
    drain()
    moved_all(mover)
    assert not mover.redis.exists(mover.keys.run(failed))
    assert found(mover, "source does not exist") == [failed]
    assert found(mover, "PermanentError") == [failed]
    listed = cli("runs", "--search", "does not exist", "--state", "failed")
    assert listed.exit_code == 0 and failed in listed.output


def test_a_run_still_in_redis_is_found_and_a_run_in_both_stores_once(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
    cli: Callable[..., Result],
) -> None:  # fmt: skip
    live = enqueue("greet", name=FEED).token
    drain()
    assert found(mover, FEED) == [live]  # in Redis only: history has no database yet
    mover.store.write(mover.copy([live]))  # copied, not yet removed: in both
    assert mover.redis.exists(mover.keys.run(live))
    assert mover.store.get(live) is not None
    assert found(mover, FEED) == [live]
    queued = enqueue("greet", name=FEED + ".next").token  # queued: live, never moved
    assert found(mover, FEED) == [queued, live]
    listed = cli("runs", "--search", FEED, "--json")
    tokens = [json.loads(line)["token"] for line in listed.stdout.splitlines()]
    assert tokens == [queued, live]


def test_a_cli_search_without_a_match_says_so_and_a_short_one_is_a_usage_error(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
    cli: Callable[..., Result],
) -> None:  # fmt: skip
    enqueue("greet", name=FEED)
    drain()
    moved_all(mover)
    nothing = cli("runs", "--search", "gamma-1999")
    assert nothing.exit_code == 0
    assert nothing.stdout == "" and "no runs match 'gamma-1999'" in nothing.stderr
    short = cli("runs", "--search", "ab")
    assert short.exit_code == 2 and "3 to 200 characters" in short.output
    assert "Traceback" not in short.output


def test_the_console_searches_and_escapes_hostile_text(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("greet", name=f"feeds/{HOSTILE}.jsonl").token
    plain = enqueue("greet", name=FEED).token
    drain()
    moved_all(mover)
    app = create_app(mover.settings, redis=redis)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        page = client.get("/runs", params={"search": HOSTILE})
        assert page.status_code == 200
        assert token in page.text and plain not in page.text
        assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
        page = client.get("/runs", params={"search": "alpha-2026"})
        assert plain in page.text and token not in page.text
        assert 'value="alpha-2026"' in page.text, "the box keeps the search"
        assert client.get("/runs", params={"search": "ab"}).status_code == 400
        none = client.get("/runs", params={"search": "gamma-1999"})
        assert none.status_code == 200 and "No run matches." in none.text


def test_history_written_before_the_search_revision_is_found_after_the_upgrade(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
) -> None:  # fmt: skip
    from alembic import command
    from alembic.config import Config

    from runner.runs.history_tables import MIGRATIONS

    token = enqueue("greet", name=FEED).token
    drain()
    moved_all(mover)
    engine = mover.store.engine
    assert engine is not None
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        config.attributes["connection"] = conn
        command.downgrade(config, "h0001")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        assert conn.execute(sa.text("SELECT count(*) FROM runner_run_search")).scalar() == 1
    assert found(mover, FEED) == [token]
    assert mover.store.get(token) is not None and mover.store.get(token).state == RunState.SUCCEEDED


def test_without_its_index_history_is_searched_row_by_row_with_one_warning(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
) -> None:  # fmt: skip
    from structlog.testing import capture_logs

    from runner.runs.search import FTS, TRIGRAM_INDEX

    token = enqueue("greet", name=FEED).token
    drain()
    moved_all(mover)
    engine = mover.store.engine
    assert engine is not None
    with engine.begin() as conn:  # as an SQLite without FTS5, or a role without pg_trgm
        if conn.dialect.name == "sqlite":
            for trigger in ("insert", "delete", "update"):
                conn.exec_driver_sql(f"DROP TRIGGER {FTS}_{trigger}")
            conn.exec_driver_sql(f"DROP TABLE {FTS}")
        else:
            conn.exec_driver_sql(f"DROP INDEX {TRIGRAM_INDEX}")
    with capture_logs() as logs:
        assert found(mover, "ALPHA-2026") == [token]
        assert found(mover, "100%_sure") == []  # LIKE's wildcards are text
        assert found(mover, FEED) == [token]
    warned = [e for e in logs if e["event"] == "history.search_unindexed"]
    assert len(warned) == 1 and "pg_trgm" in warned[0]["fix"]


def test_the_counts_per_state_the_writer_keeps_equal_a_count_of_the_rows(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
) -> None:  # fmt: skip
    import time

    from runner.runs.history_tables import runs_table

    def counted() -> dict[str, int]:
        assert mover.store.engine is not None
        with mover.store.engine.connect() as conn:
            query = sa.select(runs_table.c.state, sa.func.count()).group_by(runs_table.c.state)
            return {str(state): int(n) for state, n in conn.execute(query).all()}

    tokens = [enqueue("greet", name=f"n{i}").token for i in range(3)]
    failed = enqueue("broken").token
    drain()
    assert mover.copy_failed() == 1  # copied, still in Redis: copied again by the move
    moved_all(mover)
    assert mover.store.counts() == counted() == {"succeeded": 3, "failed": 1}
    copies = [mover.store.copy(t) for t in [*tokens, failed]]
    mover.store.write([c for c in copies if c is not None])  # the same runs again
    assert mover.store.counts() == counted() == {"succeeded": 3, "failed": 1}
    assert mover.store.prune(before=time.time() + 1, batch=2) == 2
    assert mover.store.counts() == counted()
    assert mover.store.prune(before=time.time() + 1) == 2
    assert mover.store.counts() == counted() == {}


def test_the_bulk_rerun_of_a_search_previews_only_the_failed_runs_that_match(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    missing = enqueue("broken").token
    still = enqueue("broken", permanent=False).token
    drain()
    app = create_app(mover.settings, redis=redis)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        listed = client.get("/runs", params={"search": "still broken"})
        assert still in listed.text and missing not in listed.text
        assert "search=still+broken" in listed.text.split("/rerun?")[1].split('"')[0]
        preview = client.get("/rerun", params={"state": "failed", "search": "still broken"})
        assert preview.status_code == 200
        assert still in preview.text and missing not in preview.text


def test_a_text_many_runs_hold_is_found_walking_the_runs_newest_first(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import runner.runs.search

    monkeypatch.setattr(runner.runs.search, "FTS_IDS", 1)  # SQLite: more than one is many
    tokens = [enqueue("greet", name=f"feeds/{i}-alpha.jsonl").token for i in range(3)]
    drain()
    moved_all(mover)
    newest = sorted(tokens, key=lambda t: mover.store.get(t).created_at, reverse=True)
    assert found(mover, "-ALPHA.jsonl") == newest
    assert found(mover, "1-alpha") == [tokens[1]]
    limited = search_runs(mover.redis, mover.settings, mover.store, Search("alpha", limit=2))
    assert [r.token for r in limited] == newest[:2]
