"""The site's cron schedule. Being written."""

from __future__ import annotations

from typing import Any

SCHEDULE: list[Any] = []
