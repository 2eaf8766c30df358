"""The task registry (runner.tasks): tasks by name, their arguments checked before a run is
queued, retry delays, and the site's module loaded or refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ConfigError, InvalidArguments, UnknownTask
from runner.tasks import RetryPolicy, Task, TaskRegistry, load_registry


def test_a_registry_always_has_noop_and_names_the_known_tasks_when_asked_for_another() -> None:
    registry = TaskRegistry()

    @registry.task(queue="imports")
    def fetch(run: Any, *, url: str) -> str:
        return url

    assert [t.name for t in registry] == ["fetch", "noop"]
    assert registry.queues == {"default", "imports"}
    with pytest.raises(UnknownTask, match="known tasks: fetch, noop"):
        registry.get("fetsh")


def test_arguments_are_checked_against_the_function_before_a_run_is_queued() -> None:
    def greet(run: Any, *, name: str, loud: bool = False) -> str:
        return name

    task = Task("greet", greet)

    task.check_args({"name": "ada"})
    with pytest.raises(InvalidArguments, match="needs argument 'name'; its parameters: name"):
        task.check_args({})
    with pytest.raises(InvalidArguments, match="has no argument 'nmae'"):
        task.check_args({"name": "ada", "nmae": "x"})
    Task("any", lambda run, **kwargs: None).check_args({"whatever": 1})


def test_attempt_delays_grow_exponentially_up_to_their_cap() -> None:
    policy = RetryPolicy(backoff_seconds=2.0, backoff_cap_seconds=10.0)

    assert [policy.attempt_delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]


def test_a_missing_module_or_one_without_a_registry_is_a_one_line_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "no_registry_here.py").write_text("registry = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ConfigError, match=r"task module 'nope_nope' \(RUNNER_TASKS\)"):
        load_registry("nope_nope")
    with pytest.raises(ConfigError, match="has no `registry = TaskRegistry\\(\\)`"):
        load_registry("no_registry_here")
    sys.modules.pop("no_registry_here", None)
    assert load_registry("tests.sample_tasks").get("greet").name == "greet"
