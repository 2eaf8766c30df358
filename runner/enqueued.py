"""What an enqueue did for one token (below `runner.enqueue`, so that task handles, which
`runner.tasks` makes, can name it without an import circle)."""

from __future__ import annotations

from dataclasses import dataclass

from runner.record import RunState


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What enqueue did for one token: a new run (`deduplicated` false) or the existing one."""

    token: str
    job_id: str
    state: RunState
    deduplicated: bool
