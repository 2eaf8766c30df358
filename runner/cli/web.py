"""`runner web`: the operator console (and /health, /metrics) served by uvicorn."""

from __future__ import annotations

import ipaddress

import click

from runner.cli.app import App, pass_app
from runner.errors import ConfigError


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` are loopback; every other address or name is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@pass_app
def web_command(app: App, host: str, port: int) -> None:
    """Serve the operator console. Any address but loopback needs RUNNER_WEB_TOKEN."""
    if not is_loopback(host) and not app.settings.web_token:
        raise ConfigError(
            f"--host {host} is reachable from other machines: set RUNNER_WEB_TOKEN to a long "
            "random secret first, or bind --host 127.0.0.1"
        )
    import uvicorn

    from runner.web.app import create_app

    console = create_app(app.settings, redis=app.redis, registry=app.registry)
    where = f"[{host}]" if ":" in host else host
    click.echo(f"runner console on http://{where}:{port}/ (Ctrl-C stops it)", err=True)
    uvicorn.run(
        console, host=host, port=port, proxy_headers=False, server_header=False,
        log_level="warning", access_log=False,
        timeout_graceful_shutdown=3,  # live-log streams would hold a stop for ever
    )  # fmt: skip
