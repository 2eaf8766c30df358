"""docs/client.md's FastAPI example, run as printed with FastAPI's TestClient
against a real Redis and a real SQLite store, and the workers' relay."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from redis import Redis

from jobs.database import make_engine
from jobs.revisions import upgrade
from jobs.store import posts
from runner.config import Settings
from runner.worker.relay import Relay
from tests.conftest import ROOT, site_settings, worker_env

EXAMPLE = re.compile(r"```python\n(import os\n.*?FastAPI\(\).*?)```", re.S)


@pytest.fixture
def example(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    site = site_settings(settings, tmp_path)
    for name, value in worker_env(site).items():
        if name.startswith("RUNNER_"):
            monkeypatch.setenv(name, value)
    engine = make_engine(site.store_url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(posts), {
            "source_id": "alphanode-000001", "title": "T", "body": "B", "needs_review": True,
            "content_hash": "h", "meta": {}, "imported_at": now, "updated_at": now,
        })  # fmt: skip
    engine.dispose()
    [code] = EXAMPLE.findall((ROOT / "docs" / "client.md").read_text())
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, "docs/client.md", "exec"), namespace)
    yield {**namespace, "settings": site}
    namespace["store"].dispose()


def test_the_documented_routes_enqueue_on_commit_and_from_asyncio(
    example: dict[str, Any], redis: Redis
) -> None:
    relay = Relay(redis, example["settings"])
    with TestClient(example["app"]) as http:
        missing = http.post("/posts/alphanode-999999/publish")
        published = http.post("/posts/alphanode-000001/publish")
        feed = http.post("/feeds", params={"url": "https://example.com/feed.jsonl"})
        again = http.post("/feeds", params={"url": "https://example.com/feed.jsonl"})

    assert missing.status_code == 404
    assert published.status_code == 200
    token = published.json()["sitemap_run"]
    assert example["client"].get(token) is None  # in the outbox until the relay moves it
    assert relay.relay_once() == 1  # the 404's request was rolled back with its transaction
    record = example["client"].get(token)
    assert record is not None and (record.task, record.state) == ("build_sitemap", "queued")
    assert feed.json()["deduplicated"] is False and again.json()["deduplicated"] is True
    imported = example["client"].get(feed.json()["token"])
    assert imported is not None and imported.args == {"source": "https://example.com/feed.jsonl"}
