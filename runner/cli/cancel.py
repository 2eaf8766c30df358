"""`runner cancel RUN...`: a queued run never starts, a running one stops at its next
checkpoint or step boundary; either way it ends `cancelled` and `runner rerun` resumes it."""

from __future__ import annotations

import sys

import click

from runner.cli.app import App, json_line, pass_app
from runner.runs.cancel import CancelAction, cancel


@click.command("cancel")
@click.argument("run_refs", metavar="RUN...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@pass_app
def cancel_command(app: App, run_refs: tuple[str, ...], as_json: bool) -> None:
    """Cancel runs: queued ones never start, running ones stop at their next checkpoint.

    A cancelled run keeps its checkpoints; enqueueing its token again is deduplicated
    until `runner rerun` starts it again. Exits 1 if a run could not be cancelled."""
    tokens = [app.runs.resolve(ref) for ref in run_refs]
    results = [cancel(app.redis, app.settings, token, origin="cli") for token in tokens]
    for r in results:
        if as_json:
            fields = {"state": r.state, "action": r.action, "reason": r.reason}
            click.echo(json_line(token=r.token, task=r.task, **fields))
        else:
            click.echo(f"{r.action}: {r.token} ({r.task}) {r.reason}")
    if any(r.action == CancelAction.SKIPPED for r in results):
        sys.exit(1)
