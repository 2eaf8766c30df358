"""The console stays bounded: a run with a 5 MB error is stored cut (with a note) and its page
stays small; 50 live-log clients that never read do not take the server's memory (a real
`runner web` process, its RSS read from /proc)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from runner.config import Settings
from runner.runs.transitions import Runs
from tests.conftest import ROOT, wait_for, worker_env

BIG = 5_000_000
STALLED = 50
HEADROOM = 150 * 1024 * 1024


def test_a_huge_error_is_stored_cut_with_a_note_and_shown_once(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    token = enqueue("loud_failure", size=BIG).token
    drain()
    record = runs.get(token)
    assert record is not None and record.error is not None
    message = record.error["message"]
    assert len(message) < 20_000 and "[cut: 4,990,000 more characters]" in message
    page = client.get(f"/runs/{token}")
    assert page.status_code == 200 and len(page.content) < 200_000
    assert page.text.count("[cut: 4,990,000 more characters]") == 1  # the error box alone


def test_live_streams_are_capped_per_client(
    client: TestClient, enqueue: Callable[..., Any]
) -> None:
    token = enqueue("noop").token  # queued: a live stream of it stays open
    app = client.app
    slots = app.state.live_slots  # type: ignore[attr-defined]
    for _ in range(slots.per_client):
        assert slots.take("testclient")
    answer = client.get(f"/live/{token}")
    assert answer.status_code == 429 and answer.headers["retry-after"]
    slots.give_back("testclient")
    assert slots.take("testclient") and not slots.take("testclient")


def test_fifty_stalled_live_clients_on_a_5_mb_error_keep_the_server_small(
    settings: Settings, enqueue: Callable[..., Any], drain: Callable[..., None]
) -> None:
    token = enqueue("loud_failure", size=BIG).token
    drain()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "runner", "web", "--port", str(port)]
    server = subprocess.Popen(
        command, env=worker_env(settings), cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stalled: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(f"{url}/runs/{token}"), timeout=30, what="the console")
        baseline = _rss(server.pid)
        for path in [f"/live/{token}", f"/runs/{token}"] * (STALLED // 2):
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", port))
            client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            stalled.append(client)  # and never read
        wait_for(lambda: _get(f"{url}/health"), timeout=30, what="the console to answer again")
        peak = 0
        for _ in range(10):  # the largest of several readings, while they stay stalled
            peak = max(peak, _rss(server.pid))
            time.sleep(0.2)
        assert peak < baseline + HEADROOM, f"RSS {baseline >> 20} MB -> {peak >> 20} MB"
    finally:
        for client in stalled:
            client.close()
        server.terminate()
        server.wait(timeout=10)


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            answer.read()
            return True
    except OSError as exc:
        return getattr(exc, "code", 0) == 503  # /health with no worker alive still answered


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")
