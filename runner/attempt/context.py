"""The Run context handed to a task: steps, checkpoints, progress and a bound logger.

`Run.step` and `Run.checkpoint` are where a task yields control: an attempt asked to stop
(its run cancelled, its worker stopping) raises `AttemptStopped` there, after its progress
is recorded, and the executor ends or hands over the run."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import structlog
import tenacity
from structlog.contextvars import bound_contextvars

from runner.attempt.lease import Lease, StopReason
from runner.attempt.pace import ProgressPace
from runner.config import Settings
from runner.connections.redis import Durable
from runner.errors import AttemptStopped, InvalidArguments, LeaseLost
from runner.logs import RunStream
from runner.record import Enqueued, RunRecord, RunState
from runner.runs import tracing
from runner.runs.transitions import Hold, Runs
from runner.tasks import RetryPolicy
from runner.tokens import canonical_json

T = TypeVar("T")
UNSET: Any = object()


class Run:
    """One attempt's view of its run. Every write is fenced by the attempt's lease."""

    def __init__(
        self,
        *,
        record: RunRecord,
        settings: Settings,
        runs: Runs,
        holder: str,
        steps: Mapping[str, Any],
        retry: RetryPolicy,
        lease: Lease,
        stream: RunStream,
        durable: Durable,
        enqueue: Callable[[str, dict[str, Any], str | None], Enqueued],
    ) -> None:
        self.record = record
        self.settings = settings  # the deployment's settings: home, database URL, ...
        self._runs = runs
        self._holder = holder
        self._steps = dict(steps)
        self._retry = retry
        self._lease = lease
        self._stream = stream
        self._durable = durable
        self._enqueue = enqueue
        self._cursor = record.cursor
        self._counters = dict(record.counters or {})
        self._total = record.total
        self.pace = ProgressPace(self._counters)
        self.log = structlog.get_logger("runner.task")
        self.failed_step: str | None = None  # the step an escaping exception came from

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def attempt(self) -> int:
        return self.record.attempt

    @property
    def generation(self) -> int:
        """Bumped by `rerun --from-scratch`: state a task keeps elsewhere is reset when it grows."""
        return self.record.generation

    @property
    def cursor(self) -> Any:
        """Where the last checkpoint left off (None on a fresh run)."""
        return self._cursor

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    @property
    def stop_asked(self) -> bool:
        """Whether this attempt was asked to stop (a handover, or a cancel the lease brought
        back): the next `checkpoint` or `step` stops it. Known locally, without Redis, so a
        task that checkpoints only now and then can checkpoint at once."""
        return self._lease.stop is not None

    def step(self, name: str, fn: Callable[[], T], *, retry: RetryPolicy | None = None) -> T:
        """Run `fn` once per run: a step finished in an earlier attempt returns its recorded
        result without running. Transient faults are retried with backoff (tenacity)."""
        with bound_contextvars(step=name):
            if name in self._steps:
                done = self._steps[name]
                self.log.info("step.skipped", reason="finished", in_attempt=done.get("attempt"))
                return done["result"]  # type: ignore[no-any-return]
            self.ensure_lease()
            self._stop_if_asked()
            self.log.info("step.started")
            started = time.monotonic()
            self.failed_step = name
            with tracing.step_span(name, passing=(AttemptStopped, LeaseLost)):
                result = self._call_with_retries(fn, retry or self._retry)
            self.failed_step = None
            seconds = round(time.monotonic() - started, 6)
            self._check_json(name, result)
            record = {
                "result": result,
                "attempt": self.attempt,
                "seconds": seconds,
                "finished_at": time.time(),
            }
            self._fenced({}, step=(name, record))
            self._steps[name] = record
            self.log.info("step.finished", seconds=seconds)
            return result

    def checkpoint(
        self, *, cursor: Any = UNSET, counters: Mapping[str, int] | None = None,
        total: int | None = None,
    ) -> None:  # fmt: skip
        """Record progress inside a long step (fenced by the lease; raises LeaseLost when it
        was lost); a later attempt of the run reads `cursor` back as `run.cursor`.

        Which cursor to resume from: this one, in Redis, when the work it covers is safe to
        redo (idempotent effects: a crash between an effect and its checkpoint only repeats
        the work since the last checkpoint). When effects and position must agree exactly,
        keep the position in the task's own store, committed in the same transaction as the
        effects, and resume from there: the import does so with `imports.position`, so its
        counters are exact after any crash; the cursor it passes here is for `runner show`
        and the progress bar only.

        Every so often (`self.pace`) it also logs `step.progress`: position, counters, rate.
        """
        fields: dict[str, Any] = {}
        if cursor is not UNSET:
            fields["cursor"] = cursor
        if counters is not None:
            fields["counters"] = dict(counters)
        if total is not None:
            fields["total"] = total
        self._fenced(fields)
        if cursor is not UNSET:
            self._cursor = cursor
        if counters is not None:
            self._counters = dict(counters)
        if total is not None:
            self._total = total
        self.log.debug("checkpoint", cursor=self._cursor, counters=self._counters)
        rate = self.pace.due(self._counters)
        if rate is not None:
            known = {"total": self._total} if self._total is not None else {}
            self.log.info("step.progress", position=self._cursor, counters=self._counters,
                          **known, **rate)  # fmt: skip
        self._stop_if_asked()

    def enqueue(self, task: str, args: dict[str, Any], *, token: str | None = None) -> Enqueued:
        """Enqueue follow-up work; as everywhere, a token already queued or done is not redone."""
        return self._durable(self._enqueue, task, args, token)

    def state_of(self, token: str) -> RunState | None:
        """The state of another run (None if it does not exist or has expired)."""
        record = self._durable(self._runs.get, token)
        return record.state if record else None

    def ensure_lease(self) -> None:
        """Raise LeaseLost if the renewer saw the lease move on: stop before doing more work."""
        if self._lease.lost:
            raise LeaseLost(f"attempt {self._holder} lost the lease of {self.token}")

    def _stop_if_asked(self) -> None:
        """Raise AttemptStopped when the attempt was asked to stop (checked where the task's
        progress is recorded, so the next attempt continues from right here)."""
        if self._lease.stop is not None:
            raise AttemptStopped(self._lease.stop)

    def _fenced(self, fields: Mapping[str, Any], *, step: tuple[str, Any] | None = None) -> None:
        self.ensure_lease()
        events = self._stream.take()
        try:
            hold = self._durable(
                self._runs.write, self.token, self._holder, fields, step=step, events=events
            )
        except LeaseLost:
            self._stream.give_back(events)  # logs are not progress: keep them
            raise
        if hold == Hold.CANCEL:  # the cancel request rode back on the write's reply
            self._lease.must_stop(StopReason.CANCEL)

    def _call_with_retries(self, fn: Callable[[], T], policy: RetryPolicy) -> T:
        return _retrying(policy)(fn)

    @staticmethod
    def _check_json(step: str, result: Any) -> None:
        try:
            canonical_json(result)
        except InvalidArguments:
            raise InvalidArguments(f"step {step!r} returned a value that is not JSON") from None


@functools.lru_cache(maxsize=128)
def _retrying(policy: RetryPolicy) -> tenacity.Retrying:
    """One tenacity policy object per retry policy (building one per step call is costly)."""

    def log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        structlog.get_logger("runner.task").warning(
            "step.retry", try_number=state.attempt_number, wait_s=round(wait, 3), error=repr(exc)
        )

    return tenacity.Retrying(
        stop=policy.step_stop,
        wait=policy.step_wait,
        retry=tenacity.retry_if_exception_type(policy.transient),
        before_sleep=log_retry,
        reraise=True,
    )
