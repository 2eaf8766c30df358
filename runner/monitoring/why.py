"""Why is this run where it is? One sentence with its cause and its evidence, for any run
(`runner why RUN`, the console's run page), read from what Redis holds: the run's record, its
job's place in its queue, the live workers, RQ's suspension, the run's lease, the figures.

The causes, first match wins: scheduled (due when), retrying (the failed attempt's error, the
next attempt's time), queued with workers suspended (`rq suspend`, since when the runner first
saw it), waiting for a slot of its limit (the key, its numbers, the runs holding it), queued
with no live worker on its queue, queued behind N jobs (the queue's horses and how many are
busy), taken by a worker (its job between dequeue and claim), running (where, since when; its
worker stopped beating: when the reaper takes it back), and ended (what to do; when it moves
to history); and a run not in Redis yet whose request waits in the outbox (`in_outbox`:
committed, not relayed yet, or kept by the relay with an error). A queued run gets an
estimate of when it starts at the last hour's rate of starts on its queue, or none when fewer
than `MIN_STARTS` started there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from redis import Redis
from rq import Queue
from rq.suspension import is_suspended
from rq.worker import WorkerStatus

from runner.client.outbox import rows_table
from runner.config import Settings
from runner.delivery.dequeue import delivery_key
from runner.keys import Keys
from runner.monitoring.durations import ago, iso_time, rounded_duration
from runner.monitoring.forecast import starts_per_minute
from runner.record import RunRecord, RunState
from runner.runs.figures import HOUR, Figures
from runner.runs.limits import Held, Limits, limit_text
from runner.runs.summary import error_text
from runner.worker.liveness import Liveness, WorkerBeat
from runner.worker.relay import relay_engine

MIN_STARTS = 10  # fewer starts than this on a queue in the last hour: no estimate
ERROR_CHARS = 200  # of the error's first line, in the sentence (`runner show` has it whole)


@dataclass(frozen=True, slots=True)
class Why:
    """A run's cause (a short name), the sentence that says it, and (for a waiting run) the
    estimated seconds until it starts, when the rate allows one."""

    cause: str
    sentence: str
    starts_in: float | None = None


def why(
    redis: Redis | None, settings: Settings, run: RunRecord, *, moved: bool = False,
    now: float | None = None,
) -> Why:  # fmt: skip
    """Why `run` is where it is (`moved`: read from history, it has left Redis; an ended run
    needs no Redis, so `redis` may be None for it)."""
    now = time.time() if now is None else now
    if run.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED) or redis is None:
        return _ended(settings, run, moved=moved, now=now)
    if run.state == RunState.SCHEDULED:
        return _due(
            RunState.SCHEDULED.value, f"scheduled for {iso_time(run.due_at)}", run.due_at, now
        )
    if run.state == RunState.RETRYING:
        failed = (run.error or {}).get("attempt") or run.attempt
        total = run.attempt_base + run.max_attempts
        said = f"retrying: attempt {failed} of {total} failed ({_error(run)})"
        return _due(RunState.RETRYING.value, f"{said}; the next is due at {iso_time(run.retry_at)}",
                    run.retry_at, now)  # fmt: skip
    if run.state == RunState.RUNNING:
        return _running(redis, settings, run, now)
    return _queued(redis, settings, run, now)


def _due(cause: str, said: str, at: float | None, now: float) -> Why:
    if at is None or at > now:
        return Why(cause, f"{said} ({ago(at, now=now)})", None if at is None else at - now)
    return Why(cause, f"{said}, {ago(at, now=now)}: due, the next reaper sweep of any live"
                      " worker pushes it to its queue (is a worker alive?)", 0.0)  # fmt: skip


def _queued(redis: Redis, settings: Settings, run: RunRecord, now: float) -> Why:
    keys = Keys(settings.prefix)
    serving = [w for w in Liveness(redis, settings).alive(now) if run.queue in w.queues]
    if is_suspended(redis):
        seen = redis.get(keys.suspended_since)
        since = f" since {iso_time(float(seen))}" if seen else ""
        return Why("suspended", f"queued: workers are suspended (`rq suspend`){since};"
                                " `rq resume` lets them take jobs again")  # fmt: skip
    queue_key = Queue.redis_queue_namespace_prefix + run.queue
    found = redis.lpos(queue_key, run.job_id) if run.job_id else None
    if not isinstance(found, int):
        held = Limits(redis, settings).held(run, now)
        if held is not None:
            return Why("limited", _held(run, held))
        lease = rounded_duration(settings.lease_seconds)
        if run.job_id and redis.lpos(delivery_key(run.queue), run.job_id) is not None:
            if serving:
                return Why("taken", f"taken from {run.queue!r} by a worker: it begins next", 0.0)
            return Why("taken", f"taken from {run.queue!r} by a worker that is not alive any"
                                " more: the next live worker's reaper gives it its next"
                                f" attempt once it has waited a lease ({lease})")  # fmt: skip
        return Why("lost", f"queued, but its job is in no queue: the reaper gives it its next"
                           f" attempt within a lease ({lease})")  # fmt: skip
    if not serving:
        return Why("no-worker", f"queued on {run.queue!r}, which no live worker serves: start"
                                f" one with `runner worker --queue {run.queue}`")  # fmt: skip
    ahead = found
    rate = _starts_per_second(redis, settings, run.queue, now)
    horses = _horses(serving)
    behind = f"queued behind {ahead} job{'s' * (ahead != 1)} on {run.queue!r}; {horses}"
    if rate is None:
        return Why(
            RunState.QUEUED.value, f"{behind}; too few starts in the last hour for an estimate"
        )
    starts_in = ahead / rate
    estimate = f"at the last hour's rate ({rate * 60:.1f}/min) it starts in ~"
    return Why(
        RunState.QUEUED.value, f"{behind}; {estimate}{rounded_duration(starts_in)}", starts_in
    )


def _held(run: RunRecord, held: Held) -> str:
    """A run waiting for a slot of its limit: the key, its numbers, who holds it."""
    over = []
    if held.concurrency and len(held.holders) >= held.concurrency:
        shown = ", ".join(held.holders[:3]) + (", ..." if len(held.holders) > 3 else "")
        over.append(f"held by {shown}")
    if held.rate and held.recent_starts >= held.rate:
        over.append(f"{held.recent_starts} started in the last {held.per:g}s")
    where = f"{_ordinal(held.position)} of {held.waiting} waiting"
    state = "; ".join(over) or "a slot just freed: it is woken next"
    return (
        f"waiting for limit {limit_text(run)}: {state}; {where}; it goes back to its queue when"
        " a slot frees (a holder ends, or its lease expires)"
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _horses(serving: list[WorkerBeat]) -> str:
    busy = sum(1 for w in serving if w.state == WorkerStatus.BUSY)
    workers = len({w.supervisor for w in serving})
    horses = f"{len(serving)} horse{'s' * (len(serving) != 1)}"
    return (
        f"{horses} of {workers} worker{'s' * (workers != 1)} serve{'s' * (len(serving) == 1)}"
        f" it, {busy} busy"
    )


def _starts_per_second(redis: Redis, settings: Settings, queue: str, now: float) -> float | None:
    """Attempts started on `queue` per second over the last hour; None below MIN_STARTS."""
    windows = Figures(redis, settings).windows(since=now - HOUR, until=now)
    started = sum(starts_per_minute(windows, queue).values())
    return started / HOUR if started >= MIN_STARTS else None


def _running(redis: Redis, settings: Settings, run: RunRecord, now: float) -> Why:
    said = f"running attempt {run.attempt} on {run.worker or '?'} since {iso_time(run.started_at)}"
    left = redis.pttl(Keys(settings.prefix).lease(run.token))
    if left is not None and left > 0:
        return Why(
            RunState.RUNNING.value, f"{said}; its lease is renewed (expires in {left / 1000:.1f} s)"
        )
    return Why("worker-lost", f"{said}; its worker stopped beating (its lease expired): the"
                              " next reaper sweep of a live worker gives it its next attempt,"
                              " from its last checkpoint")  # fmt: skip


def _ended(settings: Settings, run: RunRecord, *, moved: bool, now: float) -> Why:
    at = f"{run.state.value} at {iso_time(run.finished_at)}"
    if run.state == RunState.SUCCEEDED:
        said = f"{at} after {run.attempt} attempt{'s' * (run.attempt != 1)}"
    elif run.state == RunState.FAILED:
        said = (f"{at}: {_error(run)}; `runner rerun {run.token}` runs it again from its"
                " last checkpoint")  # fmt: skip
    else:
        said = f"{at}; `runner rerun {run.token}` runs it again from its last checkpoint"
    if moved:
        return Why(run.state.value, f"{said} (in history)")
    wait = settings.failed_seconds if run.state == RunState.FAILED else None
    leaves = (run.finished_at or now) + (settings.history_delay_seconds if wait is None else wait)
    if leaves > now:
        return Why(run.state.value, f"{said}; it moves to history {ago(leaves, now=now)}")
    return Why(run.state.value, f"{said}; due to move to history {ago(leaves, now=now)}: the"
                                " relay process of a live worker moves it (`runner health`"
                                " says how many wait)")  # fmt: skip


def in_outbox(settings: Settings, token: str) -> Why | None:
    """A run not in Redis yet, whose request waits in the outbox (committed by the site, not
    relayed yet, or kept there by the relay with an error); None when no row has `token`."""
    engine = relay_engine(settings.outbox_database_url)
    if engine is None:
        return None
    table = rows_table()
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.select(table.c.created_at, table.c.error)
                .where(table.c.token == token).order_by(table.c.id).limit(1)
            ).first()  # fmt: skip
            waiting = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()
    except sa.exc.SQLAlchemyError:  # no outbox table there (the site uses none), or no database
        return None
    finally:
        engine.dispose()
    if row is None:
        return None
    at = f"committed to the outbox at {iso_time(row.created_at)}"
    if row.error:
        return Why("outbox", f"{at}, and kept there by the relay: {row.error[:ERROR_CHARS]}; fix"
                             " the task, or delete the row from runner_outbox")  # fmt: skip
    return Why("outbox", f"{at}, not relayed yet ({waiting} row{'s' * (waiting != 1)} wait):"
                         " the relay process of a live worker enqueues it (`runner health`"
                         " says whether one is alive)")  # fmt: skip


def _error(run: RunRecord) -> str:
    said = error_text(run)
    return said if len(said) <= ERROR_CHARS else said[:ERROR_CHARS] + "…"
