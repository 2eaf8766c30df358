"""The README's examples, run as a newcomer would: each code block after an `<!-- example -->`
line, in order, on a fresh RUNNER_HOME (the embedded Redis, a SQLite store). A shell block
runs to the end and must exit 0; a long-running command (`runner worker`, `runner web`) is
started, checked for its first log line or page, and stopped; a JSON block is a feed line
that must import as one inserted post."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = re.compile(r"^<!-- example -->\n```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LONG_RUNNING = re.compile(r"^runner (worker(?!.*--burst)|web|cron run)\b")


def examples() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in EXAMPLE.finditer((ROOT / "README.md").read_text())]


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A newcomer's environment: the project's venv first on PATH, a fresh RUNNER_HOME, and
    no other RUNNER_* setting (the embedded Redis, the SQLite store, the site's tasks)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env |= {"RUNNER_HOME": str(tmp_path / "home"), "PATH": f"{Path(sys.executable).parent}:"
            f"{env.get('PATH', '')}"}  # fmt: skip
    yield env
    subprocess.run(["runner", "redis", "stop", "--force"], env=env, cwd=tmp_path,
                   capture_output=True, timeout=60, check=False)  # fmt: skip


def test_the_readme_has_examples_for_a_newcomer() -> None:
    kinds = [kind for kind, _ in examples()]
    commands = " ".join(body for _, body in examples())
    assert "json" in kinds and kinds.count("sh") >= 3
    for needed in ("runner import", "runner worker", "runner runs", "runner web"):
        assert needed in commands, needed


def test_every_readme_example_runs_on_a_fresh_home(tmp_path: Path, shell: dict[str, str]) -> None:
    for kind, body in examples():
        if kind == "json":
            _imports_one_post(body, tmp_path, shell)
        elif LONG_RUNNING.match(body.strip()) and body.strip().count("\n") == 0:
            _starts_and_stops(body.strip(), tmp_path, shell)
        else:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], env=shell,
                                  cwd=tmp_path, capture_output=True, text=True, timeout=180,
                                  check=False)  # fmt: skip
            assert done.returncode == 0, f"{body}\n{done.stdout}\n{done.stderr}"
            if "runner rejects" in body:  # the quick start's feed: one in, one rejected
                assert "succeeded" in done.stdout and "title: must not be empty" in done.stdout


def _imports_one_post(line: str, tmp_path: Path, env: dict[str, str]) -> None:
    feed = tmp_path / "format-example.jsonl"
    feed.write_text(line.strip() + "\n")
    token = _run(["runner", "import", str(feed)], tmp_path, env).strip()
    _run(["runner", "worker", "--burst"], tmp_path, env)
    shown = json.loads(_run(["runner", "show", token, "--json"], tmp_path, env))
    assert shown["state"] == "succeeded" and shown["counters"]["inserted"] == 1, shown


def _starts_and_stops(command: str, tmp_path: Path, env: dict[str, str]) -> None:
    port = _free_port()
    command = re.sub(r"--port \d+", f"--port {port}", command.split("#")[0]).strip()
    log = tmp_path / f"{command.split()[1]}.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block its writes
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], env=env, cwd=tmp_path, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        if command.startswith("runner web"):
            assert "Overview" in _page(f"http://127.0.0.1:{port}/", process), command
        else:  # its first log line, then its horse ready (a stop during start-up is slower)
            _wait(lambda: "worker.started" in log.read_text(), process, what=command)
            _wait(lambda: "horse.started" in log.read_text(), process, what=command)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"{command} did not stop:\n{log.read_text()}") from None


def _wait(predicate: Callable[[], bool], process: subprocess.Popen[bytes], *, what: str) -> None:
    for _ in range(600):
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode}")
        time.sleep(0.1)
    raise AssertionError(f"{what}: nothing after 60 s")


def _page(url: str, process: subprocess.Popen[bytes]) -> str:
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180, check=False)  # fmt: skip
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
