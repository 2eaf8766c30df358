"""The upkeep tasks run by a real worker against real Redis and a real store (SQLite, and
PostgreSQL when RUNNER_TEST_POSTGRES_URL is set): sitemap, freshness, prune."""

from __future__ import annotations

import hashlib
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy import Engine

from jobs.posts import Post
from jobs.progress import import_rejects
from jobs.schedule import SCHEDULE
from jobs.store import engine_for, get_post, posts
from jobs.upkeep import freshness, refresh_batch
from runner.config import Settings
from runner.cron.schedule import check_schedule
from runner.cron.status import describe
from runner.keys import Keys
from runner.runs.enqueue import Enqueued
from runner.runs.index import RunIndex, RunQuery
from runner.runs.transitions import Runs
from runner.tasks import load_registry

NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
DAY = timedelta(days=1)


@pytest.fixture
def settings(settings: Settings, database_url: str) -> Iterator[Settings]:
    """The site's own tasks (`jobs`) on a fresh store; workers on `cron` and `default`."""
    yield settings.with_changes(
        tasks_module="jobs", queues=("cron", "default"), database_url=database_url
    )
    engine_for(database_url).dispose()
    engine_for.cache_clear()


@pytest.fixture
def run_task(
    enqueue: Callable[..., Enqueued], work: Callable[[], None], runs: Runs
) -> Callable[..., Any]:
    """Enqueue a task, work the queue in this process, return the run's result."""

    def run_task(task: str, **args: object) -> Any:
        token = enqueue(task, **args).token
        work()
        record = runs.get(token)
        assert record is not None and record.state == "succeeded", record
        return record.result

    return run_task


def add_post(engine: Engine, source_id: str, *, reviewed: date | None, updated: datetime) -> None:
    """Insert one post as an import would have stored it."""
    digest = hashlib.sha256(source_id.encode()).hexdigest()
    post = Post(source_id, title=f"About {source_id}", body="Body.", last_reviewed=reviewed,
                content_hash=digest)  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            sa.insert(posts).values(
                **msgspec.structs.asdict(post), imported_at=updated, updated_at=updated
            )
        )


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


# -- sitemap -------------------------------------------------------------------------------


def test_the_sitemap_lists_every_post_once_escaped_and_is_replaced_atomically(
    engine: Engine, settings: Settings, run_task: Callable[..., Any]
) -> None:
    # Given posts, one with characters XML and URLs must escape
    odd = "a&b'c<d>\"e é"
    for sid in ("alphanode-000001", "alphanode-000002", odd):
        add_post(engine, sid, reviewed=None, updated=at("2026-03-04T10:00:00"))
    # When the sitemap is built
    result = run_task("build_sitemap", base_url="https://site.test/")
    # Then it parses as XML and lists every post exactly once, with its lastmod
    path = settings.home / "public" / "sitemap.xml"
    assert result == {"urls": 3, "path": str(path)}
    root = ET.parse(path).getroot()
    locs = [u.findtext("s:loc", namespaces=NS) for u in root.findall("s:url", NS)]
    assert sorted(locs) == sorted([
        "https://site.test/posts/alphanode-000001", "https://site.test/posts/alphanode-000002",
        "https://site.test/posts/a&b'c%3Cd%3E%22e%20%C3%A9",
    ])  # fmt: skip
    assert {u.findtext("s:lastmod", namespaces=NS) for u in root} == {"2026-03-04"}
    assert "a&amp;b&apos;c" in path.read_text()
    # When a post is added and the sitemap built again
    add_post(engine, "alphanode-000003", reviewed=None, updated=at("2026-03-05T00:00:00"))
    assert run_task("build_sitemap", base_url="https://site.test")["urls"] == 4
    # Then the new file replaced the old one, and no temporary file is left behind
    assert len(ET.parse(path).getroot()) == 4
    assert os.listdir(path.parent) == ["sitemap.xml"]


