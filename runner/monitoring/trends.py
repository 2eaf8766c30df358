"""Health's questions answered from the workers' figures: is it slow, are jobs failing, did
the last deploy change anything (runner.monitoring.compare says what is noise)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.monitoring.answers import Answer, Verdict
from runner.monitoring.compare import compare
from runner.monitoring.durations import iso_minute, iso_time, rounded_duration
from runner.record import RunState, texts
from runner.runs.deploys import DeployMarks
from runner.runs.figures import HOUR, Figures, Histogram, TaskFigures
from runner.worker.liveness import Liveness

DAY = 24 * HOUR


class Trends:
    """The slow, failing and deploy answers at `now`."""

    def __init__(self, redis: Redis, settings: Settings, *, now: float) -> None:
        self.redis = redis
        self.settings = settings
        self.limits = settings.health
        self.now = now
        self.keys = Keys(settings.prefix)
        self.figures = Figures(redis, settings)

    def slow(self) -> Answer:
        hour = self._windows(since=self.now - HOUR)
        week = self.figures.per_task(since=self.now - 7 * DAY, until=self.now)
        waits: dict[str, Histogram] = {}
        for (_task, queue, _v), f in hour:
            waits.setdefault(queue, Histogram()).add(f.wait)
        by_task = _sum_tasks(hour)
        slow: list[str] = []
        wait_text = ", ".join(
            f"{q} {rounded_duration(h.quantile(0.95))}" for q, h in sorted(waits.items())
        )
        slow += [q for q, h in waits.items()
                 if (h.quantile(0.95) or 0) > self.limits.wait_p95_seconds]  # fmt: skip
        task_texts = []
        p95: dict[str, dict[str, float | None]] = {}
        for task, f in sorted(by_task.items()):
            now_p95, week_p95 = f.duration.quantile(0.95), week.get(task, TaskFigures()).duration
            before = rounded_duration(week_p95.quantile(0.95))
            task_texts.append(f"{task} p95 {rounded_duration(now_p95)} (last 7 days {before})")
            p95[task] = {"hour": now_p95, "week": week_p95.quantile(0.95)}
            c = compare(task, week.get(task, TaskFigures()), f, self.limits)
            if c.enough and any(ch.worse and ch.name == "p95" for ch in c.changes):
                slow.append(task)
        text = f"wait p95: {wait_text or 'no runs in the last hour'}"
        if task_texts:
            text += "; " + ", ".join(task_texts)
        verdict = Verdict.WARN if slow else Verdict.OK
        figures = {"slow": slow, "wait_p95": {q: h.quantile(0.95) for q, h in waits.items()},
                   "duration_p95": p95}  # fmt: skip
        return Answer("slow", verdict, text + (f"; slower: {', '.join(slow)}" if slow else ""),
                      figures)  # fmt: skip

    def failing(self) -> Answer:
        hour = _sum_tasks(self._windows(since=self.now - HOUR))
        day_before = self.figures.per_task(since=self.now - 25 * HOUR, until=self.now - HOUR)
        still_failed = self._still_failed()
        failing, lines, worst = [], [], Verdict.OK
        rerun: list[str] = []
        rates: dict[str, dict[str, Any]] = {}
        for task, f in sorted(hour.items()):
            failed, ended = f.counts[RunState.FAILED], f.runs_ended
            if not failed:
                continue
            before = day_before.get(task, TaskFigures()).failure_rate
            earlier = "none the day before" if before is None else f"{before:.1%} the day before"
            rate = f"{failed / ended:.1%}; {earlier}" if ended else earlier
            line = f"{task}: {failed} of {ended} runs failed in the last hour ({rate})"
            rates[task] = {"runs_failed": failed, "ended": ended, "day_before": before}
            still = still_failed.get(task, [])
            if not still:  # every one of them was rerun since (and is not failed again)
                lines.append(line + "; all rerun since, none failed now")
                rerun.append(task)
                continue
            lines.append(line + f"; {len(still)} failed now: " + ", ".join(still[:3]))
            if ended >= self.limits.min_runs and failed / ended > self.limits.failure_rate:
                worst = Verdict.FAIL
            elif worst == Verdict.OK:
                worst = Verdict.WARN  # too few runs for a rate, but runs did fail: named
            failing.append(task)
        if not lines:
            return Answer("failing", Verdict.OK, "no run failed in the last hour", {})
        recent = [t for tokens in still_failed.values() for t in tokens][:3]
        figures = {"tasks": failing, "recent": recent, "rerun": rerun, "rates": rates}
        return Answer("failing", worst, "; ".join(lines), figures)

    def _still_failed(self) -> dict[str, list[str]]:
        """Per task, the runs that failed in the last hour and are failed now, newest first."""
        index = self.keys.by_state(RunState.FAILED)
        tokens = texts(self.redis.zrevrangebyscore(index, "+inf", self.now - HOUR,
                                                   start=0, num=1000))  # fmt: skip
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.hget(self.keys.run(token), "task")
        out: dict[str, list[str]] = {}
        for token, task in zip(tokens, pipe.execute(), strict=True):
            if task is not None:
                out.setdefault(task.decode(), []).append(token)
        return out

    def deploy(self) -> Answer:
        marks = DeployMarks(self.redis, self.settings)
        latest = next(iter(marks.latest(1)), None)
        if latest is None:
            return Answer("deploy", Verdict.OK, "no deploy marked yet", {})
        age = rounded_duration(self.now - latest.at)
        head = f"{latest.version} marked {iso_minute(latest.at)} ({age} ago)"
        previous = marks.previous_version(latest)
        figures: dict[str, Any] = {"version": latest.version, "at": iso_time(latest.at)}
        alive = self._versions_alive()
        note = ""
        if len(alive) > 1:  # a deploy under way, or a worker left behind
            note = f"; live workers run {len(alive)} versions: {', '.join(alive)}"
        figures["versions_alive"] = alive
        if previous is None:
            return Answer("deploy", Verdict.OK, f"{head}: no earlier version to compare{note}",
                          figures)  # fmt: skip
        head += f" (after {previous.version})"
        figures["previous"] = previous.version
        after, before = self.figures.version(latest.version), self.figures.version(previous.version)
        if not after:
            figures["changed"] = []
            return Answer("deploy", Verdict.OK, f"{head}: no runs of {latest.version} yet{note}",
                          figures)  # fmt: skip
        comparisons = [compare(t, before.get(t, TaskFigures()), after[t], self.limits)
                       for t in sorted(after)]  # fmt: skip
        changed = [c for c in comparisons if c.enough and c.changes]
        few = [c for c in comparisons if not c.enough]
        parts = [c.text() for c in changed]
        if few:
            parts.append("too few runs for a verdict: " + ", ".join(c.task for c in few))
        rest = len(comparisons) - len(changed) - len(few)
        if rest:
            parts.append("others unchanged" if changed or few else "unchanged")
        figures |= {
            "changed": [c.task for c in changed], "too_few": [c.task for c in few],
            "runs": {c.task: {"before": c.runs[0], "after": c.runs[1]} for c in comparisons},
        }  # fmt: skip
        verdict = Verdict.WARN if any(c.worse for c in changed) else Verdict.OK
        return Answer("deploy", verdict, f"{head}: " + "; ".join(parts) + note, figures)

    def _versions_alive(self) -> list[str]:
        beats = Liveness(self.redis, self.settings).alive(self.now)
        return sorted({b.version for b in beats if b.version})

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
