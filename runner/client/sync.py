"""The client: how application code (a web app, a script) enqueues, waits for, cancels and
reruns runs. `AsyncClient` (runner.client.aio) is the same on asyncio.

Every enqueue is one call of the enqueue script (`runner.runs.enqueue`), after the arguments were
checked against the task's signature and found JSON: nothing is queued that could only fail.
Behind Sentinel it returns once a replica has the run. Redis down is retried for
`RUNNER_REDIS_OUTAGE_SECONDS`, then raises `RedisUnavailable` (a `RunnerError`) naming it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from redis import Redis

from runner.config import Settings
from runner.connections.redis import REDIS_DOWN, Durable, connect, redact, redis_url
from runner.errors import InvalidArguments, RedisUnavailable, UnknownRun
from runner.handles import TaskHandle
from runner.record import TERMINAL, Enqueued, RunRecord
from runner.runs.cancel import Cancel, cancel
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.rerun import Rerun, rerun
from runner.runs.transitions import Runs
from runner.tasks import Task, TaskRegistry, load_registry
from runner.tokens import canonical_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection

T = TypeVar("T")
P = ParamSpec("P")
TaskRef = str | Task | TaskHandle[..., Any]
WAIT_POLL_SECONDS = (0.02, 0.5)  # `wait` polls from the first to the second, doubling


class History(Protocol):
    """Finished runs kept in a database, once they left Redis (`runner.runs.history`'s
    `HistoryStore` by default: `RUNNER_HISTORY_URL`)."""

    def get(self, token: str) -> RunRecord | None: ...


class _StoredHistory:
    """The history tables (`runner.runs.history`), imported on the first read: a client that
    finds its runs in Redis never loads SQLAlchemy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: History | None = None

    def get(self, token: str) -> RunRecord | None:
        if self._store is None:
            from runner.runs.history import HistoryStore

            self._store = HistoryStore(self.settings)
        return self._store.get(token)


def due_time(at: datetime | float | None, after: timedelta | float | None) -> float | None:
    """Epoch seconds of a run's due time from `at` (an aware datetime, or epoch seconds) or
    `after` (a delay); None for now. Raises InvalidArguments for both, or a naive datetime."""
    if at is not None and after is not None:
        raise InvalidArguments("give at= or after=, not both")
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise InvalidArguments(f"at={at.isoformat()} has no time zone; use an aware datetime")
        return at.timestamp()
    if at is not None:
        return float(at)
    if after is not None:
        delay = after.total_seconds() if isinstance(after, timedelta) else float(after)
        return time.time() + max(0.0, delay)
    return None


def make_request(
    task: Task,
    args: Mapping[str, Any] | None,
    *,
    token: str | None = None,
    queue: str | None = None,
    at: datetime | float | None = None,
    after: timedelta | float | None = None,
    traceparent: str | None = None,
) -> Request:
    """A checked request: arguments a dict of JSON values that fits `task`'s signature, and a
    well-formed token; raises InvalidArguments with the reason."""
    if args is not None and not isinstance(args, Mapping):
        raise InvalidArguments(
            f"task {task.name}: arguments must be a dict, not {type(args).__name__}"
        )
    values = dict(args or {})
    canonical_json(values)
    request = Request(task, values, token, queue=queue, at=due_time(at, after),
                      traceparent=traceparent)  # fmt: skip
    request.resolved_token()
    return request


def handle_request(handle: TaskHandle[..., Any], args: dict[str, Any]) -> Request:
    """The checked request of a handle's run, with its options."""
    o = handle.options
    return make_request(handle.task, args, token=o.token, queue=o.queue, at=o.at, after=o.after)


