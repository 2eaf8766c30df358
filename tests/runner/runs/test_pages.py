"""Pages of runs across Redis and history: one order, one cursor, each run once, whatever page
size, filter or store it is in (SQLite, and PostgreSQL with RUNNER_TEST_POSTGRES_URL)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from redis import Redis

from runner.config import Settings
from runner.record import Enqueued, RunState
from runner.runs.index import RunQuery
from runner.runs.move import Mover
from runner.runs.pages import all_runs, runs_page
from runner.runs.transitions import Runs


def every_page(redis: Redis, mover: Mover, query: RunQuery) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = runs_page(redis, mover.settings, replace(query, after=after), mover.store)
        pages.append([r.token for r in page.runs])
        after = page.next
        if after is None:
            return pages
        assert len(pages) < 100, "the cursor moves on"


@pytest.fixture
def mixed(enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover) -> list[str]:
    """Nine runs, newest first: six moved to history and three still in Redis, interleaved
    by creation (two of Redis's succeeded after the move, one is queued)."""
    tokens = [enqueue("greet", token=f"g{i}", name=f"n{i}").token for i in range(6)]
    drain()
    assert mover.move_once() == 6
    tokens += [enqueue("greet", token=f"h{i}", name=f"m{i}").token for i in range(2)]
    drain()
    tokens.append(enqueue("greet", token="q0", name="waiting").token)
    return tokens[::-1]


@pytest.mark.parametrize("size", [1, 2, 4, 50])
def test_paging_shows_every_run_once_newest_first_across_both_stores(
    redis: Redis, mover: Mover, mixed: list[str], size: int
) -> None:
    pages = every_page(redis, mover, RunQuery(limit=size))
    assert [t for page in pages for t in page] == mixed
    assert all(len(page) <= size for page in pages)


def test_a_state_filter_pages_by_when_runs_finished(
    redis: Redis, mover: Mover, mixed: list[str], runs: Runs
) -> None:
    pages = every_page(redis, mover, RunQuery(state=RunState.SUCCEEDED, limit=3))
    found = [t for page in pages for t in page]
    assert sorted(found) == sorted(t for t in mixed if t != "q0")
    finished = [runs.get(t) or mover.store.get(t) for t in found]
    times = [r.finished_at for r in finished if r is not None]
    assert times == sorted(times, reverse=True), "newest finish first, over both stores"


def test_task_queue_and_token_prefix_filters_reach_history(
    redis: Redis, mover: Mover, mixed: list[str]
) -> None:
    prefixed = all_runs(redis, mover.settings, RunQuery(token_prefix="g"), mover.store)
    assert [r.token for r in prefixed] == [t for t in mixed if t.startswith("g")]
    by_queue = all_runs(redis, mover.settings, RunQuery(queue="default"), mover.store)
    assert [r.token for r in by_queue] == mixed
    assert all_runs(redis, mover.settings, RunQuery(queue="elsewhere"), mover.store) == []
    assert len(all_runs(redis, mover.settings, RunQuery(task="greet"), mover.store, limit=4)) == 4


def test_a_run_in_both_stores_is_listed_once_from_redis(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover
) -> None:
    token = enqueue("greet", token="both", name="ada").token
    drain()
    mover.store.write(mover.copy(mover.due()))  # copied, not yet removed from Redis
    for size in (1, 50):
        pages = every_page(redis, mover, RunQuery(limit=size))
        assert [t for page in pages for t in page] == [token]
    counts = runs_page(redis, mover.settings, RunQuery(), None).counts
    assert counts["succeeded"] == 1


def test_the_console_pages_through_both_stores(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover
) -> None:  # fmt: skip
    from fastapi.testclient import TestClient

    from runner.web.app import create_app

    mixed = [enqueue("greet", token=f"old{i:02d}", name="a").token for i in range(20)]
    drain()
    assert mover.move_once() == 20
    mixed += [enqueue("greet", token=f"new{i:02d}", name="b").token for i in range(10)]
    drain()
    mixed.reverse()
    seen: list[str] = []
    url, visited = "/runs?limit=25", 0
    app = create_app(mover.settings, redis=redis)
    with TestClient(app, base_url="http://127.0.0.1:8080") as web:
        while url and visited < 10:
            visited += 1
            page = web.get(url)
            assert page.status_code == 200
            seen += re.findall(r'href="/runs/([^"]+)"', page.text)
            older = re.search(r'rel="next" href="([^"]+)"', page.text)
            url = older.group(1).replace("&amp;", "&") if older else ""
    assert visited == 2, "25 runs, then the other 5"
    assert [t for t in seen if t in mixed] == mixed, "each run once, newest first"


def test_a_history_database_down_leaves_the_console_with_redis_runs_and_a_notice(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings
) -> None:
    from fastapi.testclient import TestClient

    from runner.web.app import create_app

    token = enqueue("greet", name="ada").token
    down = replace(settings, history_url="postgresql+psycopg://u:secret-pw@127.0.0.1:1/h")
    with TestClient(create_app(down, redis=redis), base_url="http://127.0.0.1:8080") as web:
        page = web.get("/runs")
    assert page.status_code == 200 and token in page.text
    assert "showing the runs in Redis only" in page.text and "secret-pw" not in page.text
