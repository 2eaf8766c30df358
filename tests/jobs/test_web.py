"""The site's imports page in the console: counters per import, its rejects, paged."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis

import jobs.web
from runner.config import Settings
from runner.web import create_app
from tests.conftest import site_settings


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return site_settings(settings, tmp_path)


def test_imports_show_their_counters_and_their_rejects_page_by_page(
    settings: Settings, redis: Redis, invoke: Callable[..., Any], work: Callable[[], None],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given a feed of 3 good posts and 5 bad lines, one with a hostile source id
    monkeypatch.setattr(jobs.web, "PAGE", 2)
    lines = [json.dumps({"source_id": f"ok-{i}", "title": "T", "body": "B"}) for i in range(3)]
    lines += [json.dumps({"source_id": "<b>x</b>", "title": ""})] + ["{not json"] * 4
    feed = tmp_path / "mixed.jsonl"
    feed.write_text("\n".join(lines) + "\n")
    token = invoke("import", str(feed)).output.strip()
    work()
    client = TestClient(create_app(settings, redis=redis), base_url="http://127.0.0.1:8080")

    # The list shows the import's five counters and links its rejects
    listing = client.get("/imports")
    assert listing.status_code == 200
    assert '<a href="/imports">Imports</a>' in client.get("/").text  # in the navigation
    assert token in listing.text
    assert '<td class="num">3</td>' in listing.text  # inserted
    rejects_link = f"/imports?token={token.replace(':', '%3A')}"
    assert rejects_link in listing.text

    # One import's rejects, two a page, in feed order, hostile text escaped
    first = client.get(f"/imports?token={token}")
    assert first.text.count('<tr><td class="num">') == 2
    assert "&lt;b&gt;x&lt;/b&gt;" in first.text and "<b>x</b>" not in first.text
    assert "title" in first.text  # the reason names the field
    after = first.text.split("after=")[1].split('"')[0]
    rest = [client.get(f"/imports?token={token}&after={after}")]
    while "next rejects" in rest[-1].text:
        nxt = rest[-1].text.split("after=")[1].split('"')[0]
        rest.append(client.get(f"/imports?token={token}&after={nxt}"))
    shown = sum(page.text.count('<tr><td class="num">') for page in [first, *rest])
    assert shown == 5


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time is New York's (UTC-5 or -4) while the test runs."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_import_times_read_from_sqlite_are_utc_whatever_the_servers_zone(
    settings: Settings, redis: Redis, invoke: Callable[..., Any], work: Callable[[], None],
    tmp_path: Path, new_york: None,
) -> None:  # fmt: skip
    # Given an import that ran just now on a server whose local zone is not UTC
    feed = tmp_path / "one.jsonl"
    feed.write_text(json.dumps({"source_id": "ok-1", "title": "T", "body": "B"}) + "\n")
    invoke("import", str(feed))
    work()
    client = TestClient(create_app(settings, redis=redis), base_url="http://127.0.0.1:8080")

    page = client.get("/imports").text

    # Then its start shows as moments ago, not hours in the future or the past
    shown = re.findall(r"<time [^>]*>([^<]+)</time>", page)
    assert shown and all(s.endswith("s ago") or s.endswith("m ago") for s in shown), shown
