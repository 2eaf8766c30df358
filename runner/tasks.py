"""Tasks: named functions registered with the runner, each with its queue and retry policy."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import click
import tenacity
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runner.config import Settings
from runner.errors import ConfigError, InvalidArguments, TransientError, UnknownTask
from runner.handles import Enqueuing, P, R, TaskFn, TaskHandle
from runner.record import RunRecord

TaskFunction = Callable[..., Any]
_T = TypeVar("_T")
TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
)


@dataclass(frozen=True, slots=True)
class Check:
    """One site check's result (exported as `runner.HealthCheck`): its name, whether it
    passed, and a one-line detail."""

    name: str
    ok: bool
    detail: str


# The site's own checks (`TaskRegistry.health_checks`: its content store, say): each takes the
# settings and returns a Check; they are part of "up".
SiteCheck = Callable[[Settings], Check]
# A line `runner show` adds about a run (e.g. where its rejected lines are listed), or None.
RunNote = Callable[[RunRecord], str | None]


class ScheduleEntry(Protocol):
    """A line of the site's cron schedule as the registry holds it: a
    runner.cron.schedule.CronEntry (the cron layer, above this module, checks each is one)."""

    @property
    def name(self) -> str: ...

    @property
    def task(self) -> str: ...


class SitePages(Protocol):
    """A site's console pages: a fastapi.APIRouter, included by runner.web (this module never
    imports the web stack)."""

    @property
    def routes(self) -> Sequence[object]: ...

    @property
    def tags(self) -> Sequence[object]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task's faults are retried: inside a step (tenacity) and as whole attempts."""

    attempts: int | None = None  # attempts of a run before it fails; None: RUNNER_MAX_ATTEMPTS
    step_stop: tenacity.stop.stop_base = field(
        default_factory=lambda: tenacity.stop_after_attempt(4) | tenacity.stop_after_delay(60)
    )
    step_wait: tenacity.wait.wait_base = field(
        default_factory=lambda: tenacity.wait_exponential_jitter(multiplier=0.5, max=10)
    )
    transient: tuple[type[BaseException], ...] = TRANSIENT
    backoff_seconds: float = 2.0
    backoff_cap_seconds: float = 300.0

    def attempt_delay(self, failed_attempts: int) -> float:
        """Seconds before the next attempt: exponential in the failures so far, capped."""
        return float(
            min(self.backoff_cap_seconds, self.backoff_seconds * 2 ** (failed_attempts - 1))
        )


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit per key (runner.runs.limits): the runs of a task whose `key(args)` is the same
    hold at most `concurrency` leases at once, across every worker, and start at most `rate`
    times in any `per` seconds (None: no such bound). A run over it waits in the key's wait
    set, holding no worker, until a slot frees (a holder ends, or its lease expires)."""

    key: Callable[[Mapping[str, Any]], str]
    concurrency: int | None = None
    rate: int | None = None
    per: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency is None and self.rate is None:
            raise ConfigError("a Limit needs concurrency=N, rate=N (with per=SECONDS), or both")
        for name, value in (("concurrency", self.concurrency), ("rate", self.rate)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"Limit {name} must be a whole number, at least 1: not {value!r}")
        if not self.per > 0:
            raise ConfigError(f"Limit per must be a positive number of seconds, not {self.per!r}")

    def key_of(self, task: str, args: Mapping[str, Any]) -> str:
        """The limit's key for one run: the task's name and what `key` makes of its
        arguments; raises InvalidArguments when `key` fails or makes no text."""
        try:
            value = self.key(args)
        except Exception as exc:
            raise InvalidArguments(
                f"task {task}'s limit key failed on these arguments: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(value, str) or not value or len(value) > 200:
            raise InvalidArguments(
                f"task {task}'s limit key must give a text of 1 to 200 characters: {value!r:.60}"
            )
        return f"{task}:{value}"


@dataclass(frozen=True, slots=True)
class Task:
    """A registered task: `fn(run, **kwargs)` returns a JSON-able result."""

    name: str
    fn: TaskFunction
    queue: str = "default"
    timeout: int = 3600
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limit: Limit | None = None

    def check_args(self, args: Mapping[str, Any]) -> None:
        """Raise InvalidArguments when `args` lack a required parameter of `fn` (after `run`)
        or name one it does not take, before a run is queued that could only fail."""
        required, known, listing = _parameters(self.fn)
        for name in required:
            if name not in args:
                raise InvalidArguments(
                    f"task {self.name} needs argument {name!r}; its parameters: {listing}"
                )
        for name in args:
            if known is not None and name not in known:
                raise InvalidArguments(
                    f"task {self.name} has no argument {name!r}; its parameters: {listing}"
                )


@functools.lru_cache(maxsize=256)
def _parameters(fn: TaskFunction) -> tuple[tuple[str, ...], frozenset[str] | None, str]:
    """A task function's required keyword names, every name it takes (None: any, it has
    **kwargs) and its parameters as text; once per function (enqueue checks every request)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = tuple(p.name for p in named if p.default is p.empty)
    any_name = any(p.kind is p.VAR_KEYWORD for p in params)
    known = None if any_name else frozenset(p.name for p in named)
    shown = [p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in named]
    return required, known, ", ".join(shown) or "none"


