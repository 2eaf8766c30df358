"""What every CLI command needs, built lazily: settings, the Redis client, the task registry."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import click
from redis import Redis

from runner.config import Settings
from runner.enqueue import Enqueued, Enqueuer
from runner.errors import InvalidArguments
from runner.keys import Keys
from runner.record import TERMINAL, RunRecord, RunState
from runner.redis import connect
from runner.runs import Runs
from runner.tasks import TaskRegistry, load_registry


class App:
    """One CLI invocation's view of the deployment; nothing connects until it is needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.prefix)

    @cached_property
    def redis(self) -> Redis:
        return connect(self.settings)

    @cached_property
    def runs(self) -> Runs:
        return Runs(self.redis, self.settings)

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
        """Block until every run is succeeded or failed, with progress on a terminal."""
        show = sys.stderr.isatty()
        while True:
            records = [self.runs.get(t) for t in tokens]
            live = [r for r in records if r is not None]
            if all(r.state in TERMINAL for r in live):
                if show:
                    click.echo("", err=True)
                return live
            if show:
                click.echo("\r" + progress_text(live), nl=False, err=True)
            time.sleep(poll)


def progress_text(records: Sequence[RunRecord]) -> str:
    """A one-line progress bar fed by the runs' counters and totals."""
    done = sum(sum((r.counters or {}).values()) for r in records)
    total = sum(r.total or 0 for r in records)
    finished = sum(r.state in TERMINAL for r in records)
    if total:
        width = 30
        filled = int(width * min(done, total) / total)
        bar = "#" * filled + "." * (width - filled)
        return f"[{bar}] {done}/{total} items, {finished}/{len(records)} runs finished "
    return f"{done} items, {finished}/{len(records)} runs finished "


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
    records = app.wait(tokens)
    for r in records:
        if r.state == RunState.FAILED and r.error:
            click.echo(f"failed: {r.token}: {r.error.get('message')}", err=True)
    if any(r.state == RunState.FAILED for r in records):
        sys.exit(1)
