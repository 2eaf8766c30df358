"""The runner's public API: what a site's task module builds on.

Tasks are registered on a `TaskRegistry` and receive a `Run` (steps, checkpoints, a bound
logger); `CronEntry` declares the schedule; `PermanentError` and `TransientError` classify what
a task raises. The site's own CLI commands import from `runner.cli`. Every other module is
internal and may change between releases.
"""

from __future__ import annotations

from runner.config import Settings
from runner.context import Run
from runner.enqueue import Enqueued, Request
from runner.errors import (
    AttemptStopped,
    ConfigError,
    InvalidArguments,
    LeaseLost,
    PermanentError,
    RunnerError,
    TaskError,
    TransientError,
    UnknownRun,
)
from runner.health import Check as HealthCheck
from runner.record import RunRecord, RunState
from runner.redis import connect, redact
from runner.retention import prune_runs
from runner.schedule import CronEntry
from runner.tasks import RetryPolicy, Task, TaskRegistry
from runner.tokens import canonical_json, content_token, derive_token, slot_token

__all__ = [
    "AttemptStopped",
    "ConfigError",
    "CronEntry",
    "Enqueued",
    "HealthCheck",
    "InvalidArguments",
    "LeaseLost",
    "PermanentError",
    "Request",
    "RetryPolicy",
    "Run",
    "RunRecord",
    "RunState",
    "RunnerError",
    "Settings",
    "Task",
    "TaskError",
    "TaskRegistry",
    "TransientError",
    "UnknownRun",
    "canonical_json",
    "connect",
    "content_token",
    "derive_token",
    "prune_runs",
    "redact",
    "slot_token",
]
