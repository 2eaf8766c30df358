"""The site's main job: import one feed of posts into the content store, exactly once.

Three steps: `fetch` (the file, or a URL downloaded to the spool), `upsert` (batches of
posts, each committed together with the import's cursor and counters in one database
transaction, so the counters are exact after any number of crashes) and `record`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from jobs.feeds import detect_format, read_feed
from jobs.posts import Item
from jobs.progress import begin_import, finish_import
from jobs.sources import TASK, fetch
from jobs.store import apply_batch, engine_for
from runner import PermanentError, RetryPolicy, Run, Task, TaskRegistry

BATCH_SIZE = 500


def import_posts(run: Run, *, source: str, batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    """Import the feed at `source` (path or http(s) URL); returns the five outcome counters."""
    spool = run.settings.home / "spool"
    local = run.step("fetch", lambda: _fetched(source, spool=spool, token=run.token))
    engine = engine_for(run.settings.store_url)
    counters = run.step(
        "upsert", lambda: _upsert(run, engine, source, Path(local["path"]), batch_size)
    )
    run.step(
        "record", lambda: finish_import(engine, token=run.token, attempt=run.attempt).as_dict()
    )
    return {"source": source, **counters}


def _fetched(source: str, *, spool: Path, token: str) -> dict[str, Any]:
    path = Path(fetch(source, spool=spool, token=token))
    try:
        return {"path": str(path), "format": detect_format(path), "bytes": path.stat().st_size}
    except OSError as exc:
        raise PermanentError(f"{path}: cannot read it ({exc.strerror})") from None


def _upsert(run: Run, engine: Engine, source: str, path: Path, batch_size: int) -> dict[str, int]:
    """Apply the feed in batches from the committed cursor; checkpoint after each batch."""
    progress = begin_import(
        engine, token=run.token, source=source, attempt=run.attempt, generation=run.generation
    )
    counters = progress.counters
    if progress.position:
        run.log.info("import.resumed", position=progress.position, counters=counters.as_dict())
    for batch in _batches(read_feed(path, after=progress.position), batch_size):
        run.ensure_lease()
        position = batch[-1].position
        counters = counters + apply_batch(
            engine, token=run.token, attempt=run.attempt, source=source, items=batch,
            position=position,
        )  # fmt: skip
        run.checkpoint(cursor=position, counters=counters.as_dict())
    run.log.info("import.upserted", **counters.as_dict())
    return counters.as_dict()


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
