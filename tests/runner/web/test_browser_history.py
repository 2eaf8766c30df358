"""The console in a real browser (Playwright driving Debian's Chromium) over runs that moved
to history: a moved run's page, and the runs list's search box."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from playwright.sync_api import expect
from redis import Redis

from runner.config import Settings
from runner.record import Enqueued
from runner.runs.move import Mover
from tests.runner.web.conftest import LiveConsole

pytestmark = pytest.mark.browser
FEED = "feeds/alpha-2026-12.jsonl"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Finished runs (failed ones too) move at the mover's first pass."""
    return replace(settings, history_delay_seconds=0.0, failed_seconds=0)


def moved(redis: Redis, settings: Settings) -> None:
    mover = Mover(redis, settings)
    while mover.move_once():
        pass
    assert mover.store.engine is not None
    mover.store.engine.dispose()


def test_a_moved_run_is_found_by_the_search_box_and_its_page_reads_from_history(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings, redis: Redis,
    enqueue: Callable[..., Enqueued], drain: Callable[..., None],
) -> None:  # fmt: skip
    token = enqueue("greet", name=FEED).token
    other = enqueue("greet", name="feeds/beta.jsonl").token
    failed = enqueue("broken").token
    drain()
    moved(redis, settings)
    assert not redis.exists(f"{settings.prefix}run:{token}")
    console = serve(settings)
    page.goto(console.url + "/runs")
    expect(page.get_by_role("link", name=other)).to_be_visible()  # the list reads history
    page.locator("input[name=search]").fill("ALPHA-2026")
    page.locator("input[name=search]").press("Enter")
    expect(page).to_have_url(re.compile(r"/runs\?.*search=ALPHA-2026"))
    expect(page.locator(".search-note")).to_contain_text("1 run whose arguments or error")
    expect(page.get_by_role("link", name=token)).to_be_visible()
    expect(page.get_by_role("link", name=other)).to_have_count(0)
    expect(page.locator("table.runs td.argument")).to_have_text(f"name={FEED!r}".replace("'", '"'))
    page.locator("input[name=search]").fill("source does not exist")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("link", name=failed)).to_be_visible()
    expect(page.locator("table.runs td.error")).to_contain_text("source does not exist")
    page.get_by_role("link", name="Clear the search").click()
    expect(page.get_by_role("link", name=other)).to_be_visible()
    page.get_by_role("link", name=token).click()
    expect(page.locator("#run .state")).to_have_text("succeeded")
    expect(page.locator("#log")).to_contain_text("run.succeeded")
    assert not page.errors, page.errors
