"""The site's upkeep tasks, fired by cron: freshness scores, the sitemap, and pruning.

Each is idempotent: running it again, or resuming it after a crash, gives the same result.
The store (SQLAlchemy) is imported when a task runs, not when a worker loads the tasks.
"""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.sitemap import SITEMAP, URLS_PER_FILE
from runner import Run, connect, prune_runs

if TYPE_CHECKING:
    from sqlalchemy import Engine, Update

FRESH_DAYS = 730  # freshness falls from 100 to 0 over two years without review or update
REVIEW_DAYS = 365  # a post whose last review is older than this needs a review
BATCH = 1_000
DEFAULT_BASE_URL = "https://example.org"


@cache
def _refresh() -> Update:
    import sqlalchemy as sa

    from jobs.store import posts

    return (
        sa.update(posts)
        .where(posts.c.source_id == sa.bindparam("b_source_id"))
        .values(
            freshness=sa.bindparam("b_freshness"),
            # Only ever raised here: clearing the flag is a reviewer's (or an import's) business.
            needs_review=sa.or_(posts.c.needs_review, sa.bindparam("b_overdue", type_=sa.Boolean)),
        )
    )


# -- freshness ---------------------------------------------------------------------------


def freshness(*, today: date, last_reviewed: date | None, updated: date) -> int:
    """100 on the day of the later of the last review and the last update, falling linearly
    to 0 at FRESH_DAYS after it: `round(100 * (1 - age_days / 730))`, kept within 0-100."""
    anchor = max(updated, last_reviewed) if last_reviewed else updated
    age = max(0, (today - anchor).days)
    return max(0, round(100 * (1 - age / FRESH_DAYS)))


def review_overdue(*, today: date, last_reviewed: date | None) -> bool:
    """Never reviewed, or last reviewed more than REVIEW_DAYS before `today`."""
    return last_reviewed is None or (today - last_reviewed).days > REVIEW_DAYS


def refresh_batch(
    engine: Engine, *, today: date, after: str | None, size: int = BATCH
) -> tuple[str | None, int, int]:
    """Recompute the next `size` posts after source_id `after` in one transaction; returns the
    last source_id (None when no post was left), how many were refreshed and how many are
    overdue for review."""
    import sqlalchemy as sa

    from jobs.store import posts

    stmt = sa.select(posts.c.source_id, posts.c.last_reviewed, posts.c.updated_at)
    stmt = stmt.order_by(posts.c.source_id).limit(size)
    if after is not None:
        stmt = stmt.where(posts.c.source_id > after)
    with engine.begin() as conn:
        rows = conn.execute(stmt).all()
        if not rows:
            return None, 0, 0
        updates = [
            {
                "b_source_id": source_id,
                "b_freshness": freshness(today=today, last_reviewed=reviewed, updated=at.date()),
                "b_overdue": review_overdue(today=today, last_reviewed=reviewed),
            }
            for source_id, reviewed, at in rows
        ]
        conn.execute(_refresh(), updates)
    return rows[-1].source_id, len(rows), sum(u["b_overdue"] for u in updates)


def refresh_freshness(run: Run, *, now: str | None = None, batch: int = BATCH) -> dict[str, int]:
    """Recompute every post's `freshness` and flag overdue reviews, `batch` posts at a time,
    checkpointing after each; a later attempt resumes after the last checkpointed post.
    `now` (ISO date) is the day to score for; default today, fixed for the run's lifetime."""
    from jobs.store import engine_for

    today = _moment(run.step("today", lambda: now or datetime.now(UTC).date().isoformat()))
    engine = engine_for(run.settings.store_url)
    counters = {"refreshed": 0, "overdue": 0, **run.counters}
    cursor = run.cursor
    while True:
        last, refreshed, overdue = refresh_batch(engine, today=today.date(), after=cursor,
                                                 size=batch)  # fmt: skip
        if last is None:
            return counters
        cursor = last
        counters = {"refreshed": counters["refreshed"] + refreshed,
                    "overdue": counters["overdue"] + overdue}  # fmt: skip
        run.checkpoint(cursor=cursor, counters=counters)


# -- sitemap -----------------------------------------------------------------------------


def build_sitemap(
    run: Run, *, base_url: str = DEFAULT_BASE_URL, per_file: int = URLS_PER_FILE
) -> dict[str, Any]:
    """Write `RUNNER_HOME/public/sitemap.xml` (an index over parts past `per_file` posts)
    listing every post once; returns the count."""
    from jobs.sitemap import write_sitemap
    from jobs.store import engine_for

    directory = run.settings.home / "public"
    engine = engine_for(run.settings.store_url)
    count = run.step(
        "write", lambda: write_sitemap(engine, directory, base_url=base_url, per_file=per_file)
    )
    run.checkpoint(counters={"urls": count})
    return {"urls": count, "path": str(directory / SITEMAP)}


# -- prune -------------------------------------------------------------------------------


def prune_spool(directory: Path, *, before: datetime) -> int:
    """Delete the files under `directory` last modified before `before`; returns how many.
    Directories and symlinked directories are left alone."""
    cutoff = before.timestamp()
    removed = 0
    for parent, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(parent) / name
            with suppress(FileNotFoundError):  # another prune got there first
                info = path.lstat()
                if not stat.S_ISDIR(info.st_mode) and info.st_mtime < cutoff:
                    path.unlink()
                    removed += 1
    return removed


def prune_rejects(engine: Engine, *, before: datetime) -> int:
    """Delete the `import_rejects` rows created before `before`; returns how many."""
    import sqlalchemy as sa

    from jobs.progress import import_rejects

    with engine.begin() as conn:
        done = conn.execute(sa.delete(import_rejects).where(import_rejects.c.created_at < before))
        return int(done.rowcount)


def prune(
    run: Run, *, spool_days: float = 2.0, rejects_days: float = 30.0, now: str | None = None
) -> dict[str, int]:
    """Remove what is past retention: finished runs and their logs (`runner.runs.retention`), spool
    files older than `spool_days` and import rejects older than `rejects_days`. Runs that are
    queued, running or retrying are never touched. `now` (ISO time) is for tests."""
    from jobs.store import engine_for

    moment = _moment(run.step("now", lambda: now or datetime.now(UTC).isoformat()))
    settings = run.settings
    redis = connect(settings, check=False)
    try:
        runs = run.step("runs", lambda: prune_runs(redis, settings, now=moment.timestamp()))
    finally:
        redis.close()
    spool = run.step("spool", lambda: prune_spool(
        settings.home / "spool", before=moment - timedelta(days=spool_days)))  # fmt: skip
    rejects = run.step("rejects", lambda: prune_rejects(
        engine_for(settings.store_url), before=moment - timedelta(days=rejects_days)))  # fmt: skip
    counts = {"runs": runs["expired"], "index_entries": runs["orphaned"], "spool_files": spool,
              "rejects": rejects}  # fmt: skip
    run.checkpoint(counters=counts)
    return counts


def _moment(text: str) -> datetime:
    """An ISO date or time as an aware UTC datetime; raises ValueError if it is neither."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
