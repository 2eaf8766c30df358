"""Deploy marks: one per new code version, atomic, a rollback marks again, and by hand."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from redis import Redis

from runner.config import Settings
from runner.runs.deploys import PROJECT, DeployMarks, _git_short_sha, code_version
from tests.conftest import ROOT, worker_env


def test_many_processes_starting_with_a_new_version_make_one_mark(
    redis_server: object, settings: Settings
) -> None:
    def start(version: str) -> None:
        client = Redis.from_url(str(settings.redis_url))
        DeployMarks(client, settings).mark(version, by=f"worker {threading.get_ident()}")

    for version in ("A", "B", "A"):  # a rollback to A is a deploy too
        threads = [threading.Thread(target=start, args=(version,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    marks = DeployMarks(Redis.from_url(str(settings.redis_url)), settings).all()
    assert [m.version for m in marks] == ["A", "B", "A"]
    assert marks[0].at < marks[1].at < marks[2].at


def test_previous_version_is_the_mark_the_latest_replaced(redis: Redis, settings: Settings) -> None:
    marks = DeployMarks(redis, settings)
    marks.mark("A", by="t", at=100.0)
    marks.mark("B", by="t", at=200.0)
    marks.mark("B", by="operator", label="config change", always=True, at=300.0)

    latest = marks.latest(1)[0]
    previous = marks.previous_version(latest)

    assert (latest.version, latest.label) == ("B", "config change")
    assert previous is not None and previous.version == "A"


def test_deploy_mark_by_hand_records_a_mark_even_for_the_same_version(
    invoke: Callable[..., Result], redis: Redis, settings: Settings
) -> None:
    first = invoke("deploy", "mark", "--version", "v1", "first")
    again = invoke("deploy", "mark", "--version", "v1")

    assert first.exit_code == 0 and first.output.startswith("marked v1 at ")
    assert first.output.rstrip().endswith(": first")
    assert again.exit_code == 0
    assert [m.version for m in DeployMarks(redis, settings).all()] == ["v1", "v1"]


def test_the_code_version_is_the_setting_else_the_git_short_sha() -> None:
    assert code_version(Settings(code_version="0.4.2")) == "0.4.2"
    if (PROJECT / ".git").exists():
        sha = subprocess.run(
            ["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        _git_short_sha.cache_clear()  # cached per process: its code does not change under it
        assert code_version(Settings()) == sha


def test_a_worker_starting_with_a_new_version_marks_it(settings: Settings, tmp_path: Path) -> None:
    env = worker_env(settings, RUNNER_CODE_VERSION="w-1")
    command = [sys.executable, "-m", "runner", "worker", "--burst"]
    for _ in range(2):  # the second start, same version, marks nothing
        subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)

    marks = DeployMarks(Redis.from_url(str(settings.redis_url)), settings).all()
    assert [(m.version, m.by.split()[0]) for m in marks] == [("w-1", "worker")]


def test_a_worker_without_runner_code_version_marks_nothing(settings: Settings) -> None:
    env = worker_env(settings)
    env.pop("RUNNER_CODE_VERSION", None)  # a one-off `runner worker --burst` to debug a queue
    command = [sys.executable, "-m", "runner", "worker", "--burst"]
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)

    assert DeployMarks(Redis.from_url(str(settings.redis_url)), settings).all() == []
