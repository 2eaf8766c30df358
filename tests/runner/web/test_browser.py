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
from redis import Redis
from rq.serializers import JSONSerializer

from runner.attempt.execute import Executor
from runner.config import Settings
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.horse import Horse
from scripts.gen_posts import generate_posts
from scripts.gen_posts import write_feed as write_posts
from tests.conftest import site_settings, state_of, wait_for
from tests.runner.web.conftest import LiveConsole

pytestmark = pytest.mark.browser


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The site's own tasks (jobs), with a SQLite store of this test."""
    return site_settings(settings, tmp_path)


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
    expect(failing).to_contain_text("1 of 1 runs failed in the last hour")
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


HOSTILE = "<script>alert(1)</script>"


def work_as(settings: Settings, redis: Redis) -> None:
    """Drain the queues in this process as a worker of `settings` (its code version)."""
    horse = Horse(list(settings.queues), connection=redis, serializer=JSONSerializer)
    Executor(redis, settings, load_registry(settings.tasks_module), worker=horse.name).install()
    horse.work(burst=True, logging_level="WARNING")


def test_hostile_names_arguments_errors_live_log_fields_and_deploy_labels_render_as_text(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings, invoke: Callable[..., Any],
    work: Callable[[], None], redis: Redis, tmp_path: Path,
) -> None:  # fmt: skip
    # Given a feed whose name is markup, which vanished (so the error text carries it too),
    # run by a worker whose code version is markup (a deploy mark labelled with it)
    feed = tmp_path / HOSTILE / f"{HOSTILE}.jsonl"
    feed.parent.mkdir(parents=True)
    write_feed(feed, 1)
    first = tmp_path / "calm.jsonl"
    write_feed(first, 2)
    invoke("import", str(first))
    work()
    token = invoke("import", str(feed)).output.strip()
    feed.unlink()
    work_as(replace(settings, code_version=HOSTILE), redis)
    assert invoke("deploy", "mark", HOSTILE).exit_code == 0  # an operator's label
    console = serve(settings)

    overview = page.goto(console.url + "/")
    assert HOSTILE not in overview.text()
    expect(page.locator("text.mark-label").last).to_have_text(HOSTILE[:24])
    run_page = page.goto(f"{console.url}/runs/{token}")
    html = run_page.text()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    expect(page.locator("#error")).to_contain_text(HOSTILE)
    expect(page.locator("pre.args")).to_contain_text(HOSTILE)

    # When a hostile log field arrives live, after the page loaded (a queued run's page)
    queued = invoke("enqueue", "noop", "--arg", f"label={HOSTILE}").output.strip()
    page.goto(f"{console.url}/runs/{queued}")
    expect(page.locator("#live-status")).to_contain_text("following")
    event = {"event": "feed.note", "level": "warning", "attempt": 1, "title": HOSTILE}
    redis.xadd(f"{settings.prefix}log:{queued}", {"e": json.dumps(event)})

    # Then it shows as text: the DOM holds no script element, and no script ran
    expect(page.locator("#log tr.live")).to_contain_text(f"title={HOSTILE}")
    assert page.locator("#log script").count() == 0
    assert HOSTILE not in page.locator("#log").inner_html()
    assert not page.dialogs


def test_without_javascript_the_overview_runs_and_a_run_page_read_fully(
    browser: Any, serve: Callable[..., LiveConsole], settings: Settings,
    invoke: Callable[..., Any], work: Callable[[], None], tmp_path: Path,
) -> None:  # fmt: skip
    feed = tmp_path / "autumn.jsonl"
    write_feed(feed, 4)
    token = invoke("import", str(feed)).output.strip()
    work()
    console = serve(settings)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(console.url + "/")
        expect(page.locator("#answer-up")).to_be_visible()
        expect(page.locator("figure.chart svg").first).to_be_visible()
        page.get_by_role("link", name="Runs", exact=True).click()
        page.locator("select[name=state]").select_option("succeeded")
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(re.compile(r"/runs\?.*state=succeeded"))
        page.get_by_role("link", name=token).click()
        expect(page.locator("#run .state")).to_have_text("succeeded")
        expect(page.locator("#counters")).to_contain_text("inserted=4")
        expect(page.locator("#log")).to_contain_text("run.succeeded")
        page.locator("select[name=level]").select_option("warning")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#log tbody tr")).to_have_count(0)
    finally:
        context.close()


def test_bulk_rerun_previews_the_failed_runs_and_reruns_exactly_those(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings, invoke: Callable[..., Any],
    work: Callable[[], None], runs: Runs, tmp_path: Path,
) -> None:  # fmt: skip
    def vanished_import(name: str) -> str:
        feed = tmp_path / name
        write_feed(feed, 1 + len(name))
        token: str = invoke("import", str(feed)).output.strip()
        feed.unlink()
        return token

    previewed = [vanished_import("a.jsonl"), vanished_import("bb.jsonl")]
    work()
    console = serve(settings)
    page.goto(console.url + "/runs?task=import_posts")
    page.get_by_role("link", name=re.compile("Rerun the failed runs")).click()
    expect(page.locator("#preview-count")).to_contain_text("2 failed runs match")

    # Meanwhile another import fails: it is not in the preview, so it is not rerun
    later = vanished_import("ccc.jsonl")
    work()
    page.get_by_role("button", name="Rerun these 2 runs").click()
    expect(page.locator("#done-count")).to_have_text("2 of 2 runs requeued.")
    assert [state_of(runs, t) for t in previewed] == ["queued", "queued"]
    assert state_of(runs, later) == "failed"


