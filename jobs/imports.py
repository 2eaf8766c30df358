"""The site's main job: import one feed of posts into the content store, exactly once.

Three steps: `fetch` (the file, or a URL downloaded to the spool), `upsert` (batches of
posts, each committed together with the import's cursor and counters in one database
transaction, so the counters are exact after any number of crashes) and `record`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from jobs.downloads import DeadlinePassed, download
from jobs.feeds import detect_format, read_feed
from jobs.posts import Item
from jobs.progress import Counters, begin_import, finish_import
from jobs.sources import TASK, file_gone, is_url, local_file, spool_path
from jobs.store import apply_batch, engine_for
from runner import PermanentError, RetryPolicy, Run, Task, TaskRegistry

BATCH_SIZE = 500
MAX_DEADLINES = 3  # downloads past the deadline, over all attempts of a run, before it fails
DEADLINES = "download_deadlines"  # the run counter that keeps that count across attempts


def import_posts(run: Run, *, source: str, batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    """Import the feed at `source` (path or http(s) URL); returns the five outcome counters."""
    spool = run.settings.home / "spool"
    local = run.step("fetch", lambda: _fetched(run, source, spool=spool))
    engine = engine_for(run.settings.store_url)
    counters = run.step(
        "upsert",
        lambda: _upsert(run, engine, source, Path(local["path"]), batch_size, local.get("records")),
    )
    run.step(
        "record", lambda: finish_import(engine, token=run.token, attempt=run.attempt).as_dict()
    )
    return {"source": source, **counters}


def _fetched(run: Run, source: str, *, spool: Path) -> dict[str, Any]:
    """The local file of `source` (a URL downloaded into the spool), its format and size, and
    how many records it has when that is cheap to know (JSON Lines: its lines)."""
    path = _downloaded(run, source, spool) if is_url(source) else local_file(source)
    try:
        found = detect_format(path)
        return {"path": str(path), "format": found, "bytes": path.stat().st_size,
                "records": _lines(path) if found == "jsonl" else None}  # fmt: skip
    except OSError as exc:
        raise PermanentError(f"{path}: cannot read it ({exc.strerror})") from None


def _lines(path: Path) -> int:
    """How many lines a file has (the last one may lack its newline)."""
    count, last = 0, b"\n"
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            count, last = count + chunk.count(b"\n"), chunk[-1:]
    return count + (last != b"\n")


def _downloaded(run: Run, url: str, spool: Path) -> Path:
    """Download `url` into the spool atomically, once per run. A download past its deadline is
    tried again, up to MAX_DEADLINES times over all attempts of the run (counted in the run's
    counters), then the run fails."""
    target = spool_path(url, spool=spool, token=run.token)
    if target.exists():
        return target
    spool.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    missed = run.counters.get(DEADLINES, 0)
    try:
        while True:
            try:
                digest = download(url, partial, deadline_s=run.settings.download_deadline_seconds)
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
    run.log.info("download.finished", sha256=digest, bytes=target.stat().st_size)
    return target


def _upsert(
    run: Run, engine: Engine, source: str, path: Path, batch_size: int, records: int | None
) -> dict[str, int]:
    """Apply the feed in batches from the committed cursor; checkpoint after each batch (with
    the feed's record count as the total, when it is known, for `--wait`'s progress bar)."""
    progress = begin_import(
        engine, token=run.token, source=source, attempt=run.attempt, generation=run.generation
    )
    counters = progress.counters
    if progress.position:
        run.log.info("import.resumed", position=progress.position, counters=counters.as_dict())
    try:
        batches = _batches(read_feed(path, after=progress.position), batch_size)
        counters = _apply(run, engine, source, batches, counters=counters, total=records)
    except FileNotFoundError:  # removed after `fetch`: as `fetch` says it, never retried
        raise file_gone(source if not is_url(source) else str(path)) from None
    run.log.info("import.upserted", **counters.as_dict())
    return counters.as_dict()


def _apply(
    run: Run, engine: Engine, source: str, batches: Iterator[list[Item]], *,
    counters: Counters, total: int | None,
) -> Counters:  # fmt: skip
    for batch in batches:
        run.ensure_lease()
        position = batch[-1].position
        counters = counters + apply_batch(
            engine, token=run.token, attempt=run.attempt, source=source, items=batch,
            position=position,
        )  # fmt: skip
        run.checkpoint(cursor=position, counters=counters.as_dict(), total=total)
    return counters


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def register(registry: TaskRegistry) -> None:
    """Register `import_posts` on the `imports` queue."""
    registry.register(Task(TASK, import_posts, queue="imports", timeout=6 * 3600,
                           retry=RetryPolicy()))  # fmt: skip
