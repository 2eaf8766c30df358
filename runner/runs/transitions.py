"""The run record in Redis: reading it, the lease that fences every write of an attempt's
progress, and every change of a run's state (see `RunState` for who moves it when)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline
from rq import Queue

from runner.config import Settings
from runner.connections.lua import LuaScript
from runner.errors import LeaseLost, UnknownRun
from runner.keys import Keys
from runner.record import RunRecord, RunState, encode, texts
from runner.runs.figures import MINUTE_TTL, minute_key
from runner.runs.limits import script_prefixes
from runner.runs.rqjobs import AttemptJobs, job_key
from runner.runs.scripts import (
    ASK_TO_CANCEL,
    BEGIN_ATTEMPT,
    CANCEL_QUEUED,
    FAIL_LOST,
    FENCED_WRITE,
    HAND_OVER,
    PROMOTE_RETRY,
    RELEASE_ATTEMPT,
    RENEW_LEASE,
    REQUEUE_LOST_LEASE,
    REQUEUE_UNDELIVERED,
    RERUN_RUN,
)
from runner.tokens import job_id

ScriptCall = tuple[dict[str, str], dict[str, Any]]  # a script's keys and arguments, by name


class Hold(IntEnum):
    """What a fenced write or a lease renewal found (the scripts' replies)."""

    LOST = 0  # another attempt holds the lease, or it expired
    HELD = 1
    CANCEL = 2  # held, and an operator asked the run to stop (`runner cancel`)


class Runs:
    """Reads run records, performs the lease-fenced writes of one attempt's progress, and
    makes each move of `RunState`'s table: a method per row, each one Lua script of
    runner.runs.scripts (named after it)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.lease_ms = settings.lease_ms
        self.log_cap = settings.log_max_events
        self.jobs = AttemptJobs(redis, failure_ttl=settings.retention_seconds)

    def get(self, token: str) -> RunRecord | None:
        raw = self.redis.hgetall(self.keys.run(token))
        return RunRecord.from_hash(raw) if raw else None  # type: ignore[arg-type]

    def steps(self, token: str) -> dict[str, Any]:
        """Finished steps in the order they finished: name -> {result, attempt, seconds, ...}."""
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.steps(token))  # type: ignore[assignment]
        steps = {k.decode(): json.loads(v) for k, v in raw.items()}
        return dict(sorted(steps.items(), key=lambda item: item[1].get("finished_at", 0)))

    def resolve(self, ref: str) -> str:
        """A token from a token, an RQ job id or an unambiguous token prefix; raises UnknownRun."""
        if self.redis.exists(self.keys.run(ref)):
            return ref
        by_job = self.redis.get(self.keys.job(ref))
        if by_job:
            return texts([by_job])[0]
        pattern = ref.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") + "*"
        found = texts([m for m, _ in self.redis.zscan_iter(self.keys.runs, pattern)])
        matches = sorted(m for m in set(found) if self.redis.exists(self.keys.run(m)))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownRun(f"no run matches {ref!r}; `runner runs` lists them")
        raise UnknownRun(f"{ref!r} matches {len(matches)} runs ({', '.join(matches[:3])}, ...)")

    def leaseless(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(tokens marked running, those of them whose lease is gone: their worker died)."""
        running = texts(self.redis.zrange(self.keys.running, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for token in running:
            pipe.exists(self.keys.lease(token))
        alive = pipe.execute()
        return tuple(running), tuple(t for t, up in zip(running, alive, strict=True) if not up)

    # An attempt's own moves and writes: each checks that `holder` (the attempt's job id and
    # a nonce) holds the lease, but `begin`, which takes it.

    def begin(
        self, token: str, attempt: int, *, holder: str, worker: str, version: str,
        delivery: str | None = None, job_id: str | None = None,
    ) -> tuple[str, RunRecord | None, dict[str, Any]]:  # fmt: skip
        """queued -> running: claim the token for `attempt` as `holder` and read its run and
        finished steps, atomically, and take RQ job `job_id` (default: `holder`) out of the
        intermediate list `delivery` (see runner.delivery.dequeue).
        The status is 'ok'; 'rerun' when `job_id` is the last job of a failed run, requeued
        by RQ's tools (the run is now at its next attempt, from its checkpoint); or why the
        body must not run ('stale', 'running', 'succeeded', 'leased', 'missing', ...): a
        duplicate or stale delivery never runs the body twice."""
        keys, args = self._begin_call(
            token, attempt, holder=holder, worker=worker, version=version, delivery=delivery,
            job_id=job_id,
        )  # fmt: skip
        return self.begin_reply(BEGIN_ATTEMPT(self.redis, keys=keys, args=args))

    def stage_begin(
        self, pipeline: Pipeline, token: str, attempt: int, *, holder: str, worker: str,
        version: str, delivery: str | None = None, job_id: str | None = None,
    ) -> None:  # fmt: skip
        """Queue `begin` in `pipeline` (a caller's transaction), by the script's sha alone:
        its reply (`begin_reply`) is a NoScriptError when Redis lost the script, and the
        caller then calls `begin`, which loads it."""
        keys, args = self._begin_call(
            token, attempt, holder=holder, worker=worker, version=version, delivery=delivery,
            job_id=job_id,
        )  # fmt: skip
        BEGIN_ATTEMPT.stage(pipeline, keys=keys, args=args)

    def _begin_call(
        self, token: str, attempt: int, *, holder: str, worker: str, version: str,
        delivery: str | None, job_id: str | None,
    ) -> ScriptCall:  # fmt: skip
        keys = {
            "run": self.keys.run(token), "lease": self.keys.lease(token),
            "steps": self.keys.steps(token), "delivery": delivery or self.keys.no_delivery,
            "queued_index": self._index(RunState.QUEUED),
            "running_index": self._index(RunState.RUNNING),
            "failed_index": self._index(RunState.FAILED), "log": self.keys.log(token),
            "job": job_key(job_id or holder),
        }  # fmt: skip
        limit_prefix, lease_prefix, _ = script_prefixes(self.keys)
        args = {
            "attempt": attempt, "holder": holder, "lease_ms": self.lease_ms, "now": time.time(),
            "worker": worker, "token": token, "version": version, "job_id": job_id or holder,
            "limit_prefix": limit_prefix, "lease_prefix": lease_prefix,
        }  # fmt: skip
        return keys, args

    @staticmethod
    def begin_reply(reply: Any) -> tuple[str, RunRecord | None, dict[str, Any]]:
        """`begin`'s script reply, decoded: (status, the run, its finished steps)."""
        status, run, steps = cast(list[Any], reply)
        record = RunRecord.from_hash(_pairs(run)) if run else None
        decoded = {k.decode(): json.loads(v) for k, v in _pairs(steps).items()}
        return texts([status])[0], record, decoded

    def renew(self, token: str, holder: str) -> Hold:
        """Extend the lease; LOST when it was lost (expired or taken over), CANCEL when it
        holds and an operator asked the run to stop."""
        keys = {"lease": self.keys.lease(token), "run": self.keys.run(token)}
        args = {"holder": holder, "lease_ms": self.lease_ms}
        return Hold(int(RENEW_LEASE(self.redis, keys=keys, args=args)))

    def write(
        self,
        token: str,
        holder: str,
        fields: Mapping[str, Any],
        *,
        step: tuple[str, Any] | None = None,
        events: Sequence[str] = (),
    ) -> Hold:
        """Write fields (and a finished step, and log events) if `holder` holds the lease;
        returns HELD, or CANCEL when an operator asked the run to stop. Raises LeaseLost
        (then nothing is written)."""
        # a step's result alone changes the steps, not the record (nor its updated_at)
        run_fields = encode({**fields, "updated_at": time.time()}) if fields else []
        step_pairs = [step[0], json.dumps(step[1], separators=(",", ":"))] if step else []
        keys = {
            "lease": self.keys.lease(token), "run": self.keys.run(token),
            "steps": self.keys.steps(token), "log": self.keys.log(token),
        }  # fmt: skip
        args = {"holder": holder, "cap": self.log_cap, "run_fields": run_fields,
                "step": step_pairs, "events": events}  # fmt: skip
        hold = Hold(int(FENCED_WRITE(self.redis, keys=keys, args=args)))
        if hold == Hold.LOST:
            raise LeaseLost(f"attempt {holder} lost the lease of {token}; another attempt owns it")
        return hold

    def release(
        self,
        record: RunRecord,
        holder: str,
        fields: Mapping[str, Any],
        *,
        retention: int,
        version: str,
        retry_at: float | None = None,
        events: Sequence[str] = (),
    ) -> None:
        """running -> succeeded, failed, retrying or cancelled: end the attempt of `record`
        (the run as its attempt began): write its outcome (`fields['state']`) and events,
        drop the lease, count the outcome and duration in the figures of code `version`; a
        terminal run starts expiring. Raises LeaseLost (then nothing is written)."""
        keys, args = self._release_call(
            record, holder, fields, retention=retention, version=version, retry_at=retry_at,
            events=events,
        )  # fmt: skip
        if not RELEASE_ATTEMPT(self.redis, keys=keys, args=args):
            raise LeaseLost(
                f"attempt {holder} lost the lease of {record.token}; its outcome is dropped"
            )

    def stage_release(
        self, pipeline: Pipeline, record: RunRecord, holder: str, fields: Mapping[str, Any], *,
        retention: int, version: str, events: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """Queue `release` in `pipeline` (a caller's transaction), by the script's sha alone:
        its reply is 1, 0 (the lease was lost: nothing written), or a NoScriptError when
        Redis lost the script (the caller then calls `release`)."""
        keys, args = self._release_call(
            record, holder, fields, retention=retention, version=version, retry_at=None,
            events=events,
        )  # fmt: skip
        RELEASE_ATTEMPT.stage(pipeline, keys=keys, args=args)

    def _release_call(
        self, record: RunRecord, holder: str, fields: Mapping[str, Any], *, retention: int,
        version: str, retry_at: float | None, events: Sequence[str],
    ) -> ScriptCall:  # fmt: skip
        now, token, state = time.time(), record.token, RunState(fields["state"])
        keys = {
            "lease": self.keys.lease(token), "run": self.keys.run(token),
            "delayed": self.keys.delayed, "steps": self.keys.steps(token),
            "log": self.keys.log(token), "running_index": self._index(RunState.RUNNING),
            "state_index": self._index(state), "fig_minute": minute_key(self.keys, now),
        }  # fmt: skip
        limit_prefix, lease_prefix, run_prefix = script_prefixes(self.keys)
        # what the figures count, known here: the script reads nothing back for them
        args = {
            "holder": holder, "token": token, "retention": retention,
            "retry_at": "" if retry_at is None else retry_at, "cap": self.log_cap, "now": now,
            "ttl_minute": MINUTE_TTL, "outcome": state, "task": record.task,
            "queue": record.queue, "version": version,
            "started": record.started_at if record.started_at is not None else now,
            "waited": "" if record.waited is None else record.waited,
            "cpu": fields.get("cpu_seconds", ""), "busy": fields.get("busy_seconds", ""),
            "lease_ms": self.lease_ms, "limit_key": record.limit_key,
            "limit_prefix": limit_prefix, "lease_prefix": lease_prefix,
            "run_prefix": run_prefix, "run_fields": encode({**fields, "updated_at": now}),
            "events": events,
        }  # fmt: skip
        return keys, args

    # Moves of an existing run outside its attempt (the reaper, a handover, an operator):
    # each is conditional on the run being as the caller saw it (`run`), so of two callers
    # that saw the same run one moves it; False (nothing written) for the other.

    def requeue_lost_lease(self, run: RunRecord, *, events: Sequence[str] = ()) -> bool:
        """running -> queued: the run's next attempt, its lease having expired (its worker
        died or hung); refused while any attempt holds the lease."""
        return self._requeue(REQUEUE_LOST_LEASE, run, attempt=run.attempt + 1, events=events)

    def requeue_undelivered(self, run: RunRecord, *, events: Sequence[str] = ()) -> bool:
        """queued -> queued: the run's next attempt, its job lost between a worker's dequeue
        and its begin, or gone from RQ's lists."""
        return self._requeue(REQUEUE_UNDELIVERED, run, attempt=run.attempt + 1, events=events)

    def promote_retry(self, run: RunRecord, *, events: Sequence[str] = ()) -> bool:
        """retrying -> queued (or scheduled -> queued): its due time came; the attempt the
        release (or the enqueue) set is pushed as a job."""
        return self._requeue(PROMOTE_RETRY, run, attempt=run.attempt, events=events)

    def hand_over(
        self, run: RunRecord, *, holder: str, events: Sequence[str] = (), span: str = ""
    ) -> bool:
        """running -> queued: requeue a running run as its next attempt at once, while attempt
        `holder` still holds its lease (dropped here): a worker that stops hands its run over.
        The new attempt does not count toward the run's attempts; it links to `span`, the
        handing attempt's (runner.runs.tracing), when there is one. False if the lease moved
        on."""
        fields: dict[str, Any] = {
            "attempt_base": run.attempt_base + 1, "handovers": run.handovers + 1
        }  # fmt: skip
        if span:
            fields["span"] = span
        return self._requeue(
            HAND_OVER, run, attempt=run.attempt + 1, fields=fields, holder=holder, events=events
        )

    def _requeue(
        self, script: LuaScript, run: RunRecord, *, attempt: int,
        fields: Mapping[str, Any] | None = None, holder: str = "", events: Sequence[str] = (),
    ) -> bool:  # fmt: skip
        keys, args = self._next_job(run, attempt)
        keys |= {"lease": self.keys.lease(run.token), "delayed": self.keys.delayed}
        args |= {
            "holder": holder,
            "run_fields": encode({"attempt": attempt, "retry_at": None, **(fields or {})}),
            "events": events,
        }
        return bool(script(self.redis, keys=keys, args=args))

    def _next_job(self, run: RunRecord, attempt: int) -> ScriptCall:
        """The keys and arguments (`NEXT_JOB_KEYS`, `NEXT_JOB_ARGS`) of a move of `run`, as
        seen, on to `attempt` as a new RQ job."""
        new_id = job_id(run.token, attempt)
        job = self.jobs.fields(run.queue, run.token, attempt, run.timeout, datetime.now(UTC))
        keys = {
            "run": self.keys.run(run.token), "steps": self.keys.steps(run.token),
            "log": self.keys.log(run.token), "from_index": self._index(run.state),
            "queued_index": self._index(RunState.QUEUED), "job_index": self.keys.job(new_id),
            "job": job_key(new_id), "queue": self.jobs.queue(run.queue).key,
            "queues": Queue.redis_queues_keys,
        }  # fmt: skip
        args = {
            "token": run.token, "seen_state": run.state, "seen_attempt": run.attempt,
            "now": time.time(), "retention": self.settings.retention_seconds,
            "cap": self.log_cap, "job_id": new_id, "job_fields": job,
        }  # fmt: skip
        return keys, args

    def fail_lost(
        self, run: RunRecord, *, error: Mapping[str, Any], if_failed: str, if_cancelled: str,
        holder: str = "",
    ) -> RunState | None:  # fmt: skip
        """running or queued -> failed (with `error`), or cancelled when a cancel was asked:
        the run's attempt died with no attempt left, or before it could stop. With `holder`,
        only while that dead attempt holds the lease (dropped here: its horse was killed);
        else only when no attempt holds it. The log gets `if_failed` or `if_cancelled` (JSON
        events) and the figures count the outcome. Returns the state it ended in, or None."""
        now = time.time()
        keys = {
            "run": self.keys.run(run.token), "lease": self.keys.lease(run.token),
            "steps": self.keys.steps(run.token), "log": self.keys.log(run.token),
            "from_index": self._index(run.state), "failed_index": self._index(RunState.FAILED),
            "cancelled_index": self._index(RunState.CANCELLED),
            "fig_minute": minute_key(self.keys, now),
        }  # fmt: skip
        args = {
            "token": run.token, "seen_state": run.state, "seen_attempt": run.attempt,
            "holder": holder, "error": json.dumps(error, separators=(",", ":")), "now": now,
            "retention": self.settings.retention_seconds, "cap": self.log_cap,
            "ttl_minute": MINUTE_TTL, "task": run.task, "queue": run.queue,
            "version": run.code_version, "if_failed": if_failed, "if_cancelled": if_cancelled,
        }  # fmt: skip
        ended = texts([FAIL_LOST(self.redis, keys=keys, args=args)])[0]
        return RunState(ended) if ended else None

    def cancel_queued(self, run: RunRecord, *, origin: str, events: Sequence[str] = ()) -> bool:
        """queued, retrying or scheduled -> cancelled: an operator cancels a run that has not
        begun; its job leaves the queue, the figures count it."""
        now = time.time()
        keys = {
            "run": self.keys.run(run.token), "delayed": self.keys.delayed,
            "steps": self.keys.steps(run.token), "log": self.keys.log(run.token),
            "queue": self.jobs.queue(run.queue).key, "job": job_key(run.job_id),
            "from_index": self._index(run.state),
            "cancelled_index": self._index(RunState.CANCELLED),
            "fig_minute": minute_key(self.keys, now),
        }  # fmt: skip
        args = {
            "token": run.token, "seen_state": run.state, "seen_attempt": run.attempt,
            "origin": origin, "now": now, "retention": self.settings.retention_seconds,
            "cap": self.log_cap, "job_id": run.job_id, "ttl_minute": MINUTE_TTL,
            "task": run.task, "queue_name": run.queue, "version": run.code_version,
            "events": events,
        }  # fmt: skip
        return bool(CANCEL_QUEUED(self.redis, keys=keys, args=args))

    def ask_to_cancel(self, run: RunRecord, *, origin: str, events: Sequence[str] = ()) -> bool:
        """running (-> cancelled by its release): ask the run's attempt to stop at its next
        checkpoint; it reads the request in the reply of its next write or lease renewal."""
        keys = {"run": self.keys.run(run.token), "log": self.keys.log(run.token)}
        args = {"seen_attempt": run.attempt, "origin": origin, "now": time.time(),
                "cap": self.log_cap, "events": events}  # fmt: skip
        return bool(ASK_TO_CANCEL(self.redis, keys=keys, args=args))

    def rerun(
        self, run: RunRecord, *, from_scratch: bool = False, force: bool = False,
        dry_run: bool = False, events: Sequence[str] = (),
    ) -> tuple[str, str, int]:  # fmt: skip
        """failed, cancelled (succeeded with `force`) -> queued: rerun a run as the caller saw
        it, by the rule of `RERUN_RULE` (runner.runs.scripts): queue its next attempt (from
        its checkpoint, or from scratch) and append `events` to its log, atomically. Returns
        (verdict, state, attempt): 'requeued' with the new state and attempt; 'would' for a
        dry run (nothing written); or why not, with the run as it is: 'missing', 'changed'
        (it moved on since `run` was read), 'refused' (the rule)."""
        keys, args = self._next_job(run, run.attempt + 1)
        args |= {"force": int(force), "from_scratch": int(from_scratch), "dry_run": int(dry_run),
                 "events": events}  # fmt: skip
        verdict, state, now_at = texts(RERUN_RUN(self.redis, keys=keys, args=args))
        return verdict, state, int(now_at or 0)

    def _index(self, state: RunState) -> str:
        return self.keys.by_state(state)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """HGETALL as Lua returns it (a flat list) to a mapping."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))  # a later pair wins
