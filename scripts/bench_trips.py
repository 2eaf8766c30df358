"""Round trips per job: the horse's own Redis client, instrumented, draining no-op jobs.

    python -m scripts.bench_trips N      (the runner's settings in the environment)

Prints one JSON object: the runner's and SimpleWorker's round trips per job and what they were.
It runs in a process of its own, so the horse's logging setup (to a file) stays out of the bench.

A round trip is one `send_packed_command` on a connection: one command, one pipeline or one
MULTI/EXEC, one Lua call. The horse runs in the bench's process (the same `Horse` and
`Executor` that `runner.worker.horse.horse_main` builds, on the same kind of socket) with a client
whose connections count what they send, so every trip it makes is seen, its lease renewer's
and log flusher's included. Steady state: a burst of N jobs minus an idle burst, over N,
after a first burst has loaded the scripts; the heartbeats fall where they fall (every few
seconds), so they count at their real rate per job. RQ's `SimpleWorker` is counted the same
way, for comparison.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis import ConnectionPool, Redis
from redis.connection import AbstractConnection
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

import runner.delivery.dequeue as delivery
import runner.logs as logs
import runner.runs.enqueue as enqueue
import runner.runs.scripts as run_scripts
from runner.attempt.execute import Executor
from runner.config import Settings
from runner.connections.lua import LuaScript
from runner.runs.enqueue import Enqueuer, Request
from runner.tasks import load_registry
from runner.worker.horse import Horse
from scripts.bench_jobs import NOOP


class TripLog:
    """What the instrumented connections sent: one name per round trip, in order."""

    def __init__(self) -> None:
        self.trips: list[str] = []
        self.scripts = script_names([run_scripts, delivery, enqueue])

    def name(self, args: tuple[Any, ...]) -> str:
        command = _text(args[0]).upper()
        if command == "EVALSHA" and len(args) > 1:
            named = self.scripts.get(_text(args[1]), _text(args[1])[:8])
            return f"EVALSHA {named.split(':')[-1]}"
        return command


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def script_names(modules: Iterable[Any]) -> dict[str, str]:
    """sha1 -> module:NAME of every Lua script (an upper-case constant: a `LuaScript`, or the
    str of one) defined in `modules`."""
    names = {}
    for module in modules:
        for name, value in vars(module).items():
            source = value.source if isinstance(value, LuaScript) else value
            if name.isupper() and isinstance(source, str) and "redis.call" in source:
                sha = hashlib.sha1(source.encode()).hexdigest()
                names[sha] = f"{module.__name__.rsplit('.', 1)[-1]}:{name.strip('_')}"
    return names


def counting_client(url: str, trips: TripLog) -> Redis:
    """A client on `url` whose connections record every round trip in `trips`."""
    pool = ConnectionPool.from_url(url)
    base: type[AbstractConnection] = pool.connection_class

    class Counting(base):  # type: ignore[valid-type, misc]
        _pending = ""

        def send_command(self, *args: Any, **kwargs: Any) -> None:
            self._pending = trips.name(args)
            super().send_command(*args, **kwargs)

        def pack_commands(self, commands: Any) -> Any:
            names = [trips.name(tuple(args)) for args in commands]
            inner = dict.fromkeys(n for n in names if n not in ("MULTI", "EXEC"))
            self._pending = f"pipeline({' '.join(inner)})"
            return super().pack_commands(commands)

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            trips.trips.append(self._pending or "?")
            self._pending = ""
            super().send_packed_command(command, check_health)

    pool.connection_class = Counting
    return Redis(connection_pool=pool)


@dataclass(frozen=True)
class Trips:
    """Round trips per job in steady state, and what they were (per job, most frequent first)."""

    per_job: float
    kinds: list[tuple[str, float]]

    def describe(self, top: int = 8) -> str:
        return ", ".join(f"{name} x{count:g}" for name, count in self.kinds[:top])


def steady_state(burst: Callable[[], None], enqueue_n: Callable[[int], None], n: int,
                 trips: TripLog) -> Trips:  # fmt: skip
    """(trips of a burst with `n` jobs - trips of an idle burst) / n, after a warm-up burst."""
    enqueue_n(20)
    burst()  # scripts loaded, templates built, connections made
    start = len(trips.trips)
    burst()
    idle = Counter(trips.trips[start:])
    enqueue_n(n)
    start = len(trips.trips)
    burst()
    busy = Counter(trips.trips[start:])
    busy.subtract(idle)
    per_job = ((k, round(v / n, 2)) for k, v in busy.items())
    kinds = sorted(((k, v) for k, v in per_job if v), key=lambda kv: -kv[1])
    return Trips(round(sum(busy.values()) / n, 2), kinds)


def runner_trips(url: str, settings: Settings, n: int) -> Trips:
    """Round trips per no-op job of the runner's horse (every guarantee on)."""
    trips = TripLog()
    client = counting_client(url, trips)
    registry = load_registry(settings.tasks_module)
    enqueuer, task = Enqueuer(client, settings), registry.get("noop")
    counter = iter(range(10**9))

    def enqueue_n(count: int) -> None:
        enqueuer.enqueue_many([Request(task, {}, f"trip-{next(counter)}") for _ in range(count)])

    def burst() -> None:
        horse = Horse(list(settings.queues), connection=client, serializer=JSONSerializer)
        horse.executor = Executor(client, settings, registry, worker=horse.name)
        horse.executor.install()
        horse.work(burst=True, logging_level="WARNING", with_scheduler=False)

    return steady_state(burst, enqueue_n, n, trips)


def simple_worker_trips(url: str, n: int) -> Trips:
    """Round trips per no-op job of RQ's SimpleWorker (JSON serializer)."""
    trips = TripLog()
    client = counting_client(url, trips)
    queue = Queue("default", connection=client, serializer=JSONSerializer)

    def enqueue_n(count: int) -> None:
        queue.enqueue_many([Queue.prepare_data(NOOP, kwargs={"i": i}) for i in range(count)])

    def burst() -> None:
        worker = SimpleWorker([queue], connection=client, serializer=JSONSerializer)
        worker.work(burst=True, logging_level="WARNING", with_scheduler=False)

    return steady_state(burst, enqueue_n, n, trips)


def main(argv: list[str]) -> int:
    """Count both sides on the Redis of the environment's settings; print them as JSON."""
    n = int(argv[0])
    settings = Settings.from_env()
    url = settings.redis_url or ""
    with open(os.devnull, "w") as sink:
        logs.configure(stream=sink, console=False)  # rendered as in a worker, then dropped
        client = Redis.from_url(url)
        client.flushall()
        runner = runner_trips(url, settings, n)
        client.flushall()
        simple = simple_worker_trips(url, n)
    out = {"runner": runner.per_job, "runner_kinds": runner.kinds}
    out |= {"simple": simple.per_job, "simple_kinds": simple.kinds}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
