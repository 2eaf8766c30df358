"""The site's tasks, schedule and CLI commands, built on the runner's public API.

`registry` is what the runner loads (`RUNNER_TASKS`, default `jobs`)."""

from __future__ import annotations

from jobs import commands, imports, inbox, polling, rejects, revisions, schedule, upkeep
from runner import TaskRegistry

registry = TaskRegistry()
imports.register(registry)
inbox.register(registry)
polling.register(registry)
upkeep.register(registry)
registry.schedule.extend(schedule.SCHEDULE)
registry.commands.extend(commands.COMMANDS)
registry.web_routers.append("jobs.web:router")  # imported by `runner web` only
registry.notes.append(rejects.rejects_note)
registry.health_checks.append(revisions.store_health)
