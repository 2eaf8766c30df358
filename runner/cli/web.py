"""`runner web`: the operator console (and /health, /metrics) served by uvicorn."""

from __future__ import annotations

import os

import click

from runner.cli.app import App, pass_app
from runner.config import DEPRECATED_METRICS

__all__ = ["web_command"]


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@pass_app
def web_command(app: App, host: str, port: int) -> None:
    """Serve the operator console. Any address but loopback needs RUNNER_WEB_TOKEN and
    RUNNER_WEB_HOSTS (or RUNNER_WEB_ORIGIN)."""
    from runner.web.hosts import check_bind  # the console's package: not on a worker's start path

    host = host.strip("[]")  # `--host [::1]` as in a URL
    check_bind(app.settings, host)
    if os.environ.get(DEPRECATED_METRICS):
        click.echo(
            f"warning: {DEPRECATED_METRICS} is deprecated and goes in the next release; /metrics"
            " needs the token by default, RUNNER_WEB_METRICS_PUBLIC=1 opens it alone", err=True,
        )  # fmt: skip
    import uvicorn

    from runner.web.app import create_app

    console = create_app(app.settings, redis=app.redis, registry=app.registry, host=host, port=port)
    where = f"[{host}]" if ":" in host else host
    click.echo(f"runner console on http://{where}:{port}/ (Ctrl-C stops it)", err=True)
    uvicorn.run(
        console, host=host, port=port, proxy_headers=False, server_header=False,
        log_level="warning", access_log=False,
        timeout_graceful_shutdown=3,  # live-log streams would hold a stop for ever
    )  # fmt: skip