def test_the_cron_page_says_when_each_entry_fires_and_links_its_last_run(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings, invoke: Callable[..., Any],
) -> None:  # fmt: skip
    ticked = invoke("cron", "tick", "--json")
    assert ticked.exit_code == 0, ticked.output
    console = serve(settings)
    page.goto(console.url + "/cron")
    row = page.locator("#cron-poll_inbox")
    expect(row).to_contain_text("every minute")
    expect(page.locator("#cron-build_sitemap")).to_contain_text("daily at 03:30 UTC")
    expect(row.locator("time")).to_have_count(3)
    row.get_by_role("link", name=re.compile("poll_inbox@")).click()
    expect(page.locator("h1 .task")).to_have_text("poll_inbox")
    expect(page.locator("#run .state")).to_have_text("queued")


def test_cancelling_a_running_import_stops_it_at_a_checkpoint_and_it_can_be_rerun(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings, invoke: Callable[..., Any],
    start_worker: Callable[..., Any], runs: Runs, redis: Redis, tmp_path: Path,
) -> None:  # fmt: skip
    # Given an import of many small batches, running on a real worker
    feed = tmp_path / "long.jsonl"
    with feed.open("w") as out:
        write_posts(generate_posts(20_000, seed=3), out)
    args = ["--arg", f"source={feed}", "--arg", "batch_size=10"]
    token = invoke("enqueue", "import_posts", *args).output.strip()
    start_worker()
    wait_for(lambda: _counters(runs, token), what="the import to pass a checkpoint")
    console = serve(settings)
    page.goto(f"{console.url}/runs/{token}")
    expect(page.locator("#run .state")).to_have_text("running")

    # When the operator cancels it
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Cancel the run").click()  # it asks first
    expect(page.locator(".notice")).to_contain_text("stops at its next checkpoint")

    # Then it stops at its next checkpoint, shown live: cancelled, with what it had done
    expect(page.locator("#run .state")).to_have_text("cancelled", timeout=20_000)
    record = runs.get(token)
    assert record is not None and record.state == "cancelled"
    done = sum((record.counters or {}).values())
    assert 0 < done < 20_000
    expect(page.locator("#log")).to_contain_text("run.cancel_requested")
    expect(page.locator("#log")).to_contain_text("origin=web")
    page.reload()
    expect(page.get_by_role("button", name="Rerun from checkpoint")).to_be_visible()


def _counters(runs: Runs, token: str) -> dict[str, int] | None:
    record = runs.get(token)
    return record.counters if record else None


def test_with_a_token_the_sign_in_form_leads_back_to_the_page_asked_for(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings
) -> None:
    console = serve(replace(settings, web_token="correct horse battery staple, with 32+ chars"))
    page.goto(console.url + "/runs?state=failed")
    page.get_by_label("Token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the console's token")
    page.get_by_label("Token").fill("correct horse battery staple, with 32+ chars")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(console.url + "/runs?state=failed")
    expect(page.locator("h1")).to_have_text("Runs")
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    page.goto(console.url + "/runs")
    expect(page.get_by_label("Token")).to_be_visible()


def test_a_run_page_open_while_the_run_ends_shows_its_attempts_steps_buttons_and_finish(
    page: Any, serve: Callable[..., LiveConsole], settings: Settings, invoke: Callable[..., Any],
    work: Callable[[], None], tmp_path: Path,
) -> None:  # fmt: skip
    # Given the page of a queued import: a Cancel button, no attempt, no step, not finished
    feed = tmp_path / "winter.jsonl"
    write_feed(feed, 3)
    token = invoke("import", str(feed)).output.strip()
    console = serve(settings)
    page.goto(f"{console.url}/runs/{token}")
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.locator("#finished")).to_have_text("-")
    page.evaluate("window.stillTheSamePage = true")

    # When a worker runs it to the end while the page is open
    work()

    # Then the page shows the run as it ended, without a reload
    expect(page.locator("#run .state")).to_have_text("succeeded")
    expect(page.locator("#attempts")).to_contain_text("succeeded")
    expect(page.locator("#attempts")).not_to_contain_text("running")
    expect(page.locator("#steps")).to_contain_text("upsert")
    expect(page.locator("#finished")).not_to_have_text("-")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.get_by_role("button", name="Rerun from checkpoint")).to_have_count(0)
    assert page.evaluate("window.stillTheSamePage") is True
    assert not page.errors
