"""The inbox: files dropped into `RUNNER_HOME/inbox` are imported once each, then filed away.

A new file moves to `inbox/processing/<content hash>-<its name>` (so its path is stable while
its run lives, and its name shows in `runs`, `show` and the console as the run's source) and
gets an import run whose token is that content hash (the same content under two names is one
run). Once the run succeeded the file moves to `inbox/done/`, under the same name; a failed
run's file stays in `processing/` until an operator reruns it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jobs.sources import FEED_SUFFIXES, TASK, file_sha256
from runner import Run, RunState, content_token

HASH_CHARS = 32  # of the content's sha256: the file's token, and its filed name's start
NAME_CHARS = 200  # of the original name kept (a file name may have 255 bytes)


def inbox_dir(run: Run, inbox: str | None) -> Path:
    return Path(inbox or run.settings.inbox or run.settings.home / "inbox")


def poll_inbox(run: Run, *, inbox: str | None = None) -> dict[str, Any]:
    """Enqueue an import for every new file, and file away the ones whose import succeeded."""
    root = inbox_dir(run, inbox)
    processing, done = root / "processing", root / "done"
    for folder in (processing, done):
        folder.mkdir(parents=True, exist_ok=True)
    claimed = [_claim(path, processing) for path in sorted(root.iterdir()) if _is_new(path)]
    enqueued = filed = 0
    for path in sorted(processing.iterdir()):
        token = content_token(TASK, path.name[:HASH_CHARS])
        state = run.state_of(token)
        if state is None:
            result = run.enqueue(TASK, {"source": str(path)}, token=token)
            enqueued += not result.deduplicated
        elif state == RunState.SUCCEEDED:
            os.replace(path, done / path.name)
            filed += 1
    run.log.info("inbox.polled", new_files=len(claimed), enqueued=enqueued, filed=filed)
    return {"new_files": len(claimed), "enqueued": enqueued, "filed": filed}


def _is_new(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and not path.name.endswith(".part")
        and path.suffix.lower() in FEED_SUFFIXES
    )


def _claim(path: Path, processing: Path) -> Path:
    name = path.name if len(path.name) <= NAME_CHARS else path.name[: NAME_CHARS - 8] + path.suffix
    target = processing / f"{file_sha256(path)[:HASH_CHARS]}-{name}"
    os.replace(path, target)
    return target
