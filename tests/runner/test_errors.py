"""The runner's errors (runner.errors): one base to catch, the retry decision's two kinds, and
an unreplicated write retried as an outage."""

from __future__ import annotations

import inspect

from runner import errors
from runner.errors import (
    AttemptStopped,
    NotReplicated,
    PermanentError,
    RunnerError,
    TaskError,
    TransientError,
)


def test_every_error_of_the_runner_is_a_runner_error() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)]
    ours = [c for c in classes if c.__module__ == errors.__name__]

    assert len(ours) >= 10
    assert all(issubclass(c, RunnerError) for c in ours)


def test_a_task_steers_its_retry_with_transient_or_permanent_errors() -> None:
    assert issubclass(TransientError, TaskError) and issubclass(PermanentError, TaskError)
    assert not issubclass(TransientError, PermanentError)


def test_an_unreplicated_write_is_a_connection_error_so_it_is_retried_as_an_outage() -> None:
    assert issubclass(NotReplicated, ConnectionError)


def test_a_stopped_attempt_says_why() -> None:
    stopped = AttemptStopped("cancelled by cli")

    assert stopped.reason == "cancelled by cli"
    assert "cancelled by cli" in str(stopped)
