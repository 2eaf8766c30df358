"""The operator's CLI: `runner worker|enqueue|runs|show|logs|rerun|health|redis`, plus the
commands the site's task module adds (`import`, `db`, `cron`)."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from redis.exceptions import RedisError

from runner import logs
from runner.app import App, json_line
from runner.config import Settings
from runner.cron_cli import cron_group
from runner.enqueue import Request
from runner.errors import (
    ConfigError,
    InvalidArguments,
    RedisUnavailable,
    RunnerError,
    UnknownRun,
    UnknownTask,
)
from runner.health import check_health
from runner.redis import EmbeddedRedis, redact
from runner.rerun import rerun as rerun_one
from runner.tasks import load_registry
from runner.views import (
    detail_text,
    event_line,
    parse_duration,
    run_detail,
    run_summary,
    runs_table,
)
from runner.worker import WorkerOptions, run_worker

USAGE_ERRORS = (ConfigError, InvalidArguments, UnknownRun, UnknownTask)
pass_app = click.make_pass_decorator(App)


class RunnerGroup(click.Group):
    """Adds the site's commands and turns the runner's errors into one line and an exit code."""

    def _site_commands(self) -> dict[str, click.Command]:
        try:
            registry = load_registry(Settings.from_env().tasks_module)
        except RunnerError:
            return {}
        return {c.name: c for c in registry.commands if c.name}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._site_commands()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._site_commands().get(name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except RunnerError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except RedisError as exc:
            settings = ctx.obj.settings if isinstance(ctx.obj, App) else Settings.from_env()
            where = redact(settings.redis_url or "the embedded Redis")
            click.echo(
                f"error: Redis at {where} failed: {exc}; check it is up, then retry", err=True
            )
            ctx.exit(1)


@click.group(cls=RunnerGroup)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """An idempotent background job runner: RQ workers on Redis, one run per token."""
    try:
        ctx.obj = App(Settings.from_env())
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    if ctx.invoked_subcommand != "worker":
        logs.configure(stream=sys.stderr)  # stdout is for results (and --json)


@cli.command()
@click.option("--queue", "-q", "queues", multiple=True, help="Queue to work, in priority order.")
@click.option("--burst", is_flag=True, help="Quit once the queues are empty.")
@click.option("--name", default="", help="Worker name (default: host.pid).")
@pass_app
def worker(app: App, queues: tuple[str, ...], burst: bool, name: str) -> None:
    """Run a worker (RQ) with the reaper that requeues runs of dead workers."""
    logs.configure()
    app.redis  # fail fast, in one line, when Redis is unreachable  # noqa: B018
    app.registry  # or when the task module does not load  # noqa: B018
    options = WorkerOptions(queues=queues or app.settings.queues, burst=burst, name=name)
    sys.exit(run_worker(app.settings, options))


@cli.command()
@click.argument("task")
@click.option(
    "--arg", "args", multiple=True, metavar="KEY=VALUE", help="A keyword argument (JSON or text)."
)
@click.option("--token", help="Your own idempotency token (default: task + hash of arguments).")
@click.option("--wait", is_flag=True, help="Wait for the run to finish.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@pass_app
def enqueue(
    app: App, task: str, args: tuple[str, ...], token: str | None, wait: bool, as_json: bool
) -> None:
    """Enqueue TASK once: the same task and arguments (or token) never run twice."""
    request = Request(app.registry.get(task), parse_args(args), token)
    results = [app.enqueuer.enqueue(request)]
    app.report_enqueued(results, as_json=as_json)
    finish_waiting(app, [r.token for r in results], wait=wait)


def parse_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`k=v` pairs to keyword arguments; a value that parses as JSON is taken as JSON."""
    import json

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
        if r.state == "failed" and r.error:
            click.echo(f"failed: {r.token}: {r.error.get('message')}", err=True)
    if any(r.state == "failed" for r in records):
        sys.exit(1)


