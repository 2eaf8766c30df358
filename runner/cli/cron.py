"""`runner cron tick|run|list`: fire due slots from a crontab, run a clock process, list the
schedule. The clock ticks at the start of every minute and outlives Redis outages."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

import click
import structlog
from redis.exceptions import RedisError

import runner.logs as logs
from runner.cli.app import App, json_line, pass_app
from runner.cli.types import IsoTime
from runner.cli.views import table
from runner.connections.redis import REDIS_DOWN, connect
from runner.cron.schedule import MINUTE, floor_minute, slot_text, to_utc
from runner.cron.status import entry_status
from runner.cron.ticks import Cron, Firing, FiringOutcome
from runner.errors import ClockStopped
from runner.runs.deploys import mark_deploy

log = structlog.get_logger("runner.cron.ticks")
TICK_OFFSET = timedelta(seconds=1)  # tick just after the minute turns, never just before
HEARTBEAT_SECONDS = 180


class ClockTime:
    """The clock's now: the wall clock, or (a test hook) simulated time that starts at `start`
    and runs `speed` simulated seconds per real second."""

    def __init__(self, *, start: datetime | None = None, speed: float = 1.0) -> None:
        self.simulated = start is not None or speed != 1.0
        self.origin = to_utc(start) if start else datetime.now(UTC)
        self.speed = speed
        self._began = time.monotonic()

    def now(self) -> datetime:
        if not self.simulated:
            return datetime.now(UTC)
        return self.origin + timedelta(seconds=(time.monotonic() - self._began) * self.speed)

    def real_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.speed)


class CronClock:
    """Ticks `cron` at start-up and at the start of every minute until stopped (SIGTERM,
    SIGINT). A tick Redis failed is retried with backoff; missed slots are caught up then.

    It stops as a worker does: a signal lets the tick under way finish and starts no other;
    a tick still not done `RUNNER_STOP_SECONDS` later (Redis hanging), or a second signal,
    stops it at once. That is safe: a tick is one atomic call, and a slot it did not fire is
    caught up by the next tick of any clock."""

    def __init__(self, cron: Cron, clock: ClockTime, *, name: str) -> None:
        self.cron = cron
        self.clock = clock
        self.name = name
        self.stopping = threading.Event()
        self.signal = ""

    def run(self, *, ticks: int | None = None) -> int:
        """Tick until stopped, or until `ticks` ticks succeeded; returns the exit code (0)."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGALRM, self._stop_now)
        log.info("cron.clock.started", clock=self.name, now=slot_text(self.clock.now()))
        mark_deploy(self.cron.redis, self.cron.settings, by=f"clock {self.name}")
        try:
            done = self._tick_until_stopped(ticks)
        except ClockStopped:
            done = -1
        log.info("cron.clock.stopped", clock=self.name, ticks=done, signal=self.signal or None)
        return 0

    def _tick_until_stopped(self, ticks: int | None) -> int:
        done, backoff, due = 0, 0.5, self.clock.now()
        while ticks is None or done < ticks:
            if self.stopping.wait(self.clock.real_seconds_until(due)):
                break
            at = floor_minute(self.clock.now())
            if self._tick(at, retry_in=backoff):
                done, backoff, due = done + 1, 0.5, at + MINUTE + TICK_OFFSET
            elif self.stopping.wait(backoff):
                break
            else:
                backoff = min(backoff * 2, 30.0)
        return done

    def _tick(self, at: datetime, *, retry_in: float) -> bool:
        try:
            firings = self.cron.tick(at)
            beat = json.dumps({"at": slot_text(at), "pid": os.getpid()})
            self.cron.redis.set(self.cron.keys.clock(self.name), beat, ex=HEARTBEAT_SECONDS)
        except (RedisError, *REDIS_DOWN) as exc:
            log.warning("redis.unreachable", clock=self.name, slot=slot_text(at),
                        error=f"{type(exc).__name__}: {exc}", retry_in_s=retry_in)  # fmt: skip
            return False
        counts = {
            o: sum(f.outcome == o for f in firings)
            for o in (FiringOutcome.FIRED, FiringOutcome.SKIPPED)
        }
        log.info("cron.tick", clock=self.name, slot=slot_text(at), **counts)
        return True

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            self._stop_now(signum, frame)
        self.signal = signal.Signals(signum).name  # logged by the loop: no I/O in a handler
        self.stopping.set()
        signal.setitimer(signal.ITIMER_REAL, self.cron.settings.stop_seconds)

    def _stop_now(self, signum: int, frame: FrameType | None) -> None:
        self.signal = f"{self.signal}, then {signal.Signals(signum).name}"
        raise ClockStopped(self.signal)


