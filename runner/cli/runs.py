"""The CLI's commands about runs: `runner runs`, `show`, `logs` and `rerun`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import click
from structlog.contextvars import bound_contextvars

import runner.logs as logs
from runner.cli.app import App, json_line, pass_app, stopped_waiting
from runner.cli.events import Tracebacks, event_line
from runner.cli.types import Duration
from runner.cli.views import (
    detail_text,
    run_detail,
    run_summary,
    runs_table,
)
from runner.errors import HistoryUnavailable, UnknownRun
from runner.logs import read_events
from runner.printable import printable
from runner.record import TERMINAL, RunState
from runner.runs.attempts import attempts
from runner.runs.index import RunQuery
from runner.runs.pages import all_runs
from runner.runs.rerun import RerunAction
from runner.runs.rerun import rerun as rerun_one


@click.command()
@click.option("--state", type=click.Choice([state.value for state in RunState]))
@click.option("--task", help="Only runs of this task.")
@click.option(
    "--since", type=Duration(),
    help="Only runs created (with --state: that entered it) within this long (30m, 2h, 7d).",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most this many (0: all).")  # fmt: skip
@click.option("--search", metavar="TEXT", help=(
    "Only runs whose arguments (a feed's file name or URL) or error contain TEXT"
    " (3 characters or more, any case)."))  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@pass_app
def runs(
    app: App, state: str | None, task: str | None, since: float | None, limit: int,
    search: str | None, as_json: bool,
) -> None:  # fmt: skip
    """List runs, newest first."""
    after = time.time() - since if since else None
    wanted = RunState(state) if state else None
    if search is not None:
        from runner.runs.search import Search, search_runs  # SQLAlchemy: only for a search

        try:
            searched = Search(search, state=wanted, task=task, since=after, limit=limit)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--search") from None
    app.reading()
    if search is not None:
        found = search_runs(app.redis, app.settings, app.history, searched)
    else:
        query = RunQuery(state=wanted, task=task, since=after)
        try:
            found = all_runs(app.redis, app.settings, query, app.history, limit=limit)
        except HistoryUnavailable as exc:  # the runs in Redis are still worth listing
            click.echo(f"note: {exc}; listing the runs in Redis only", err=True)
            found = all_runs(app.redis, app.settings, query, None, limit=limit)
    if as_json:
        for r in found:
            click.echo(json_line(**run_summary(r), counters=r.counters))
    elif found:
        click.echo(runs_table(found))
    elif search is not None:
        click.echo(f"no runs match {printable(search)!r}", err=True)
    else:
        click.echo("no runs match", err=True)


@click.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: App, run: str, as_json: bool) -> None:
    """One run: state, attempts, steps, cursor, counters, error."""
    app.reading()
    token, moved = app.locate(run)
    if moved is not None:  # a run that moved to history: read there
        record, steps, entries = moved, app.history.steps(token), app.history.events(token)
    else:
        found = app.runs.get(token)
        if found is None:
            raise UnknownRun(f"run {token!r} expired while reading it")
        record, steps = found, app.runs.steps(token)
        entries = read_events(app.redis, app.runs.keys, token)
    tried = attempts(record, [e for _, e in entries])
    notes = [n for note in app.registry.notes if (n := note(record))]
    older = app.history.generations(record.token)[1:] if moved is not None else []
    if older:  # the token was enqueued again after its dedup window: earlier runs
        notes.append(f"older runs of this token: {len(older)} (in history)")
    if as_json:
        click.echo(json_line(**run_detail(record, steps, tried), notes=notes))
    else:
        click.echo(printable("\n".join([detail_text(record, steps, tried), *notes])))


@click.command("why")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def why_command(app: App, run: str, as_json: bool) -> None:
    """Why the run is where it is: its cause, with the evidence, in one sentence; for a
    waiting run, when it should start at the last hour's rate."""
    from runner.monitoring.why import in_outbox, why

    app.reading()
    try:
        token, moved = app.locate(run)
    except UnknownRun:
        waiting = in_outbox(app.settings, run)
        if waiting is None:
            raise
        token, moved, record, found = run, None, None, waiting
    else:
        record = moved or app.runs.get(token)
        if record is None:
            raise UnknownRun(f"run {token!r} expired while reading it")
        found = why(app.redis if moved is None else None, app.settings, record,
                    moved=moved is not None)  # fmt: skip
    if as_json:
        state = record.state if record else None
        click.echo(json_line(token=token, state=state, cause=found.cause,
                             sentence=found.sentence, starts_in=found.starts_in))  # fmt: skip
    else:
        click.echo(printable(f"{token}: {found.sentence}"))