@cli.command()
@click.option(
    "--state", type=click.Choice(["queued", "running", "retrying", "succeeded", "failed"])
)
@click.option("--task", help="Only runs of this task.")
@click.option("--since", help="Only runs created within this long (30m, 2h, 7d).")
@click.option("--limit", default=50, show_default=True, help="At most this many (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@pass_app
def runs(
    app: App, state: str | None, task: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first."""
    after = time.time() - parse_duration(since) if since else None
    found = app.runs.list(state=state, task=task, since=after, limit=limit)
    if as_json:
        for r in found:
            click.echo(json_line(**run_summary(r), counters=r.counters))
    elif found:
        click.echo(runs_table(found))
    else:
        click.echo("no runs match", err=True)


@cli.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: App, run: str, as_json: bool) -> None:
    """One run: state, attempts, steps, cursor, counters, error."""
    token = app.runs.resolve(run)
    record = app.runs.get(token)
    if record is None:
        raise UnknownRun(f"run {token!r} expired while reading it")
    steps = app.runs.steps(token)
    click.echo(json_line(**run_detail(record, steps)) if as_json else detail_text(record, steps))


@cli.command("logs")
@click.argument("run")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="The events as JSON lines.")
@pass_app
def logs_command(app: App, run: str, follow: bool, as_json: bool) -> None:
    """The run's log events, every attempt, oldest first."""
    token = app.runs.resolve(run)
    if follow:

        def done() -> bool:
            record = app.runs.get(token)
            return record is None or record.state in ("succeeded", "failed")

        events = logs.follow_events(app.redis, app.keys, token, is_done=done)
    else:
        events = (e for _, e in logs.read_events(app.redis, app.keys, token))
    for event in events:
        click.echo(json_line(**event) if as_json else event_line(event))


@cli.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option(
    "--failed", "all_failed", is_flag=True, help="Every failed run (see --task, --since)."
)
@click.option("--task", help="With --failed: only this task's runs.")
@click.option("--since", help="With --failed: only runs created within this long.")
@click.option("--from-scratch", is_flag=True, help="Forget finished steps and the cursor.")
@click.option("--dry-run", is_flag=True, help="Say what would be rerun; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def rerun(
    app: App, run_refs: tuple[str, ...], all_failed: bool, task: str | None, since: str | None,
    from_scratch: bool, dry_run: bool, as_json: bool,
) -> None:  # fmt: skip
    """Rerun failed runs, from their last checkpoint (default) or from scratch."""
    if bool(run_refs) == all_failed:
        raise click.UsageError("name RUN(s) or use --failed, not both and not neither")
    if all_failed:
        after = time.time() - parse_duration(since) if since else None
        tokens = [r.token for r in app.runs.list(state="failed", task=task, since=after)]
    else:
        tokens = [app.runs.resolve(ref) for ref in run_refs]
    results = [
        rerun_one(app.redis, app.settings, t, from_scratch=from_scratch, dry_run=dry_run)
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
    if run_refs and any(r.action == "skipped" for r in results):
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def health(app: App, as_json: bool) -> None:
    """Exit 0 when healthy, 1 when not, saying what is wrong."""
    try:
        checks = check_health(app.redis, app.settings)
    except RedisUnavailable as exc:
        checks = []
        click.echo(
            json_line(name="redis", ok=False, detail=str(exc)) if as_json else f"FAIL redis: {exc}"
        )
        sys.exit(1)
    for c in checks:
        click.echo(json_line(name=c.name, ok=c.ok, detail=c.detail) if as_json else
                   f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")  # fmt: skip
    sys.exit(0 if all(c.ok for c in checks) else 1)


@cli.group("redis")
def redis_group() -> None:
    """The embedded redis-server (used when RUNNER_REDIS_URL is unset)."""


@redis_group.command("stop")
@pass_app
def redis_stop(app: App) -> None:
    """Shut the embedded server down cleanly (its data stays under RUNNER_HOME)."""
    server = EmbeddedRedis.for_home(app.settings.home)
    click.echo("stopped" if server.stop() else "not running")


@redis_group.command("url")
@pass_app
def redis_url_command(app: App) -> None:
    """Print the URL this deployment uses (password hidden), starting the embedded one."""
    from runner.redis import redis_url

    click.echo(redact(redis_url(app.settings)))


cli.add_command(cron_group)


def main() -> None:
    """Console entry point."""
    cli(prog_name="runner")
