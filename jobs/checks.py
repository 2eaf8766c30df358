"""Field checks: small validators, composed into a record's schema, each of which returns the
normalized value or raises `Invalid` with a one-line reason naming the field, what was
expected and what came (`reading_time: expected a whole number of minutes, got "twelve"`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOWN_CHARS = 40


class Invalid(Exception):
    """A value breaks a rule; the message is the one-line reason."""


Check = Callable[[str, object], Any]


def show(value: object) -> str:
    """Describe a value for a reason: containers by kind, scalars as JSON, at most ~40 chars."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool | None | float | str):
        brief = value[: _SHOWN_CHARS + 1] if isinstance(value, str) else value
        shown = json.dumps(brief, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
    elif isinstance(value, int):
        shown = str(value) if abs(value) < 10**_SHOWN_CHARS else "a number too large to show"
    else:
        shown = type(value).__name__
    return shown if len(shown) <= _SHOWN_CHARS + 2 else shown[:_SHOWN_CHARS] + "…"


def text(limit: int, *, required: bool = False, strip: bool = True) -> Check:
    """A string of at most `limit` characters; `required` ones must not be blank."""

    def check(path: str, value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{path}: expected a string, got {show(value)}")
        if len(value) > limit:
            raise Invalid(f"{path}: {len(value):,} characters, the limit is {limit:,}")
        if "\x00" in value:
            raise Invalid(f"{path}: contains a NUL byte")
        if not value.isascii() and _SURROGATE.search(value):
            raise Invalid(f"{path}: contains an unpaired UTF-16 surrogate")
        if required and not value.strip():
            raise Invalid(f"{path}: must not be empty")
        return value.strip() if strip else value

    return check


def whole(low: int, high: int, *, expected: str = "a whole number") -> Check:
    """An int (not a bool) from `low` to `high`."""

    def check(path: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{path}: expected {expected}, got {show(value)}")
        if not low <= value <= high:
            raise Invalid(f"{path}: expected {low:,}-{high:,}, got {show(value)}")
        return value

    return check


def flag(path: str, value: object) -> int:
    """A 0/1 flag; `true`/`false` are accepted and stored as 1/0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise Invalid(f"{path}: expected 0 or 1, got {show(value)}")


def day(path: str, value: object) -> str:
    """A real calendar date written `YYYY-MM-DD`, kept as that string."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise Invalid(f"{path}: expected a date YYYY-MM-DD, got {show(value)}")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{path}: not a real date: {show(value)}") from None
    return value


def list_of(item: Check, *, max_items: int) -> Check:
    """A list of at most `max_items` values, each checked by `item`."""

    def check(path: str, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(f"{path}: expected a list, got {show(value)}")
        if len(value) > max_items:
            raise Invalid(f"{path}: {len(value):,} items, the limit is {max_items:,}")
        return [item(f"{path}[{index}]", element) for index, element in enumerate(value)]

    return check


def object_of(fields: Mapping[str, Check], *, required: frozenset[str] = frozenset()) -> Check:
    """An object with the given fields; unknown keys are dropped, null optional ones too."""

    def check(path: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"{path}: expected an object, got {show(value)}")
        checked: dict[str, Any] = {}
        for name, check_field in fields.items():
            where = f"{path}.{name}" if path else name
            if name not in value:
                if name in required:
                    raise Invalid(f"{where}: required field is missing")
            elif value[name] is not None or name in required:
                checked[name] = check_field(where, value[name])
        return checked

    return check
