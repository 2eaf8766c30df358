"""The site's main job: import one feed of posts into the content store, exactly once.

Three steps: `fetch` (the file, or a URL downloaded to the spool), `upsert` (batches of
posts, each committed together with the import's cursor and counters in one database
transaction, so the counters are exact after any number of crashes) and `record`. A URL
import told to `skip_unchanged` (a feed without validators: `jobs.sources`) skips the upsert
when the body is the one last imported from that URL.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.downloads import DeadlinePassed, download
from jobs.feeds import detect_format, read_feed
from jobs.sources import file_digest, file_gone, is_url, local_file, spool_path
from runner import PermanentError, Run

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported by a run, not by a worker's start-up
    from sqlalchemy import Engine

    from jobs.posts import Item
    from jobs.progress import Counters

BATCH_SIZE = 2_000  # posts per transaction: redo after a crash is at most one batch
YOUNG_GC_EVERY = 10  # batches between two collections of the young generations during an upsert
CHECKPOINT_EVERY_S = 1.0  # how often an import's progress goes to Redis
MAX_DEADLINES = 3  # downloads past the deadline, over all attempts of a run, before it fails
DEADLINES = "download_deadlines"  # the run counter that keeps that count across attempts


def import_posts(
    run: Run, *, source: str, batch_size: int = BATCH_SIZE, lines: int | None = None,
    skip_unchanged: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Import the feed at `source` (path or http(s) URL); returns the five outcome counters.
    `lines`: the file's line count when the caller knows it (`runner import` does)."""
    from jobs.progress import finish_import
    from jobs.store import engine_for

    spool = run.settings.home / "spool"
    local = run.step("fetch", lambda: _fetched(run, source, spool=spool, lines=lines))
    engine = engine_for(run.settings.store_url)
    feed = _Feed(source, Path(local["path"]), local.get("records"), local.get("sha256"))
    counters = run.step("upsert", lambda: _upsert(run, engine, feed, batch_size, skip_unchanged))
    run.step(
        "record", lambda: finish_import(engine, token=run.token, attempt=run.attempt).as_dict()
    )
    return {"source": source, **counters}


@dataclass(frozen=True, slots=True)
class _Feed:
    """The fetched feed: its source, local file, record count (if known) and body hash (URLs)."""

    source: str
    path: Path
    records: int | None
    sha256: str | None


def _fetched(run: Run, source: str, *, spool: Path, lines: int | None) -> dict[str, Any]:
    """The local file of `source` (a URL downloaded into the spool), its format and size, how
    many records it has when that is cheap to know (JSON Lines: its lines) and, for a URL, the
    body's sha256."""
    sha256 = None
    if is_url(source):
        path, sha256, lines = _downloaded(run, source, spool)
    else:
        path = local_file(source)
    try:
        found = detect_format(path)
        if found == "jsonl" and lines is None:
            lines = _lines(path)
        return {"path": str(path), "format": found, "bytes": path.stat().st_size,
                "records": lines if found == "jsonl" else None, "sha256": sha256}  # fmt: skip
    except OSError as exc:
        raise PermanentError(f"{path}: cannot read it ({exc.strerror})") from None


def _lines(path: Path) -> int:
    """How many lines a file has (the last one may lack its newline)."""
    count, last = 0, b"\n"
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            count, last = count + chunk.count(b"\n"), chunk[-1:]
    return count + (last != b"\n")


