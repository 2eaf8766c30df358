"""/runs and /runs/{token} over HTTP on real Redis: filters, counts, paging, a run's
attempts, steps and log (filtered), the live stream, and reruns logged with their origin."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from tests.conftest import state_of
from tests.runner.web.conftest import BASE

SAME_SITE = {"origin": BASE, "sec-fetch-site": "same-origin"}


def tokens_on(html: str) -> list[str]:
    return re.findall(r'class="token" href="/runs/[^"]+">([^<]+)</a>', html)


def test_filters_count_per_state_and_page_newest_first_through_bookmarkable_links(
    client: TestClient, redis: Redis, settings: Settings, enqueue: Callable[..., Any],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given 60 queued no-ops enqueued in one call (one creation time for all), 2 failed runs
    registry = load_registry(settings.tasks_module)
    noop = registry.get("noop")
    batch = [Request(noop, {}, f"batch-{i:02d}") for i in range(60)]
    failed = [enqueue("broken", token=f"bad-{i}").token for i in range(2)]
    drain()
    Enqueuer(redis, settings).enqueue_many(batch)

    # The first page: 25 of the newest, counts per state over every run
    first = client.get("/runs?limit=25").text
    assert len(tokens_on(first)) == 25
    assert re.search(r"queued <b>60</b>", first) and re.search(r"failed <b>2</b>", first)

    # Following "older" links walks every run once, though 60 share one creation time
    seen, page = [], first
    while True:
        seen += tokens_on(page)
        older = re.search(r'<a rel="next" href="([^"]+)"', page)
        if not older:
            break
        page = client.get(older.group(1).replace("&amp;", "&")).text
    assert sorted(seen) == sorted([f"batch-{i:02d}" for i in range(60)] + failed)

    # Filters, each in the URL
    assert tokens_on(client.get("/runs?state=failed").text) == failed[::-1]
    assert sorted(tokens_on(client.get("/runs?task=broken").text)) == sorted(failed)
    assert tokens_on(client.get("/runs?token=bad-1").text) == ["bad-1"]
    assert tokens_on(client.get("/runs?queue=nowhere").text) == []
    assert len(tokens_on(client.get("/runs?since=1h&limit=100").text)) == 62


def test_a_run_page_shows_attempts_steps_error_and_its_log_filtered_by_level_and_attempt(
    client: TestClient, redis: Redis, enqueue: Callable[..., Any], drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a run that failed on its second item, was rerun and failed again
    token = enqueue("counting", items=3, seconds=0.01).token
    redis.set(f"probe:fail:{token}", 1)
    drain()
    rerun = client.post("/actions/rerun", data={"token": token}, headers=SAME_SITE)
    assert rerun.status_code == 303
    assert "notice=requeued" in rerun.headers["location"]
    drain()

    page = client.get(f"/runs/{token}").text
    assert "item 1 is bad (simulated)" in page
    attempts = re.findall(r'<tr><td class="num">(\d)</td><td>([^<]*)</td>', page)
    assert [a for a, _ in attempts] == ["1", "2"]
    assert page.count("failed</td></tr>") >= 1
    errors = client.get(f"/runs/{token}?level=error").text
    assert errors.count('<tr class="level-error">') == 2
    assert '<tr class="level-info">' not in errors
    second = client.get(f"/runs/{token}?attempt=2").text
    cells = re.findall(r'<tr class="level-\w+"><td>[^<]*</td><td class="num">(\d*)</td>', second)
    assert cells and set(cells) == {"2"}


def test_the_live_stream_sends_new_events_and_the_runs_state_then_ends(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None]
) -> None:
    token = enqueue("counting", items=2, probed=False, seconds=0).token
    drain()
    with client.stream("GET", f"/live/{token}?after=0-0") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        body = "".join(answer.iter_text())
    kinds = re.findall(r"^event: (\w+)$", body, flags=re.M)
    assert kinds[-1] == "end" and "run" in kinds and kinds.count("log") >= 3
    runs = [json.loads(m) for m in re.findall(r"^event: run\ndata: (.+)$", body, flags=re.M)]
    assert runs[-1]["state"] == "succeeded" and runs[-1]["counters"] == {"done": 2}
    last_id = re.findall(r"^id: (\S+)$", body, flags=re.M)[-1]
    with client.stream("GET", f"/live/{token}", headers={"last-event-id": last_id}) as again:
        assert "event: log" not in "".join(again.iter_text())  # resumes after the last one


def test_reruns_from_the_console_and_the_cli_log_their_origin(
    client: TestClient, redis: Redis, settings: Settings, runs: Runs,
    enqueue: Callable[..., Any], drain: Callable[..., None], invoke: Callable[..., Any],
) -> None:  # fmt: skip
    token = enqueue("broken").token
    drain()
    form = {"token": token, "from_scratch": "1", "confirm": "1"}
    assert client.post("/actions/rerun", data=form, headers=SAME_SITE).status_code == 303
    assert state_of(runs, token) == "queued"
    drain()
    assert invoke("rerun", token).exit_code == 0
    events = [e for _, e in read_events(redis, Keys(settings.prefix), token)]
    reruns = [e for e in events if e["event"] == "run.rerun"]
    assert [(e["origin"], e["from_scratch"]) for e in reruns] == [("web", True), ("cli", False)]


def test_an_unknown_run_is_a_404_page(client: TestClient) -> None:
    answer = client.get("/runs/no-such-run")
    assert answer.status_code == 404
    assert "no run matches" in answer.text


def test_cancelling_a_queued_run_from_the_console_ends_it_at_once_logged_as_web(
    client: TestClient, redis: Redis, settings: Settings, runs: Runs,
    enqueue: Callable[..., Any], drain: Callable[..., None],
) -> None:  # fmt: skip
    token = enqueue("noop", token="to-cancel").token
    assert "/actions/cancel" in client.get(f"/runs/{token}").text
    form = {"token": token, "confirm": "1"}
    answer = client.post("/actions/cancel", data=form, headers=SAME_SITE)
    assert answer.status_code == 303 and "notice=run-cancelled" in answer.headers["location"]
    drain()
    assert state_of(runs, token) == "cancelled"
    page = client.get(f"/runs/{token}").text
    assert "/actions/cancel" not in page and "Rerun from checkpoint" in page
    events = [e for _, e in read_events(redis, Keys(settings.prefix), token)]
    assert [e.get("origin") for e in events if e["event"] == "run.cancelled"] == ["web"]


def test_the_console_lists_a_scheduled_run_and_shows_when_it_is_due(
    client: TestClient, redis: Redis, settings: Settings
) -> None:
    from runner.client.sync import Client

    token = Client(redis, settings).enqueue("greet", {"name": "ada"}, after=3600).token

    listing = client.get("/runs?state=scheduled").text
    assert tokens_on(listing) == [token]
    assert re.search(r"scheduled <b>1</b>", listing)
    page = client.get(f"/runs/{token}").text
    assert 'id="due"' in page and "scheduled" in page


def test_the_runs_list_has_the_argument_error_and_duration_columns_runs_has(
    client: TestClient, redis: Redis, settings: Settings, drain: Callable[..., None]
) -> None:
    # Given a failed import-like run (its source argument) and a succeeded one
    enqueuer = Enqueuer(redis, settings)
    registry = load_registry(settings.tasks_module)
    enqueuer.enqueue(Request(registry.get("broken"), {"permanent": True}, token="bad"))
    enqueuer.enqueue(Request(registry.get("noop"), {"source": "inbox/<b>feed</b>.jsonl"}, "ok"))
    drain()

    page = client.get("/runs").text

    # Then each row shows what it was run with, the error's first line and how long it took
    row = next(r for r in page.split("<tr>") if 'href="/runs/bad"' in r)
    assert "permanent=true" in row
    assert "PermanentError: the source does not exist (simulated)" in row
    assert re.search(r'<td class="num">\d+\.\d\d s</td>', row), row
    ok = next(r for r in page.split("<tr>") if 'href="/runs/ok"' in r)
    assert "inbox/&lt;b&gt;feed&lt;/b&gt;.jsonl" in ok and "<b>feed" not in ok  # escaped


def test_a_run_page_shows_the_trace_its_enqueuer_named_and_none_without(
    client: TestClient, redis: Redis, settings: Settings
) -> None:
    greet, enqueuer = load_registry(settings.tasks_module).get("greet"), Enqueuer(redis, settings)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = enqueuer.enqueue(Request(greet, {"name": "ada"}, traceparent=parent)).token
    plain = enqueuer.enqueue(Request(greet, {"name": "bob"})).token

    page = client.get(f"/runs/{traced}").text
    assert re.search(r'id="trace"><code>0af7651916cd43dd8448eb211c80319c</code>', page)
    assert 'id="trace"' not in client.get(f"/runs/{plain}").text