class Client:
    """Enqueue, read, wait for, cancel and rerun runs (see the module's docstring)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        registry: TaskRegistry | None = None,
        history: History | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.history: History = history if history is not None else _StoredHistory(settings)
        self._registry = registry
        self._enqueuer = Enqueuer(redis, settings)
        self._runs = Runs(redis, settings)
        self._durable = Durable(settings.redis_outage_seconds)

    @classmethod
    def from_env(cls, *, registry: TaskRegistry | None = None) -> Client:
        """A client of the environment's settings (`RUNNER_*`); connects on first use."""
        settings = Settings.from_env()
        return cls(connect(settings, check=False), settings, registry=registry)

    @classmethod
    def from_url(
        cls, url: str, *, settings: Settings | None = None, registry: TaskRegistry | None = None
    ) -> Client:
        """A client of the Redis at `url` (`redis://`, `rediss://`, `unix://`,
        `redis+sentinel://`); other settings from `settings` or the environment."""
        settings = (settings or Settings.from_env()).with_changes(redis_url=url)
        return cls(connect(settings, check=False), settings, registry=registry)

    @property
    def registry(self) -> TaskRegistry:
        """The tasks (default: the settings' task module, `RUNNER_TASKS`, imported once)."""
        if self._registry is None:
            self._registry = load_registry(self.settings.tasks_module)
        return self._registry

    def task(self, ref: TaskRef) -> Task:
        """The registered task a name or handle stands for; raises UnknownTask."""
        if isinstance(ref, TaskHandle):
            task: Task = ref.task
            return task
        return ref if isinstance(ref, Task) else self.registry.get(ref)

    def request(
        self, task: TaskRef, args: Mapping[str, Any] | None = None, *, token: str | None = None,
        queue: str | None = None, at: datetime | float | None = None,
        after: timedelta | float | None = None, traceparent: str | None = None,
    ) -> Request:  # fmt: skip
        """A checked request for `enqueue_many` or `enqueue_on_commit`; raises InvalidArguments."""
        return make_request(self.task(task), args, token=token, queue=queue, at=at, after=after,
                            traceparent=traceparent)  # fmt: skip

    def enqueue(
        self, task: TaskRef, args: Mapping[str, Any] | None = None, *, token: str | None = None,
        queue: str | None = None, at: datetime | float | None = None,
        after: timedelta | float | None = None, traceparent: str | None = None,
    ) -> Enqueued:  # fmt: skip
        """Enqueue one run (scheduled with `at`/`after`), or return the token's existing one
        (`deduplicated`). Raises InvalidArguments, UnknownTask, RedisUnavailable."""
        request = self.request(task, args, token=token, queue=queue, at=at, after=after,
                               traceparent=traceparent)  # fmt: skip
        return self.enqueue_request(request)

    def enqueue_request(self, request: Request) -> Enqueued:
        return self.enqueue_many([request])[0]

    def enqueue_handle(self, handle: TaskHandle[..., Any], args: dict[str, Any]) -> Enqueued:
        """Enqueue a run of `handle` with its options (`TaskHandle.enqueue` calls this)."""
        return self.enqueue_request(handle_request(handle, args))

    def enqueue_many(self, requests: Iterable[Request]) -> list[Enqueued]:
        """Enqueue many requests (`request`, `TaskHandle.request`) in one atomic call."""
        return self._call(self._enqueuer.enqueue_many, list(requests))

    def enqueue_on_commit(
        self, connection: Connection, task: TaskRef, args: Mapping[str, Any] | None = None, *,
        token: str | None = None, queue: str | None = None, at: datetime | float | None = None,
        after: timedelta | float | None = None, traceparent: str | None = None,
    ) -> str:  # fmt: skip
        """Write the request into the outbox table of `connection`'s database, in its open
        transaction, and return its token: the relay enqueues it once the transaction
        committed, and never if it rolled back (runner.client.outbox). Raises InvalidArguments."""
        from runner.client.outbox import write_request  # SQLAlchemy only for callers who use it

        request = self.request(task, args, token=token, queue=queue, at=at, after=after,
                               traceparent=traceparent)  # fmt: skip
        return write_request(connection, request)

    def get(self, token: str) -> RunRecord | None:
        """The run of `token`: live in Redis, else from history; None when there is none."""
        live = self._call(self._runs.get, token)
        if live is None:
            return self.history.get(token)
        return live

    def wait(self, token: str, *, timeout: float) -> RunRecord:
        """The run once it is final (succeeded, failed or cancelled); raises TimeoutError
        after `timeout` seconds, UnknownRun when there is no such run."""
        deadline = time.monotonic() + timeout
        pause = WAIT_POLL_SECONDS[0]
        while True:
            record = self.get(token)
            if record is None:
                raise UnknownRun(f"no run has the token {token!r}")
            if record.state in TERMINAL:
                return record
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {token} is still {record.state} after {timeout:g} s")
            time.sleep(min(pause, left))
            pause = min(pause * 2, WAIT_POLL_SECONDS[1])

    def cancel(self, token: str) -> Cancel:
        """Cancel the run: a scheduled or queued one never starts, a running one stops at its
        next checkpoint (the result says which, or why nothing was done)."""
        return self._call(cancel, self.redis, self.settings, token, origin="client")

    def rerun(self, token: str, *, from_scratch: bool = False) -> Rerun:
        """Give a failed or cancelled run its next attempt (from its checkpoint by default)."""
        return self._call(rerun, self.redis, self.settings, token, from_scratch=from_scratch)

    def close(self) -> None:
        self.redis.close()

    def _call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return self._durable(fn, *args, **kwargs)
        except REDIS_DOWN as exc:
            raise unavailable(self.settings, exc) from None


def unavailable(settings: Settings, exc: BaseException) -> RedisUnavailable:
    """The one-line error for Redis still down after the outage budget."""
    url = redact(redis_url(settings)) if settings.redis_url else "the embedded Redis"
    return RedisUnavailable(
        f"cannot reach Redis at {url} after {settings.redis_outage_seconds:g} s ({exc});"
        " start it, or fix RUNNER_REDIS_URL (RUNNER_REDIS_OUTAGE_SECONDS sets the wait)"
    )