@click.command("logs")
@click.argument("run")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the run ends.")
@click.option(
    "--traceback", "every_traceback", is_flag=True,
    help="Every error's full traceback (default: an unexpected error's, once).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="The events as JSON lines.")
@pass_app
def logs_command(app: App, run: str, follow: bool, every_traceback: bool, as_json: bool) -> None:
    """The run's log events, every attempt, oldest first."""
    app.reading()
    token, moved = app.locate(run)
    events: Iterator[dict[str, Any]]
    if moved is not None:  # it has ended and left Redis: its whole log is in history
        events = (e for _, e in app.history.events(token))
    elif follow:
        events = following(app, token)
    else:
        events = (e for _, e in logs.read_events(app.redis, app.keys, token))
    tracebacks = Tracebacks(every=every_traceback)
    try:
        for event in events:
            shown = tracebacks.shows(event)
            click.echo(
                json_line(**event) if as_json else printable(event_line(event, traceback=shown))
            )
    except KeyboardInterrupt:
        stopped_waiting([token])


def following(app: App, token: str) -> Iterator[dict[str, Any]]:
    """The run's events as they come until it ends; when it moves to history meanwhile, the
    events it logged after the last one read come from there."""

    def done() -> bool:
        record = app.runs.get(token)
        return record is None or record.state in TERMINAL

    last = "-"
    for eid, event in logs.follow_events(app.redis, app.keys, token, is_done=done):
        last = eid
        yield event
    if app.runs.get(token) is None:
        yield from (e for eid, e in app.history.events(token) if logs.later(eid, last))


@click.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option(
    "--failed", "all_failed", is_flag=True,
    help="Every failed run still in Redis, i.e. within RUNNER_FAILED_DAYS (see --task,"
    " --since); an older one is in history: name it as RUN.",
)  # fmt: skip
@click.option("--task", help="With --failed: only this task's runs.")
@click.option("--since", type=Duration(), help="With --failed: only runs failed within this long.")
@click.option("--from-scratch", is_flag=True, help="Forget finished steps and the cursor.")
@click.option("--dry-run", is_flag=True, help="Say what would be rerun; change nothing.")
@click.option("--force", is_flag=True, help="Also rerun a succeeded RUN (logged as deliberate).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def rerun(
    app: App, run_refs: tuple[str, ...], all_failed: bool, task: str | None, since: float | None,
    from_scratch: bool, dry_run: bool, force: bool, as_json: bool,
) -> None:  # fmt: skip
    """Rerun failed or cancelled runs, from their last checkpoint (default) or from scratch;
    with --force, a succeeded run named as RUN too."""
    if bool(run_refs) == all_failed:
        raise click.UsageError("name RUN(s) or use --failed, not both and not neither")
    if all_failed:
        after = time.time() - since if since else None
        query = RunQuery(state=RunState.FAILED, task=task, since=after)
        tokens = [r.token for r in app.index.runs(query)]
    else:
        tokens = [app.locate(ref)[0] for ref in run_refs]
    with bound_contextvars(origin="cli"):  # the run's log says who reran it
        results = [
            rerun_one(
                app.redis,
                app.settings,
                t,
                from_scratch=from_scratch,
                dry_run=dry_run,
                force=force and bool(run_refs),
            )
            for t in tokens
        ]
    for r in results:
        if as_json:
            click.echo(
                json_line(
                    token=r.token, task=r.task, state=r.state, action=r.action, reason=r.reason
                )
            )
        else:
            click.echo(f"{r.action}: {r.token} ({r.task}) {r.reason}")
    if not results:
        click.echo("no failed runs match", err=True)
    if run_refs and any(r.action == RerunAction.SKIPPED for r in results):
        sys.exit(1)


RUN_COMMANDS: list[click.Command] = [runs, show, why_command, logs_command, rerun]
