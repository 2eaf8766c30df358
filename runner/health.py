"""Health: the four questions, one answer each, from Redis and the workers' figures.

**up** (Redis answers; some worker's heartbeat is fresher than 2 × lease; the clock ticked
recently when the schedule has entries; no run waits long on a queue no live worker serves;
the site's own checks), **slow** (queue wait and duration p95 of the last hour against the
last 7 days), **failing** (failure rate per task in the last hour against the day before;
names recent failures even when too few for a rate), **deploy** (per task, the latest mark's
code version against the version before it, by version: runner.compare says what is noise).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from runner.compare import compare
from runner.config import Settings
from runner.delivery import delivery_key
from runner.deploys import DeployMarks
from runner.figures import HOUR, Figures, Histogram, TaskFigures, seconds_text
from runner.keys import Keys
from runner.liveness import Liveness
from runner.record import RunState, texts
from runner.runs import Runs

DAY = 24 * HOUR


class Verdict(StrEnum):
    """How one question is answered."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Answer:
    """One question's answer: its verdict, one line of figures, and the figures as data."""

    question: str
    verdict: Verdict
    text: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == Verdict.OK

    def line(self) -> str:
        return f"{self.question:<8} {self.verdict:<5} {self.text}"


@dataclass(frozen=True, slots=True)
class Report:
    """The four answers: up, slow, failing, deploy."""

    answers: tuple[Answer, ...]

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.answers)

    @property
    def up(self) -> Answer:
        return self.answers[0]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **{a.question: asdict(a) for a in self.answers}}


@dataclass(frozen=True, slots=True)
class Check:
    """One site check's result (exported as `runner.HealthCheck`): its name, whether it
    passed, and a one-line detail."""

    name: str
    ok: bool
    detail: str


