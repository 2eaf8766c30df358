"""Replay a no-op job's Lua calls to measure, and compare, what each script costs Redis.

    .venv/bin/python scripts/replay_scripts.py [N] [--variant NAME=FILE ...]   (repo root)

The bench's `redis_cpu_vs_simpleworker` says how much Redis CPU a no-op job costs, in about
two minutes; this says where it goes inside the scripts, in seconds, and what a rewrite of
one saves (issue 18). N no-op runs (default 2,000) are enqueued on a throwaway redis-server
(the bench's environment) and every key is kept (DUMP); an in-process horse drains them
while every EVALSHA it sends is recorded. Then, `ROUNDS` times, Redis is put back as it was
before the drain (FLUSHALL, RESTORE), the scripts are loaded (a `--variant` replaces the
script named NAME, in runner.runs.scripts, by the Lua in FILE) and the calls are replayed in
order, one at a time. It prints the median over the rounds of the µs per job that EVALSHA
took (INFO commandstats: the commands a script runs included), and, from one more replay
with SLOWLOG on (which also logs, and slows, every inner command: shares, not µs), each
script's share of that time.

A variant must take the same keys and arguments and end the calls the same way (the later
calls of a replay assume it did); only the Redis side of a change is measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import statistics
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `scripts.*` when run as a file

from redis import ConnectionPool, Redis, UnixDomainSocketConnection
from rq.serializers import JSONSerializer

import runner.delivery.dequeue as dequeue
import runner.runs.scripts as scripts
from runner.attempt.execute import Executor
from runner.config import Settings
from runner.connections.lua import LuaScript
from runner.runs.enqueue import Enqueuer, Request
from runner.tasks import load_registry
from runner.worker.horse import Horse
from scripts.bench_env import BenchEnv

ROUNDS = 3
Call = tuple[Any, ...]  # EVALSHA's arguments: sha, number of keys, keys, arguments


class RecordingConnection(UnixDomainSocketConnection):
    """A real connection that keeps the arguments of every EVALSHA it sends."""

    calls: list[Call] = []  # noqa: RUF012

    def send_command(self, *args: Any, **kwargs: Any) -> None:  # one command's
        self.keep([args])
        super().send_command(*args, **kwargs)

    def pack_commands(self, commands: Any) -> list[bytes]:  # a pipeline's
        self.keep(commands)
        return super().pack_commands(commands)  # type: ignore[no-any-return]

    @staticmethod
    def keep(commands: Any) -> None:
        RecordingConnection.calls += [c[1:] for c in commands if str(c[0]).upper() == "EVALSHA"]


def known_scripts() -> dict[str, tuple[str, str]]:
    """sha -> (name, source) of the runner's scripts a job may call."""
    found = {s.sha: (name, s.source) for name, s in vars(scripts).items()
             if isinstance(s, LuaScript)}  # fmt: skip
    for name in ("_TAKE_AHEAD", "_MOVE_FIRST_JOB"):
        source = getattr(dequeue, name)
        found[hashlib.sha1(source.encode()).hexdigest()] = (name.lstrip("_"), source)
    return found


def record(
    redis: Redis, settings: Settings, n: int
) -> tuple[list[Call], list[tuple[bytes, bytes]]]:
    """Enqueue `n` no-op runs, keep every key, drain them with a horse; returns its calls
    and the keys as they were before it began."""
    registry = load_registry(settings.tasks_module)
    enqueuer = Enqueuer(redis, settings)
    for start in range(0, n, 500):
        part = range(start, min(n, start + 500))
        enqueuer.enqueue_many([Request(registry.get("noop"), {"i": i}) for i in part])
    snapshot = [(key, redis.dump(key)) for key in redis.scan_iter(count=1000)]
    for _name, source in known_scripts().values():  # no call fails unknown, to be made again
        redis.script_load(source)
    path = redis.connection_pool.connection_kwargs["path"]
    client = Redis(connection_pool=ConnectionPool(connection_class=RecordingConnection, path=path))
    horse = Horse([registry.get("noop").queue], connection=client, serializer=JSONSerializer)
    horse.executor = Executor(client, settings, registry, worker=horse.name)
    horse.executor.install()
    RecordingConnection.calls = []
    with open("/dev/null", "w") as events, contextlib.redirect_stdout(events):
        horse.work(burst=True, logging_level="WARNING")
    return RecordingConnection.calls, snapshot  # type: ignore[return-value]