def test_past_its_limit_per_file_the_sitemap_is_an_index_over_parts(
    engine: Engine, settings: Settings, run_task: Callable[..., Any]
) -> None:
    # Given five posts and a limit of two URLs per file
    ids = [f"alphanode-00000{i}" for i in range(1, 6)]
    for sid in ids:
        add_post(engine, sid, reviewed=None, updated=at("2026-03-04T10:00:00"))
    # When the sitemap is built
    result = run_task("build_sitemap", base_url="https://site.test", per_file=2)
    # Then sitemap.xml is an index over three parts, which list every post exactly once
    public = settings.home / "public"
    assert result == {"urls": 5, "path": str(public / "sitemap.xml")}
    index = ET.parse(public / "sitemap.xml").getroot()
    assert index.tag == f"{{{NS['s']}}}sitemapindex"
    parts = [s.findtext("s:loc", namespaces=NS) for s in index.findall("s:sitemap", NS)]
    assert parts == [f"https://site.test/sitemap-{n}.xml" for n in (1, 2, 3)]
    locs = []
    for n in (1, 2, 3):
        urls = ET.parse(public / f"sitemap-{n}.xml").getroot().findall("s:url", NS)
        assert 1 <= len(urls) <= 2
        locs += [u.findtext("s:loc", namespaces=NS) for u in urls]
    assert sorted(locs) == [f"https://site.test/posts/{sid}" for sid in ids]
    # When posts go and the sitemap fits one file again
    with engine.begin() as conn:
        conn.execute(sa.delete(posts).where(posts.c.source_id.in_(ids[2:])))
    again = run_task("build_sitemap", token="sitemap-2", base_url="https://site.test", per_file=2)
    assert again["urls"] == 2
    # Then sitemap.xml is a plain urlset and the parts that fell out of use are gone
    root = ET.parse(public / "sitemap.xml").getroot()
    assert root.tag == f"{{{NS['s']}}}urlset" and len(root) == 2
    assert os.listdir(public) == ["sitemap.xml"]


# -- freshness -----------------------------------------------------------------------------


def test_freshness_is_100_at_review_and_falls_to_0_over_two_years() -> None:
    today = date(2026, 1, 1)
    assert freshness(today=today, last_reviewed=today, updated=date(2020, 1, 1)) == 100
    assert freshness(today=today, last_reviewed=today - 365 * DAY, updated=date(2020, 1, 1)) == 50
    assert freshness(today=today, last_reviewed=None, updated=today - 730 * DAY) == 0
    assert freshness(today=today, last_reviewed=None, updated=today - 900 * DAY) == 0
    # The later of review and update counts; a date after `today` counts as today
    assert freshness(today=today, last_reviewed=today - 700 * DAY, updated=today) == 100
    assert freshness(today=today, last_reviewed=today + DAY, updated=today) == 100


def test_refresh_scores_posts_as_their_review_ages_and_flags_overdue_reviews(
    engine: Engine, run_task: Callable[..., Any], index: RunIndex
) -> None:
    # Given posts reviewed on 2025-01-01, a year before, and never (updated 2025-01-01)
    jan = at("2025-01-01T08:00:00")
    add_post(engine, "p1", reviewed=date(2025, 1, 1), updated=jan)
    add_post(engine, "p2", reviewed=date(2024, 1, 2), updated=at("2024-01-02T00:00:00"))
    add_post(engine, "p3", reviewed=None, updated=jan)
    # When freshness is refreshed on 2025-01-01, two posts a batch
    counters = run_task("refresh_freshness", now="2025-01-01", batch=2)
    # Then each post has its score, and only the overdue reviews are flagged
    assert counters == {"refreshed": 3, "overdue": 1}
    assert _scores(engine) == {"p1": (100, False), "p2": (50, False), "p3": (100, True)}
    # When it runs again a year and a half later
    run_task("refresh_freshness", now="2026-07-02", batch=2)
    # Then the scores have fallen and every review is overdue
    assert _scores(engine) == {"p1": (25, True), "p2": (0, True), "p3": (25, True)}
    # And each batch was checkpointed: the cursor is the last post
    [latest] = [
        r for r in index.runs(RunQuery(task="refresh_freshness")) if "2026" in r.args["now"]
    ]
    assert latest.cursor == "p3" and latest.counters == {"refreshed": 3, "overdue": 3}


