"""The reaper: inside every worker, it requeues runs whose lease expired (their worker died),
whose job was taken off its queue by a worker that died before starting it, or whose RQ job
is gone (deleted or emptied from outside), pushes retries and scheduled runs that came due
(the scheduled set), wakes runs waiting for a slot of their limit (runner.runs.limits), and
removes dead
workers' registrations from RQ's (runner.worker.liveness). One reaper acts at a time (a lock with a
TTL), and every move is conditional on the run being as the reaper saw it, so nothing is
requeued twice."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

from runner.config import Settings
from runner.connections.lua import registered
from runner.delivery.dequeue import Limbo, delivery_key
from runner.keys import Keys
from runner.logs import event_json, into_run_log, streaming_to
from runner.record import TERMINAL, RunRecord, RunState, texts
from runner.runs import backlog
from runner.runs.figures import Figures
from runner.runs.limits import Limits
from runner.runs.rqjobs import AttemptJobs
from runner.runs.transitions import Runs
from runner.worker.liveness import Liveness

log = structlog.get_logger("runner.worker.reaper")
LOST_BATCH = 200  # queued runs looked at per pass, oldest first

_UNLOCK_REAPER = """
local lock = KEYS[1]          -- the reaper lock
local identity = ARGV[1]      -- this reaper's identity, the lock's value while it holds it
if redis.call('GET', lock) == identity then return redis.call('DEL', lock) end
return 0
"""


class Reaper:
    """Finds runs that need their next attempt and gives it to them."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.runs = Runs(redis, settings)
        self.limbo = Limbo(redis, settings)
        self.limits = Limits(redis, settings)
        self.liveness = Liveness(redis, settings)
        self.figures = Figures(redis, settings)
        self.jobs = AttemptJobs(redis, failure_ttl=settings.retention_seconds)
        self.identity = uuid.uuid4().hex
        self._unlock = registered(redis, _UNLOCK_REAPER)
        self._sampled_minute = -1  # the minute this reaper last sampled the queues' depths

    def sweep(self) -> int:
        """One pass under the reaper lock; returns how many runs were moved on."""
        lock_ms = int(max(self.settings.reaper_interval * 4, 5) * 1000)
        if not self.redis.set(self.keys.reaper_lock, self.identity, nx=True, px=lock_ms):
            return 0
        try:
            self.liveness.bury_dead()
            moved = self.requeue_expired() + self.requeue_undelivered() + self.promote_due()
            moved += self.requeue_lost()
            self.limits.wake_all(time.time())  # slots freed by expired leases, moved windows
            self.figures.roll_up()  # closed minutes into hours, totals, versions: off any job
            self.sample_depths()
            self.trim_indexes()
            return moved
        finally:
            self._unlock(keys=[self.keys.reaper_lock], args=[self.identity])

    def sample_depths(self, now: float | None = None) -> None:
        """Each queue's depth, once a minute (runner.runs.backlog): what the drain forecast
        reads."""
        minute = int((time.time() if now is None else now) // 60)
        if minute != self._sampled_minute:
            backlog.sample(self.redis, self.settings)
            self._sampled_minute = minute

    def trim_indexes(self) -> None:
        """Finished runs past the retention leave the per-state indexes (their records expire
        by themselves; the release that indexed them does not trim, to stay short)."""
        horizon = time.time() - self.settings.retention_seconds
        pipe = self.redis.pipeline(transaction=False)
        for state in TERMINAL:
            pipe.zremrangebyscore(self.keys.by_state(state), "-inf", horizon)
        pipe.execute()

    def requeue_expired(self) -> int:
        """Runs marked running whose lease is gone: their attempt died; start the next one."""
        _, expired = self.runs.leaseless()
        moved = 0
        for token in expired:
            record = self.runs.get(token)
            if record is None:
                self.redis.zrem(self.keys.running, token)
            elif record.state == RunState.RUNNING:
                moved += self._next_attempt(record, reason="lease expired")
        return moved

    def requeue_undelivered(self) -> int:
        """Runs whose job a worker took off the queue but never began, for a lease period:
        that worker died in between; start the next attempt (the old job id, should its
        worker wake up after all, is stale and does not run)."""
        moved = 0
        for name, job_id in self.limbo.overdue(self.settings.lease_seconds):
            token = self.redis.get(self.keys.job(job_id))
            record = self.runs.get(texts([token])[0]) if token else None
            if record is None and self.redis.exists(Job.key_for(job_id)):
                continue  # not a job of this runner's: leave it to whoever owns it
            moved_on = 0
            if record is not None and record.state == RunState.QUEUED and record.job_id == job_id:
                moved_on = self._next_attempt(record, reason="its worker died before starting it")
            moved += moved_on
            self.limbo.release(name, job_id, drop_job=bool(moved_on))
        return moved

    def requeue_lost(self) -> int:
        """Runs queued for over a lease whose RQ job is in no queue and no intermediate list
        (deleted with rq-dashboard, `rq empty`...): still wanted, so give them the next
        attempt. Reads the oldest LOST_BATCH of the queued runs' index (never a scan of all
        runs) in two round trips."""
        index = self.keys.by_state(RunState.QUEUED)
        since = time.time() - self.settings.lease_seconds
        tokens = texts(self.redis.zrangebyscore(index, "-inf", since, start=0, num=LOST_BATCH))
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.hgetall(self.keys.run(token))
        records = [RunRecord.from_hash(raw) if raw else None for raw in pipe.execute()]
        if gone := [t for t, r in zip(tokens, records, strict=True) if r is None]:
            self.redis.zrem(index, *gone)
        queued = [r for r in records if r is not None and r.state == RunState.QUEUED]
        waiting = self.limits.parked(queued)  # in its limit's wait set: not lost
        queued = [r for r in queued if r.token not in waiting]
        # One MULTI: a job moving from its queue to the intermediate list is seen in one.
        with self.redis.pipeline(transaction=True) as multi:
            for record in queued:
                multi.exists(Job.key_for(record.job_id))
                multi.lpos(self.jobs.queue(record.queue).key, record.job_id)
                multi.lpos(delivery_key(record.queue), record.job_id)
            seen = multi.execute()
        moved = 0
        for i, record in enumerate(queued):
            exists, in_queue, in_delivery = seen[3 * i : 3 * i + 3]
            if not exists or (in_queue is None and in_delivery is None):
                why = "its RQ job is gone (deleted or emptied)"
                moved += self._next_attempt(record, reason=why)
        return moved

    def promote_due(self) -> int:
        """Runs in the scheduled set whose time has come: a retry's next attempt, or a
        scheduled run's first one (`at=`, `after=`), is pushed to its queue. The set lives
        in Redis, so a run waits there through the death of every worker, and the next
        reaper to come up pushes it once (the move is conditional on the run's state)."""
        due = self.redis.zrangebyscore(self.keys.delayed, "-inf", time.time())
        moved = 0
        for token in texts(due):
            record = self.runs.get(token)
            if record is None or record.state not in (RunState.RETRYING, RunState.SCHEDULED):
                self.redis.zrem(self.keys.delayed, token)
                continue
            if self.runs.promote_retry(record):
                why = "retry due" if record.state == RunState.RETRYING else "scheduled time due"
                self._log(record, "run.requeued", reason=why, next_attempt=record.attempt,
                          state=RunState.QUEUED)  # fmt: skip
                moved += 1
        return moved

    def _next_attempt(self, record: RunRecord, *, reason: str) -> int:
        """Its attempt died (running) or never began (queued): the next attempt, or the run
        ends (failed with no attempt left; cancelled when a cancel was asked). 1 if moved."""
        if record.cancel_requested or record.attempts_left <= 0:
            return self._end_lost(record, reason)
        if record.state == RunState.RUNNING:
            moved = self.runs.requeue_lost_lease(record)
        else:
            moved = self.runs.requeue_undelivered(record)
        if moved:
            self._log(record, "run.requeued", reason=reason, next_attempt=record.attempt + 1,
                      state=RunState.QUEUED)  # fmt: skip
        return int(moved)

    def _end_lost(self, record: RunRecord, reason: str) -> int:
        message = f"the worker died or hung {record.max_attempts} times ({reason})"
        error = {"type": "WorkerLost", "message": message, "step": None, "attempt": record.attempt}
        about: dict[str, Any] = {"token": record.token, "task": record.task,
                                 "attempt": record.attempt}  # fmt: skip
        events: dict[RunState, tuple[str, dict[str, Any]]] = {
            RunState.FAILED: ("run.failed", {"reason": message, "state": RunState.FAILED}),
            RunState.CANCELLED: ("run.cancelled", {"reason": reason, "state": RunState.CANCELLED}),
        }
        closing = {state: event_json(e, **about, **more) for state, (e, more) in events.items()}
        ended = self.runs.fail_lost(
            record, error=error, if_failed=closing[RunState.FAILED],
            if_cancelled=closing[RunState.CANCELLED],
        )  # fmt: skip
        if ended is None:
            return 0
        event, more = events[ended]
        with streaming_to(None):  # the run's stream has it already
            log.info(event, **about, **more)
        if ended == RunState.FAILED:
            self._file_failed(record, f"WorkerLost: {message}")
        return 1

    def _file_failed(self, record: RunRecord, text: str) -> None:
        """Leave the run's last job in RQ's failed job registry, as RQ itself would."""
        try:
            job = Job.fetch(record.job_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return
        with self.redis.pipeline() as pipe:
            record_job_failure(job, f"runner.errors.RunFailed: run {record.token} failed: {text}",
                               pipe)  # fmt: skip
            pipe.execute()

    def _log(self, record: RunRecord, event: str, **details: object) -> None:
        key = self.keys.log(record.token)
        with into_run_log(self.redis, key, maxlen=self.settings.log_max_events):
            log.info(event, token=record.token, task=record.task, attempt=record.attempt, **details)
