"""The site's CLI commands, added to `runner`: `import`, `rejects` and `db upgrade|init`.

The store (SQLAlchemy, Alembic) is imported by the commands that use it, not by every
command line (`runner import` and `runner worker` start without it)."""

from __future__ import annotations

import click

from jobs.rejects import PAGE
from jobs.sources import TASK, resolve
from runner import InvalidArguments, RedisUnavailable, Request, UnknownRun
from runner.cli import App, finish_waiting, json_line, pass_app, table


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
    twice. A URL's token is its ETag or Last-Modified (asked within RUNNER_URL_CHECK_SECONDS);
    without them, one run per RUNNER_URL_MIN_INTERVAL, which skips a body imported last. A
    missing file or unreadable directory is refused before anything is queued."""
    check_s, interval_s = app.settings.url_check_seconds, app.settings.url_min_interval_seconds
    resolved = [
        s for location in sources
        for s in resolve(location, check_s=check_s, min_interval_s=interval_s)
    ]  # fmt: skip
    if token and len(resolved) != 1:
        raise InvalidArguments("--token needs exactly one source file or URL")
    if not resolved:
        raise InvalidArguments("no feed files found (looked for .jsonl .ndjson .json .txt)")
    task = app.registry.get(TASK)
    # A token of one's own forces a run: no skipping a body that was imported last.
    requests = [
        Request(task, {"source": s.location} if token else s.args, token or s.token)
        for s in resolved
    ]
    results = app.enqueuer.enqueue_many(requests)
    app.report_enqueued(results, as_json=as_json)
    finish_waiting(app, [r.token for r in results], wait=wait)


@click.command("rejects")
@click.argument("run")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Only past this position.")
@click.option("--limit", type=click.IntRange(min=0), default=PAGE, show_default=True,
              help="At most this many (0: all).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rejected line.")
@pass_app
def rejects_command(app: App, run: str, after: int, limit: int, as_json: bool) -> None:
    """The lines an import rejected: position, source id and reason, in position order."""
    from jobs.rejects import has_rejects, list_rejects
    from jobs.store import engine_for

    app.reading()
    engine = engine_for(app.settings.store_url)
    try:
        token = app.locate(run)[0]  # in Redis, or moved to history
    except (UnknownRun, RedisUnavailable):
        if not has_rejects(engine, run):  # the run's record may have expired before its rejects
            raise
        token = run
    rows = list_rejects(engine, token, after=after, limit=limit)
    if as_json:
        for row in rows:
            click.echo(json_line(**row))
    elif rows:
        cells = [(str(r["position"]), r["source_id"] or "-", r["reason"]) for r in rows]
        click.echo(table(cells, ("POSITION", "SOURCE ID", "REASON")))
    if not rows and not as_json:
        click.echo(f"no rejected lines in {token}" + (f" after {after}" if after else ""), err=True)
    if limit and len(rows) == limit:
        click.echo(f"more: runner rejects {token} --after {rows[-1]['position']}", err=True)


@click.group("db")
def db_group() -> None:
    """The content store (SQLite under RUNNER_HOME, or RUNNER_DATABASE_URL)."""


@db_group.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Bring the history tables (the engine's own Alembic tree), then the content schema, to
    this code's revision, under a lock; a database made before migrations is adopted without
    a change. Safe to run any number of times."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from jobs.database import StoreUnavailable, make_engine, shown_url, unreachable
    from jobs.revisions import upgrade

    history = app.upgrade_history()  # the engine's own tables first, then the site's
    url = app.settings.store_url
    try:
        engine = make_engine(url)
    except OSError as exc:  # a SQLite file's directory that cannot be made
        raise StoreUnavailable(unreachable(url, exc)) from None
    try:
        revision = upgrade(engine)
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(unreachable(url, exc)) from None
    finally:
        engine.dispose()
    click.echo(f"schema at revision {revision} (head): {shown_url(url)}")
    click.echo(f"history at revision {history}: {shown_url(app.settings.history_database_url)}")


@db_group.command("init")
@click.pass_context
def db_init(ctx: click.Context) -> None:
    """Create or upgrade the content schema: the same as `db upgrade`."""
    ctx.invoke(db_upgrade)


COMMANDS: list[click.Command] = [import_command, rejects_command, db_group]
