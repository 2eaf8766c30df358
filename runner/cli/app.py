"""What every CLI command needs, built lazily: settings, the Redis client, the task registry."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

import click
from redis import Redis
from rq import Worker

from runner.config import Settings
from runner.connections.redis import REDIS_DOWN, EmbeddedRedis, connect, redact
from runner.errors import (
    ConfigError,
    InvalidArguments,
    RedisUnavailable,
    RunnerError,
    UnknownRun,
)
from runner.keys import Keys
from runner.record import TERMINAL, Enqueued, RunRecord, RunState
from runner.runs.enqueue import Enqueuer
from runner.runs.index import RunIndex
from runner.runs.transitions import Runs
from runner.tasks import TaskRegistry, load_registry

if TYPE_CHECKING:
    from runner.runs.history import HistoryStore

NO_WORKER_SECONDS = 3.0  # how long `--wait` waits before it says no worker is alive


class App:
    """One CLI invocation's view of the deployment; nothing connects until it is needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.starts_redis = True

    def reading(self) -> None:
        """Mark this command read-only: it starts the embedded Redis on demand, unless an
        operator stopped it with `runner redis stop`."""
        self.starts_redis = False

    @cached_property
    def redis(self) -> Redis:
        """The client; raises RedisUnavailable when Redis cannot be reached, or (for a
        read-only command) when an operator stopped the embedded Redis, without starting it."""
        reading = not self.starts_redis and self.settings.redis_url is None
        server = EmbeddedRedis.for_home(self.settings.home)
        if reading and server.stopped_by_operator() and not server.is_running():
            raise RedisUnavailable(
                "the embedded Redis is not running: stopped with `runner redis stop`;"
                " `runner redis start` (or a command that does work, e.g. `runner worker`)"
                " starts it again"
            )
        if self.settings.redis_url is None and server.crashed():
            click.echo(f"note: the embedded Redis had crashed (see its log, {server.log});"
                       " starting it again", err=True)  # fmt: skip
        return connect(self.settings)

    @cached_property
    def runs(self) -> Runs:
        return Runs(self.redis, self.settings)

    @cached_property
    def history(self) -> HistoryStore:
        """Finished runs that left Redis (runner.runs.history; SQLAlchemy loads on first use)."""
        from runner.runs.history import HistoryStore

        return HistoryStore(self.settings)

    def locate(self, ref: str) -> tuple[str, RunRecord | None]:
        """The token RUN names (a token, a job id or a unique prefix) and, for a run that has
        moved to history, its record there (None: the run is in Redis, which wins for a run in
        both). A moved run is found while Redis is down; raises UnknownRun or RedisUnavailable."""
        try:
            return self.runs.resolve(ref), None
        except UnknownRun:
            moved = self.history.find(ref)
            if moved is None:
                raise
        except (RedisUnavailable, *REDIS_DOWN):
            moved = self.history.find(ref)
            if moved is None:
                raise
        return moved.token, moved

    def upgrade_history(self) -> str:
        """Bring the history tables (`RUNNER_HISTORY_URL`) to this code's revision; returns
        it. Raises RunnerError (one line) when the database cannot be reached."""
        from sqlalchemy.exc import InterfaceError, OperationalError

        from runner.runs.history_tables import history_engine, upgrade_history

        url = self.settings.history_database_url
        engine = history_engine(url, create=True)
        if engine is None:
            raise ConfigError(f"RUNNER_HISTORY_URL={redact(url)} names no database")
        try:
            return upgrade_history(engine)
        except (OperationalError, InterfaceError) as exc:
            said = str(exc.orig or exc).splitlines()[0][:200]
            raise RunnerError(
                f"the history database {redact(url)} cannot be reached ({said}):"
                " check RUNNER_HISTORY_URL"
            ) from None
        finally:
            engine.dispose()

    @cached_property
    def index(self) -> RunIndex:
        return RunIndex(self.redis, self.settings)

    @cached_property
    def registry(self) -> TaskRegistry:
        return load_registry(self.settings.tasks_module)

    @cached_property
    def enqueuer(self) -> Enqueuer:
        return Enqueuer(self.redis, self.settings)

    def report_enqueued(self, results: Sequence[Enqueued], *, as_json: bool) -> None:
        """Print each run's token (or JSON object with token, job_id, state, deduplicated)."""
        for r in results:
            if as_json:
                click.echo(
                    json_line(
                        token=r.token, job_id=r.job_id, state=r.state, deduplicated=r.deduplicated
                    )
                )
            else:
                note = f"  (already {r.state}: deduplicated)" if r.deduplicated else ""
                click.echo(f"{r.token}{note}")

    def wait(self, tokens: Sequence[str], *, poll: float = 0.2) -> list[RunRecord]:
        """Block until every run is succeeded or failed, with progress on a terminal; say so
        (once per queue) when a run waits on a queue no live worker listens to."""
        show = sys.stderr.isatty()
        told: set[str] = set()
        check_at = time.monotonic() + NO_WORKER_SECONDS
        started, first_done = time.monotonic(), None
        while True:
            records = [self.runs.get(t) for t in tokens]
            live = [r for r in records if r is not None]
            if all(r.state in TERMINAL for r in live):
                if show:
                    click.echo("", err=True)
                return live
            if time.monotonic() >= check_at:
                check_at = time.monotonic() + NO_WORKER_SECONDS
                for queue in sorted(self.unworked_queues(live) - told):
                    told.add(queue)
                    click.echo(("\n" if show else "") + no_worker_text(queue), err=True)
            if show:
                done = items_done(live)
                first_done = done if first_done is None else first_done
                elapsed = time.monotonic() - started
                rate = (done - first_done) / elapsed if elapsed > 0 else 0.0
                click.echo("\r" + progress_text(live, rate=rate), nl=False, err=True)
            time.sleep(poll)

    def unworked_queues(self, records: Sequence[RunRecord]) -> set[str]:
        """The queues of runs still waiting to start that no live worker listens to."""
        waiting = {r.queue for r in records if r.state in (RunState.QUEUED, RunState.RETRYING)}
        if not waiting:
            return set()
        worked = {q for w in Worker.all(connection=self.redis) for q in w.queue_names()}
        return waiting - worked


