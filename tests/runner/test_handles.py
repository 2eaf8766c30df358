"""Task handles (runner.handles): enqueue with their options through a client, typed by mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from runner import Client, InvalidArguments
from runner.config import Settings
from runner.tasks import load_registry
from tests.conftest import ROOT, TEST_TASKS


@pytest.fixture
def client(redis: Redis, settings: Settings) -> Client:
    return Client(redis, settings)


SNIPPET = """
from runner import Run, TaskRegistry

registry = TaskRegistry()


@registry.task()
def greet(run: Run, *, name: str, loud: bool = False) -> str:
    return name


greet.enqueue(name="ada", loud=True)
greet.with_options(token="t").enqueue(name="ada")
greet.enqueue(nmae="ada")
greet.enqueue(name=1)
"""


def test_a_handle_enqueues_with_its_options_through_its_client(
    client: Client, redis: Redis
) -> None:
    registry = load_registry(TEST_TASKS)
    import tests.sample_tasks as tasks

    with pytest.raises(InvalidArguments, match="no client to enqueue through"):
        tasks.greet.enqueue(name="ada")
    handle = tasks.greet.with_options(client=client, token="greet-by-handle", queue="cron")

    enqueued = handle.enqueue(name="ada")

    assert enqueued.token == "greet-by-handle"
    assert redis.llen("rq:queue:cron") == 1
    with pytest.raises(InvalidArguments, match="no argument 'nmae'"):
        handle.enqueue(name="ada", nmae="ada")  # type: ignore[call-arg]
    assert client.task(tasks.greet) is registry.get("greet")


def test_the_site_tasks_have_handles() -> None:
    import jobs

    assert jobs.import_posts.task is jobs.registry.get("import_posts")
    assert {jobs.poll_inbox.name, jobs.poll_feeds.name, jobs.prune.name} == {
        "poll_inbox", "poll_feeds", "prune"
    }  # fmt: skip


def test_mypy_rejects_a_wrong_keyword_on_a_task_handle(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if line.startswith(f"{snippet}:")]
    lines = [int(line.split(":")[1]) for line in errors if ": error:" in line]

    assert done.returncode == 1, done.stdout
    assert lines == [14, 15], done.stdout  # the two good calls pass
    assert 'Unexpected keyword argument "nmae" for "enqueue"' in done.stdout
    assert 'Argument "name" to "enqueue" of "TaskHandle" has incompatible type "int"' in done.stdout
