"""`runner enqueue` through the CLI: arguments checked against the task before anything is
queued, and `--wait` when no worker is alive."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from runner.config import Settings
from runner.runs.index import RunIndex, RunQuery
from tests.conftest import ROOT, wait_for, worker_env


def test_a_missing_argument_is_a_usage_error_naming_the_parameters(
    invoke: Callable[..., Result], index: RunIndex
) -> None:
    # When `greet` is enqueued without its required `name`
    result = invoke("enqueue", "greet")
    # Then it is refused in one line naming the argument and the task's parameters
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: task greet needs argument 'name'; its parameters: name, loud=False"
    ]
    # And nothing was queued
    assert index.runs() == []


def test_an_unknown_argument_is_a_usage_error_and_nothing_is_queued(
    invoke: Callable[..., Result], index: RunIndex
) -> None:
    result = invoke("enqueue", "greet", "--arg", "name=ada", "--arg", "nosuch=1")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: task greet has no argument 'nosuch'; its parameters: name, loud=False"
    ]
    assert index.runs() == []
    # And a task taking **kwargs takes any name
    assert invoke("enqueue", "noop", "--arg", "anything=1").exit_code == 0


def test_run_enqueue_inside_a_task_raises_at_once(
    invoke: Callable[..., Result], index: RunIndex, work: Callable[[], None]
) -> None:
    # Given a task that enqueues `greet` with an argument it does not take
    assert invoke("enqueue", "spawn", "--arg", "name=ada", "--arg", "nosuch=1").exit_code == 0
    # When it runs
    work()
    # Then its run.enqueue raised InvalidArguments at once, and no greet run exists
    (spawned,) = index.runs(RunQuery(task="spawn"))
    assert spawned.state == "succeeded"
    assert spawned.result == (
        "refused: task greet has no argument 'nosuch'; its parameters: name, loud=False"
    )
    assert index.runs(RunQuery(task="greet")) == []


def test_wait_with_no_worker_alive_says_so_and_ctrl_c_leaves_the_run_queued(
    settings: Settings, index: RunIndex, tmp_path: Path
) -> None:
    # Given `runner enqueue --wait` and no worker alive
    err = tmp_path / "stderr.txt"
    with err.open("wb") as out:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "runner", "enqueue", "noop", "--wait"],
            env=worker_env(settings), stdout=subprocess.PIPE, stderr=out, cwd=ROOT,
        )  # fmt: skip
    try:
        # Then after a few seconds it says which queue has no worker and how to start one
        wait_for(lambda: "no worker is alive" in err.read_text(), timeout=30, what="the notice")
        notice = err.read_text()
        assert "queue 'default'" in notice and "runner worker --queue default" in notice
        # And it keeps waiting
        assert waiting.poll() is None
        # When Ctrl-C is pressed
        waiting.send_signal(signal.SIGINT)
        code = waiting.wait(timeout=15)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    # Then it exits 130, saying the run goes on, without a traceback; the run is still queued
    text = err.read_text()
    assert code == 130, text
    assert "the run goes on" in text and "Traceback" not in text and "Aborted" not in text
    (run,) = index.runs()
    assert run.state == "queued"
    # And Ctrl-C on `logs --follow` of that run also exits 130, saying the run goes on
    out = tmp_path / "follow.txt"
    with out.open("wb") as sink:
        follow = subprocess.Popen(
            [sys.executable, "-m", "runner", "logs", run.token, "--follow"],
            env=worker_env(settings), stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        wait_for(lambda: "run.queued" in out.read_text(), timeout=30, what="the log")
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=15) == 130, out.read_text()
    finally:
        if follow.poll() is None:
            follow.kill()
    assert "the run goes on" in out.read_text() and "Traceback" not in out.read_text()