# The site's own checks (`TaskRegistry.health_checks`: its content store, say): each takes the
# settings and returns a Check; they are part of "up".
SiteCheck = Callable[[Settings], Check]


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
    return Report((health.up(latency), health.slow(), health.failing(), health.deploy()))


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
        self.figures = Figures(redis, settings)

    def up(self, latency: float) -> Answer:
        problems: list[str] = []
        workers = Liveness(self.redis, self.settings).alive(self.now)
        ages = [w.age(self.now) or 0.0 for w in workers]
        parts = [f"redis {latency * 1000:.1f} ms"]
        if workers:
            parts.append(f"{len(workers)} workers (heartbeats {max(ages):.0f} s ago)")
        else:
            parts.append("no worker alive")
            problems.append("no worker alive: start `runner worker`")
        parts.append(self._clock(problems))
        waiting = self._awaiting_reaper()
        if waiting:  # fine while a worker (whose reaper acts) is alive
            parts.append(f"{waiting} runs awaiting the reaper (lease expired or job not begun)")
        stuck = self._stuck({q for w in workers for q in w.queues})
        if stuck:
            parts.append(f"{stuck} runs queued over {seconds_text(self.limits.stuck_seconds)} "
                         "with no live worker on their queue")  # fmt: skip
            problems.append("stuck runs")
        for check in self._site_checks():
            parts.append(f"{check.name} {'ok' if check.ok else 'FAIL'}: {check.detail}")
            if not check.ok:
                problems.append(check.name)
        figures = {"redis_ms": round(latency * 1000, 3), "workers": len(workers), "stuck": stuck}
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
            return f"clock last ticked {seconds_text(age)} ago: is `runner cron run` up?"
        return f"clock ticked {seconds_text(age)} ago"

    def _awaiting_reaper(self) -> int:
        _, orphaned = Runs(self.redis, self.settings).leaseless()
        taken = sum(self.redis.llen(delivery_key(q)) for q in self.settings.queues)
        return len(orphaned) + taken

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

    def slow(self) -> Answer:
        hour = self._windows(since=self.now - HOUR)
        week = self.figures.per_task(since=self.now - 7 * DAY, until=self.now)
        waits: dict[str, Histogram] = {}
        for (_task, queue, _v), f in hour:
            waits.setdefault(queue, Histogram()).add(f.wait)
        by_task = _sum_tasks(hour)
        slow: list[str] = []
        wait_text = ", ".join(
            f"{q} {seconds_text(h.quantile(0.95))}" for q, h in sorted(waits.items())
        )
        slow += [q for q, h in waits.items()
                 if (h.quantile(0.95) or 0) > self.limits.wait_p95_seconds]  # fmt: skip
        task_texts = []
        for task, f in sorted(by_task.items()):
            now_p95, week_p95 = f.duration.quantile(0.95), week.get(task, TaskFigures()).duration
            task_texts.append(f"{task} p95 {seconds_text(now_p95)} "
                              f"(last 7 days {seconds_text(week_p95.quantile(0.95))})")  # fmt: skip
            c = compare(task, week.get(task, TaskFigures()), f, self.limits)
            if c.enough and any(ch.worse and ch.name == "p95" for ch in c.changes):
                slow.append(task)
        text = f"wait p95: {wait_text or 'no runs in the last hour'}"
        if task_texts:
            text += "; " + ", ".join(task_texts)
        verdict = Verdict.WARN if slow else Verdict.OK
        return Answer("slow", verdict, text + (f"; slower: {', '.join(slow)}" if slow else ""),
                      {"slow": slow})  # fmt: skip

    def failing(self) -> Answer:
        hour = _sum_tasks(self._windows(since=self.now - HOUR))
        day_before = self.figures.per_task(since=self.now - 25 * HOUR, until=self.now - HOUR)
        failed_index = self.keys.by_state(RunState.FAILED)
        recent = texts(self.redis.zrevrangebyscore(failed_index, "+inf", self.now - HOUR,
                                                   start=0, num=3))  # fmt: skip
        failing, lines, worst = [], [], Verdict.OK
        for task, f in sorted(hour.items()):
            failed, ended = f.counts[RunState.FAILED], f.runs_ended
            if not failed:
                continue
            before = day_before.get(task, TaskFigures()).failure_rate
            rate = f"{failed / ended:.1%}; {before or 0:.1%} the day before" if ended else ""
            lines.append(f"{task}: {failed} of {ended} runs failed in the last hour ({rate})")
            if ended >= self.limits.min_runs and failed / ended > self.limits.failure_rate:
                worst = Verdict.FAIL
            elif worst == Verdict.OK:
                worst = Verdict.WARN  # too few runs for a rate, but runs did fail: named
            failing.append(task)
        if not lines:
            return Answer("failing", Verdict.OK, "no run failed in the last hour", {})
        text = "; ".join(lines) + ("; latest: " + ", ".join(recent) if recent else "")
        return Answer("failing", worst, text, {"tasks": failing, "recent": recent})

    def deploy(self) -> Answer:
        marks = DeployMarks(self.redis, self.settings)
        latest = next(iter(marks.latest(1)), None)
        if latest is None:
            return Answer("deploy", Verdict.OK, "no deploy marked yet", {})
        stamp = datetime.fromtimestamp(latest.at, UTC).strftime("%H:%M")
        head = f"{latest.version} marked {stamp} ({seconds_text(self.now - latest.at)} ago)"
        previous = marks.previous_version(latest)
        figures: dict[str, Any] = {"version": latest.version, "at": latest.at}
        if previous is None:
            return Answer("deploy", Verdict.OK, f"{head}: no earlier version to compare", figures)
        after, before = self.figures.version(latest.version), self.figures.version(previous.version)
        comparisons = [compare(t, before.get(t, TaskFigures()), after[t], self.limits)
                       for t in sorted(after)]  # fmt: skip
        changed = [c for c in comparisons if c.enough and c.changes]
        few = [c for c in comparisons if not c.enough]
        parts = [c.text() for c in changed]
        if few:
            parts.append("too few runs for a verdict: " + ", ".join(c.task for c in few))
        rest = len(comparisons) - len(changed) - len(few)
        if rest or not comparisons:
            parts.append("others unchanged" if changed else "unchanged")
        figures |= {"previous": previous.version, "changed": [c.task for c in changed]}
        verdict = Verdict.WARN if any(c.worse for c in changed) else Verdict.OK
        return Answer("deploy", verdict, f"{head} (after {previous.version}): " + "; ".join(parts),
                      figures)  # fmt: skip

    def _windows(self, *, since: float) -> list[tuple[tuple[str, str, str], TaskFigures]]:
        return [
            (key, f)
            for _, window in self.figures.windows(since=since, until=self.now)
            for key, f in window.items()
        ]


def _sum_tasks(items: Iterable[tuple[tuple[str, str, str], TaskFigures]]) -> dict[str, TaskFigures]:
    out: dict[str, TaskFigures] = {}
    for (task, _queue, _version), figures in items:
        out.setdefault(task, TaskFigures()).add(figures)
    return out
