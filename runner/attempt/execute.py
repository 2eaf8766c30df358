"""Executing one attempt: take the lease, run the task in its Run context, record the outcome."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from redis import Redis
from redis.client import Pipeline
from rq import get_current_job
from rq.job import Job
from structlog.contextvars import bound_contextvars

import runner.logs as logs
from runner.attempt.context import Run
from runner.attempt.effort import NO_EFFORT, Effort
from runner.attempt.lease import LeaseRenewer, StopReason
from runner.config import Settings
from runner.connections.redis import REDIS_DOWN, Durable
from runner.connections.replicas import Replicas
from runner.delivery.dequeue import delivery_key
from runner.errors import (
    AttemptStopped,
    LeaseLost,
    PermanentError,
    RunFailed,
    RunnerError,
    UnknownTask,
)
from runner.keys import Keys
from runner.logs import RunStream, capped, event_json, streaming_to
from runner.record import Enqueued, RunRecord, RunState
from runner.runs import tracing
from runner.runs.deploys import code_version
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.limits import limit_text
from runner.runs.transitions import Runs
from runner.tasks import Task, TaskRegistry

log = structlog.get_logger("runner.attempt.execute")
_executor: ContextVar[Executor | None] = ContextVar("runner_executor", default=None)


class AttemptOutcome(StrEnum):
    """How an attempt ended: the run state it wrote, or why it wrote none."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"  # it stopped at a checkpoint: an operator cancelled the run
    HANDED_OVER = "handed_over"  # it stopped at a checkpoint: its worker is stopping
    ABANDONED = "abandoned"  # it lost its lease: a newer attempt owns the run
    SKIPPED = "skipped"  # the body did not run: the delivery was stale or a duplicate


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, and a detail (why it was skipped or abandoned)."""

    state: AttemptOutcome
    detail: str = ""


class Executor:
    """Runs attempts inside a worker's horse; one per process, installed with `install()`."""

    def __init__(self, redis: Redis, settings: Settings, registry: TaskRegistry, worker: str):
        self.redis = redis
        self.settings = settings
        self.registry = registry
        self.worker = worker
        self.keys = Keys(settings.prefix)
        self.runs = Runs(redis, settings)
        self.leases = LeaseRenewer(self.runs)
        self.durable = Durable(settings.redis_outage_seconds)
        self.enqueuer = Enqueuer(redis, settings)
        self.replicas = Replicas(redis, self.keys, needed=settings.min_replicas)
        self.version = code_version(settings)
        self._claimed: _Claimed | None = None  # the claim the horse sent with RQ's records
        self._deferring = False  # the horse sends this attempt's success with RQ's records
        self._pending: _Release | None = None  # ... this one, until it does
        self._effort: Effort | None = None  # the running task's CPU and busy time meter

    def install(self) -> None:
        """Make this the executor that RQ jobs of this process call (and make sure logging
        reaches the runs' streams)."""
        if not structlog.is_configured():
            logs.configure()
        _executor.set(self)

    def hand_over_soon(self) -> None:
        """The worker is stopping: the running attempt (and any that begins now) stops at
        its next checkpoint or step boundary and hands its run over. Signal-handler safe."""
        self.leases.hand_over_all()

    def perform(
        self, token: str, attempt: int, job_id: str, delivery: str | None = None
    ) -> Outcome:
        """Execute attempt `attempt` of `token` as RQ job `job_id` (delivered through the
        intermediate list `delivery`); never raises for task faults."""
        staged, self._claimed = self._claimed, None
        self._deferring = staged is not None and staged.key == (token, attempt, job_id)
        if staged is not None and self._deferring:
            holder, (status, record, steps) = staged.holder, staged.reply
        else:
            holder = _holder(job_id)
            status, record, steps = self.durable(
                self.runs.begin, token, attempt, holder=holder, worker=self.worker,
                version=self.version, delivery=delivery, job_id=job_id,
            )  # fmt: skip
        if record is None:
            log.warning("attempt.skipped", token=token, reason="run record is gone (expired?)")
            return Outcome(AttemptOutcome.SKIPPED, "missing")
        stream = RunStream(
            self.redis, self.keys.log(token), maxlen=self.settings.log_max_events, buffered=True
        )
        context = {"token": token, "task": record.task, "attempt": record.attempt}
        with bound_contextvars(**context, job_id=job_id), streaming_to(stream):
            try:
                if status == "rerun":  # the failed run's job, requeued with RQ's own tools
                    log.info("run.rerun", via="rq requeue", from_scratch=False,
                             state=RunState.RUNNING)  # fmt: skip
                elif status == "limited":  # it waits for a slot (runner.runs.limits)
                    log.info("run.limited", state=RunState.QUEUED, limit=limit_text(record))
                    return Outcome(AttemptOutcome.SKIPPED, status)
                elif status != "ok":
                    log.info("attempt.skipped", reason=f"not runnable: {status}")
                    return Outcome(AttemptOutcome.SKIPPED, status)
                if not self._claim_replicated(token, holder):
                    log.warning("attempt.abandoned", reason="its claim was lost in a failover")
                    return Outcome(AttemptOutcome.ABANDONED, "claim lost in a failover")
                log.info(
                    "run.state", state=RunState.RUNNING, worker=self.worker, pid=os.getpid(),
                    code_version=self.version,
                )  # fmt: skip
                return self._traced(record, holder, steps, stream, job_id)
            finally:
                stream.flush()

    def stage_claim(self, pipeline: Pipeline, job: Job) -> Callable[[Any], None]:
        """Queue the claim of RQ job `job`'s attempt in `pipeline`, the horse's transaction of
        RQ's started records (one round trip for both); `perform` then uses its reply. Returns
        the function to hand that reply to (an exception: `perform` claims by itself)."""
        self.release_pending()  # one the horse did not send (its job went another way)
        token, attempt = str(job.kwargs["token"]), int(job.kwargs["attempt"])
        holder = _holder(job.id)
        self.runs.stage_begin(
            pipeline, token, attempt, holder=holder, worker=self.worker, version=self.version,
            delivery=delivery_key(job.origin), job_id=job.id,
        )  # fmt: skip
        self._claimed = None

        def claimed(reply: Any) -> None:
            if not isinstance(reply, Exception):
                key = (token, attempt, job.id)
                self._claimed = _Claimed(key, holder, self.runs.begin_reply(reply))

        return claimed

    def stage_release(self, pipeline: Pipeline) -> Callable[[Any], None] | None:
        """Queue the pending success of the attempt just performed in `pipeline`, the horse's
        transaction of RQ's success records (one round trip for both). Returns the function
        to hand its reply to (None: nothing pending), which logs the closing event, or the
        loss of the lease; an exception or None as the reply: the release is made directly."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        self.runs.stage_release(
            pipeline, pending.record, pending.holder, pending.fields,
            retention=self.settings.retention_seconds, version=self.version,
            events=pending.events,
        )  # fmt: skip
        return lambda reply: self._released(pending, reply)

    def release_pending(self) -> None:
        """Make a pending success's release directly (the horse could not send it)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._released(pending, None)

    def _released(self, pending: _Release, reply: Any) -> None:
        lost: str | None = None
        if reply is None or isinstance(reply, Exception):
            try:
                self.durable(
                    self.runs.release, pending.record, pending.holder, pending.fields,
                    events=pending.events, retention=self.settings.retention_seconds,
                    version=self.version,
                )  # fmt: skip
            except LeaseLost as exc:
                lost = str(exc)
        elif not reply:
            lost = f"attempt {pending.holder} lost the lease of {pending.record.token}"
        with bound_contextvars(**pending.context):
            if lost is not None:
                pending.stream.give_back(pending.events[:-1])
                with streaming_to(pending.stream):
                    log.warning("attempt.abandoned", reason=lost)  # flushes them all
                return
            with streaming_to(None):  # the stream has it already
                log.info(pending.event, state=pending.fields["state"], **pending.details)

    def _claim_replicated(self, token: str, holder: str) -> bool:
        """Wait until a replica has this attempt's claim, renewing its lease meanwhile (behind
        Sentinel: a claim a failover loses could let a second delivery of the job run beside
        this one); False when the claim is gone, lost in a failover that happened meanwhile."""
        while True:
            try:
                self.replicas.confirm()
                return True
            except REDIS_DOWN as exc:
                log.warning("redis.unreplicated", error=str(exc))
            if not self.durable(self.runs.renew, token, holder):
                return False

    def _traced(
        self, record: RunRecord, holder: str, steps: dict[str, Any], stream: RunStream, job_id: str
    ) -> Outcome:
        """`_run_task` in the attempt's span, when traced (runner.runs.tracing)."""
        attributes = {
            "runner.token": record.token, "runner.task": record.task,
            "runner.attempt": record.attempt, "runner.code_version": self.version,
            "runner.queue": record.queue, "runner.job_id": job_id, "runner.worker": self.worker,
        }  # fmt: skip
        with tracing.attempt_span(
            f"run {record.task}", parent=record.traceparent, parent_state=record.tracestate,
            previous=record.span, attributes=attributes,
        ):  # fmt: skip
            outcome = self._run_task(record, holder, steps, stream)
            tracing.annotate({"runner.outcome": str(outcome.state)})
            return outcome

    def _run_task(
        self, record: RunRecord, holder: str, steps: dict[str, Any], stream: RunStream
    ) -> Outcome:
        self._effort = None  # a handed-over or abandoned attempt released none
        try:
            task = self.registry.get(record.task)
        except UnknownTask as exc:  # enqueued by code this worker does not have (deploy skew)
            error = {"type": "UnknownTask", "message": str(exc), "attempt": record.attempt}
            tracing.failed(exc)
            fields: dict[str, Any] = {"state": RunState.FAILED, "error": error}
            return self._release(
                record, holder, {**fields, "finished_at": time.time()}, stream=stream,
                event="run.failed", reason="unknown task",
            )  # fmt: skip
        if record.cancel_requested:  # cancelled while its previous attempt was ending
            return self._cancelled(record, holder, stream)
        started = time.monotonic()
        self._effort = Effort.start()
        lease = self.leases.hold(record.token, holder, stream)
        try:
            run = Run(
                record=record,
                settings=self.settings,
                runs=self.runs,
                holder=holder,
                steps=steps,
                retry=task.retry,
                lease=lease,
                stream=stream,
                durable=self.durable,
                enqueue=self._enqueue,
            )
            try:
                result = task.fn(run, **record.args)
                run.ensure_lease()
            except LeaseLost as exc:
                log.warning("attempt.abandoned", reason=str(exc))
                return Outcome(AttemptOutcome.ABANDONED, str(exc))
            except AttemptStopped as exc:
                if exc.reason == StopReason.CANCEL:
                    return self._cancelled(record, holder, stream)
                return self._hand_over(record, holder, stream)
            except Exception as exc:
                return self._failed(record, holder, task, exc, step=run.failed_step, stream=stream)
            seconds = round(time.monotonic() - started, 6)
            fields = {"state": RunState.SUCCEEDED, "result": result, "finished_at": time.time()}
            return self._release(
                record, holder, {**fields, "error": None}, stream=stream,
                event="run.succeeded", seconds=seconds,
            )  # fmt: skip
        finally:
            self.leases.release(lease)

    def _cancelled(self, record: RunRecord, holder: str, stream: RunStream) -> Outcome:
        now = self.durable(self.runs.get, record.token)  # who asked: for the log, once
        fields = {"state": RunState.CANCELLED, "finished_at": time.time()}
        return self._release(
            record, holder, fields, stream=stream, event="run.cancelled",
            origin=now.cancel_requested if now else record.cancel_requested,
            reason="an operator cancelled it; its checkpoints are kept (`runner rerun`)",
        )  # fmt: skip

    def _hand_over(self, record: RunRecord, holder: str, stream: RunStream) -> Outcome:
        """Requeue the run at once as its next attempt, with this attempt's last events."""
        details: dict[str, Any] = {
            "next_attempt": record.attempt + 1, "by": "worker", "worker": self.worker
        }  # fmt: skip
        closing = event_json("attempt.handed_over", state=RunState.QUEUED, **details)
        events = [*stream.take(), closing]
        span = tracing.current_traceparent()  # the next attempt links to this one
        if not self.durable(self.runs.hand_over, record, holder=holder, events=events, span=span):
            stream.give_back(events[:-1])
            log.warning("attempt.abandoned", reason="lost the lease while handing over")
            return Outcome(AttemptOutcome.ABANDONED, "lease lost while handing over")
        with streaming_to(None):  # the stream has it already
            log.info("attempt.handed_over", state=RunState.QUEUED, **details)
        return Outcome(AttemptOutcome.HANDED_OVER)

    def _enqueue(self, task: str, args: dict[str, Any], token: str | None) -> Enqueued:
        return self.enqueuer.enqueue(Request(self.registry.get(task), args, token))

    def _failed(
        self, record: RunRecord, holder: str, task: Task, exc: Exception, *,
        step: str | None, stream: RunStream,
    ) -> Outcome:  # fmt: skip
        error = {
            "type": type(exc).__name__,
            "message": capped(str(exc) or type(exc).__name__),
            "step": step,
            "attempt": record.attempt,
        }
        permanent = isinstance(exc, PermanentError | RunnerError) and not _transient(exc, task)
        # A classified error's message says it all: `runner logs` hides its traceback
        expected = isinstance(exc, PermanentError) or _transient(exc, task)
        log.error("attempt.failed", error=error, expected=expected, exc_info=exc)
        tracing.failed(exc)
        if permanent or record.attempts_left <= 0:
            why = "permanent error" if permanent else f"{record.max_attempts} attempts used"
            fields = {"state": RunState.FAILED, "error": error, "finished_at": time.time()}
            return self._release(
                record, holder, fields, stream=stream, event="run.failed", reason=why
            )
        delay = task.retry.attempt_delay(record.attempt - record.attempt_base)
        retry_at = time.time() + delay
        fields = {"state": RunState.RETRYING, "attempt": record.attempt + 1, "error": error}
        return self._release(
            record, holder, {**fields, "retry_at": retry_at}, stream=stream, event="run.retrying",
            retry_at=retry_at,
            delay_s=round(delay, 3), next_attempt=record.attempt + 1,
        )  # fmt: skip

    def _release(
        self, record: RunRecord, holder: str, fields: dict[str, Any], *, stream: RunStream,
        event: str, retry_at: float | None = None, **details: Any,
    ) -> Outcome:  # fmt: skip
        """Write the attempt's outcome with its closing event in one call, then log it (a
        success the horse sends with RQ's records: when it does, `stage_release`)."""
        effort, self._effort = self._effort, None
        fields = {**fields, **(effort.fields() if effort else NO_EFFORT)}
        if span := tracing.current_traceparent():  # the attempt's: the next one links to it
            fields["span"] = span
        closing = event_json(event, state=fields["state"], **details)
        events = [*stream.take(), closing]
        if self._deferring and fields["state"] == RunState.SUCCEEDED:
            context = structlog.contextvars.get_contextvars()
            self._pending = _Release(record, holder, fields, events, event, details, stream,
                                     context)  # fmt: skip
            return Outcome(AttemptOutcome.SUCCEEDED)
        try:
            self.durable(
                self.runs.release, record, holder, fields, events=events,
                retention=self.settings.retention_seconds, version=self.version,
                retry_at=retry_at,
            )  # fmt: skip
        except LeaseLost as exc:
            stream.give_back(events[:-1])
            log.warning("attempt.abandoned", reason=str(exc))
            return Outcome(AttemptOutcome.ABANDONED, str(exc))
        with streaming_to(None):  # the stream has it already
            log.info(event, state=fields["state"], **details)
        error = fields.get("error") or {}
        detail = f"{error.get('type')}: {error.get('message')}" if error else ""
        return Outcome(AttemptOutcome(fields["state"]), detail)


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A claim sent ahead by the horse: for which (token, attempt, job id), as whom, the reply."""

    key: tuple[str, int, str]
    holder: str
    reply: tuple[str, RunRecord | None, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Release:
    """A success whose release the horse sends with RQ's records, and its closing log line."""

    record: RunRecord  # the run as its attempt began
    holder: str
    fields: dict[str, Any]
    events: list[str]
    event: str
    details: dict[str, Any]
    stream: RunStream
    context: dict[str, Any]


def _holder(job_id: str) -> str:
    """The lease holder of one execution of `job_id` (unique, should the job run twice)."""
    return f"{job_id}.{secrets.token_hex(6)}"


def _transient(exc: Exception, task: Task) -> bool:
    return isinstance(exc, task.retry.transient)


def perform_attempt(token: str, attempt: int) -> dict[str, str]:
    """The function every RQ job of the runner calls (by name, with JSON arguments).

    Reached only by the strings `runner.runs.rqjobs.PERFORMS`, which queued jobs carry: keep
    this name importable here (and the alias at runner/execute.py)."""
    executor = _executor.get()
    if executor is None:
        raise RuntimeError("runner jobs must be executed by `runner worker`, not a bare rq worker")
    job = get_current_job()
    if job is None:
        outcome = executor.perform(token, attempt, f"local-{os.getpid()}-{time.time_ns()}")
    else:
        outcome = executor.perform(token, attempt, job.id, delivery_key(job.origin))
    if outcome.state == AttemptOutcome.FAILED:  # for good: RQ's tools show it as failed
        raise RunFailed(f"run {token} failed: {outcome.detail}")
    return {"outcome": outcome.state, "detail": outcome.detail}
