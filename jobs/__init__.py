"""The site's tasks, schedule and CLI commands, built on the runner's public API.

`registry` is what the runner loads (`RUNNER_TASKS`, default `jobs`). Loading it imports
neither SQLAlchemy nor the store: a task or command imports them when it runs, so that a
worker and a command line start fast (tests/jobs/test_layering.py keeps it so). Each task's
handle is here too, for application code: `jobs.import_posts.enqueue(source="feed.jsonl")`,
checked by mypy against the task's own keyword parameters."""

from __future__ import annotations

from jobs import commands, imports, inbox, polling, rejects, schedule, sources, upkeep
from runner import HealthCheck, RetryPolicy, Settings, TaskRegistry


def store_health(settings: Settings) -> HealthCheck:
    """`jobs.revisions.store_health`, imported when `runner health` runs it."""
    from jobs.revisions import store_health

    return store_health(settings)


registry = TaskRegistry()
import_posts = registry.task(sources.TASK, queue="imports", timeout=6 * 3600,
                             retry=RetryPolicy())(imports.import_posts)  # fmt: skip
poll_inbox = registry.task("poll_inbox", queue="cron", timeout=600)(inbox.poll_inbox)
poll_feeds = registry.task("poll_feeds", queue="cron", timeout=3600)(polling.poll_feeds)
refresh_freshness = registry.task(queue="cron", timeout=1800)(upkeep.refresh_freshness)
build_sitemap = registry.task(queue="cron", timeout=1800)(upkeep.build_sitemap)
prune = registry.task(queue="cron", timeout=1800)(upkeep.prune)
registry.schedule.extend(schedule.SCHEDULE)
registry.commands.extend(commands.COMMANDS)
registry.web_routers.append("jobs.web:router")  # imported by `runner web` only
registry.notes.append(rejects.rejects_note)
registry.health_checks.append(store_health)
