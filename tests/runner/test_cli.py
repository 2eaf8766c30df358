"""The CLI through Click's CliRunner, and as a real process for what a shell sees."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime

from click.testing import Result
from redis import Redis

from runner.runs.enqueue import Enqueued
from tests.conftest import ROOT


def test_enqueue_prints_the_token_and_dedups(invoke: Callable[..., Result]) -> None:
    first = invoke("enqueue", "counting", "--arg", "items=2", "--json")
    again = invoke("enqueue", "counting", "--arg", "items=2", "--json")
    assert first.exit_code == again.exit_code == 0
    a, b = json.loads(first.output), json.loads(again.output)
    assert set(a) == {"token", "job_id", "state", "deduplicated"}
    assert a["token"] == b["token"] and not a["deduplicated"] and b["deduplicated"]


def test_runs_show_and_logs_after_a_run_with_three_attempts(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    # Given a run that failed twice before succeeding
    token = enqueue("flaky", failures=2).token
    drain()
    # Then `runs --json` lists it with its attempts
    [listed] = [json.loads(line) for line in invoke("runs", "--json").stdout.splitlines()]
    assert listed["token"] == token and listed["state"] == "succeeded" and listed["attempts"] == 3
    # And `show --json` (by a prefix of the token) has steps, counters, cursor and error
    shown = json.loads(invoke("show", token[:12], "--json").stdout)
    assert {"counters", "cursor", "steps", "error"} <= set(shown)
    assert set(shown["steps"]) == {"before", "fragile"}
    # And `logs --json` shows every attempt's events, in order
    events = [json.loads(line) for line in invoke("logs", token, "--json").stdout.splitlines()]
    attempts = [e["attempt"] for e in events if "attempt" in e]
    assert attempts == sorted(attempts) and set(attempts) == {1, 2, 3}
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert [e["event"] for e in events].count("attempt.failed") == 2
    text = invoke("logs", token).output
    assert "#1" in text and "#3" in text and "run.succeeded" in text


def test_show_by_job_id_and_unknown_runs(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued]
) -> None:
    queued = enqueue("counting", items=1)
    assert queued.token in invoke("show", queued.job_id).output
    missing = invoke("show", "no-such-run")
    assert missing.exit_code == 2 and "no run matches 'no-such-run'" in missing.output


def test_rerun_failed_with_filters_and_dry_run(
    invoke: Callable[..., Result],
    enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
    redis: Redis,
) -> None:
    token = enqueue("broken", permanent=True).token
    drain()
    dry = invoke("rerun", "--failed", "--task", "broken", "--since", "1h", "--dry-run")
    assert dry.exit_code == 0 and f"would requeue: {token}" in dry.output
    assert invoke("rerun", "--failed", "--task", "other").stdout.strip() == ""
    done = invoke("rerun", token, "--json")
    assert json.loads(done.stdout)["action"] == "requeued"
    assert invoke("rerun").exit_code == 2


def test_usage_errors_are_one_line_with_exit_code_2(invoke: Callable[..., Result]) -> None:
    unknown = invoke("enqueue", "no_such_task")
    assert unknown.exit_code == 2
    assert unknown.output.startswith("error: unknown task 'no_such_task'; known tasks:")
    bad_arg = invoke("enqueue", "counting", "--arg", "oops")
    assert bad_arg.exit_code == 2 and "name=value" in bad_arg.output
    bad_since = invoke("runs", "--since", "yesterday")
    assert bad_since.exit_code == 2 and "not a duration" in bad_since.output


def test_unreachable_redis_is_one_line_without_the_password(tmp_path: object) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "RUNNER_REDIS_URL": "redis://:s3cret-pw@127.0.0.1:1/0",
        "RUNNER_TASKS": "tests.sample_tasks",
    }
    done = subprocess.run(
        [sys.executable, "-m", "runner", "runs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "s3cret-pw" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "redis://:***@127.0.0.1:1/0" in lines[0]
    assert "Traceback" not in done.stderr


def test_health_is_unhealthy_without_workers(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], redis: Redis
) -> None:
    result = invoke("health")
    assert result.exit_code == 1
    up = result.output.splitlines()[0]
    assert up.startswith("up       FAIL  redis ") and "no worker alive" in up
    assert "awaiting the reaper" not in up
    # A job taken by a worker that died, with no worker left to recover it
    enqueue("slow_steps", steps=1, seconds=0.0)
    redis.lmove("rq:queue:default", "rq:queue:default:intermediate")
    result = invoke("health")
    assert "1 runs awaiting the reaper" in result.output.splitlines()[0]


def test_show_lists_each_attempt_and_took_is_the_whole_run(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    # Given a run that failed twice before succeeding
    token = enqueue("flaky", failures=2).token
    drain()

    shown = json.loads(invoke("show", token, "--json").stdout)
    text = invoke("show", token).stdout

    # Then each attempt is listed with its worker, code version, outcome and duration
    tries = shown["attempt_list"]
    assert [(a["attempt"], a["outcome"]) for a in tries] == [
        (1, "failed, retried"), (2, "failed, retried"), (3, "succeeded"),
    ]  # fmt: skip
    assert all(a["worker"] and a["code_version"] and a["seconds"] is not None for a in tries)
    assert "#1 " in text and "#3 " in text and "succeeded" in text
    # And "took" runs from the first attempt's start to the end, not the latest attempt's
    first, last = tries[0], tries[-1]
    assert shown["took"] >= _seconds_between(first["started_at"], last["ended_at"]) - 1
    assert shown["took"] > last["seconds"]
    # And every time in the JSON is ISO 8601 UTC, the steps' too
    assert all(s["finished_at"].endswith("Z") for s in shown["steps"].values())


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