def test_a_refresh_resumes_after_its_cursor(engine: Engine) -> None:
    # Given three posts, and a refresh whose checkpoint says it got past "p1"
    for sid in ("p1", "p2", "p3"):
        add_post(engine, sid, reviewed=date(2025, 1, 1), updated=at("2025-01-01T00:00:00"))
    # When the next batch runs after that cursor
    last, refreshed, overdue = refresh_batch(engine, today=date(2025, 1, 1), after="p1", size=5)
    # Then it scores only the posts after it
    assert (last, refreshed, overdue) == ("p3", 2, 0)
    assert get_post(engine, "p1")["freshness"] is None  # type: ignore[index]
    assert refresh_batch(engine, today=date(2025, 1, 1), after="p3") == (None, 0, 0)


def _scores(engine: Engine) -> dict[str, tuple[int, bool]]:
    stmt = sa.select(posts.c.source_id, posts.c.freshness, posts.c.needs_review)
    with engine.connect() as conn:
        return {sid: (score, bool(flag)) for sid, score, flag in conn.execute(stmt)}


# -- prune ---------------------------------------------------------------------------------


def test_prune_removes_exactly_what_is_past_retention(
    engine: Engine,
    settings: Settings,
    redis: Redis,
    enqueue: Callable[..., Enqueued],
    work: Callable[[], None],
    run_task: Callable[..., Any],
) -> None:
    keys, now = Keys(settings.prefix), time.time()
    old = now - settings.retention_seconds - 3600
    # Given finished runs past retention (one without a TTL), a recent one, and runs past
    # retention that are still queued, running or retrying
    for token in ("old-ok", "old-failed", "recent", "old-queued", "old-running", "old-retry"):
        enqueue("noop", token=token)
    work()
    for token, state in [("old-ok", "succeeded"), ("old-failed", "failed"),
                         ("old-queued", "queued"), ("old-running", "running"),
                         ("old-retry", "retrying")]:  # fmt: skip
        redis.hset(keys.run(token), mapping={"state": state, "finished_at": old, "updated_at": old})
    redis.persist(keys.run("old-ok"))
    # And an index entry whose run is gone, with a leftover log
    redis.zadd(keys.runs, {"ghost": old})
    redis.xadd(keys.log("ghost"), {"e": "{}"})
    # And spool files of three days and of one hour, and rejects of 40 and of 10 days
    spool = settings.home / "spool"
    (spool / "downloads").mkdir(parents=True)
    for name, age in [("old.jsonl", 3 * DAY), ("downloads/old.part", 3 * DAY),
                      ("fresh.jsonl", timedelta(hours=1))]:  # fmt: skip
        (spool / name).write_text("{}")
        stamp = now - age.total_seconds()
        os.utime(spool / name, (stamp, stamp))
    moment = datetime.fromtimestamp(now, UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(import_rejects), [
            {"token": "t", "source": "f", "position": days, "reason": "bad",
             "created_at": moment - days * DAY}
            for days in (40, 10)
        ])  # fmt: skip
    # When prune runs
    counts = run_task("prune", now=moment.isoformat())
    # Then exactly the runs, index entries, spool files and rejects past retention are gone
    assert counts == {"runs": 2, "index_entries": 1, "spool_files": 2, "rejects": 1}
    for token in ("old-ok", "old-failed", "ghost"):
        assert not redis.exists(keys.run(token), keys.steps(token), keys.log(token))
        assert redis.zscore(keys.runs, token) is None
    for token in ("recent", "old-queued", "old-running", "old-retry"):
        assert redis.exists(keys.run(token), keys.steps(token)) == 2
        assert redis.zscore(keys.runs, token) is not None
    assert sorted(p.name for p in spool.rglob("*") if p.is_file()) == ["fresh.jsonl"]
    with engine.connect() as conn:
        assert conn.scalar(sa.select(import_rejects.c.position)) == 10


# -- schedule ------------------------------------------------------------------------------


def test_the_site_schedule_fires_its_tasks_every_minute_hourly_and_daily() -> None:
    entries = check_schedule(SCHEDULE, load_registry("jobs"))
    assert {e.name: describe(e.expression).split(" at ")[0] for e in entries} == {
        "poll_inbox": "every minute", "poll_feeds": "hourly", "refresh_freshness": "hourly",
        "build_sitemap": "daily", "prune": "daily",
    }  # fmt: skip
