"""DNS rebinding as it really happens, in Chromium: a page from `evil.test:PORT` (a throwaway
server), that server stopped, the console started on the same port, the tab still open. Its
name now resolves to the console, same-origin for the browser: the console's Host check is
what refuses its reads and its POSTs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import uvicorn
from redis import Redis

from runner.config import Settings
from runner.runs.transitions import Runs
from runner.web import create_app
from tests.conftest import state_of
from tests.runner.web.conftest import CHROMIUM, CHROMIUM_FLAGS

ATTACKER_PAGE = b"""<!doctype html><title>cute cats</title><h1>cats</h1>
<script>
window.attack = async (token) => {
  const read = await fetch('/runs', {cache: 'no-store'});
  const body = new URLSearchParams({token: token});
  const post = await fetch('/actions/rerun', {method: 'POST', body: body});
  return {read: read.status, text: (await read.text()).slice(0, 200), post: post.status};
};
</script>"""


class Attacker(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(ATTACKER_PAGE)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rebinding_page(browser: Any) -> Iterator[Any]:
    """A page in a Chromium whose resolver maps evil.test to loopback."""
    chromium = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True,
        args=[*CHROMIUM_FLAGS, "--host-resolver-rules=MAP evil.test 127.0.0.1"],
    )  # fmt: skip
    page = chromium.new_page()
    page.set_default_timeout(10_000)
    yield page
    chromium.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_rebound_page_in_chromium_can_neither_read_nor_change_runs(
    rebinding_page: Any, redis: Redis, settings: Settings, enqueue: Any, drain: Any, runs: Runs
) -> None:
    token = enqueue("broken").token
    drain()
    port = free_port()
    # Given the attacker's page, loaded from its own server on the port the console will use
    attacker = ThreadingHTTPServer(("127.0.0.1", port), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    rebinding_page.goto(f"http://evil.test:{port}/")
    assert rebinding_page.title() == "cute cats"
    attacker.shutdown()
    attacker.server_close()

    # When the console starts on that port, and the tab (still open) reaches it by its name
    app = create_app(settings, redis=redis, host="127.0.0.1", port=port)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        result = rebinding_page.evaluate("token => window.attack(token)", token)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    # Then the console refuses both by their Host: nothing read, nothing rerun
    assert result["read"] == 400 and "RUNNER_WEB_HOSTS" in result["text"], result
    assert result["post"] == 400, result
    assert state_of(runs, token) == "failed"
