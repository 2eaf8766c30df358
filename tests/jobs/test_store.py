"""The content store: upsert outcomes, exact counters, fencing and concurrent writers."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from jobs.database import make_engine
from jobs.posts import Item, Parsed, Post, Rejected
from jobs.progress import (
    Counters,
    ImportProgress,
    begin_import,
    finish_import,
    import_rejects,
    imports,
    read_import,
)
from jobs.revisions import upgrade
from jobs.store import _pipelined, apply_batch, count_posts, get_post, iter_post_urls, posts
from runner.errors import LeaseLost, PermanentError

SOURCE = "feeds/posts.jsonl"


def make_post(source_id: str, *, body: str = "A body.", version: str | None = "1.0") -> Post:
    """A valid post whose content hash covers its body and revision."""
    digest = hashlib.sha256(f"{body}\0{version}".encode()).hexdigest()
    return Post(
        source_id=source_id,
        title=f"About {source_id}",
        body=body,
        topic="python",
        difficulty="intermediate",
        reading_time=4,
        view_count=12_000_000_000,
        revision_version=version,
        last_reviewed=date(2024, 5, 1),
        meta={"stack": ["python", "sqlalchemy"], "flags": {"has_images": 0}},
        content_hash=digest,
    )


def feed(posts: Sequence[Post], *, start: int = 1) -> list[Item]:
    """The posts as parsed records at positions start, start + 1, ..."""
    return [Parsed(start + offset, post) for offset, post in enumerate(posts)]


def import_feed(engine: Engine, token: str, items: Sequence[Item], *, attempt: int = 1) -> Counters:
    """Begin `token`'s import and apply `items` as one batch."""
    begin_import(engine, token=token, source=SOURCE, attempt=attempt, generation=1)
    last = max(item.position for item in items)
    return apply_batch(
        engine, token=token, attempt=attempt, source=SOURCE, items=items, position=last
    )


def rejects_of(engine: Engine, token: str) -> list[tuple[Any, ...]]:
    """The stored rejects of `token` as (position, source_id, reason, source), by position."""
    columns = [import_rejects.c[name] for name in ("position", "source_id", "reason", "source")]
    stmt = sa.select(*columns).where(import_rejects.c.token == token).order_by("position")
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(stmt)]


# -- schema and engine ------------------------------------------------------------------


def test_upgrading_again_keeps_the_store(engine: Engine) -> None:
    # Given a store holding one post
    import_feed(engine, "feed", feed([make_post("a")]))
    # When the schema is initialised twice more
    upgrade(engine)
    upgrade(engine)
    # Then the post is still there
    assert count_posts(engine) == 1


def _upgrade_in_process(url: str, barrier: Any) -> None:
    """In a child process: initialise the schema once all siblings are ready."""
    engine = make_engine(url)
    barrier.wait(timeout=60)
    upgrade(engine)
    engine.dispose()


def test_upgrades_from_several_processes_at_once_are_safe(database_url: str) -> None:
    # Given three processes released at the same moment on an empty database
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    workers = [
        context.Process(target=_upgrade_in_process, args=(database_url, barrier)) for _ in range(3)
    ]
    # When each of them initialises the schema
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    # Then all succeed and the store is usable
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    engine = make_engine(database_url)
    assert count_posts(engine) == 0
    engine.dispose()


# -- outcomes -----------------------------------------------------------------------------


def test_new_posts_are_inserted_with_all_their_fields(engine: Engine) -> None:
    # Given an empty store
    before = datetime.now(UTC)
    # When a feed of two posts is applied
    counts = import_feed(engine, "feed", feed([make_post("a"), make_post("b")]))
    # Then both are inserted, counted and stored as given
    assert counts == Counters(inserted=2)
    assert read_import(engine, "feed") == ImportProgress(2, Counters(inserted=2), "running")
    stored = get_post(engine, "a")
    assert stored is not None
    assert stored["body"] == "A body." and stored["view_count"] == 12_000_000_000
    assert stored["last_reviewed"] == date(2024, 5, 1) and stored["needs_review"] is False
    assert stored["meta"] == {"stack": ["python", "sqlalchemy"], "flags": {"has_images": 0}}
    assert before <= stored["imported_at"] == stored["updated_at"] <= datetime.now(UTC)
    assert get_post(engine, "missing") is None


