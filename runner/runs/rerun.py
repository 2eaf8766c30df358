"""Operator reruns: a failed or cancelled run gets a new attempt, from its checkpoint or from
scratch."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import structlog
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.logs import into_run_log
from runner.record import RunState
from runner.runs.transitions import Runs

log = structlog.get_logger("runner.runs.rerun")


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
    logged as deliberate); any other state is left alone and said why. With `seen` (state,
    attempt), only if the run is still there: checked in the same atomic step as the rerun."""
    keys = Keys(settings.prefix)
    runs = Runs(redis, settings)
    record = runs.get(token)
    if record is None:
        why = "the run has expired or never existed"
        return Rerun(token, "?", "missing", RerunAction.SKIPPED, why)
    if seen is not None and (str(record.state), record.attempt) != seen:
        why = f"it changed since the preview: it is {record.state} at attempt {record.attempt}"
        return Rerun(token, record.task, record.state, RerunAction.SKIPPED, why)
    rerunnable = {RunState.FAILED, RunState.CANCELLED} | ({RunState.SUCCEEDED} if force else set())
    if record.state not in rerunnable:
        why = f"it is {record.state}; only failed and cancelled runs are rerun"
        if record.state == RunState.SUCCEEDED:
            why += " (--force reruns a succeeded one; --from-scratch redoes its steps)"
        return Rerun(token, record.task, record.state, RerunAction.SKIPPED, why)
    if dry_run:
        where = _where(from_scratch)
        return Rerun(token, record.task, record.state, RerunAction.WOULD_REQUEUE, where)
    fields: dict[str, object] = {
        "attempt": record.attempt + 1,
        "attempt_base": record.attempt,
        "rerun_attempt": record.attempt + 1,
        "finished_at": None,
        "retry_at": None,
        "cancel_requested": "",
    }
    if from_scratch:
        fields |= {"generation": record.generation + 1, "cursor": None, "counters": None}
    moved = runs.advance(
        token,
        seen_state=record.state,
        seen_attempt=record.attempt,
        run_fields=fields,
        queue=record.queue,
        timeout=record.timeout,
        wipe_steps=from_scratch,
    )
    if not moved:
        why = "it changed meanwhile; retry"
        return Rerun(token, record.task, record.state, RerunAction.SKIPPED, why)
    with into_run_log(redis, keys.log(token), maxlen=settings.log_max_events):
        log.info(
            "run.rerun", token=token, task=record.task, attempt=record.attempt + 1,
            from_scratch=from_scratch, state=RunState.QUEUED, was=record.state,
            forced=record.state == RunState.SUCCEEDED,
        )  # fmt: skip
    return Rerun(token, record.task, RunState.QUEUED, RerunAction.REQUEUED, _where(from_scratch))


def _where(from_scratch: bool) -> str:
    return "from scratch" if from_scratch else "from its last checkpoint"