def no_worker_text(queue: str) -> str:
    return (
        f"no worker is alive for queue {queue!r}: start one with `runner worker --queue {queue}`"
        " (still waiting; Ctrl-C stops waiting, the run stays queued)"
    )


def items_done(records: Sequence[RunRecord]) -> int:
    """How many items the runs' counters say are done, all outcomes together."""
    return sum(sum((r.counters or {}).values()) for r in records)


def progress_text(records: Sequence[RunRecord], *, rate: float | None = None) -> str:
    """A one-line progress bar fed by the runs' counters and totals, with the rate seen."""
    done = items_done(records)
    total = sum(r.total or 0 for r in records)
    finished = sum(r.state in TERMINAL for r in records)
    speed = f", {rate:,.0f}/s" if rate else ""
    runs = f"{finished}/{len(records)} runs finished "
    if total:
        width = 30
        filled = int(width * min(done, total) / total)
        bar = "#" * filled + "." * (width - filled)
        return f"[{bar}] {done:,}/{total:,} items{speed}, {runs}"
    return f"{done:,} items{speed}, {runs}"


def json_line(**fields: object) -> str:
    """One JSON object on one line, for `--json` output."""
    return json.dumps(fields, default=str, separators=(",", ":"))


pass_app = click.make_pass_decorator(App)


def parse_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`k=v` pairs to keyword arguments; a value that parses as JSON is taken as JSON."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InvalidArguments(f"--arg {pair!r} must look like name=value")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def finish_waiting(app: App, tokens: list[str], *, wait: bool) -> None:
    """With --wait, block until the runs end; exit 1 if any failed."""
    if not wait:
        return
    try:
        records = app.wait(tokens)
    except KeyboardInterrupt:
        stopped_waiting(tokens)
    for r in records:
        if r.state == RunState.FAILED and r.error:
            click.echo(f"failed: {r.token}: {r.error.get('message')}", err=True)
    if any(r.state == RunState.FAILED for r in records):
        sys.exit(1)


def stopped_waiting(tokens: Sequence[str]) -> NoReturn:
    """After Ctrl-C on `--wait` or `--follow`: the runs go on; exit 130 (128 + SIGINT)."""
    runs = "the run goes on" if len(tokens) == 1 else f"the {len(tokens)} runs go on"
    click.echo(f"\nstopped waiting; {runs}: runner show {tokens[0]}", err=True)
    sys.exit(130)
