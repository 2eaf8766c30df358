"""The site's CLI commands, added to `runner`: `runner import` and `runner db init`."""

from __future__ import annotations

import click

from jobs.sources import TASK, resolve
from jobs.store import engine_for
from runner import InvalidArguments, Request
from runner.cli import App, finish_waiting, pass_app


@click.command("import")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--token", help="Your own token (one source only).")
@click.option("--wait", is_flag=True, help="Wait for the imports, with a progress bar.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@pass_app
def import_command(
    app: App, sources: tuple[str, ...], token: str | None, wait: bool, as_json: bool
) -> None:
    """Import feeds: files (JSON Lines, JSON array, page export), directories, http(s) URLs.

    One run per file, its token the file's content hash: the same content is never imported
    twice. A missing file or unreadable directory is refused before anything is queued."""
    resolved = [source for location in sources for source in resolve(location)]
    if token and len(resolved) != 1:
        raise InvalidArguments("--token needs exactly one source file or URL")
    if not resolved:
        raise InvalidArguments("no feed files found (looked for .jsonl .ndjson .json .txt)")
    task = app.registry.get(TASK)
    requests = [Request(task, {"source": s.location}, token or s.token) for s in resolved]
    results = app.enqueuer.enqueue_many(requests)
    app.report_enqueued(results, as_json=as_json)
    finish_waiting(app, [r.token for r in results], wait=wait)


@click.group("db")
def db_group() -> None:
    """The content store (SQLite under RUNNER_HOME, or RUNNER_DATABASE_URL)."""


@db_group.command("init")
@pass_app
def db_init(app: App) -> None:
    """Create or upgrade the content schema; safe to run any number of times."""
    engine = engine_for(app.settings.store_url)
    click.echo(f"schema ready: {engine.url.render_as_string(hide_password=True)}")


COMMANDS: list[click.Command] = [import_command, db_group]
