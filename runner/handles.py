"""Task handles: a registered task as application code names it.

`@registry.task` and `registry.task(...)(fn)` return a `TaskHandle[P, R]` whose `P` is the
task function's keyword parameters after `run` (a `ParamSpec`), so mypy checks
`handle.enqueue(source="feed.jsonl")` against the function itself: a wrong or missing keyword
is a type error before it is a runtime `InvalidArguments`. `with_options` gives a copy with a
token, another queue, a due time, or the client to enqueue through; without one the
registry's `client` is used, which application code sets once (`registry.client =
Client.from_env()`): nothing connects at import.
A handle still calls like its function (`handle(run, ...)`), for tests and for tasks that
call each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from runner.errors import InvalidArguments
from runner.record import Enqueued

P = ParamSpec("P")
R = TypeVar("R")
TaskFn = Callable[Concatenate[Any, P], R]


class Enqueuing(Protocol):
    """What enqueues a handle's run: `runner.Client`."""

    def enqueue_handle(self, handle: TaskHandle[..., Any], args: dict[str, Any]) -> Enqueued: ...


class AsyncEnqueuing(Protocol):
    """What enqueues a handle's run from asyncio code: `runner.AsyncClient`."""

    def enqueue_handle(
        self, handle: TaskHandle[..., Any], args: dict[str, Any]
    ) -> Awaitable[Enqueued]: ...


@dataclass(frozen=True, slots=True)
class Options:
    """How a handle enqueues: its token, queue and due time (`at` or `after`), its client."""

    token: str | None = None
    queue: str | None = None
    at: datetime | float | None = None
    after: timedelta | float | None = None
    client: Enqueuing | None = None
    async_client: AsyncEnqueuing | None = None


class TaskHandle(Generic[P, R]):
    """A registered task: call it like its function, or enqueue a run of it."""

    __slots__ = ("options", "registry", "task")

    def __init__(self, registry: Any, task: Any, options: Options | None = None) -> None:
        self.registry = registry  # the TaskRegistry (runner.tasks, which imports this module)
        self.task = task  # the registered runner.tasks.Task
        self.options = options or Options()

    @property
    def name(self) -> str:
        return str(self.task.name)

    def __call__(self, run: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.task.fn(run, *args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"TaskHandle({self.task.name!r}, queue={self.task.queue!r})"

    def with_options(
        self,
        *,
        token: str | None = None,
        queue: str | None = None,
        at: datetime | float | None = None,
        after: timedelta | float | None = None,
        client: Enqueuing | None = None,
        async_client: AsyncEnqueuing | None = None,
    ) -> TaskHandle[P, R]:
        """A copy that enqueues with these options (the ones not given are kept)."""
        o = self.options
        options = replace(
            o, token=token or o.token, queue=queue or o.queue,
            at=o.at if at is None else at, after=o.after if after is None else after,
            client=client or o.client, async_client=async_client or o.async_client,
        )  # fmt: skip
        return TaskHandle(self.registry, self.task, options)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Enqueued:
        """Enqueue a run with these arguments through the handle's client (default: the
        registry's `client`, which application code sets once); raises InvalidArguments,
        RedisUnavailable."""
        client = self.options.client or self.registry.client
        if client is None:
            raise InvalidArguments(
                f"task {self.name}: no client to enqueue through; set registry.client ="
                " runner.Client.from_env(), or use .with_options(client=...)"
            )
        return client.enqueue_handle(self, self._arguments(args, kwargs))

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Enqueued:
        """`enqueue` through the handle's `AsyncClient` (`with_options(async_client=...)`)."""
        client = self.options.async_client
        if client is None:
            raise InvalidArguments(
                f"task {self.name}: enqueue_async needs .with_options(async_client=...)"
            )
        return await client.enqueue_handle(self, self._arguments(args, kwargs))

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise InvalidArguments(f"task {self.name} takes keyword arguments only")
        return dict(kwargs)
