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
from runner.connections.lua import registered
from runner.errors import LeaseLost, UnknownRun
from runner.keys import Keys
from runner.record import RunRecord, RunState, encode, texts
from runner.runs.figures import FIGURE_TTLS, figure_keys
from runner.runs.limits import script_prefixes
from runner.runs.rqjobs import AttemptJobs, job_key
from runner.runs.scripts import (
    ADVANCE_RUN,
    BEGIN_ATTEMPT,
    CANCEL_RUN,
    FENCED_WRITE,
    RELEASE_ATTEMPT,
    RENEW_LEASE,
    RERUN_RUN,
)
from runner.tokens import job_id

ScriptCall = tuple[list[str], list[Any]]  # a Lua script's keys and arguments


class Hold(IntEnum):
    """What a fenced write or a lease renewal found (the scripts' replies)."""

    LOST = 0  # another attempt holds the lease, or it expired
    HELD = 1
    CANCEL = 2  # held, and an operator asked the run to stop (`runner cancel`)


class Runs:
    """Reads run records, performs the lease-fenced writes of one attempt's progress, and
    moves existing runs on to their next attempt."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.lease_ms = settings.lease_ms
        self.log_cap = settings.log_max_events
        self.jobs = AttemptJobs(redis, failure_ttl=settings.retention_seconds)
        self._begin = registered(redis, BEGIN_ATTEMPT)
        self._renew = registered(redis, RENEW_LEASE)
        self._write = registered(redis, FENCED_WRITE)
        self._release = registered(redis, RELEASE_ATTEMPT)
        self._advance = registered(redis, ADVANCE_RUN)
        self._cancel = registered(redis, CANCEL_RUN)
        self._rerun = registered(redis, RERUN_RUN)

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

    # Fenced writes: each checks that `holder` (the attempt's job id) still holds the lease.

    def begin(
        self, token: str, attempt: int, *, holder: str, worker: str, version: str,
        delivery: str | None = None, job_id: str | None = None,
    ) -> tuple[str, RunRecord | None, dict[str, Any]]:  # fmt: skip
        """Claim the token for `attempt` as `holder` and read its run and finished steps,
        atomically, and take RQ job `job_id` (default: `holder`) out of the intermediate
        list `delivery` (see runner.delivery.dequeue).
        The status is 'ok'; 'rerun' when `job_id` is the last job of a failed run, requeued
        by RQ's tools (the run is now at its next attempt, from its checkpoint); or why the
        body must not run ('stale', 'running', 'succeeded', 'leased', 'missing', ...): a
        duplicate or stale delivery never runs the body twice."""
        keys, args = self._begin_call(
            token, attempt, holder=holder, worker=worker, version=version, delivery=delivery,
            job_id=job_id,
        )  # fmt: skip
        return self.begin_reply(self._begin(keys=keys, args=args))

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
        pipeline.evalsha(self._begin.sha, len(keys), *keys, *args)

    def _begin_call(
        self, token: str, attempt: int, *, holder: str, worker: str, version: str,
        delivery: str | None, job_id: str | None,
    ) -> ScriptCall:  # fmt: skip
        now = time.time()
        keys = [self.keys.run(token), self.keys.lease(token)]
        keys += [self.keys.steps(token), delivery or self.keys.no_delivery]
        keys += [self._index(RunState.QUEUED), self._index(RunState.RUNNING)]
        keys += [self._index(RunState.FAILED), self.keys.log(token), job_key(job_id or holder)]
        args: list[Any] = [attempt, holder, self.lease_ms, now, worker, token, version]
        args += [job_id or holder, *script_prefixes(self.keys)[:2]]
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
        keys = [self.keys.lease(token), self.keys.run(token)]
        return Hold(int(self._renew(keys=keys, args=[holder, self.lease_ms])))

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
        run_args = encode({**fields, "updated_at": time.time()}) if fields else []
        step_args = [step[0], json.dumps(step[1], separators=(",", ":"))] if step else []
        keys = [self.keys.lease(token), self.keys.run(token), self.keys.steps(token)]
        keys.append(self.keys.log(token))
        args: list[Any] = [holder, self.log_cap, len(run_args) // 2, *run_args]
        args += [len(step_args) // 2, *step_args, *events]
        hold = Hold(int(self._write(keys=keys, args=args)))
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
        """End the attempt of `record` (the run as its attempt began): write its outcome
        (`fields['state']`) and events, drop the lease, count the outcome and duration in the
        figures of code `version`; a terminal run starts expiring. Raises LeaseLost (then
        nothing is written)."""
        keys, args = self._release_call(
            record, holder, fields, retention=retention, version=version, retry_at=retry_at,
            events=events,
        )  # fmt: skip
        if not self._release(keys=keys, args=args):
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
        pipeline.evalsha(self._release.sha, len(keys), *keys, *args)

    def _release_call(
        self, record: RunRecord, holder: str, fields: Mapping[str, Any], *, retention: int,
        version: str, retry_at: float | None, events: Sequence[str],
    ) -> ScriptCall:  # fmt: skip
        now, token, state = time.time(), record.token, RunState(fields["state"])
        keys = [
            self.keys.lease(token), self.keys.run(token),
            self.keys.delayed, self.keys.steps(token), self.keys.log(token),
            self._index(RunState.RUNNING), self._index(state),
            *figure_keys(self.keys, now),
        ]  # fmt: skip
        flat = encode({**fields, "updated_at": now})
        retry = "" if retry_at is None else retry_at
        args = [holder, token, retention, retry, self.log_cap, now, *FIGURE_TTLS]
        # what the figures count, known here: the script reads nothing back for them
        effort = [fields.get("cpu_seconds", ""), fields.get("busy_seconds", "")]
        started = record.started_at if record.started_at is not None else now
        waited = "" if record.waited is None else record.waited
        args += [state, record.task, record.queue, version, started, waited, *effort]
        args += [self.lease_ms, record.limit_key, *script_prefixes(self.keys)]
        args += [len(flat) // 2, *flat, *events]
        return keys, args

    # Moves of an existing run, outside any attempt (reaper, handover, cancel, rerun): each is
    # conditional on the run being as the caller saw it.

    def advance(
        self,
        token: str,
        *,
        seen_state: RunState,
        seen_attempt: int,
        run_fields: dict[str, Any],
        queue: str | None = None,
        timeout: int = 3600,
        lease_gone: bool = False,
        holder: str = "",
        events: Sequence[str] = (),
    ) -> bool:
        """Move a run on from (seen_state, seen_attempt), atomically: with `queue`, push attempt
        `run_fields['attempt']` as a new RQ job; without, just write the fields (the new state
        among them); append `events` to its log. With `holder` (a handover), only while that
        attempt holds the lease, which is dropped. The state indexes follow. False if the run
        changed meanwhile (someone else moved it first)."""
        now = time.time()
        flat = encode({**run_fields, "updated_at": now})
        to_state = RunState.QUEUED if queue is not None else RunState(run_fields["state"])
        keys = [
            self.keys.run(token), self.keys.lease(token), self.keys.delayed,
            self.keys.steps(token), self.keys.log(token),
            self._index(seen_state), self._index(to_state),
        ]  # fmt: skip
        job_fields: list[Any] = []
        if queue is not None:  # the keys of the new attempt's job, declared only then
            attempt = int(run_fields["attempt"])
            new_id = job_id(token, attempt)
            flat += ["job_id", new_id, "state", RunState.QUEUED]
            keys += [
                self.keys.job(new_id), job_key(new_id), self.jobs.queue(queue).key,
                Queue.redis_queues_keys,
            ]  # fmt: skip
            fields = self.jobs.fields(queue, token, attempt, timeout, datetime.now(UTC))
            job_fields = [v for pair in fields.items() for v in pair]
        args = [
            token, seen_state, seen_attempt, int(lease_gone),
            self.settings.retention_seconds, now, holder, self.log_cap,
            len(flat) // 2, *flat, len(job_fields) // 2, *job_fields, *events,
        ]  # fmt: skip
        return bool(self._advance(keys=keys, args=args))

    def hand_over(
        self, run: RunRecord, *, holder: str, events: Sequence[str] = (), span: str = ""
    ) -> bool:
        """Requeue a running run as its next attempt at once, while attempt `holder` still
        holds its lease (dropped here): a worker that stops hands its run over. The new
        attempt does not count toward the run's attempts; it links to `span`, the handing
        attempt's (runner.runs.tracing), when there is one. False if the lease moved on."""
        fields: dict[str, Any] = {
            "attempt": run.attempt + 1,
            "attempt_base": run.attempt_base + 1,
            "handovers": run.handovers + 1,
            "retry_at": None,
        }
        if span:
            fields["span"] = span
        return self.advance(
            run.token, seen_state=RunState.RUNNING, seen_attempt=run.attempt,
            run_fields=fields, queue=run.queue, timeout=run.timeout, holder=holder,
            events=events,
        )  # fmt: skip

    def cancel(self, run: RunRecord, *, origin: str, events: Sequence[str] = ()) -> bool:
        """Cancel a run as the caller saw it: a queued or retrying one ends `cancelled` now
        (its job leaves the queue), a running one is asked to stop at its next checkpoint.
        False if the run changed meanwhile."""
        keys = [
            self.keys.run(run.token), self.keys.delayed,
            self.keys.steps(run.token), self.keys.log(run.token),
            self.jobs.queue(run.queue).key, job_key(run.job_id),
            self._index(run.state), self._index(RunState.CANCELLED),
        ]  # fmt: skip
        args: list[Any] = [
            run.token, run.state, run.attempt, origin, time.time(),
            self.settings.retention_seconds, self.log_cap, run.job_id, *events,
        ]  # fmt: skip
        return bool(self._cancel(keys=keys, args=args))

    def rerun(
        self, run: RunRecord, *, from_scratch: bool = False, force: bool = False,
        dry_run: bool = False, events: Sequence[str] = (),
    ) -> tuple[str, str, int]:  # fmt: skip
        """Rerun a run as the caller saw it, by the rule of `RERUN_RULE` (runner.runs.scripts):
        queue its next attempt (from its checkpoint, or from scratch) and append `events` to
        its log, atomically. Returns (verdict, state, attempt): 'requeued' with the new
        state and attempt; 'would' for a dry run (nothing written); or why not, with the run as
        it is: 'missing', 'changed' (it moved on since `run` was read), 'refused' (the rule)."""
        attempt = run.attempt + 1
        new_id = job_id(run.token, attempt)
        fields = self.jobs.fields(run.queue, run.token, attempt, run.timeout, datetime.now(UTC))
        keys = [
            self.keys.run(run.token), self.keys.steps(run.token), self.keys.log(run.token),
            self._index(run.state), self._index(RunState.QUEUED), self.keys.job(new_id),
            job_key(new_id), self.jobs.queue(run.queue).key, Queue.redis_queues_keys,
        ]  # fmt: skip
        args: list[Any] = [
            run.token, run.state, run.attempt, int(force), int(from_scratch), int(dry_run),
            time.time(), self.settings.retention_seconds, self.log_cap, new_id,
            len(fields), *[v for pair in fields.items() for v in pair], *events,
        ]  # fmt: skip
        verdict, state, now_at = texts(self._rerun(keys=keys, args=args))
        return verdict, state, int(now_at or 0)

    def _index(self, state: RunState) -> str:
        return self.keys.by_state(state)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """HGETALL as Lua returns it (a flat list) to a mapping."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))  # a later pair wins
