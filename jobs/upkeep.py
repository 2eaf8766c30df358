"""The site's upkeep tasks (freshness, sitemap, prune). Being written."""

from __future__ import annotations

from runner.tasks import TaskRegistry


def register(registry: TaskRegistry) -> None:
    """Register the upkeep tasks."""
