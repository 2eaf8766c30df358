"""The small things of issue 14 through the CLI: rerun --force, attempts left, -h and
--version, option values checked by click types in one line, read-only commands that leave a
stopped embedded Redis stopped, and human output only on a terminal."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result
from redis import Redis

from runner.cli.commands import cli
from runner.config import Settings
from runner.connections.redis import EmbeddedRedis
from runner.keys import Keys
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from runner.worker.liveness import Liveness
from tests.conftest import WorkerProcess, wait_for


def test_rerun_force_reruns_a_succeeded_run_and_logs_it_as_deliberate(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    runs: Runs,
) -> None:  # fmt: skip
    # Given a succeeded run
    token = enqueue("counting", items=2, seconds=0.01).token
    drain()
    # When it is rerun without --force, it is refused with the way to do it
    refused = invoke("rerun", token)
    assert refused.exit_code == 1 and "--force" in refused.stdout
    # And with --force it is requeued, and its log says it was deliberate
    forced = invoke("rerun", token, "--force", "--from-scratch")
    assert forced.exit_code == 0 and forced.stdout.startswith("requeued"), forced.output
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.attempt == 2
    events = [json.loads(line) for line in invoke("logs", token, "--json").stdout.splitlines()]
    (rerun,) = [e for e in events if e["event"] == "run.rerun"]
    assert rerun["forced"] is True and rerun["was"] == "succeeded"


def test_show_says_how_many_attempts_are_left_for_this_run(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    settings: Settings,
) -> None:  # fmt: skip
    # Given a run that used all its attempts, then was rerun once and failed again
    token = enqueue("broken", permanent=False).token
    drain()
    line = attempts_line(invoke("show", token).stdout)
    assert line == "attempts:   5, none left", line
    assert invoke("rerun", token).exit_code == 0
    drain()
    # Then show counts what is left of this rerun's allowance, not 10 of 10
    line = attempts_line(invoke("show", token).stdout)
    assert line.startswith("attempts:   10, none left") and "rerun" in line, line


def attempts_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("attempts:"))


def test_dash_h_and_version(invoke: Callable[..., Result]) -> None:
    assert invoke("-h").exit_code == 0 and "Usage: runner" in invoke("-h").output
    assert invoke("runs", "-h").exit_code == 0
    version = invoke("--version")
    assert version.exit_code == 0 and version.output.startswith("runner, version ")


def test_bad_option_values_are_one_line_usage_errors(invoke: Callable[..., Result]) -> None:
    for args, words in (
        (("runs", "--limit", "-1"), "--limit"),
        (("runs", "--since", "garbage"), "not a duration"),
        (("show",), "RUN"),
        (("runs", "--state", "sleeping"), "--state"),
        (("rerun", "--failed", "--since", "soon"), "--since"),
        (("cron", "tick", "--at", "noon"), "--at"),
        (("--bogus",), "--bogus"),
        (("nosuch",), "nosuch"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines


def test_read_only_commands_leave_a_stopped_embedded_redis_stopped(tmp_path: Path) -> None:
    # Given the embedded Redis under a home, stopped by an operator
    env = {"RUNNER_HOME": str(tmp_path / "home"), "RUNNER_TASKS": "tests.sample_tasks"}
    runner = CliRunner()
    assert runner.invoke(cli, ["enqueue", "noop"], env=env).exit_code == 0
    server = EmbeddedRedis.for_home(tmp_path / "home")
    assert server.is_running() and runner.invoke(cli, ["redis", "stop"], env=env).exit_code == 0
    try:
        # When read-only commands run
        for args in (["runs"], ["show", "noop"], ["logs", "noop"], ["cron", "list"], ["health"]):
            result = runner.invoke(cli, args, env=env)
            # Then each says who stopped it and how to start it, and it stays stopped
            assert result.exit_code == 1, (args, result.output)
            assert "not running: stopped with `runner redis stop`" in result.output, args
            assert "`runner redis start`" in result.output
            assert not server.is_running(), args
        # And `runner redis start` starts it, and clears the mark: reads work again
        assert runner.invoke(cli, ["redis", "start"], env=env).output.startswith("started")
        assert runner.invoke(cli, ["show", "noop"], env=env).exit_code == 0
        server.stop()
        assert runner.invoke(cli, ["enqueue", "noop"], env=env).exit_code == 0  # a working one
        assert runner.invoke(cli, ["runs"], env=env).exit_code == 0 and server.is_running()
    finally:
        server.stop()


def test_read_only_commands_start_the_embedded_redis_nobody_stopped(tmp_path: Path) -> None:
    # Given a fresh home, and then a home whose redis-server crashed (SIGKILL)
    env = {"RUNNER_HOME": str(tmp_path / "home"), "RUNNER_TASKS": "tests.sample_tasks"}
    runner = CliRunner()
    server = EmbeddedRedis.for_home(tmp_path / "home")
    try:
        fresh = runner.invoke(cli, ["runs"], env=env)
        assert fresh.exit_code == 0 and "no runs match" in fresh.output, fresh.output
        assert runner.invoke(cli, ["enqueue", "noop"], env=env).exit_code == 0
        pid = int((server.directory / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not server.is_running(), what="the killed redis-server gone")
        # When a read-only command runs, Then it starts the server and answers
        result = runner.invoke(cli, ["show", "noop"], env=env)
        assert result.exit_code == 0, result.output
        assert "the embedded Redis had crashed (see its log, " in result.stderr
    finally:
        server.stop()


def test_redis_stop_refuses_while_workers_are_connected_unless_forced(
    settings: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given the embedded Redis with a live worker on it
    home = tmp_path / "own-home"
    env = {"RUNNER_HOME": str(home), "RUNNER_TASKS": "tests.sample_tasks"}
    server = EmbeddedRedis.for_home(home)
    runner = CliRunner()
    try:
        url = server.ensure_started()
        worker = start_worker(RUNNER_HOME=str(home), RUNNER_REDIS_URL="")
        own = Liveness(Redis.from_url(url), settings)
        wait_for(lambda: bool(own.alive()), what="a live worker")
        # When an operator stops it, Then it refuses, naming the workers
        refused = runner.invoke(cli, ["redis", "stop"], env=env)
        assert refused.exit_code == 1 and "1 workers are connected" in refused.output
        assert "--force" in refused.output and server.is_running()
        # And with --force it stops
        assert runner.invoke(cli, ["redis", "stop", "--force"], env=env).output == "stopped\n"
        worker.kill_group()
    finally:
        server.stop()


def test_show_after_a_handover_does_not_speak_of_a_rerun(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    # Given a run whose first attempt handed it over (as Runs.hand_over records it)
    token = enqueue("noop").token
    redis.hset(Keys(settings.prefix).run(token),
               mapping={"attempt": 2, "attempt_base": 1, "handovers": 1})  # fmt: skip

    line = attempts_line(invoke("show", token).stdout)

    assert "rerun" not in line and "1 handed over, not counted" in line, line
