"""Cancelling a run (`runner cancel`, the console's cancel button): a queued run never starts,
a running one stops at its next checkpoint or step boundary. Either way it ends `cancelled`,
keeps its checkpoints and can be rerun; enqueueing its token again is deduplicated until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from redis import Redis

from runner.config import Settings
from runner.errors import InvalidArguments
from runner.logs import event_json, streaming_to
from runner.record import TERMINAL, RunState
from runner.runs.transitions import Runs

log = structlog.get_logger("runner.runs.cancel")
TRIES = 5  # a run that moves on while it is being cancelled is read again, this many times


class CancelAction(StrEnum):
    """What a cancel did for one run."""

    CANCELLED = "cancelled"  # it was queued or retrying: it ends now and never starts
    STOPPING = "stopping"  # it is running: it stops at its next checkpoint or step boundary
    SKIPPED = "skipped"  # it had ended, or does not exist: nothing to do


@dataclass(frozen=True, slots=True)
class Cancel:
    """What a cancel did for one run."""

    token: str
    task: str
    state: str  # the run's state now (a RunState), or 'missing'
    action: CancelAction
    reason: str = ""


def cancel(redis: Redis, settings: Settings, token: str, *, origin: str) -> Cancel:
    """Cancel the run of `token` on behalf of `origin` ('cli', 'web', ...: it lands in the run's
    log); never raises for a run that cannot be cancelled (the result says why). Raises
    InvalidArguments for an origin that is not one lowercase word."""
    if not (origin.isascii() and origin.isalpha() and origin.islower()):
        raise InvalidArguments(f"cancel origin {origin!r} must be one lowercase word, e.g. 'cli'")
    runs = Runs(redis, settings)
    run = None
    for _ in range(TRIES):
        run = runs.get(token)
        if run is None:
            return Cancel(token, "?", "missing", CancelAction.SKIPPED, "no such run (expired?)")
        if run.state in TERMINAL:
            again = "" if run.state == RunState.SUCCEEDED else "; `runner rerun` starts it again"
            why = f"it is {run.state} already{again}"
            return Cancel(token, run.task, run.state, CancelAction.SKIPPED, why)
        state: RunState = run.state
        if run.state == RunState.RUNNING:
            event, action = "run.cancel_requested", CancelAction.STOPPING
            why = "it stops at its next checkpoint or step boundary"
        else:
            event, action, state = "run.cancelled", CancelAction.CANCELLED, RunState.CANCELLED
            why = f"it was {run.state}: it will not start"
        details: dict[str, Any] = {
            "token": token, "task": run.task, "attempt": run.attempt, "origin": origin
        }  # fmt: skip
        move = runs.ask_to_cancel if run.state == RunState.RUNNING else runs.cancel_queued
        if move(run, origin=origin, events=[event_json(event, state=state, **details)]):
            with streaming_to(None):  # the run's stream has it already
                log.info(event, state=state, **details)
            return Cancel(token, run.task, state, action, why)
    assert run is not None
    why = "it kept changing while being cancelled; try again"
    return Cancel(token, run.task, run.state, CancelAction.SKIPPED, why)
