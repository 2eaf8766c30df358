"""Text the console and the CLI show: secrets in `?password=` hidden, hidden and reordering
characters made visible, token links that keep the token whole, `--host [::1]`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from click.testing import CliRunner
from fastapi.testclient import TestClient
from redis import Redis

from runner.cli import cli
from runner.config import Settings
from runner.connections.redis import redact
from tests.conftest import wait_for, worker_env
from tests.runner.web.conftest import console_process
from tests.runner.web.test_command import page

HIDDEN = "\u202e\u2066\u200b\r\x07\x00\x08\x1b"


def test_a_password_in_the_query_is_hidden_everywhere(settings: Settings) -> None:
    url = "redis://127.0.0.1:1/0?password=hunter2&db=0"
    assert redact(url) == "redis://127.0.0.1:1/0?password=***&db=0"
    assert "hunter2" not in redact("redis://:hunter2@h:6379/0?x=1&Password=hunter2")
    env = {k: v for k, v in worker_env(settings).items() if k.startswith("RUNNER_")}
    env["RUNNER_REDIS_URL"] = url
    for args in (["redis", "url"], ["health"], ["runs"], ["web", "--port", "1"]):
        result = CliRunner().invoke(cli, args, env=env)
        assert "hunter2" not in result.output, args
        assert "Traceback" not in result.output, args


def test_hidden_characters_show_as_escapes_on_pages(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None]
) -> None:
    token = enqueue("loud_failure", size=1, text=f"report{HIDDEN}fdp.exe").token
    drain()
    for path in (f"/runs/{token}", "/runs", "/rerun?state=failed", "/", f"/live/{token}"):
        page = client.get(path).text
        assert not any(c in page for c in HIDDEN), path
    assert "report\\u202e\\u2066\\u200b\\x0d\\x07" in client.get(f"/runs/{token}").text


def test_the_cli_escapes_control_characters_in_show_and_logs(
    invoke: Callable[..., Any], enqueue: Callable[..., Any], drain: Callable[..., None],
    redis: Redis,
) -> None:  # fmt: skip
    token = enqueue("loud_failure", size=1, text=f"a{HIDDEN}b").token
    drain()
    for args in (["show", token], ["logs", token]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert not any(c in result.output for c in HIDDEN), args
    assert "\\u202e" in invoke("show", token).output


def test_token_links_are_fully_percent_encoded_and_lead_to_the_run(
    client: TestClient, enqueue: Callable[..., Any]
) -> None:
    token = "odd/../x?y=1#z;.."  # ('%' too, but TestClient decodes a path twice)
    enqueue("noop", token=token)
    page = client.get("/runs").text
    link = "/runs/odd%2F..%2Fx%3Fy=1%23z;.."
    assert f'href="{link}"' in page
    answer = client.get(link)
    assert answer.status_code == 200 and "noop" in answer.text


def test_the_console_listens_on_ipv6_loopback_given_in_brackets(settings: Settings) -> None:
    with console_process(settings, host="::1") as console:
        html = str(wait_for(lambda: page(f"{console.url}/runs"), timeout=20,
                            what="the console on ::1"))  # fmt: skip
        assert "<h1>Runs</h1>" in html
    assert f"{console.url}/" in console.output  # http://[::1]:PORT/