def test_reapplying_the_same_feed_changes_nothing(engine: Engine) -> None:
    # Given a store that imported a feed
    items = feed([make_post("a"), make_post("b")])
    import_feed(engine, "first", items)
    before = get_post(engine, "a")
    # When another import applies the same feed
    counts = import_feed(engine, "second", items)
    # Then every post is unchanged and not written at all
    assert counts == Counters(unchanged=2)
    assert get_post(engine, "a") == before


def test_a_batch_larger_than_a_select_chunk_sees_every_stored_post(engine: Engine) -> None:
    # Given a store holding 2,500 posts (more than one SELECT_CHUNK of stored versions)
    ids = [f"p-{n:05d}" for n in range(2_500)]
    import_feed(engine, "first", feed([make_post(sid) for sid in ids]))
    # When one batch brings them all again, a thousand of them changed
    again = [make_post(sid, body="New.", version="1.1") if n % 5 < 2 else make_post(sid)
             for n, sid in enumerate(ids)]  # fmt: skip
    counts = import_feed(engine, "second", feed(again))
    # Then each post's stored version was read: none is taken for new
    assert counts == Counters(updated=1_000, unchanged=1_500)
    assert count_posts(engine) == 2_500


def test_a_changed_post_is_updated(engine: Engine) -> None:
    # Given a stored post
    import_feed(engine, "first", feed([make_post("a")]))
    before = get_post(engine, "a")
    assert before is not None
    # When a newer revision with another body arrives
    counts = import_feed(engine, "second", feed([make_post("a", body="New.", version="1.1")]))
    # Then it replaces the stored content; imported_at stays
    assert counts == Counters(updated=1)
    after = get_post(engine, "a")
    assert after is not None
    assert (after["body"], after["revision_version"]) == ("New.", "1.1")
    assert after["imported_at"] == before["imported_at"] < after["updated_at"]


def test_an_older_revision_is_stale_and_the_newer_post_stays(engine: Engine) -> None:
    # Given a stored post at revision 2.0
    import_feed(engine, "first", feed([make_post("a", body="Newer.", version="2.0")]))
    # When revision 1.9 of it arrives
    counts = import_feed(engine, "second", feed([make_post("a", body="Older.", version="1.9")]))
    # Then it is stale and the stored post keeps revision 2.0
    assert counts == Counters(stale=1)
    stored = get_post(engine, "a")
    assert stored is not None and stored["body"] == "Newer."


def test_a_missing_revision_is_never_stale(engine: Engine) -> None:
    # Given posts stored with and without a revision
    import_feed(
        engine, "first", feed([make_post("a", version="2.0"), make_post("b", version=None)])
    )
    # When versions arrive that are missing on one side
    later = [make_post("a", body="No version.", version=None), make_post("b", body="V.")]
    counts = import_feed(engine, "second", feed(later))
    # Then both are updates
    assert counts == Counters(updated=2)


def test_duplicates_in_one_batch_see_the_earlier_outcome(engine: Engine) -> None:
    # Given a batch holding one post four times: new, newer, older again, newer again
    first, newer = make_post("a", body="One."), make_post("a", body="Two.", version="2.0")
    items = feed([first, newer, first, newer])
    # When it is applied
    counts = import_feed(engine, "feed", items)
    # Then each copy is judged against the one before it
    assert counts == Counters(inserted=1, updated=1, stale=1, unchanged=1)
    stored = get_post(engine, "a")
    assert stored is not None and stored["body"] == "Two."
    assert count_posts(engine) == 1


def test_rejects_are_stored_with_position_and_reason(engine: Engine) -> None:
    # Given a feed with one valid record and two rejected ones, one with a huge reason
    items: list[Item] = [
        Parsed(1, make_post("a")),
        Rejected(2, "b", "title is required"),
        Rejected(3, None, "x" * 5_000),
    ]
    # When it is applied
    counts = import_feed(engine, "feed", items)
    # Then both rejects are counted and stored, the reason cut to 1,000 characters
    assert counts == Counters(inserted=1, rejected=2)
    assert rejects_of(engine, "feed") == [
        (2, "b", "title is required", SOURCE),
        (3, None, "x" * 1_000, SOURCE),
    ]


def test_post_urls_stream_in_source_id_order_with_utc_times(engine: Engine) -> None:
    # Given three posts imported out of order
    import_feed(engine, "feed", feed([make_post("c"), make_post("a"), make_post("b")]))
    # When the URLs are listed
    urls = list(iter_post_urls(engine))
    # Then they come by source_id, with aware UTC times
    assert [source_id for source_id, _ in urls] == ["a", "b", "c"]
    assert all(updated_at.tzinfo is not None for _, updated_at in urls)
    assert all(updated_at.utcoffset() == UTC.utcoffset(None) for _, updated_at in urls)


