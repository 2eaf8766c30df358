"""Fixtures for the console: the app on this test's real Redis, and an HTTP client for it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from redis import Redis

from runner.config import Settings
from runner.web import create_app

BASE = "http://127.0.0.1:8080"


@pytest.fixture
def client_for(redis: Redis, settings: Settings) -> Callable[..., TestClient]:
    """A TestClient for the console with some settings changed (token, read-only, ...)."""

    def make(**changes: Any) -> TestClient:
        app = create_app(replace(settings, **changes), redis=redis)
        return TestClient(app, base_url=BASE, follow_redirects=False)

    return make


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's) for the whole session, driven by Playwright. Skipped
    with one line when absent; a failure when CI is set."""
    problem = ""
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"no {CHROMIUM}: `apt-get install chromium` to run the browser tests"
    elif importlib.util.find_spec("playwright") is None:
        problem = "playwright is not installed: `pip install -e '.[dev]'`"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser tests: {problem}", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@dataclass
class LiveConsole:
    """The console served by uvicorn on a free loopback port, in a thread of this process."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve(redis: Redis) -> Iterator[Callable[..., LiveConsole]]:
    started: list[LiveConsole] = []

    def start(settings: Settings) -> LiveConsole:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings, redis=redis), host="127.0.0.1", port=port, log_level="warning",
            lifespan="off", timeout_graceful_shutdown=1,
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        started.append(LiveConsole(f"http://127.0.0.1:{port}", server, thread))
        return started[-1]

    yield start
    for console in started:
        console.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; fails the test if the page ran an alert() or threw."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.dialogs = dialogs
    page.errors = errors
    yield page
    context.close()
    assert not dialogs, f"a script ran in the page: {dialogs}"


@dataclass
class ConsoleProcess:
    """A real `runner web` process on a free port of `host`, and what it printed once ended."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    output: str = ""

    @property
    def url(self) -> str:
        return f"http://{'[' + self.host + ']' if ':' in self.host else self.host}:{self.port}"


@contextlib.contextmanager
def console_process(settings: Settings, *, host: str = "127.0.0.1") -> Iterator[ConsoleProcess]:
    """Start `runner web --host HOST --port <free port>` (IPv6 given in brackets, as a user
    types it); terminate it on the way out and keep its output."""
    from tests.conftest import ROOT, worker_env

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    command = [sys.executable, "-m", "runner", "web", "--host", shown, "--port", str(port)]
    process = subprocess.Popen(
        command, env=worker_env(settings), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    console = ConsoleProcess(process, host, port)
    try:
        yield console
    finally:
        process.terminate()
        console.output = process.communicate(timeout=10)[0].decode()
