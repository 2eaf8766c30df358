"""`runner import URL` against a server that trickles its headers: how long the command takes.

The server (a thread of this process, on 127.0.0.1) sends its status line and then one byte
of a header every 0.5 s, for minutes. The command is run as its own process with the default
RUNNER_URL_CHECK_SECONDS and timed from its spawn to its exit; it must say the run is queued.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from scripts.bench_env import BenchEnv

TRICKLE_S = 0.5


class _Trickler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _trickle(self) -> None:
        with contextlib.suppress(OSError):  # the client gave up
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 10_000:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(TRICKLE_S)

    do_GET = do_HEAD = _trickle


@contextlib.contextmanager
def trickling_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/feed.jsonl"
    finally:
        server.shutdown()
        server.server_close()


def url_enqueue_seconds(env: BenchEnv, repeats: int) -> float:
    """The best of `repeats` `runner import URL --json` against the trickling server (spawn to
    exit); raises RuntimeError unless each said its run was queued."""
    best = float("inf")
    with trickling_server() as url:
        for _ in range(repeats):
            env.flush()
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "runner", "import", url, "--json"],
                env=env.runner_env(env.sqlite_url("urls")), capture_output=True, text=True,
                timeout=600, check=False,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
            lines = done.stdout.strip().splitlines()
            state = json.loads(lines[0]).get("state") if lines else None
            if done.returncode != 0 or state != "queued":
                raise RuntimeError(f"runner import URL said {state!r}: {done.stderr[-300:]}")
            best = min(best, elapsed)
    return best
