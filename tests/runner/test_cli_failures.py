"""Failures an operator can read through the CLI: `runs` columns fitted to the terminal,
`runs --json` with error and times, `show` with times, `logs` with a traceback only where it
helps, and a long step's progress in its log."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import CliRunner, Result

from runner.cli.commands import cli
from runner.config import Settings
from runner.runs.enqueue import Enqueued
from tests.conftest import worker_env


def invoke_at_width(settings: Settings, width: int, *args: str) -> Result:
    env = {k: v for k, v in worker_env(settings).items() if k.startswith("RUNNER_")}
    return CliRunner().invoke(cli, list(args), env={**env, "COLUMNS": str(width)})


def test_runs_has_error_argument_and_duration_columns_fitted_to_the_width(
    settings: Settings, enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    # Given a run that failed with a message and one that succeeded
    enqueue("broken", permanent=True)
    enqueue("counting", items=2, seconds=0.01)
    drain()
    # When `runs` is shown on a 110-column terminal
    result = invoke_at_width(settings, 110, "runs")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # Then the header has the new columns and every line fits
    assert lines[0].split()[-4:] == ["DURATION", "ARGUMENT", "ERROR", "CREATED"]
    assert all(len(line) <= 110 for line in lines), "\n".join(lines)
    failed = next(line for line in lines if "failed" in line)
    assert "PermanentError: the" in failed and "permanent" in failed
    done = next(line for line in lines if "succeeded" in line)
    assert "items=2" in done and "s " in done
    # And a wide terminal shows the whole error
    wide = invoke_at_width(settings, 200, "runs").stdout
    assert "PermanentError: the source does not exist (simulated)" in wide


def test_runs_json_has_error_args_and_times_in_utc(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    enqueue("broken", permanent=True)
    drain()
    (row,) = [json.loads(line) for line in invoke("runs", "--json").stdout.splitlines()]
    assert row["error"]["type"] == "PermanentError" and row["args"] == {"permanent": True}
    assert row["started_at"].endswith("Z") and row["finished_at"].endswith("Z")
    assert row["created_at"].endswith("Z") and row["started_at"] <= row["finished_at"]


def test_show_has_start_finish_and_duration(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    token = enqueue("counting", items=2, seconds=0.01).token
    drain()
    text = invoke("show", token).stdout
    started = next(line for line in text.splitlines() if line.startswith("started:"))
    finished = next(line for line in text.splitlines() if line.startswith("finished:"))
    assert started.split()[1].endswith("Z") and finished.split()[1].endswith("Z")
    assert "took" in finished


def test_logs_show_an_unexpected_traceback_once_and_none_for_a_permanent_error(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    # Given a run that fails five times with the same unexpected error, and a permanent one
    unexpected = enqueue("broken", permanent=False).token
    permanent = enqueue("broken", permanent=True).token
    drain()
    # Then `logs` shows the unexpected error's traceback once
    text = invoke("logs", unexpected).stdout
    assert text.count("attempt.failed") == 5
    assert text.count("Traceback (most recent call last)") == 1, text
    assert "RuntimeError: still broken (simulated)" in text
    # And none for the permanent error, whose message says it all
    quiet = invoke("logs", permanent).stdout
    assert "Traceback" not in quiet and "the source does not exist (simulated)" in quiet
    # And none for a transient error, retried as a new attempt or inside a step
    retried = enqueue("shaky").token
    in_step = enqueue("flaky", failures=2, mode="step").token
    drain()
    calm = invoke("logs", retried).stdout
    assert "attempt.failed" in calm and "run.succeeded" in calm and "Traceback" not in calm
    calm = invoke("logs", in_step).stdout
    assert calm.count("step.retry") == 2 and "Traceback" not in calm
    # And `--traceback` shows every attempt's full traceback
    full = invoke("logs", unexpected, "--traceback").stdout
    assert full.count("Traceback (most recent call last)") == 5
    # And the event times are UTC with a Z
    assert all(line[:24].endswith("Z") for line in text.splitlines() if line[:2] == "20")


def test_a_long_step_logs_its_progress_at_a_steady_pace(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    # Given a step of 250 checkpoints (the pace: every 100 checkpoints or 10 seconds)
    token = enqueue("counting", items=250, seconds=0, probed=False).token
    drain()
    # Then its log has progress events with the position, the counters and a rate
    events = [json.loads(line) for line in invoke("logs", token, "--json").stdout.splitlines()]
    progress = [e for e in events if e["event"] == "step.progress"]
    assert [e["position"] for e in progress] == [100, 200]
    assert progress[-1]["counters"] == {"done": 200} and progress[-1]["total"] == 250
    assert all(e["per_second"] > 0 for e in progress)
    # And the human log shows them
    assert "step.progress" in invoke("logs", token).stdout
