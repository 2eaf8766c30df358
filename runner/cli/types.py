"""The CLI's option types: durations (`--since 2h`) and ISO times (`--at 2026-11-27T06:00Z`),
so a bad value is a one-line usage error naming the option."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import click

from runner.cron.schedule import to_utc

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(click.ParamType[float]):
    """A click type for `--since`: `30s`, `15m`, `2h`, `7d` or `1w`, in seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `15m`, `2h`, `7d` or `1w`; raises click.BadParameter otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 15m, 2h, 7d")
    return float(match.group(1)) * _UNIT[match.group(2)]


class IsoTime(click.ParamType[datetime]):
    """A click type for `--at` and `--at-start`: an ISO time, UTC unless it has an offset."""

    name = "iso-time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def parse_time(text: str) -> datetime:
    """An ISO time (UTC unless it has an offset); raises click.BadParameter otherwise."""
    try:
        return to_utc(datetime.fromisoformat(text))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO time; use e.g. 2026-11-27T06:00Z"
        ) from None
