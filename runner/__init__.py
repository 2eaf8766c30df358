"""The runner's public API: what a site's task module builds on.

Tasks are registered on a `TaskRegistry` (which returns a typed `TaskHandle`) and receive a
`Run` (steps, checkpoints, a bound logger); application code enqueues through `Client` or
`AsyncClient` (`enqueue_on_commit` writes into the outbox table a site's migration makes with
`create_outbox_table`); `CronEntry` declares the schedule; `PermanentError` and
`TransientError` classify what a task raises. The site's own CLI commands import from
`runner.cli`. Every other module is internal and may change between releases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.attempt.context import Run
from runner.client.sync import Client
from runner.config import Settings
from runner.connections.redis import connect, redact
from runner.cron.schedule import CronEntry
from runner.errors import (
    AttemptStopped,
    ConfigError,
    InvalidArguments,
    LeaseLost,
    PermanentError,
    RedisUnavailable,
    RunnerError,
    TaskError,
    TransientError,
    UnknownRun,
)
from runner.handles import TaskHandle
from runner.record import Enqueued, RunRecord, RunState
from runner.runs.enqueue import Request
from runner.runs.retention import prune_runs
from runner.tasks import Check as HealthCheck
from runner.tasks import Limit, RetryPolicy, Task, TaskRegistry
from runner.tokens import canonical_json, content_token, derive_token, slot_token

if TYPE_CHECKING:
    from runner.client.aio import AsyncClient
    from runner.client.outbox import create_outbox_table, drop_outbox_table, outbox_table

# Imported on first use: redis.asyncio and SQLAlchemy are for the code that needs them.
_LAZY = {
    "AsyncClient": "runner.client.aio",
    "create_outbox_table": "runner.client.outbox",
    "drop_outbox_table": "runner.client.outbox",
    "outbox_table": "runner.client.outbox",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "AttemptStopped",
    "Client",
    "ConfigError",
    "CronEntry",
    "Enqueued",
    "HealthCheck",
    "InvalidArguments",
    "LeaseLost",
    "Limit",
    "PermanentError",
    "RedisUnavailable",
    "Request",
    "RetryPolicy",
    "Run",
    "RunRecord",
    "RunState",
    "RunnerError",
    "Settings",
    "Task",
    "TaskError",
    "TaskHandle",
    "TaskRegistry",
    "TransientError",
    "UnknownRun",
    "canonical_json",
    "connect",
    "content_token",
    "create_outbox_table",
    "derive_token",
    "drop_outbox_table",
    "outbox_table",
    "prune_runs",
    "redact",
    "slot_token",
]
