"""The console in a real browser (Playwright driving Debian's Chromium), on real Redis, the
site's real import task and a SQLite content store: what an operator clicks through."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from runner.config import Settings
from runner.runs import Runs
from tests.conftest import state_of
from tests.runner.web.conftest import LiveConsole

pytestmark = pytest.mark.browser


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The site's own tasks (jobs), with a SQLite store of this test."""
    return replace(
        settings, tasks_module="jobs", queues=("imports", "cron", "default"),
        database_url=f"sqlite:///{tmp_path / 'content.db'}",
    )  # fmt: skip


def write_feed(path: Path, count: int) -> bytes:
    lines = [
        json.dumps({"source_id": f"web-{i:04d}", "title": f"Post {i}", "body": f"Body {i}."})
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path.read_bytes()


def test_a_vanished_feed_fails_shows_on_the_overview_and_a_rerun_succeeds_live(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings, invoke: Callable[..., Any],
    work: Callable[[], None], runs: Runs, tmp_path: Path,
) -> None:  # fmt: skip
    # Given an import whose file vanished before a worker picked it up, and so failed
    feed = tmp_path / "feeds" / "spring.jsonl"
    feed.parent.mkdir()
    content = write_feed(feed, 3)
    token = invoke("import", str(feed)).output.strip()
    feed.unlink()
    work()
    assert state_of(runs, token) == "failed"
    console = serve(settings)

    # When the operator opens the overview, its failing line names the run: click through
    page.goto(console.url + "/")
    failing = page.locator("#answer-failing")
    expect(failing).to_contain_text("FAIL")
    failing.get_by_role("link", name=token).click()
    expect(page).to_have_url(re.compile(r"/runs/import_posts"))
    expect(page.locator("#error")).to_contain_text("the file is gone")
    expect(page.locator("#log")).to_contain_text("attempt.failed")

    # When the file is back and the operator reruns it
    feed.write_bytes(content)
    page.get_by_role("button", name="Rerun from checkpoint").click()
    expect(page.locator(".notice")).to_contain_text("requeued")
    expect(page.locator("#run .state")).to_have_text("queued")
    page.evaluate("window.stillTheSamePage = true")
    work()

    # Then the page shows it succeed with its counters, attempt 2's lines arriving live
    expect(page.locator("#run .state")).to_have_text("succeeded")
    expect(page.locator("#counters")).to_contain_text("inserted=3")
    live = page.locator("#log tr.live")
    expect(live.filter(has_text="run.succeeded")).to_have_count(1)
    expect(live.first.locator("td").nth(1)).to_have_text("2")
    assert page.evaluate("window.stillTheSamePage") is True
    assert state_of(runs, token) == "succeeded"
    assert not page.errors
