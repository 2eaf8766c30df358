"""A registry and schedule for the cron tests (`RUNNER_TASKS=tests.cron_tasks`): cheap tasks,
entries every minute, hourly and daily, all due at 06:00 UTC."""

from __future__ import annotations

import time
from typing import Any

from rq import get_current_job

from runner.attempt.context import Run
from runner.cron.schedule import CronEntry
from runner.tasks import Task, TaskRegistry

HOLD_KEY = "cron-test:hold"

registry = TaskRegistry()


def pulse(run: Run, **args: Any) -> dict[str, Any]:
    """One recorded step, at once."""
    return run.step("pulse", lambda: args)


def hold(run: Run) -> str:
    """Keeps running while the Redis key HOLD_KEY exists (30 s at most): a long run."""
    job = get_current_job()
    assert job is not None
    deadline = time.monotonic() + 30
    while job.connection.exists(HOLD_KEY) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"


for name in ("every_minute", "catch_up_three", "overlapping", "hourly_chime", "daily_report"):
    registry.register(Task(name, pulse, timeout=60))
registry.register(Task("hold", hold, timeout=60))

SCHEDULE = [
    CronEntry("every_minute", "* * * * *", task="every_minute"),
    CronEntry("catch_up_three", "* * * * *", task="catch_up_three", catch_up=3),
    CronEntry("overlapping", "* * * * *", task="overlapping", overlap="allow"),
    CronEntry("hourly", "0 * * * *", task="hourly_chime"),
    CronEntry("daily", "0 6 * * *", task="daily_report", args={"edition": "am"}, queue="cron"),
    CronEntry("held", "* * * * *", task="hold"),
]
registry.schedule.extend(SCHEDULE)
