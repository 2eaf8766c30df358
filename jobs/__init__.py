"""The site's tasks, schedule and CLI commands, built on the runner's public API.

`registry` is what the runner loads (`RUNNER_TASKS`, default `jobs`). Loading it imports
neither SQLAlchemy nor the store: a task or command imports them when it runs, so that a
worker and a command line start fast (tests/jobs/test_layering.py keeps it so)."""

from __future__ import annotations

from jobs import commands, imports, inbox, polling, rejects, schedule, upkeep
from runner import HealthCheck, Settings, TaskRegistry


def store_health(settings: Settings) -> HealthCheck:
    """`jobs.revisions.store_health`, imported when `runner health` runs it."""
    from jobs.revisions import store_health

    return store_health(settings)


registry = TaskRegistry()
imports.register(registry)
inbox.register(registry)
polling.register(registry)
upkeep.register(registry)
registry.schedule.extend(schedule.SCHEDULE)
registry.commands.extend(commands.COMMANDS)
registry.web_routers.append("jobs.web:router")  # imported by `runner web` only
registry.notes.append(rejects.rejects_note)
registry.health_checks.append(store_health)
