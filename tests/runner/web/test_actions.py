"""The console's actions: bulk rerun does what its preview showed, once; cancel and rerun from
scratch ask first. Over HTTP against real Redis and real workers (in-process)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from runner.runs.transitions import Runs
from tests.conftest import state_of
from tests.runner.web.conftest import BASE

SAME_SITE = {"origin": BASE, "sec-fetch-site": "same-origin"}


def failed_runs(enqueue: Callable[..., Any], drain: Callable[..., None], n: int) -> list[str]:
    tokens = [enqueue("broken", token=f"broken-{i}").token for i in range(n)]
    drain()
    return tokens


def preview(client: TestClient) -> tuple[str, list[str], str]:
    page = client.get("/rerun?state=failed")
    assert page.status_code == 200
    found = re.search(r'name="preview" value="([^"]+)"', page.text)
    assert found is not None
    listed = re.findall(r'name="token" value="([^"]+)"', page.text)
    return found.group(1), listed, page.text


def confirm(client: TestClient, preview_id: str, tokens: list[str]) -> Any:
    form = {"preview": preview_id, "token": tokens}
    return client.post("/rerun", data=form, headers=SAME_SITE)


def test_a_run_changed_after_the_preview_is_left_alone_and_counts_say_so(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    tokens = failed_runs(enqueue, drain, 3)
    preview_id, listed, text = preview(client)
    assert sorted(listed) == sorted(tokens)
    assert "3 failed runs match the filter; all are listed" in text
    # Meanwhile an operator reruns one and cancels it: it is cancelled, no longer "failed"
    changed = tokens[0]
    client.post("/actions/rerun", data={"token": changed}, headers=SAME_SITE)
    client.post("/actions/cancel", data={"token": changed, "confirm": "1"}, headers=SAME_SITE)
    assert state_of(runs, changed) == "cancelled"
    answer = confirm(client, preview_id, listed)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/rerun/done/{preview_id}"
    assert state_of(runs, changed) == "cancelled"
    assert [state_of(runs, t) for t in tokens[1:]] == ["queued", "queued"]
    done = client.get(answer.headers["location"])
    assert "2 of 3 runs requeued; 1 left alone" in done.text
    assert "it changed since the preview: it is cancelled" in done.text
    assert client.get(answer.headers["location"]).status_code == 200  # a reload reruns nothing
    assert state_of(runs, changed) == "cancelled"


def test_replaying_the_confirm_does_nothing(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    tokens = failed_runs(enqueue, drain, 2)
    preview_id, listed, _ = preview(client)
    assert confirm(client, preview_id, listed).status_code == 303
    drain()  # they fail again
    assert [state_of(runs, t) for t in tokens] == ["failed", "failed"]
    replay = confirm(client, preview_id, listed)
    assert replay.status_code == 409 and "nothing was rerun" in replay.text
    assert [state_of(runs, t) for t in tokens] == ["failed", "failed"]
    assert confirm(client, "made-up", listed).status_code == 409


def test_a_run_the_preview_did_not_list_is_refused(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    tokens = failed_runs(enqueue, drain, 1)
    preview_id, listed, _ = preview(client)
    cancelled = enqueue("noop", token="cancelled-later").token
    client.post("/actions/cancel", data={"token": cancelled, "confirm": "1"}, headers=SAME_SITE)
    answer = confirm(client, preview_id, [*listed, cancelled])
    assert answer.status_code == 400 and "was not in this preview" in answer.text
    assert state_of(runs, cancelled) == "cancelled" and state_of(runs, tokens[0]) == "failed"
    assert confirm(client, preview_id, listed).status_code == 303  # the preview still holds


def test_cancel_and_a_rerun_from_scratch_ask_first(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    queued = enqueue("noop", token="waiting").token
    asked = client.post("/actions/cancel", data={"token": queued}, headers=SAME_SITE)
    assert asked.status_code == 200 and 'name="confirm" value="1"' in asked.text
    assert state_of(runs, queued) == "queued"
    failed = failed_runs(enqueue, drain, 1)[0]
    form = {"token": failed, "from_scratch": "1"}
    asked = client.post("/actions/rerun", data=form, headers=SAME_SITE)
    assert asked.status_code == 200 and "Rerun from scratch?" in asked.text
    assert state_of(runs, failed) == "failed"
    done = client.post("/actions/rerun", data={**form, "confirm": "1"}, headers=SAME_SITE)
    assert done.status_code == 303 and "notice=requeued-from-scratch" in done.headers["location"]


def test_a_notice_is_one_of_the_consoles_own_never_text_from_the_url(client: TestClient) -> None:
    page = client.get("/runs?notice=Your+session+expired,+sign+in+at+evil.example").text
    assert "evil.example" not in page
    assert "Cancelled: it will not start." in client.get("/runs?notice=run-cancelled").text
