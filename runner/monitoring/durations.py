"""Durations and ages as people read them: in tables and pages, and in one-line answers."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

HOUR = 3600


def duration(seconds: float | None, *, spaced: bool = False) -> str:
    """`0.31s`, `12s`, `3m04s`, `2h05m` (`spaced`, for pages: `0.31 s`, `12 s`, `3m 04s`,
    `2h 05m`); '-' when unknown. Whole seconds and minutes are cut, never rounded up."""
    if seconds is None:
        return "-"
    gap = " " if spaced else ""
    if seconds < 10:
        return f"{seconds:.2f}{gap}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}{gap}s"
    if whole < HOUR:
        return f"{whole // 60}m{gap}{whole % 60:02d}s"
    return f"{whole // HOUR}h{gap}{whole % HOUR // 60:02d}m"


def rounded_duration(seconds: float | None) -> str:
    """A duration for a one-line answer: '12 ms', '0.4 s', '12 s', '3.5 min', '2.1 h'."""
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / HOUR:.1f} h"


def ago(ts: float | None, *, now: float | None = None) -> str:
    """`42s ago`, `3m ago`, `5h ago`, `2d ago`, or `in 3m` for the future; '-' when never."""
    if not ts:
        return "-"
    seconds = (now or time.time()) - ts
    later = seconds < 0
    seconds = abs(seconds)
    text = f"{int(seconds)}s"
    for unit, size in (("d", 86400), ("h", HOUR), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    return f"in {text}" if later else f"{text} ago"


def iso_time(ts: float | None) -> str | None:
    """A Unix time as UTC ISO 8601 with a `Z`, to the second (the one time format of logs and
    JSON); None when unknown."""
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_minute(ts: float) -> str:
    """A Unix time as `HH:MMZ` (UTC), for one-line answers."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%MZ")
