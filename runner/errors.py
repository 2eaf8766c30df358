"""The runner's exception tree: one base class, one line per class saying when it is raised."""

from __future__ import annotations


class RunnerError(Exception):
    """Base of every error the runner raises on purpose."""


class ConfigError(RunnerError):
    """A setting or URL is malformed; the message names the variable and the fix."""


class RedisUnavailable(RunnerError):
    """Redis cannot be reached; the message names the URL (password hidden) and what to do."""


class HistoryUnavailable(RunnerError):
    """The history database cannot be read; the message names its URL (password hidden)."""


class BadRequest(RunnerError):
    """A console request's parameter is malformed; the message names it and what it takes."""


class UnknownTask(RunnerError):
    """A task name is not registered with the runner."""


class UnknownRun(RunnerError):
    """A token, prefix or job id matches no run (or, for a prefix, several)."""


class InvalidArguments(RunnerError):
    """Task arguments are not JSON-able keyword arguments, or a token is malformed."""


class LeaseLost(RunnerError):
    """This attempt no longer holds its token's lease: another attempt took over or it expired."""


class AttemptStopped(RunnerError):
    """At a checkpoint or step boundary: the attempt must stop (run cancelled, worker stopping)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the attempt stops at this checkpoint ({reason})")
        self.reason = reason


class ClockStopped(RunnerError):
    """A stopping clock got a second signal, or passed its stop deadline: it stops at once."""


class TaskError(RunnerError):
    """Base for errors a task raises to steer the runner's retry decision."""


class TransientError(TaskError):
    """A fault that retrying can fix (a timeout, a refused connection); retried with backoff."""


class PermanentError(TaskError):
    """A fault that retrying cannot fix; the run fails at once with this message."""


class RunFailed(RunnerError):
    """Raised out of an attempt's RQ job when its run failed for good, so RQ files the job in
    its failed job registry with the run's error (a retried attempt raises nothing)."""


class NotReplicated(RunnerError, ConnectionError):
    """No replica confirmed a write in time, so a failover could lose it; retried as an outage."""
