"""The run record: one token's durable state, and its encoding as a Redis hash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, cast


class RunState(StrEnum):
    """The state of a run, and who moves it (the Lua scripts spell the same strings).

    Each move is one method of `runner.runs.transitions.Runs` and one Lua script of
    `runner.runs.scripts` named after it (`Runs.begin`: `BEGIN_ATTEMPT`), conditional on the
    run being as its caller saw it; a move that ends a run counts it in the figures.

    ============  ==========================  ===============================================
    from          to                          move (script), and who makes it
    ============  ==========================  ===============================================
    (none)        queued                      `Enqueuer.enqueue_many` (`ENQUEUE_RUNS`)
    (none)        scheduled                   `ENQUEUE_RUNS` with a due time (`at=`, `after=`):
                                              in the scheduled set, its job not made yet
    queued        running                     `begin`, in the worker
    running       succeeded, failed,          `release`: the attempt's outcome, written by
                  retrying, cancelled         the `Executor` (cancelled: it stopped at its
                                              checkpoint after `ask_to_cancel`)
    retrying,     queued                      `promote_retry`: `Reaper.promote_due` (a
    scheduled                                 scheduled run's first job is pushed then)
    running       queued (next attempt)       `requeue_lost_lease`: `Reaper.requeue_expired`
                                              (its lease expired: the worker died)
    queued        queued (next attempt)       `requeue_undelivered`: `Reaper` (the job was
                                              lost between dequeue and begin, or is gone)
    running       queued (next attempt)       `hand_over` (fenced by the attempt's lease):
                                              the `Executor` of a stopping worker, or
                                              (`hand_over_killed`) the `Supervisor` that
                                              killed its horse at the stop deadline
    running,      failed, or cancelled when   `fail_lost`: the `Reaper` (no attempt left, or
    queued        a cancel was asked          a cancel asked), `hand_over_killed` (a cancel)
    queued,       cancelled                   `cancel_queued`: `runner.runs.cancel`
    retrying,                                 (`runner cancel`, the console, `Client.cancel`)
    scheduled
    running       running, cancel asked       `ask_to_cancel`: `runner.runs.cancel`
    failed,       queued                      `rerun` (by `RERUN_RULE`): `runner.runs.rerun`
    cancelled,                                (an operator; a succeeded run only with
    succeeded                                 `--force`)
    failed        running                     `begin` (by `RERUN_RULE`): the failed run's
                                              last job, requeued by RQ's tools (`rq requeue`)
    ============  ==========================  ===============================================

    Like `failed`, a cancelled run keeps its checkpoints and can be rerun.
    """

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A run that is ACTIVE will move on by itself; a TERMINAL one only by an operator's rerun.
ACTIVE = frozenset({RunState.SCHEDULED, RunState.QUEUED, RunState.RUNNING, RunState.RETRYING})
TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
JSON_FIELDS = ("args", "result", "error", "cursor", "counters")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One token's durable run: what, how far, and how it went."""

    token: str
    task: str
    args: dict[str, Any]
    queue: str
    state: RunState
    attempt: int
    timeout: int = 3600
    attempt_base: int = 0
    max_attempts: int = 5
    generation: int = 0
    job_id: str = ""
    worker: str = ""
    code_version: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    cursor: Any = None
    counters: dict[str, int] | None = None
    total: int | None = None
    cancel_requested: str = ""  # who asked a running run to stop ('cli', 'web'); '' if nobody
    handovers: int = 0  # attempts that stopped to hand the run over (a deploy, not a failure)
    due_at: float | None = None  # a scheduled run's due time (`at=`, `after=`)
    traceparent: str = ""  # the enqueuer's W3C trace context, when it had one
    tracestate: str = ""  # ... and its W3C tracestate, when it had one
    span: str = ""  # the traceparent of its last attempt that ended (runner.runs.tracing)
    rerun_attempt: int = 0  # the attempt an operator's latest rerun started; 0: never rerun
    waited: float | None = None  # queued -> this attempt's start; None after a retry or rerun
    limit_key: str = ""  # the task's limit key for this run (runner.runs.limits); '' if none
    limit_concurrency: int = 0  # its leases at once; 0: unbounded
    limit_rate: int = 0  # its starts per `limit_per` seconds; 0: unbounded
    limit_per: float = 0.0

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> RunRecord:
        """Decode the hash Redis holds (bytes to typed fields)."""
        f = {k.decode(): v.decode() for k, v in raw.items()}

        def num(name: str) -> float | None:
            return float(f[name]) if f.get(name) else None

        def loads(name: str) -> Any:
            return json.loads(f[name]) if f.get(name) else None

        return cls(
            token=f["token"],
            task=f["task"],
            args=loads("args") or {},
            queue=f.get("queue", "default"),
            state=RunState(f["state"]),
            attempt=int(f.get("attempt", 1)),
            timeout=int(f.get("timeout") or 3600),
            attempt_base=int(f.get("attempt_base", 0)),
            max_attempts=int(f.get("max_attempts", 5)),
            generation=int(f.get("generation", 0)),
            job_id=f.get("job_id", ""),
            worker=f.get("worker", ""),
            code_version=f.get("code_version", ""),
            created_at=num("created_at") or 0.0,
            updated_at=num("updated_at") or 0.0,
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            retry_at=num("retry_at"),
            result=loads("result"),
            error=loads("error"),
            cursor=loads("cursor"),
            counters=loads("counters"),
            total=int(f["total"]) if f.get("total") else None,
            cancel_requested=f.get("cancel_requested", ""),
            handovers=int(f.get("handovers") or 0),
            due_at=num("due_at"),
            traceparent=f.get("traceparent", ""),
            tracestate=f.get("tracestate", ""),
            span=f.get("span", ""),
            rerun_attempt=int(f.get("rerun_attempt") or 0),
            waited=num("waited"),
            limit_key=f.get("limit_key", ""),
            limit_concurrency=int(f.get("limit_concurrency") or 0),
            limit_rate=int(f.get("limit_rate") or 0),
            limit_per=num("limit_per") or 0.0,
        )

    @property
    def trace_id(self) -> str:
        """The trace its enqueuer's W3C context names (32 hex digits), '' without one."""
        parts = self.traceparent.split("-")
        return parts[1] if len(parts) == 4 else ""

    @property
    def attempts_left(self) -> int:
        """Attempts this run may still make after the current one."""
        return self.max_attempts - (self.attempt - self.attempt_base)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def texts(values: Any) -> list[str]:
    """Decode a list of Redis replies (bytes) to strings."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in cast(list[Any], values)]


def encode(fields: Mapping[str, Any]) -> list[str]:
    """Flatten fields into HSET arguments; JSON fields are JSON-encoded, None becomes ''."""
    flat: list[str] = []
    for name, value in fields.items():
        if name in JSON_FIELDS:
            flat += [name, json.dumps(value, separators=(",", ":"))]
        else:
            flat += [name, "" if value is None else str(value)]
    return flat


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What enqueue did for one token: a new run (`deduplicated` false) or the existing one."""

    token: str
    job_id: str
    state: RunState
    deduplicated: bool
