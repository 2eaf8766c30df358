"""The supervisor's half of a graceful stop: when its horse had to be killed (the stop deadline
passed before the task reached a checkpoint, or a second signal), it moves the horse's run on
itself, at once, instead of leaving it to the reaper after the lease expires.

The horse's own half is in `Executor` (its attempt stops at its next checkpoint or step
boundary and hands the run over); both end in `Runs.hand_over`, fenced by the dead attempt's
lease, so a run is never moved twice.
"""

from __future__ import annotations

from typing import Any

import structlog
from redis import Redis

from runner.config import Settings
from runner.logs import event_json, streaming_to
from runner.record import RunRecord, RunState, texts
from runner.runs.transitions import Runs

log = structlog.get_logger("runner.worker.handover")


def runs_held_by(runs: Runs, worker: str) -> list[tuple[RunRecord, str]]:
    """The runs that `worker` (a horse's name) is executing, as their records say, each with
    the holder of its lease (the execution's, see `Runs.begin`)."""
    tokens = texts(runs.redis.zrange(runs.keys.running, 0, -1))
    pipe = runs.redis.pipeline(transaction=False)
    for token in tokens:
        pipe.hgetall(runs.keys.run(token))
        pipe.get(runs.keys.lease(token))
    replies = pipe.execute()
    held = [
        (RunRecord.from_hash(raw), texts([holder])[0])
        for raw, holder in zip(replies[0::2], replies[1::2], strict=True)
        if raw and holder
    ]
    return [(r, h) for r, h in held if r.state == RunState.RUNNING and r.worker == worker]


def hand_over_killed(redis: Redis, settings: Settings, *, worker: str, why: str) -> int:
    """Requeue at once, as its next attempt, each run the killed horse `worker` held (a run
    whose cancel was asked ends `cancelled` instead); returns how many were moved."""
    runs = Runs(redis, settings)
    moved = 0
    for run, holder in runs_held_by(runs, worker):
        details: dict[str, Any] = {"token": run.token, "task": run.task, "attempt": run.attempt,
                   "by": "supervisor", "reason": why}  # fmt: skip
        if run.cancel_requested:
            event, state = "run.cancelled", RunState.CANCELLED
            closing = event_json(event, state=state, **details)
            done = runs.fail_lost(run, error={}, if_failed=closing, if_cancelled=closing,
                                  holder=holder) is not None  # fmt: skip
        else:
            event, state = "attempt.handed_over", RunState.QUEUED
            details["next_attempt"] = run.attempt + 1
            closing = event_json(event, state=state, **details)
            done = runs.hand_over(run, holder=holder, events=[closing])
        if done:
            moved += 1
            with streaming_to(None):  # the run's stream has it already
                log.info(event, state=state, **details)
    return moved