# -- progress and fencing ---------------------------------------------------------------


def test_an_attempt_that_lost_its_lease_writes_nothing(engine: Engine) -> None:
    # Given attempt 2 took over the import from attempt 1
    begin_import(engine, token="feed", source=SOURCE, attempt=1, generation=1)
    begin_import(engine, token="feed", source=SOURCE, attempt=2, generation=1)
    items: list[Item] = [Parsed(1, make_post("a")), Rejected(2, "b", "bad")]
    # When attempt 1 applies a batch, finishes or begins again
    with pytest.raises(LeaseLost):
        apply_batch(engine, token="feed", attempt=1, source=SOURCE, items=items, position=2)
    with pytest.raises(LeaseLost):
        finish_import(engine, token="feed", attempt=1)
    with pytest.raises(LeaseLost):
        begin_import(engine, token="feed", source=SOURCE, attempt=1, generation=1)
    # Then nothing was written: no posts, no rejects, no progress
    assert count_posts(engine) == 0
    assert rejects_of(engine, "feed") == []
    assert read_import(engine, "feed") == ImportProgress(0, Counters(), "running")


def test_a_resumed_attempt_continues_from_the_committed_cursor(engine: Engine) -> None:
    # Given attempt 1 committed records 1-3 and then crashed
    batch = [*feed([make_post("a"), make_post("b")]), Rejected(3, "c", "bad")]
    import_feed(engine, "feed", batch, attempt=1)
    # When attempt 2 begins
    progress = begin_import(engine, token="feed", source=SOURCE, attempt=2, generation=1)
    # Then it resumes after record 3 with the committed counters
    assert progress == ImportProgress(3, Counters(inserted=2, rejected=1), "running")
    # When it replays that batch, then one overlapping the cursor
    replay = apply_batch(engine, token="feed", attempt=2, source=SOURCE, items=batch, position=3)
    overlap = feed([make_post("b"), make_post("d"), make_post("e")], start=3)
    counts = apply_batch(engine, token="feed", attempt=2, source=SOURCE, items=overlap, position=5)
    # Then the replayed records are skipped and the counters stay exact
    assert replay == Counters()
    assert counts == Counters(inserted=2)
    assert finish_import(engine, token="feed", attempt=2) == Counters(inserted=4, rejected=1)
    final = ImportProgress(5, Counters(inserted=4, rejected=1), "finished")
    assert read_import(engine, "feed") == final
    assert len(rejects_of(engine, "feed")) == 1


def test_the_next_attempt_finishes_an_import_whose_attempt_died_after_its_last_batch(
    engine: Engine,
) -> None:
    # Given attempt 1 committed every batch and died before finishing the import
    import_feed(engine, "feed", feed([make_post("a"), make_post("b")]), attempt=1)
    # When attempt 2 (whose upsert step was already done) finishes it
    counters = finish_import(engine, token="feed", attempt=2)
    # Then the import is finished with the exact counters, and attempt 1 is fenced out
    assert counters == Counters(inserted=2)
    assert read_import(engine, "feed") == ImportProgress(2, Counters(inserted=2), "finished")
    with pytest.raises(LeaseLost):
        finish_import(engine, token="feed", attempt=1)
    with pytest.raises(LeaseLost):
        apply_batch(engine, token="feed", attempt=1, source=SOURCE, items=[], position=2)


def test_finishing_an_import_that_never_began_is_a_permanent_error(engine: Engine) -> None:
    with pytest.raises(PermanentError, match="never began"):
        finish_import(engine, token="nothing", attempt=1)


def test_finishing_twice_with_the_same_attempt_changes_nothing(engine: Engine) -> None:
    # Given a finished import
    import_feed(engine, "feed", feed([make_post("a")]))
    first = finish_import(engine, token="feed", attempt=1)
    finished_at = _finished_at(engine, "feed")
    # When the same attempt finishes it again
    second = finish_import(engine, token="feed", attempt=1)
    # Then the counters and the finishing time are the same
    assert first == second == Counters(inserted=1)
    assert _finished_at(engine, "feed") == finished_at is not None


def _finished_at(engine: Engine, token: str) -> datetime | None:
    """The stored finishing time of `token`'s import."""
    with engine.connect() as conn:
        stmt = sa.select(imports.c.finished_at).where(imports.c.token == token)
        return conn.scalar(stmt)


