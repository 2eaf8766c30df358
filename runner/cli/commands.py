"""The operator's CLI: `runner worker|enqueue|runs|show|logs|rerun|health|redis`, plus the
commands the site's task module adds (`import`, `db`, `cron`)."""

from __future__ import annotations

import functools
import gc
import os
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

import click
from redis.exceptions import RedisError

import runner.logs as logs
from runner.cli.app import App, finish_waiting, json_line, parse_args, pass_app
from runner.cli.cancel import cancel_command
from runner.cli.cron import cron_group
from runner.cli.runs import RUN_COMMANDS
from runner.cli.web import web_command
from runner.config import Settings
from runner.connections.redis import EmbeddedRedis, connect, redact
from runner.errors import (
    ConfigError,
    InvalidArguments,
    RedisUnavailable,
    RunnerError,
    UnknownRun,
    UnknownTask,
)
from runner.monitoring.answers import Answer, Verdict
from runner.monitoring.health import Report, check_health
from runner.printable import printable
from runner.runs.deploys import DeployMarks, code_version
from runner.runs.enqueue import Request
from runner.tasks import TaskRegistry, load_registry
from runner.worker.horse import WorkerOptions
from runner.worker.liveness import Liveness
from runner.worker.supervisor import run_worker

USAGE_ERRORS = (ConfigError, InvalidArguments, UnknownRun, UnknownTask)


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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            usage_error(ctx, exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            usage_error(ctx, exc)
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


@functools.cache
def discard() -> TextIO:
    """Where a command's log lines go when nobody wants them: one handle per process."""
    return open(os.devnull, "w")


def usage_error(ctx: click.Context, exc: click.UsageError) -> NoReturn:
    """A usage error in one line (not Click's usage block), exit 2."""
    where = exc.ctx.command_path if exc.ctx else "runner"
    click.echo(f"error: {exc.format_message()} (see `{where} -h`)", err=True)
    ctx.exit(2)


@click.group("runner", cls=RunnerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="site-runner", prog_name="runner")
@click.option(
    "--log-json", is_flag=True, help="Log events as JSON on stderr (terminal: results only)."
)
@click.pass_context
def cli(ctx: click.Context, log_json: bool) -> None:
    """An idempotent background job runner: RQ workers on Redis, one run per token."""
    try:
        ctx.obj = App(Settings.from_env())
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    if ctx.invoked_subcommand != "worker":
        # stdout is for results (and --json). On a terminal the result lines say it all; the
        # events still reach the runs' log streams, which the renderer feeds.
        quiet = sys.stderr.isatty() and not log_json
        logs.configure(stream=discard() if quiet else sys.stderr, console=False)


@cli.command()
@click.option("--queue", "-q", "queues", multiple=True, help="Queue to work, in priority order.")
@click.option("--burst", is_flag=True, help="Quit once the queues are empty.")
@click.option("--name", default="", help="Worker name (default: host.pid).")
@click.option(
    "--concurrency", "-c", default=1, show_default=True, type=click.IntRange(1, 64),
    help="Horses (processes) working jobs side by side, for I/O-bound tasks.",
)  # fmt: skip
@pass_app
def worker(app: App, queues: tuple[str, ...], burst: bool, name: str, concurrency: int) -> None:
    """Run a worker (RQ): a supervisor keeping --concurrency horses, with the reaper that
    requeues runs of dead workers."""
    logs.configure()
    app.redis  # fail fast, in one line, when Redis is unreachable  # noqa: B018
    app.registry  # or when the task module does not load  # noqa: B018
    options = WorkerOptions(
        queues=queues or app.settings.queues, burst=burst, name=name, concurrency=concurrency
    )
    code = run_worker(app.settings, options)
    # Every horse and the relay are gone and the worker's records written: what is left is
    # the process's exit (atexit, flushing, closing). Frozen, the heap is not walked for
    # cycles on the way out (~0.08 s of a burst worker's life here), which nothing needs.
    gc.freeze()
    sys.exit(code)


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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="The four answers as one JSON object.")
@pass_app
def health(app: App, as_json: bool) -> None:
    """Is it up, is it slow, are jobs failing, did the last deploy change anything: one line
    each with figures and a verdict. Exit 0 when all four are ok, 1 when any is not."""
    app.reading()
    try:
        redis = app.redis
    except RedisUnavailable as exc:
        report = Report((Answer("up", Verdict.FAIL, str(exc)),))
    else:
        try:
            registry: TaskRegistry | None = app.registry
        except RunnerError:
            registry = None  # health still answers; the worker's start says what is wrong
        report = check_health(
            redis, app.settings, site_checks=registry.health_checks if registry else (),
            scheduled=bool(registry and registry.schedule),
        )  # fmt: skip
    if as_json:
        click.echo(json_line(**report.as_dict()))
    else:
        for answer in report.answers:
            click.echo(answer.line())
        for backlog in report.backlog:
            click.echo(printable(f"{'backlog':<8} {'':<5} {backlog.line()}"))
    sys.exit(0 if report.ok else 1)


@cli.group("deploy")
def deploy_group() -> None:
    """Deploy marks: when each code version started running (health compares around them)."""


@deploy_group.command("mark")
@click.argument("label", required=False, default="")
@click.option("--version", "version", help="The code version (default: this deployment's).")
@pass_app
def deploy_mark(app: App, label: str, version: str | None) -> None:
    """Record a deploy mark now, for this code version (RUNNER_CODE_VERSION, else the git
    short sha), even when the latest mark has the same version."""
    version = version or code_version(app.settings)
    mark = DeployMarks(app.redis, app.settings).mark(version, by="operator", label=label,
                                                      always=True)  # fmt: skip
    assert mark is not None
    stamp = datetime.fromtimestamp(mark.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    click.echo(f"marked {mark.version} at {stamp}" + (f": {label}" if label else ""))


@cli.group("redis")
def redis_group() -> None:
    """The embedded redis-server (used when RUNNER_REDIS_URL is unset)."""


@redis_group.command("stop")
@click.option("--force", is_flag=True, help="Stop it even while workers are connected.")
@pass_app
def redis_stop(app: App, force: bool) -> None:
    """Shut the embedded server down cleanly (its data stays under RUNNER_HOME); read-only
    commands leave it stopped until `runner redis start` or a command that does work."""
    server = EmbeddedRedis.for_home(app.settings.home)
    if server.is_running() and not force:
        alive = Liveness(connect(app.settings), app.settings).alive()
        if alive:
            names = ", ".join(sorted({w.supervisor for w in alive}))
            click.echo(f"error: {len(alive)} workers are connected ({names}): stopping Redis"
                       " stops their work; stop them first, or add --force", err=True)  # fmt: skip
            sys.exit(1)
    stopped = server.stop(by_operator=True)
    click.echo("stopped" if stopped else "not running (it stays stopped)")


@redis_group.command("start")
@pass_app
def redis_start(app: App) -> None:
    """Start the embedded server (after `runner redis stop`, or a crash)."""
    server = EmbeddedRedis.for_home(app.settings.home)
    was_running = server.is_running()
    server.ensure_started()
    click.echo("already running" if was_running else f"started ({server.url})")


@redis_group.command("url")
@pass_app
def redis_url_command(app: App) -> None:
    """Print the URL this deployment uses (password hidden), starting the embedded one."""
    from runner.connections.redis import redis_url

    click.echo(redact(redis_url(app.settings)))


cli.add_command(cron_group)
cli.add_command(web_command)
cli.add_command(cancel_command)
for command in RUN_COMMANDS:
    cli.add_command(command)


def main() -> None:
    """Console entry point."""
    cli(prog_name="runner")
