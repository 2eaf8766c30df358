"""`runner web`: refuses to listen beyond loopback without a token; serves the console."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from runner.config import Settings
from runner.web.hosts import is_loopback
from tests.conftest import wait_for
from tests.runner.web.conftest import console_process


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "jobs.example.com"])
def test_a_non_loopback_bind_without_a_token_does_not_start(
    invoke: Callable[..., Any], host: str
) -> None:
    result = invoke("web", "--host", host, "--port", "1")
    assert result.exit_code == 2
    assert "RUNNER_WEB_TOKEN" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_loopback_is_127_8_ipv6_one_and_localhost() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.0.0.1", "::", "example.org"]))


def test_the_command_serves_the_console_on_loopback(settings: Settings) -> None:
    with console_process(settings) as console:
        html = str(wait_for(lambda: page(f"{console.url}/runs"), timeout=20,
                            what="the console to answer"))  # fmt: skip
        assert "<h1>Runs</h1>" in html
    assert f"{console.url}/" in console.output


def page(url: str) -> str:
    """The page at `url`, or "" while the console does not answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""