def replay(
    redis: Redis, calls: list[Call], snapshot: list[tuple[bytes, bytes]],
    sources: dict[str, str], *, slowlog: bool,
) -> dict[str, Any]:  # fmt: skip
    """Redis as in `snapshot`, the calls made again (each sha's script: `sources`); returns
    INFO commandstats, and the µs SLOWLOG gave each script's calls when `slowlog`."""
    redis.flushall()
    with redis.pipeline(transaction=False) as pipe:
        for key, value in snapshot:
            pipe.restore(key, 0, value)
        pipe.execute()
    loaded = {sha: redis.script_load(source) for sha, source in sources.items()}
    redis.config_set("slowlog-log-slower-than", 0 if slowlog else -1)
    redis.config_set("slowlog-max-len", 4 * len(calls) * 20)
    redis.slowlog_reset()
    redis.config_resetstat()
    for sha, numkeys, *rest in calls:
        redis.execute_command("EVALSHA", loaded[sha], numkeys, *rest)
    stats: dict[str, Any] = dict(redis.info("commandstats"))
    by_sha = {new: old for old, new in loaded.items()}
    spent: Counter[str] = Counter()
    for entry in redis.slowlog_get(len(calls) * 20) if slowlog else []:
        words = entry["command"].split()
        if words[0].upper() == b"EVALSHA" and words[1].decode() in by_sha:
            spent[by_sha[words[1].decode()]] += entry["duration"]
    redis.config_set("slowlog-log-slower-than", 10000)
    stats["by_sha"] = spent
    return stats


def variants(specs: list[str]) -> Iterator[tuple[str, str]]:
    """(sha of the script replaced, new source) per NAME=FILE."""
    for spec in specs:
        name, _, path = spec.partition("=")
        script = getattr(scripts, name, None)
        if not isinstance(script, LuaScript) or not path:
            raise ValueError(
                f"--variant {spec}: want NAME=FILE, NAME a script of runner.runs.scripts"
            )
        try:
            yield script.sha, Path(path).read_text()
        except OSError as exc:
            raise ValueError(f"--variant {spec}: cannot read {path}: {exc.strerror}") from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="replay_scripts.py", description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="?", type=int, default=2_000)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FILE")
    options = parser.parse_args(argv)
    known = known_scripts()
    try:
        replaced = dict(variants(options.variant))
    except ValueError as exc:
        parser.error(str(exc))  # exits with 2
    with contextlib.ExitStack() as stack:
        env = BenchEnv.open(stack, lease_seconds=5.0)
        settings = env.settings(env.sqlite_url("replay"))
        calls, snapshot = record(env.redis, settings, options.jobs)
        sources = {sha: replaced.get(sha, known[sha][1]) for sha, *_ in calls}
        per_job = []
        for _ in range(ROUNDS):
            stats = replay(env.redis, calls, snapshot, sources, slowlog=False)
            per_job.append(stats["cmdstat_evalsha"]["usec"] / options.jobs)
        shares = replay(env.redis, calls, snapshot, sources, slowlog=True)["by_sha"]
    counts = Counter(sha for sha, *_ in calls)
    print(f"{options.jobs:,} no-op jobs, {len(calls):,} script calls replayed {ROUNDS} times"
          + (f"; variants: {', '.join(options.variant)}" if options.variant else ""))  # fmt: skip
    print(
        f"EVALSHA µs per job (median of the rounds): {statistics.median(per_job):.1f} "
        f"(rounds {', '.join(f'{x:.1f}' for x in per_job)})"
    )
    total = sum(shares.values()) or 1
    for sha, spent in shares.most_common():
        print(
            f"  {known[sha][0]:<20} {counts[sha] / options.jobs:4.2f} calls/job  "
            f"{100 * spent / total:5.1f} % of the scripts' time"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