class TaskRegistry:
    """Name -> Task. A site module exposes one as `registry`; `noop` is always there.

    Beside its tasks it holds what the site adds to the runner, each read by the layer that
    uses it: `commands` (Click commands of the CLI, e.g. `runner import`), `schedule` (cron
    entries), `health_checks` (part of "up": its database, say), `web_routers` (console pages:
    an APIRouter, or 'module:name' of one, so workers and the CLI never import the web stack),
    `notes` (lines `runner show` adds about a run) and `client` (the `runner.Client` a handle's
    `enqueue` goes through by default, set by the application at start-up; None: each call
    names one with `with_options(client=)`)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self.commands: list[click.Command] = []
        self.schedule: list[ScheduleEntry] = []
        self.health_checks: list[SiteCheck] = []
        self.web_routers: list[SitePages | str] = []
        self.notes: list[RunNote] = []
        self.client: Enqueuing | None = None
        self.register(Task(name="noop", fn=noop, queue="default", timeout=60))

    def register(self, task: Task) -> TaskHandle[..., Any]:
        """Register `task`; returns its handle (`registry.task(...)(fn)` types its arguments)."""
        self._tasks[task.name] = task
        return TaskHandle(self, task)

    def task(
        self,
        name: str | None = None,
        *,
        queue: str = "default",
        timeout: int = 3600,
        retry: RetryPolicy | None = None,
        limit: Limit | None = None,
    ) -> Callable[[TaskFn[P, R]], TaskHandle[P, R]]:
        """Decorator registering `fn(run, **kwargs)` under `name` (default: its own name);
        returns its handle, whose `enqueue` mypy checks against `fn`'s keyword parameters.
        `limit`: at most so many of its runs of one key at once, or per period (`Limit`)."""

        def register(fn: TaskFn[P, R]) -> TaskHandle[P, R]:
            task = Task(name or fn.__name__, fn, queue, timeout, retry or RetryPolicy(), limit)
            self._tasks[task.name] = task
            return TaskHandle(self, task)

        return register

    def get(self, name: str) -> Task:
        """The task called `name`; raises UnknownTask listing the known names."""
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks))
            raise UnknownTask(f"unknown task {name!r}; known tasks: {known}") from None

    @property
    def queues(self) -> frozenset[str]:
        """The queues the tasks are declared on."""
        return frozenset(t.queue for t in self._tasks.values())

    def __iter__(self) -> Iterator[Task]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))


class _Steps(Protocol):
    """What `noop` needs of a Run (runner.attempt.context imports this module, not the reverse)."""

    def step(self, name: str, fn: Callable[[], _T]) -> _T: ...


def noop(run: _Steps, **kwargs: Any) -> dict[str, Any]:
    """Does nothing but one recorded step: for smoke tests and benchmarks."""
    return run.step("noop", lambda: {"echo": kwargs})


def load_registry(module: str) -> TaskRegistry:
    """Import the site's task module and return its `registry`; raises ConfigError if absent."""
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"cannot import task module {module!r} (RUNNER_TASKS): {exc}") from None
    registry = getattr(imported, "registry", None)
    if not isinstance(registry, TaskRegistry):
        raise ConfigError(f"task module {module!r} has no `registry = TaskRegistry()`")
    return registry
