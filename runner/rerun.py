"""Operator reruns: a failed run gets a new attempt, from its checkpoint or from scratch."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis import Redis

from runner.config import Settings
from runner.enqueue import Enqueuer
from runner.keys import Keys
from runner.logs import into_run_log
from runner.runs import Runs

log = structlog.get_logger("runner.rerun")


@dataclass(frozen=True, slots=True)
class Rerun:
    """What a rerun did (or, with --dry-run, would do) for one run."""

    token: str
    task: str
    state: str
    action: str  # 'requeued', 'would requeue', 'skipped'
    reason: str = ""


def rerun(
    redis: Redis,
    settings: Settings,
    token: str,
    *,
    from_scratch: bool = False,
    dry_run: bool = False,
) -> Rerun:
    """Give a failed run its next attempt; any other state is left alone and said why."""
    keys = Keys(settings.prefix)
    runs = Runs(redis, keys, lease_ms=settings.lease_ms)
    record = runs.get(token)
    if record is None:
        return Rerun(token, "?", "missing", "skipped", "the run has expired or never existed")
    if record.state != "failed":
        why = f"it is {record.state}; only failed runs are rerun"
        return Rerun(token, record.task, record.state, "skipped", why)
    if dry_run:
        return Rerun(token, record.task, record.state, "would requeue", _where(from_scratch))
    fields: dict[str, object] = {
        "attempt": record.attempt + 1,
        "attempt_base": record.attempt,
        "finished_at": None,
        "retry_at": None,
    }
    if from_scratch:
        fields |= {"generation": record.generation + 1, "cursor": None, "counters": None}
    moved = Enqueuer(redis, settings).advance(
        token,
        seen_state="failed",
        seen_attempt=record.attempt,
        run_fields=fields,
        queue=record.queue,
        timeout=record.timeout,
        wipe_steps=from_scratch,
    )
    if not moved:
        return Rerun(token, record.task, record.state, "skipped", "it changed meanwhile; retry")
    with into_run_log(redis, keys.log(token), maxlen=settings.log_max_events):
        log.info(
            "run.rerun", token=token, task=record.task, attempt=record.attempt + 1,
            from_scratch=from_scratch, state="queued",
        )  # fmt: skip
    return Rerun(token, record.task, "queued", "requeued", _where(from_scratch))


def _where(from_scratch: bool) -> str:
    return "from scratch" if from_scratch else "from its last checkpoint"
