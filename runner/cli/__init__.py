"""The operator's CLI (`runner ...`), and what a site's own commands build on.

A site's task module adds Click commands to `registry.commands`; they take the `App` (settings,
Redis, the enqueuer, the registry) with `@pass_app`, and `finish_waiting` gives them the same
`--wait` behaviour as `runner enqueue`. Everything else in this package is internal.
"""

from __future__ import annotations

from runner.cli.app import App, finish_waiting, json_line, pass_app
from runner.cli.commands import cli, main
from runner.cli.views import table

__all__ = ["App", "cli", "finish_waiting", "json_line", "main", "pass_app", "table"]