def firing_text(firing: Firing) -> str:
    """One line for people: outcome, entry, then the runs or the reason."""
    if firing.outcome == FiringOutcome.FIRED:
        detail = ", ".join(
            f"{r.token} ({f'deduplicated, {r.state}' if r.deduplicated else 'new'})"
            for r in firing.runs
        )
    else:
        detail = firing.reason
    return f"{firing.outcome.replace('_', ' '):<8} {firing.entry:<20} {detail}"


def cron_for(app: App) -> Cron:
    return Cron(app.redis, app.settings, registry=app.registry)


@click.group("cron")
def cron_group() -> None:
    """The schedule declared in code: fire due slots, run a clock, list the entries."""


@cron_group.command("tick")
@click.option(
    "--at", "at", type=IsoTime(), metavar="ISO-TIME", help="Tick at this past minute (UTC)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@pass_app
def tick_command(app: App, at: datetime | None, as_json: bool) -> None:
    """Enqueue every slot due this minute, and the missed ones each entry catches up.

    For a system crontab (`* * * * * runner cron tick`). Each slot's token is task@slot, so
    running it twice, beside other ticks or beside `runner cron run`, fires each slot once."""
    when = at or datetime.now(UTC)
    for firing in cron_for(app).tick(when):
        click.echo(json_line(**firing.as_dict()) if as_json else firing_text(firing))


@cron_group.command("run")
@click.option("--once", is_flag=True, help="Tick once, at start-up, and exit.")
@click.option("--ticks", type=click.IntRange(min=1), help="Exit after this many ticks.")
@click.option("--at-start", "--start", "start", type=IsoTime(), metavar="ISO-TIME",
              help="Test hook: the clock's time at start-up (simulated from then on).")  # fmt: skip
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0,
              envvar="RUNNER_CLOCK_SPEED", show_default=True,
              help="Test hook: simulated seconds per real second.")  # fmt: skip
@click.option("--name", default="", help="Clock name for its heartbeat (default: host.pid).")
@pass_app
def run_command(
    app: App, once: bool, ticks: int | None, start: datetime | None, speed: float, name: str
) -> None:
    """Run the clock (Procfile: `clock: runner cron run`): tick now, then at the start of
    every minute, until SIGTERM or SIGINT. Several clocks may run at once; a Redis outage is
    waited out with backoff, and its missed slots are caught up afterwards.

    Test hook: `--at-start 2026-11-27T06:00Z --speed 60` (or RUNNER_CLOCK_SPEED=60) starts
    the clock's time at 06:00 UTC and runs it 60 times faster, so `--ticks 3` covers three
    minutes of clock time in about two real seconds."""
    logs.configure()  # JSON lines on stdout, like a worker
    cron = Cron(connect(app.settings, check=False), app.settings, registry=app.registry)
    began = start
    if began and floor_minute(began) > datetime.now(UTC):
        raise click.BadParameter("the clock cannot start in the future", param_hint="--at-start")
    clock = ClockTime(start=began, speed=speed)
    name = name or f"{socket.gethostname()}.{os.getpid()}"
    sys.exit(CronClock(cron, clock, name=name).run(ticks=1 if once else ticks))


@cron_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@pass_app
def list_command(app: App, as_json: bool) -> None:
    """Each entry: its schedule in words, next fire time, last slot and its last run's state."""
    app.reading()
    cron = cron_for(app)
    marks = cron.marks()
    now = datetime.now(UTC)
    rows = [entry_status(cron, e, now=now, marks=marks[e.name]) for e in cron.entries]
    if as_json:
        for row in rows:
            click.echo(json_line(**row))
        return
    cells = [
        (r["name"], r["schedule"], r["task"], r["next"], r["last_slot"] or "-",
         r["last_state"] or "-")
        for r in rows
    ]  # fmt: skip
    click.echo(table(cells, ("ENTRY", "SCHEDULE", "TASK", "NEXT", "LAST SLOT", "LAST RUN")))
