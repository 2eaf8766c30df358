"""What a person at a terminal sees: the CLI and a worker on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from runner.config import Settings
from runner.runs.enqueue import Enqueued
from tests.conftest import ROOT, worker_env


@dataclass
class Terminal:
    """A process whose stdin, stdout and stderr are one pseudo-terminal, and what it wrote."""

    process: subprocess.Popen[bytes]
    master: int
    seen: bytearray = field(default_factory=bytearray)

    def read_until(self, predicate: Callable[[str], bool], *, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not predicate(self.text) and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the process closed its end
                    break
            elif self.process.poll() is not None:
                break
        return self.text

    @property
    def text(self) -> str:
        return self.seen.decode(errors="replace")


def on_terminal(settings: Settings, *args: str) -> Terminal:
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", *args], env=worker_env(settings), cwd=ROOT,
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    return Terminal(process, master)


@pytest.fixture
def terminals() -> list[Terminal]:
    return []


def finished(term: Terminal) -> str:
    term.process.wait(timeout=30)
    text = term.read_until(lambda _: False, timeout=1)
    os.close(term.master)
    return text


def test_on_a_terminal_a_command_prints_its_result_only_unless_log_json(
    settings: Settings, enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    # Given a succeeded run
    token = enqueue("noop", n=1).token
    drain()
    # When it is rerun on a terminal
    text = finished(on_terminal(settings, "rerun", token, "--force"))
    # Then only the result line is printed, not the events it logs
    assert text.startswith(f"requeued: {token}") and "run.rerun" not in text, text
    # And with --log-json the events come too, as JSON lines
    drain()
    both = finished(on_terminal(settings, "--log-json", "rerun", token, "--force"))
    assert f"requeued: {token}" in both
    assert any(line.startswith("{") and '"run.rerun"' in line for line in both.splitlines())


@pytest.mark.slow
def test_a_worker_on_a_terminal_says_what_ctrl_c_does_and_stops_without_a_traceback(
    settings: Settings, invoke: Callable[..., object]
) -> None:
    # Given a long run and a worker on a terminal
    from click.testing import Result

    result = invoke("enqueue", "slow_steps", "--arg", "steps=3", "--arg", "seconds=5")
    assert isinstance(result, Result) and result.exit_code == 0
    term = on_terminal(settings, "worker")
    try:
        # Then it says in plain words what the first and the second Ctrl-C do
        intro = term.read_until(lambda t: "step.started" in t)
        assert "Ctrl-C: hand the current run over at its next checkpoint, then stop" in intro
        assert "Ctrl-C twice: stop at once" in intro
        # When Ctrl-C is pressed once, it says it hands the run over at its next checkpoint
        os.killpg(term.process.pid, signal.SIGINT)
        first = term.read_until(lambda t: "Ctrl-C again" in t)
        assert "handed over at its next checkpoint" in first
        # And a second Ctrl-C stops it at once, without a traceback
        os.killpg(term.process.pid, signal.SIGINT)
        text = finished(term)
    finally:
        if term.process.poll() is None:
            term.process.kill()
    assert "stopping at once; the run resumes from its last checkpoint" in text
    assert "Traceback" not in text and term.process.returncode == 0
