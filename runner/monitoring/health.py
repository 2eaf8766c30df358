"""Health: the four questions, one answer each, from Redis and the workers' figures.

**up** (Redis answers; some worker's heartbeat is fresher than 2 × lease; the clock ticked
recently when the schedule has entries; no run waits long on a queue no live worker serves;
the site's own checks), **slow** (queue wait and duration p95 of the last hour against the
last 7 days), **failing** (failure rate per task in the last hour against the day before;
names recent failures even when too few for a rate), **deploy** (per task, the latest mark's
code version against the version before it, by version: runner.monitoring.compare says what
is noise).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from runner.config import Settings
from runner.delivery.dequeue import delivery_key
from runner.keys import Keys
from runner.monitoring.answers import Answer, Verdict
from runner.monitoring.durations import rounded_duration
from runner.monitoring.forecast import Backlog, backlogs
from runner.monitoring.trends import Trends
from runner.record import RunState, texts
from runner.runs.retention import waiting_to_move
from runner.runs.rqjobs import known_queues
from runner.runs.transitions import Runs
from runner.tasks import Check, SiteCheck
from runner.worker.liveness import Liveness


@dataclass(frozen=True, slots=True)
class Report:
    """The four answers: up, slow, failing, deploy; and each busy queue's backlog with its
    drain forecast (runner.monitoring.forecast), beside them."""

    answers: tuple[Answer, ...]
    backlog: tuple[Backlog, ...] = ()

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.answers)

    @property
    def up(self) -> Answer:
        return self.answers[0]

    def as_dict(self) -> dict[str, Any]:
        answers = {a.question: asdict(a) for a in self.answers}
        return {"ok": self.ok, **answers, "backlog": [asdict(b) for b in self.backlog]}


def check_health(
    redis: Redis, settings: Settings, *, site_checks: Sequence[SiteCheck] = (),
    scheduled: bool = False, now: float | None = None,
) -> Report:  # fmt: skip
    """The four answers (`scheduled`: the schedule has entries, so the clock must tick; the
    site's checks are part of "up"); "up" fails, and the rest are unknown, when Redis does
    not answer."""
    now = time.time() if now is None else now
    try:
        started = time.perf_counter()
        redis.ping()
        latency = time.perf_counter() - started
    except RedisError as exc:
        down = Answer("up", Verdict.FAIL, f"redis unreachable: {exc}")
        return Report((down, *(Answer(q, Verdict.WARN, "unknown: Redis is down") for q in
                               ("slow", "failing", "deploy"))))  # fmt: skip
    health = _Health(redis, settings, site_checks=site_checks, scheduled=scheduled, now=now)
    trends = Trends(redis, settings, now=now)
    answers = (health.up(latency), trends.slow(), trends.failing(), trends.deploy())
    return Report(answers, tuple(backlogs(redis, settings, now=now)))


MOVE_GRACE = 120.0  # a run this long past its move time counts as waiting to move


class _Health:
    def __init__(
        self, redis: Redis, settings: Settings, *, site_checks: Sequence[SiteCheck],
        scheduled: bool, now: float,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.settings = settings
        self.limits = settings.health
        self.site_checks = site_checks
        self.scheduled = scheduled
        self.now = now
        self.keys = Keys(settings.prefix)

    def up(self, latency: float) -> Answer:
        problems: list[str] = []
        workers = Liveness(self.redis, self.settings).alive(self.now)
        ages = [w.age(self.now) or 0.0 for w in workers]
        parts = [f"redis {latency * 1000:.1f} ms"]
        if workers:
            supervisors = len({w.supervisor for w in workers})
            parts.append(f"{len(workers)} horses alive under {supervisors} workers"
                         f" (heartbeats {max(ages):.0f} s ago)")  # fmt: skip
        else:
            parts.append("no worker alive")
            problems.append("no worker alive: start `runner worker`")
        parts.append(self._clock(problems))
        waiting = self._awaiting_reaper()
        if waiting:  # fine while a worker (whose reaper acts) is alive
            parts.append(
                f"{waiting} runs awaiting the reaper (lease expired, job not begun, or due)"
            )
        stuck = self._stuck({q for w in workers for q in w.queues})
        if stuck:
            over = rounded_duration(self.limits.stuck_seconds)
            parts.append(f"{stuck} runs queued over {over} with no live worker on their queue")
            problems.append("stuck runs")
        unmoved = waiting_to_move(self.redis, self.settings, now=self.now, grace=MOVE_GRACE)
        if unmoved:  # the history database is down or slow: the move waits, jobs do not
            parts.append(f"{unmoved} finished runs wait to move to history (is its database up?)")
        kept = self._outbox_kept()
        if kept:
            parts.append(kept)
            problems.append("outbox rows kept")
        for check in self._site_checks():
            parts.append(f"{check.name} {'ok' if check.ok else 'FAIL'}: {check.detail}")
            if not check.ok:
                problems.append(check.name)
        figures = {
            "redis_ms": round(latency * 1000, 3), "workers": len(workers), "stuck": stuck,
            "supervisors": len({w.supervisor for w in workers}), "awaiting_reaper": waiting,
            "heartbeat_age": max(ages) if ages else None, "clock_age": self._clock_age(),
            "history_waiting": unmoved,
        }  # fmt: skip
        verdict = Verdict.FAIL if problems else Verdict.OK
        return Answer("up", verdict, "; ".join(parts), figures)

    def _clock(self, problems: list[str]) -> str:
        raw = self.redis.get(self.keys.last_tick)
        scheduled = self.scheduled
        if raw is None:
            if scheduled:
                problems.append("the clock never ticked")
                return "clock never ticked: run `runner cron run`"
            return "no schedule"
        age = max(0.0, self.now - float(raw))
        if scheduled and age > self.limits.clock_seconds:
            problems.append("the clock stopped")
            return f"clock last ticked {rounded_duration(age)} ago: is `runner cron run` up?"
        return f"clock ticked {rounded_duration(age)} ago"

    def _outbox_kept(self) -> str:
        """What the outbox relay last said of rows it keeps (their task is gone...), if any."""
        raw = self.redis.get(self.keys.outbox_kept)
        report = json.loads(raw) if raw else {}
        if not report.get("kept"):
            return ""
        return (
            f"{report['kept']} outbox rows kept by the relay ({report['reason'][:200]}): fix"
            " the task, or delete them from runner_outbox"
        )

    def _clock_age(self) -> float | None:
        raw = self.redis.get(self.keys.last_tick)
        return None if raw is None else round(max(0.0, self.now - float(raw)), 3)

    def _awaiting_reaper(self) -> int:
        _, orphaned = Runs(self.redis, self.settings).leaseless()
        pipe = self.redis.pipeline(transaction=False)
        for queue in known_queues(self.redis, self.settings):
            pipe.llen(delivery_key(queue))
        taken = sum(int(n) for n in pipe.execute())
        overdue = self.now - self.settings.lease_seconds  # due, and not pushed by a reaper
        late = int(self.redis.zcount(self.keys.delayed, "-inf", overdue))
        return len(orphaned) + taken + late

    def _stuck(self, served: set[str]) -> int:
        """Runs queued longer than the threshold on a queue no live worker works."""
        since = self.now - self.limits.stuck_seconds
        index = self.keys.by_state(RunState.QUEUED)
        tokens = texts(self.redis.zrangebyscore(index, "-inf", since, start=0, num=1000))
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.hget(self.keys.run(token), "queue")
        return sum(1 for q in pipe.execute() if q is not None and q.decode() not in served)

    def _site_checks(self) -> Iterable[Check]:
        for site_check in self.site_checks:
            try:
                yield site_check(self.settings)
            except Exception as exc:  # a site check must not take health down with it
                name = getattr(site_check, "__name__", "site")
                yield Check(name, False, f"the check itself failed: {exc!r}"[:300])