def _downloaded(run: Run, url: str, spool: Path) -> tuple[Path, str, int]:
    """Download `url` into the spool atomically, once per run; return the file, its sha256
    and its line count. A download past its deadline is tried again, up to MAX_DEADLINES
    times over all attempts of the run (counted in the run's counters), then the run fails."""
    target = spool_path(url, spool=spool, token=run.token)
    if target.exists():  # downloaded by an attempt that died before its step was recorded
        return (target, *file_digest(target))
    spool.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    missed = run.counters.get(DEADLINES, 0)
    try:
        while True:
            try:
                body = download(url, partial, deadline_s=run.settings.download_deadline_seconds)
                break
            except DeadlinePassed as exc:
                missed += 1
                run.checkpoint(counters={**run.counters, DEADLINES: missed})
                run.log.warning("download.deadline", error=str(exc), missed=missed)
                if missed >= MAX_DEADLINES:
                    raise PermanentError(
                        f"{exc} ({missed} times); raise RUNNER_DOWNLOAD_DEADLINE_SECONDS or"
                        " import a copy of the feed as a file"
                    ) from None
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    run.log.info("download.finished", sha256=body.sha256, bytes=target.stat().st_size)
    return target, body.sha256, body.lines


def _upsert(
    run: Run, engine: Engine, feed: _Feed, batch_size: int, skip_unchanged: bool
) -> dict[str, int]:
    """Apply the feed in batches from the committed cursor; checkpoint after each batch (with
    the feed's record count as the total, when it is known, for `--wait`'s progress bar).
    With `skip_unchanged`, a body equal to the one last imported from the URL is not applied."""
    from jobs.progress import begin_import, last_sha256

    source = feed.source
    unchanged = skip_unchanged and feed.sha256 is not None and (
        last_sha256(engine, source=source, token=run.token) == feed.sha256
    )  # fmt: skip
    progress = begin_import(
        engine, token=run.token, source=source, attempt=run.attempt, generation=run.generation,
        sha256=feed.sha256,
    )  # fmt: skip
    counters = progress.counters
    if unchanged:
        run.log.info("import.unchanged", sha256=feed.sha256)
        return counters.as_dict()
    if progress.position:
        run.log.info("import.resumed", position=progress.position, counters=counters.as_dict())
    try:
        batches = _batches(read_feed(feed.path, after=progress.position), batch_size)
        counters = _apply(run, engine, feed, batches, counters=counters, position=progress.position)
    except FileNotFoundError:  # removed after `fetch`: as `fetch` says it, never retried
        raise file_gone(source if not is_url(source) else str(feed.path)) from None
    run.log.info("import.upserted", **counters.as_dict())
    return counters.as_dict()


def _apply(
    run: Run, engine: Engine, feed: _Feed, batches: Iterator[list[Item]], *,
    counters: Counters, position: int,
) -> Counters:  # fmt: skip
    """Apply `batches`: the database commits the cursor and counters with each batch (exact
    after any crash); Redis gets them at most once a second, for `runner show`, the progress
    bar and a stop request, once more at the end, and at once when a stop is known here."""
    from jobs.store import apply_batch

    checkpointed = -CHECKPOINT_EVERY_S
    with _cyclic_gc_off():
        for number, batch in enumerate(batches, start=1):
            if number % YOUNG_GC_EVERY == 0:
                gc.collect(1)
            run.ensure_lease()
            position = batch[-1].position
            counters = counters + apply_batch(
                engine, token=run.token, attempt=run.attempt, source=feed.source, items=batch,
                position=position,
            )  # fmt: skip
            if run.stop_asked or time.monotonic() - checkpointed >= CHECKPOINT_EVERY_S:
                run.checkpoint(cursor=position, counters=counters.as_dict(), total=feed.records)
                checkpointed = time.monotonic()
    if position != run.cursor:
        run.checkpoint(cursor=position, counters=counters.as_dict(), total=feed.records)
    return counters


@contextmanager
def _cyclic_gc_off() -> Iterator[None]:
    """The cyclic garbage collector off for the block, on again after it whatever happens.

    A batch makes no reference cycles (none were left after 100,000 posts), yet with the
    collector on it ran ~1,000 times per 100,000 posts and walked the whole long-lived heap
    (modules, SQLAlchemy) several times: 6% of the upsert. The caller still collects the
    young generations now and then, in case a cycle is made after all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
