"""Task handles: a registered task as application code names it.

`@registry.task` and `registry.task(...)(fn)` return a `TaskHandle[P, R]` whose `P` is the
task function's keyword parameters after `run` (a `ParamSpec`), so mypy checks
`handle.enqueue(source="feed.jsonl")` against the function itself: a wrong or missing keyword
is a type error before it is a runtime `InvalidArguments`. `with_options` gives a copy with a
token, another queue, a due time, or the client to enqueue through; without a client the
registry's default one is used, built from the environment on first use (never at import).
A handle still calls like its function (`handle(run, ...)`), for tests and for tasks that
call each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar
from weakref import WeakKeyDictionary

from runner.errors import InvalidArguments

if TYPE_CHECKING:
    from runner.aclient import AsyncClient
    from runner.client import Client
    from runner.enqueue import Enqueued, Request
    from runner.tasks import Task, TaskRegistry

P = ParamSpec("P")
R = TypeVar("R")
TaskFn = Callable[Concatenate[Any, P], R]

# registry -> its default client (`Client.from_env`), made when a handle first enqueues
_default_clients: WeakKeyDictionary[TaskRegistry, Client] = WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Options:
    """How a handle enqueues: its token, queue and due time (`at` or `after`), its client."""

    token: str | None = None
    queue: str | None = None
    at: datetime | float | None = None
    after: timedelta | float | None = None
    client: Client | AsyncClient | None = None


class TaskHandle(Generic[P, R]):
    """A registered task: call it like its function, or enqueue a run of it."""

    __slots__ = ("options", "registry", "task")

    def __init__(self, registry: TaskRegistry, task: Task, options: Options | None = None) -> None:
        self.registry = registry
        self.task = task
        self.options = options or Options()

    @property
    def name(self) -> str:
        return self.task.name

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
        client: Client | AsyncClient | None = None,
    ) -> TaskHandle[P, R]:
        """A copy that enqueues with these options (the ones not given are kept)."""
        o = self.options
        options = replace(
            o, token=token or o.token, queue=queue or o.queue,
            at=o.at if at is None else at, after=o.after if after is None else after,
            client=client or o.client,
        )  # fmt: skip
        return TaskHandle(self.registry, self.task, options)

    def request(self, *args: P.args, **kwargs: P.kwargs) -> Request:
        """The request to enqueue a run with these arguments (checked against the task's
        signature: raises InvalidArguments)."""
        from runner.client import make_request

        if args:
            raise InvalidArguments(f"task {self.name} takes keyword arguments only")
        o = self.options
        return make_request(self.task, kwargs, token=o.token, queue=o.queue, at=o.at, after=o.after)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Enqueued:
        """Enqueue a run with these arguments through the handle's client (default: the
        registry's, from the environment); raises InvalidArguments, RedisUnavailable."""
        request = self.request(*args, **kwargs)
        return self._client().enqueue_request(request)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Enqueued:
        """`enqueue` through the handle's `AsyncClient` (`with_options(client=...)`)."""
        from runner.aclient import AsyncClient

        request = self.request(*args, **kwargs)
        client = self.options.client
        if not isinstance(client, AsyncClient):
            raise InvalidArguments(
                f"task {self.name}: enqueue_async needs with_options(client=AsyncClient(...))"
            )
        enqueued: Enqueued = await client.enqueue_request(request)
        return enqueued

    def _client(self) -> Client:
        from runner.client import Client

        client = self.options.client
        if isinstance(client, Client):
            return client
        if client is not None:
            raise InvalidArguments(f"task {self.name}: an AsyncClient enqueues with enqueue_async")
        if self.registry not in _default_clients:
            _default_clients[self.registry] = Client.from_env(registry=self.registry)
        return _default_clients[self.registry]
