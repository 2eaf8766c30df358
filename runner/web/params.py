"""Query parameters the console's pages read, parsed strictly: a malformed one is a 400 that
names it (BadRequest), never a 500 and never a silent guess."""

from __future__ import annotations

import re

from runner.errors import BadRequest

STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def whole_number(raw: str | None, name: str, *, high: int = 1_000_000) -> int | None:
    """`raw` as a whole number 0..high (ASCII digits only: `²` is not 2); None when absent."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) > high:
        raise BadRequest(f"{name}={raw[:40]!r} is not a whole number from 0 to {high}")
    return int(raw)


def stream_id(raw: str, name: str) -> str:
    """A log position `123-4` (what Last-Event-ID and `after` carry)."""
    if not STREAM_ID.fullmatch(raw):
        raise BadRequest(f"{name}={raw[:40]!r} is not a log position like 1700000000000-0")
    return raw
