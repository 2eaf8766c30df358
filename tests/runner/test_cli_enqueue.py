"""`runner enqueue` through the CLI: arguments checked against the task before anything is
queued, and `--wait` when no worker is alive."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result

from runner.runs import Runs


def test_a_missing_argument_is_a_usage_error_naming_the_parameters(
    invoke: Callable[..., Result], runs: Runs
) -> None:
    # When `greet` is enqueued without its required `name`
    result = invoke("enqueue", "greet")
    # Then it is refused in one line naming the argument and the task's parameters
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: task greet needs argument 'name'; its parameters: name, loud=False"
    ]
    # And nothing was queued
    assert runs.list() == []


def test_an_unknown_argument_is_a_usage_error_and_nothing_is_queued(
    invoke: Callable[..., Result], runs: Runs
) -> None:
    result = invoke("enqueue", "greet", "--arg", "name=ada", "--arg", "nosuch=1")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: task greet has no argument 'nosuch'; its parameters: name, loud=False"
    ]
    assert runs.list() == []
    # And a task taking **kwargs takes any name
    assert invoke("enqueue", "noop", "--arg", "anything=1").exit_code == 0


def test_run_enqueue_inside_a_task_raises_at_once(
    invoke: Callable[..., Result], runs: Runs, work: Callable[[], None]
) -> None:
    # Given a task that enqueues `greet` with an argument it does not take
    assert invoke("enqueue", "spawn", "--arg", "name=ada", "--arg", "nosuch=1").exit_code == 0
    # When it runs
    work()
    # Then its run.enqueue raised InvalidArguments at once, and no greet run exists
    (spawned,) = runs.list(task="spawn")
    assert spawned.state == "succeeded"
    assert spawned.result == (
        "refused: task greet has no argument 'nosuch'; its parameters: name, loud=False"
    )
    assert runs.list(task="greet") == []
