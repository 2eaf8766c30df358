"""`runner web`: refuses to listen beyond loopback without a token; serves the console."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from runner.config import Settings
from runner.web.hosts import is_loopback
from tests.conftest import ROOT, wait_for, worker_env


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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "runner", "web", "--port", str(port)]
    process = subprocess.Popen(
        command, env=worker_env(settings), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def page() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=2) as answer:
                    return str(answer.read().decode())
            except OSError:
                return ""

        html = str(wait_for(page, timeout=20, what="the console to answer"))
        assert "<h1>Runs</h1>" in html
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert f"http://127.0.0.1:{port}/" in output
