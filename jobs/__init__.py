"""The site's tasks, built on the runner's public API. `registry` is what the runner loads."""

from __future__ import annotations

from runner.tasks import TaskRegistry

registry = TaskRegistry()