def test_a_newer_generation_restarts_from_scratch(engine: Engine) -> None:
    # Given a finished import with a reject
    import_feed(engine, "feed", [Parsed(1, make_post("a")), Rejected(2, None, "bad")])
    finish_import(engine, token="feed", attempt=1)
    # When an operator reruns it from scratch (a higher generation)
    progress = begin_import(engine, token="feed", source=SOURCE, attempt=2, generation=2)
    # Then the cursor, counters and rejects are reset; the posts stay
    assert progress == ImportProgress(0, Counters(), "running")
    assert read_import(engine, "feed") == progress
    assert rejects_of(engine, "feed") == []
    assert count_posts(engine) == 1


def test_a_post_inserted_concurrently_is_reread_not_miscounted(engine: Engine) -> None:
    # Given an import, and another writer that inserted post "a" but has not committed yet
    begin_import(engine, token="feed", source=SOURCE, attempt=1, generation=1)
    post, now = make_post("a"), datetime.now(UTC)
    row = {name: getattr(post, name) for name in ("source_id", "title", "body", "content_hash")}
    with ThreadPoolExecutor(1) as pool, engine.connect() as other:
        other.execute(sa.insert(posts).values(**row, meta={}, imported_at=now, updated_at=now))
        # When the import applies the same post while that write is pending, which then commits
        pending = pool.submit(
            apply_batch,
            engine,
            token="feed",
            attempt=1,
            source=SOURCE,
            items=feed([post]),
            position=1,
        )
        _wait_for_a_lock_wait(engine)
        other.commit()
        counts = pending.result(timeout=60)
    # Then the import sees the committed post: unchanged, and counted once
    assert counts == Counters(unchanged=1)
    assert count_posts(engine) == 1


def test_a_conflict_behind_an_aborted_pipeline_is_raised_as_the_conflict(engine: Engine) -> None:
    # On PostgreSQL a batch's statements go in psycopg's pipeline; when one fails, what comes
    # out can be a later error ("pipeline aborted", the rollback's) raised while handling it.
    # The conflict behind it is what apply_batch retries, so that is what must come out
    # (SQLite has no pipeline: the error comes out as raised).
    conflict = sa.exc.IntegrityError("INSERT INTO posts ...", {}, Exception("duplicate key"))
    aborted = sa.exc.OperationalError("ROLLBACK", {}, Exception("pipeline aborted"))
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised, _pipelined(conn):
        try:
            raise conflict
        except sa.exc.IntegrityError:
            raise aborted  # noqa: B904 (the context is the point: as psycopg's rollback raises it)
    assert raised.value is (conflict if engine.dialect.name == "postgresql" else aborted)


def _wait_for_a_lock_wait(engine: Engine) -> None:
    """Wait until a session waits on a lock (PostgreSQL); on SQLite give the writer a moment."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.5)
        return
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while not conn.scalar(query) and time.monotonic() < deadline:
            conn.rollback()  # pg_stat_activity is a snapshot per transaction
            time.sleep(0.02)


# -- concurrent writers -----------------------------------------------------------------


def _import_in_process(url: str, token: str, ids: list[str], barrier: Any) -> None:
    """In a child process: import `ids` in batches of 50 once the sibling is ready."""
    engine = make_engine(url)
    begin_import(engine, token=token, source=SOURCE, attempt=1, generation=1)
    items = feed([make_post(source_id) for source_id in ids])
    barrier.wait(timeout=60)
    for start in range(0, len(items), 50):
        batch = items[start : start + 50]
        apply_batch(
            engine, token=token, attempt=1, source=SOURCE, items=batch, position=batch[-1].position
        )
    finish_import(engine, token=token, attempt=1)
    engine.dispose()


def test_concurrent_imports_write_each_post_once(database_url: str, engine: Engine) -> None:
    # Given two imports sharing 400 posts, each with 100 of its own, released together
    shared = [f"post-{n:04d}" for n in range(400)]
    feeds = {
        "left": shared + [f"left-{n:03d}" for n in range(100)],
        "right": shared + [f"right-{n:03d}" for n in range(100)],
    }
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_import_in_process, args=(database_url, token, ids, barrier))
        for token, ids in feeds.items()
    ]
    # When both run in their own processes
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    # Then each post is stored once and the counters add up exactly
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert count_posts(engine) == 600
    left, right = (read_import(engine, token) for token in feeds)
    assert left is not None and right is not None
    assert left.position == right.position == 500
    assert left.counters.inserted + right.counters.inserted == 600
    assert left.counters.unchanged + right.counters.unchanged == 400
    assert left.counters + right.counters == Counters(inserted=600, unchanged=400)
