"""Operator reruns: a failed or cancelled run gets a new attempt, from its checkpoint or from
scratch."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from redis import Redis

from runner.config import Settings
from runner.logs import event_json, streaming_to
from runner.record import RunState
from runner.runs.transitions import Runs

log = structlog.get_logger("runner.runs.rerun")
MISSING = "the run has expired or never existed"
RERUNNABLE = (RunState.FAILED, RunState.CANCELLED)


class RerunAction(StrEnum):
    """What a rerun did for one run."""

    REQUEUED = "requeued"
    WOULD_REQUEUE = "would requeue"  # --dry-run
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Rerun:
    """What a rerun did (or, with --dry-run, would do) for one run."""

    token: str
    task: str
    state: str  # a RunState, or 'missing'
    action: RerunAction
    reason: str = ""


def rerun(
    redis: Redis,
    settings: Settings,
    token: str,
    *,
    from_scratch: bool = False,
    dry_run: bool = False,
    force: bool = False,
    seen: tuple[str, int] | None = None,
) -> Rerun:
    """Give a failed or cancelled run its next attempt (with `force`, a succeeded one too,
    logged as deliberate); any other state is left alone and said why. The rule and the move
    are one Lua call (`Runs.rerun`). With `seen` (state, attempt), only if the run is still
    there: checked in the same atomic step as the rerun."""
    runs = Runs(redis, settings)
    record = runs.get(token)
    if record is None:  # a run that moved to history comes back to be rerun
        from runner.runs.history import HistoryStore  # SQLAlchemy: only for a moved run
        from runner.runs.move import restore

        store = HistoryStore(settings)
        moved = store.get(token)
        if moved is None:
            return Rerun(token, "?", "missing", RerunAction.SKIPPED, MISSING)
        if dry_run or (seen is not None and (str(moved.state), moved.attempt) != seen):
            verdict = "would" if dry_run else "changed"
            if moved.state not in RERUNNABLE and not (force and moved.state == RunState.SUCCEEDED):
                verdict = "refused"
            said = _said(verdict, moved.state, moved.attempt, from_scratch, seen)
            return Rerun(token, moved.task, moved.state, *said)
        restore(redis, settings, token, store)
        record = runs.get(token)
        if record is None:
            return Rerun(token, "?", "missing", RerunAction.SKIPPED, MISSING)
    details: dict[str, Any] = {
        "token": token, "task": record.task, "attempt": record.attempt + 1,
        "from_scratch": from_scratch, "state": RunState.QUEUED, "was": record.state,
        "forced": record.state == RunState.SUCCEEDED,
    }  # fmt: skip
    if seen is not None and (str(record.state), record.attempt) != seen:
        verdict, state, attempt = "changed", str(record.state), record.attempt
    else:
        verdict, state, attempt = runs.rerun(
            record, from_scratch=from_scratch, force=force, dry_run=dry_run,
            events=[event_json("run.rerun", **details)],
        )  # fmt: skip
    if verdict == "requeued":
        with streaming_to(None):  # the run's log has it already
            log.info("run.rerun", **details)
    said = _said(verdict, state, attempt, from_scratch, seen)
    return Rerun(token, record.task, state or "missing", *said)


def _said(
    verdict: str, state: str, attempt: int, from_scratch: bool, seen: tuple[str, int] | None
) -> tuple[RerunAction, str]:
    """The action and the reason the operator reads, for `Runs.rerun`'s verdict."""
    where = "from scratch" if from_scratch else "from its last checkpoint"
    if verdict == "requeued":
        return RerunAction.REQUEUED, where
    if verdict == "would":
        return RerunAction.WOULD_REQUEUE, where
    if verdict == "missing":
        return RerunAction.SKIPPED, MISSING
    if verdict == "changed" and seen is not None:
        return (
            RerunAction.SKIPPED,
            f"it changed since the preview: it is {state} at attempt {attempt}",
        )
    if verdict == "changed":
        return RerunAction.SKIPPED, "it changed meanwhile; retry"
    why = f"it is {state}; only failed and cancelled runs are rerun"
    if state == RunState.SUCCEEDED:
        why += " (--force reruns a succeeded one; --from-scratch redoes its steps)"
    return RerunAction.SKIPPED, why
