"""The import task end to end: real Redis, a real store, real workers killed at random."""

from __future__ import annotations

import dataclasses
import gc
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis

from jobs.progress import import_rejects, imports
from jobs.revisions import upgrade
from jobs.sources import resolve
from jobs.store import engine_for, get_post, posts
from runner.config import Settings
from runner.record import RunState
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.index import RunIndex, RunQuery
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from scripts.gen_posts import generate_posts, write_feed
from tests.conftest import WorkerProcess, wait_for

SAMPLES = Path(__file__).resolve().parents[2] / "scripts" / "samples"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The site's own tasks (`jobs`), a SQLite store under the test's home."""
    return settings.with_changes(tasks_module="jobs", queues=("imports", "cron", "default"))


@pytest.fixture
def import_feed(redis: Redis, settings: Settings) -> Callable[..., Enqueued]:
    enqueuer = Enqueuer(redis, settings)
    task = load_registry("jobs").get("import_posts")

    def import_feed(
        path: Path | str, *, token: str | None = None, attempts: int | None = None, **args: object
    ) -> Enqueued:
        [source] = resolve(str(path))
        retry = dataclasses.replace(task.retry, attempts=attempts or task.retry.attempts)
        request = Request(
            dataclasses.replace(task, retry=retry), {"source": source.location, **args},
            token or source.token,
        )  # fmt: skip
        return enqueuer.enqueue(request)

    return import_feed


def feed(path: Path, posts_: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in posts_))
    return path


def result_of(runs: Runs, token: str) -> dict[str, object]:
    record = runs.get(token)
    assert record is not None and record.state == "succeeded", record
    return record.result  # type: ignore[no-any-return]


def test_the_sample_page_imports_with_every_field(
    import_feed: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs,
    settings: Settings,
) -> None:  # fmt: skip
    token = import_feed(SAMPLES / "staging-close-to-production.txt").token
    drain()
    assert result_of(runs, token)["inserted"] == 1
    post = get_post(engine_for(settings.store_url), "alphanode-032655")
    assert post is not None
    meta = post["meta"]
    assert post["title"].startswith("production checklist for keeping staging close")
    assert post["topic"] == "keeping staging close to production / python services"
    assert post["summary"].startswith("this ai-style technical summary")
    assert (post["difficulty"], post["reading_time"], post["view_count"]) == (
        "advanced",
        12,
        384999,
    )
    assert meta["stack"] == ["python services", "backend", "python"]
    assert meta["tools"] == ["fastapi", "pytest", "uvicorn", "ruff", "git", "logs"]
    assert meta["code_language"] == "python"
    assert meta["score"] == {"quality": 77, "freshness": 48, "depth": 70, "clarity": 96}
    assert meta["revision"] == {
        "status": "drafted",
        "version": "1.1.2",
        "last_reviewed": "2024-01-12",
    }
    assert (post["revision_version"], str(post["last_reviewed"])) == ("1.1.2", "2024-01-12")
    assert (meta["reference"], meta["hash"]) == ("anp-ref-032655-7930", "d254b96df69e5ac99c8fc8a0")
    assert meta["flags"]["needs_human_review"] == 1 and post["needs_review"] is True
    assert len(meta["checklist"]) == 5 and len(meta["entities"]) == 3 and len(meta["notes"]) == 3
    assert meta["images"][0]["url"].startswith("https://images.unsplash.com/photo-1555949963")
    assert meta["images"][0]["caption"].endswith("visual reference 1")
    assert meta["payload"]["seed"] == 32655 and meta["payload"]["source_id"] == "alphanode-032655"
    sections = [line for line in post["body"].splitlines() if line.startswith("## ")]
    assert sections == [
        "## production checks", "## why this matters",
        "## implementation checklist", "## final notes",
    ]  # fmt: skip
    assert "```python\nfrom fastapi import FastAPI" in post["body"]


HOSTILE_LINES = [
    '{"source_id": "ok-1", "title": "t", "body": "b"}',
    '{"source_id": "trunc", "title": "t", "bo',
    "[1, 2, 3]",
    '{"title": "no id", "body": "b"}',
    '{"source_id": "empty-title", "title": "", "body": "b"}',
    '{"source_id": "wrong-type", "title": "t", "body": "b", "reading_time": "twelve"}',
    '{"source_id": "range", "title": "t", "body": "b", "score": {"quality": 140}}',
    '{"source_id": "date", "title": "t", "body": "b", "revision": {"last_reviewed": "2024-02-30"}}',
    "[" * 100_000 + "]" * 100_000,
    '{"source_id": "huge", "title": "t", "body": "' + "x" * 3_000_000 + '"}',
    '{"source_id": "nul", "title": "t\\u0000", "body": "b"}',
    '{"source_id": "ok-2", "title": "t", "body": "b"}',
]


def test_a_hostile_feed_imports_every_valid_post_and_rejects_each_bad_line(
    tmp_path: Path, import_feed: Callable[..., Enqueued], drain: Callable[..., None],
    runs: Runs, settings: Settings,
) -> None:  # fmt: skip
    # Given a feed with a BOM, CRLF line ends, blank lines, invalid UTF-8 and bad records
    raw = b"\xef\xbb\xbf" + "\r\n".join(HOSTILE_LINES).encode() + b"\r\n\r\n"
    raw += b'{"source_id": "bad-utf8", "title": "\xff\xfe", "body": "b"}\r\n'
    raw += b'{"source_id": "ok-3", "title": "t", "body": "b"}'
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(raw)
    # When it is imported
    token = import_feed(path).token
    drain()
    # Then the run succeeded with every valid post in, and each bad line rejected by number
    counters = result_of(runs, token)
    assert (counters["inserted"], counters["rejected"]) == (3, 11)
    engine = engine_for(settings.store_url)
    with engine.connect() as conn:
        ids = set(conn.execute(sa.select(posts.c.source_id)).scalars())
        rejects = conn.execute(
            sa.select(import_rejects.c.position, import_rejects.c.reason)
            .where(import_rejects.c.token == token).order_by(import_rejects.c.position)
        ).all()  # fmt: skip
    assert ids == {"ok-1", "ok-2", "ok-3"}
    assert [p for p, _ in rejects] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14]
    reasons = dict(rejects)
    assert "reading_time" in reasons[6] and "twelve" in reasons[6]
    assert "2024-02-30" in reasons[8] and "UTF-8" in reasons[14]


def test_reimporting_gives_unchanged_and_an_older_revision_is_stale(
    tmp_path: Path, import_feed: Callable[..., Enqueued], drain: Callable[..., None],
    runs: Runs, settings: Settings,
) -> None:  # fmt: skip
    # Given 50 posts imported
    batch = list(generate_posts(50, seed=3))
    first = import_feed(feed(tmp_path / "a.jsonl", batch)).token
    drain()
    assert result_of(runs, first)["inserted"] == 50
    engine = engine_for(settings.store_url)
    with engine.connect() as conn:
        before = dict(conn.execute(sa.select(posts.c.source_id, posts.c.updated_at)).all())
    # When the same posts come again under another token, and one comes in an older revision
    again = import_feed(tmp_path / "a.jsonl", token="same-posts-again").token
    older = dict(
        batch[0], title="an older title", revision={**batch[0]["revision"], "version": "0.0.1"}
    )  # type: ignore[dict-item]
    stale = import_feed(feed(tmp_path / "b.jsonl", [older])).token
    drain()
    # Then all are unchanged and nothing was written; the older revision is stale, not applied
    assert result_of(runs, again)["unchanged"] == 50
    with engine.connect() as conn:
        after = dict(conn.execute(sa.select(posts.c.source_id, posts.c.updated_at)).all())
    assert after == before
    assert result_of(runs, stale)["stale"] == 1
    kept = get_post(engine, str(batch[0]["source_id"]))
    assert kept is not None and kept["title"] == batch[0]["title"]


def test_an_attempt_that_dies_between_its_last_batch_and_finishing_is_finished_by_the_next(
    tmp_path: Path, import_feed: Callable[..., Enqueued], work: Callable[[], None],
    drain: Callable[..., None], runs: Runs, settings: Settings,
) -> None:  # fmt: skip
    # Given an import whose first attempt commits every batch, then cannot finish the import
    # (the database refuses, as if the worker had died right there)
    engine = engine_for(settings.store_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_finish BEFORE UPDATE OF state ON imports"
            " WHEN NEW.state = 'finished' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    path = feed(tmp_path / "a.jsonl", list(generate_posts(30, seed=4)))
    token = import_feed(path, batch_size=10).token
    work()
    record = runs.get(token)
    assert record is not None and record.state == "retrying"
    assert set(runs.steps(token)) == {"fetch", "upsert"}
    # When the database accepts again and the next attempt runs (its upsert step is done)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_finish")
    drain()
    # Then that attempt finishes the import, with the exact counters of the first one
    assert result_of(runs, token)["inserted"] == 30
    record = runs.get(token)
    assert record is not None and record.attempt == 2
    with engine.connect() as conn:
        row = conn.execute(sa.select(imports).where(imports.c.token == token)).mappings().one()
    assert (row["state"], row["fence"], row["inserted"]) == ("finished", 2, 30)


def test_a_feed_removed_during_the_upsert_step_fails_at_once_as_the_fetch_step_says(
    tmp_path: Path, import_feed: Callable[..., Enqueued], work: Callable[[], None],
    drain: Callable[..., None], runs: Runs, settings: Settings,
) -> None:  # fmt: skip
    # Given an import whose first attempt fetched the feed, then failed in `upsert` (the
    # database refused its first batch)
    engine = engine_for(settings.store_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_posts BEFORE INSERT ON posts"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    path = feed(tmp_path / "a.jsonl", list(generate_posts(3, seed=4)))
    token = import_feed(path).token
    work()
    record = runs.get(token)
    assert record is not None and record.state == "retrying" and set(runs.steps(token)) == {"fetch"}
    assert gc.isenabled()  # off during the batches only, on again after the refused one
    # When the feed is removed before the next attempt
    path.unlink()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_posts")
    drain()
    # Then that attempt fails the run at once, saying the file is gone, as `fetch` does
    record = runs.get(token)
    assert record is not None and record.state == "failed" and record.attempt == 2
    assert record.error is not None and record.error["type"] == "PermanentError"
    assert "the file is gone; restore it, then rerun" in record.error["message"]


def test_an_import_from_a_url_is_downloaded_then_imported(
    tmp_path: Path, import_feed: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    feed(served / "feed.jsonl", list(generate_posts(20, seed=5)))
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        token = import_feed(f"http://127.0.0.1:{server.server_port}/feed.jsonl").token
        drain()
    finally:
        server.shutdown()
    assert result_of(runs, token)["inserted"] == 20


def test_the_inbox_imports_each_new_file_once_and_files_it_away(
    settings: Settings, redis: Redis, drain: Callable[..., None], index: RunIndex
) -> None:
    inbox = settings.home / "inbox"
    inbox.mkdir(parents=True)
    feed(inbox / "one.jsonl", list(generate_posts(5, seed=1)))
    feed(inbox / "copy-of-one.jsonl", list(generate_posts(5, seed=1)))
    feed(inbox / "two.jsonl", list(generate_posts(5, seed=2, start=100)))
    enqueuer = Enqueuer(redis, settings)
    poll = load_registry("jobs").get("poll_inbox")
    enqueuer.enqueue(Request(poll, {}, token="poll-1"))
    drain()
    imports_ = [r for r in index.runs(RunQuery(task="import_posts"))]
    assert len(imports_) == 2 and all(r.state == "succeeded" for r in imports_)
    enqueuer.enqueue(Request(poll, {}, token="poll-2"))
    drain()
    filed = sorted(p.name[33:] for p in (inbox / "done").iterdir())  # after '<hash>-'
    assert filed == ["copy-of-one.jsonl", "one.jsonl", "two.jsonl"]
    assert not list((inbox / "processing").iterdir())
    assert len(index.runs(RunQuery(task="import_posts"))) == 2
    # And each run's source keeps the name the file was dropped with
    sources = sorted(
        Path(r.args["source"]).name[33:] for r in index.runs(RunQuery(task="import_posts"))
    )
    assert sources in (["copy-of-one.jsonl", "two.jsonl"], ["one.jsonl", "two.jsonl"])


KILLS = 10


@pytest.mark.slow
@pytest.mark.load_sensitive
def test_twenty_thousand_posts_survive_random_sigkills_exactly(
    tmp_path: Path, settings: Settings, import_feed: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess], runs: Runs,
) -> None:  # fmt: skip
    # Given four disjoint feeds of 5,000 posts and two worker processes
    files = []
    for i in range(4):
        path = tmp_path / f"feed-{i}.jsonl"
        with path.open("w") as out:
            write_feed(generate_posts(5_000, seed=11, start=i * 5_000), out)
        files.append(path)
    # (each kill may hit the same run: it has an attempt more than there are kills)
    tokens = [import_feed(path, batch_size=25, attempts=KILLS + 1).token for path in files]
    workers = [start_worker("--name", f"w{i}") for i in range(2)]
    # When workers are SIGKILLed at random moments, several times, and replaced
    # (each kill aims at a worker seen running an import: a worker still starting up, as
    # a freshly replaced one is for a second or two on a loaded machine, interrupts nothing)
    rng = random.Random(20261127)
    names = [f"w{i}" for i in range(2)]
    kills = 0

    def busy() -> list[int]:
        running = {r.worker.split(".horse")[0] for t in tokens
                   if (r := runs.get(t)) and r.state == RunState.RUNNING}  # fmt: skip
        return [i for i, name in enumerate(names) if name in running]

    while kills < KILLS and not all(runs.get(t).state == "succeeded" for t in tokens):  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while not (candidates := busy()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not candidates:
            break
        time.sleep(rng.uniform(0.1, 1.0))
        victim = rng.choice(candidates)
        workers[victim].kill_group()
        kills += 1
        names[victim] = f"w{victim}-{kills}"
        workers[victim] = start_worker("--name", names[victim])

    def describe() -> str:
        lines = [f"{r.token} {r.state} attempt={r.attempt} error={r.error}" for t in tokens
                 if (r := runs.get(t))]  # fmt: skip
        lines += [f"--- {w.log.name}\n{w.output()[-3000:]}" for w in workers]
        return "\n".join(lines)

    wait_for(
        lambda: all(runs.get(t).state == "succeeded" for t in tokens),  # type: ignore[union-attr]
        timeout=180, what="all four imports", describe=describe,
    )  # fmt: skip
    # Then every post is present exactly once and the counters sum to exactly 20,000
    engine = engine_for(settings.store_url)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(posts.c.source_id)).scalars())
        recorded = conn.execute(sa.select(sa.func.sum(imports.c.inserted))).scalar_one()
    expected = {p["source_id"] for p in generate_posts(20_000, seed=11)}
    assert len(ids) == 20_000 and set(ids) == expected
    assert recorded == 20_000
    results = [result_of(runs, t) for t in tokens]
    assert sum(int(r["inserted"]) for r in results) == 20_000  # type: ignore[call-overload]
    assert all(r["updated"] == r["rejected"] == 0 for r in results)
    assert kills >= 3, "the imports finished before the workers were killed several times"
    attempts = sum(runs.get(t).attempt for t in tokens)  # type: ignore[union-attr]
    assert attempts > len(tokens), "no import was interrupted"


@pytest.fixture(autouse=True)
def _no_leftover_engines() -> Iterator[None]:
    yield
    engine_for.cache_clear()


@pytest.mark.load_sensitive
def test_an_import_gives_wait_a_total_so_the_bar_shows_how_far_and_how_fast(
    tmp_path: Path, import_feed: Callable[..., Enqueued], drain: Callable[..., None], runs: Runs
) -> None:
    from runner.cli.app import progress_text

    # Given a 20-post feed with a blank line (21 lines), imported
    posts_ = list(generate_posts(20, seed=4))
    path = tmp_path / "feed.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in posts_[:10]) + "\n"
                    + "".join(json.dumps(p) + "\n" for p in posts_[10:]))  # fmt: skip
    token = import_feed(path).token
    drain()
    # Then the run carries the feed's line count as its total
    record = runs.get(token)
    assert record is not None and record.total == 21
    # And the progress line draws a bar against it, with the rate
    line = progress_text([record], rate=1234.5)
    assert line.startswith("[" + "#" * 28)
    assert "20/21 items, 1,234/s, 1/1 runs finished" in line
