"""The post record: what one article is, how it is validated, and its content hash.

INTERFACE (fixed; other modules rely on it): `Post`, `Parsed`, `Rejected`, `Item`,
`version_key`, `validate_post`.

`validate_post` turns one decoded record into a `Parsed` post or a `Rejected` item whose
reason is one line naming the field, what was expected and what came. Every string that
reaches a `Post` is free of NUL bytes and unpaired surrogates, so PostgreSQL can store it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

MAX_SOURCE_ID_CHARS = 200
MAX_TITLE_CHARS = 500
MAX_BODY_CHARS = 1_000_000
MAX_TEXT_CHARS = 10_000
MAX_VERSION_CHARS = 100
MAX_LIST_ITEMS = 1_000
MAX_READING_TIME = 10_000
MAX_VIEW_COUNT = 10**15
MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Post:
    """A validated post, ready for the store. `meta` holds every other field, JSON-able."""

    source_id: str
    title: str
    body: str
    topic: str | None = None
    summary: str | None = None
    difficulty: str | None = None
    reading_time: int | None = None
    view_count: int | None = None
    revision_version: str | None = None
    last_reviewed: date | None = None
    needs_review: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""


@dataclass(frozen=True, slots=True)
class Parsed:
    """One record read from a feed at `position` (line number, array index or page number)."""

    position: int
    post: Post


@dataclass(frozen=True, slots=True)
class Rejected:
    """One record of a feed that failed validation, with the reason in one line."""

    position: int
    source_id: str | None
    reason: str


Item = Parsed | Rejected


def version_key(version: str | None) -> tuple[int, ...]:
    """Order revision versions like `1.1.2`; a missing or non-numeric part counts as 0."""
    if not version:
        return ()
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def validate_post(raw: object, *, position: int) -> Item:
    """Check one decoded record and map it to a `Post`; bad input gives `Rejected`, never raises."""
    if not isinstance(raw, dict):
        return Rejected(position, None, f"record: expected a JSON object, got {_show(raw)}")
    try:
        record = _RECORD("", raw)
    except _Invalid as problem:
        return Rejected(position, _known_source_id(raw), str(problem))
    return Parsed(position, _to_post(record))


# Fields that have their own column in `posts`; every other field goes to `meta`.
_COLUMNS = frozenset(
    {"source_id", "title", "body", "topic", "summary", "difficulty", "reading_time", "view_count"}
)

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOWN_CHARS = 40


class _Invalid(Exception):
    """A value breaks a rule; the message is the one-line reason."""


Check = Callable[[str, object], Any]


def _show(value: object) -> str:
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


def _text(limit: int = MAX_TEXT_CHARS, *, required: bool = False, strip: bool = True) -> Check:
    """A string of at most `limit` characters; `required` ones must not be blank."""

    def check(path: str, value: object) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"{path}: expected a string, got {_show(value)}")
        if len(value) > limit:
            raise _Invalid(f"{path}: {len(value):,} characters, the limit is {limit:,}")
        if "\x00" in value:
            raise _Invalid(f"{path}: contains a NUL byte")
        if not value.isascii() and _SURROGATE.search(value):
            raise _Invalid(f"{path}: contains an unpaired UTF-16 surrogate")
        if required and not value.strip():
            raise _Invalid(f"{path}: must not be empty")
        return value.strip() if strip else value

    return check


def _identifier(path: str, value: object) -> str:
    """A source id: non-empty printable text with no whitespace, like `alphanode-032655`."""
    text: str = _text(MAX_SOURCE_ID_CHARS, required=True, strip=False)(path, value)
    if not text.isprintable() or text.split() != [text]:
        raise _Invalid(f"{path}: expected printable text without spaces, got {_show(text)}")
    return text


def _whole(low: int, high: int, *, expected: str = "a whole number") -> Check:
    """An int (not a bool) from `low` to `high`."""

    def check(path: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"{path}: expected {expected}, got {_show(value)}")
        if not low <= value <= high:
            raise _Invalid(f"{path}: expected {low:,}-{high:,}, got {_show(value)}")
        return value

    return check


def _flag(path: str, value: object) -> int:
    """A 0/1 flag; `true`/`false` are accepted and stored as 1/0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise _Invalid(f"{path}: expected 0 or 1, got {_show(value)}")


def _day(path: str, value: object) -> str:
    """A real calendar date written `YYYY-MM-DD`, kept as that string."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _Invalid(f"{path}: expected a date YYYY-MM-DD, got {_show(value)}")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"{path}: not a real date: {_show(value)}") from None
    return value


def _list_of(item: Check) -> Check:
    """A list of at most `MAX_LIST_ITEMS` values, each checked by `item`."""

    def check(path: str, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise _Invalid(f"{path}: expected a list, got {_show(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise _Invalid(f"{path}: {len(value):,} items, the limit is {MAX_LIST_ITEMS:,}")
        return [item(f"{path}[{index}]", element) for index, element in enumerate(value)]

    return check


def _object(fields: Mapping[str, Check], *, required: frozenset[str] = frozenset()) -> Check:
    """An object with the given fields; unknown keys are dropped, null optional ones too."""

    def check(path: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Invalid(f"{path}: expected an object, got {_show(value)}")
        checked: dict[str, Any] = {}
        for name, check_field in fields.items():
            where = f"{path}.{name}" if path else name
            if name not in value:
                if name in required:
                    raise _Invalid(f"{where}: required field is missing")
            elif value[name] is not None or name in required:
                checked[name] = check_field(where, value[name])
        return checked

    return check


_TEXTS = _list_of(_text())
_RECORD = _object(
    {
        "source_id": _identifier,
        "title": _text(MAX_TITLE_CHARS, required=True),
        "body": _text(MAX_BODY_CHARS, required=True, strip=False),
        "topic": _text(),
        "summary": _text(),
        "stack": _TEXTS,
        "tools": _TEXTS,
        "code_language": _text(),
        "difficulty": _text(),
        "reading_time": _whole(0, MAX_READING_TIME, expected="a whole number of minutes"),
        "view_count": _whole(0, MAX_VIEW_COUNT),
        "score": _object(
            {name: _whole(0, 100) for name in ("quality", "freshness", "depth", "clarity")}
        ),
        "revision": _object(
            {"status": _text(), "version": _text(MAX_VERSION_CHARS), "last_reviewed": _day}
        ),
        "reference": _text(),
        "hash": _text(),
        "flags": _object(
            {
                name: _flag
                for name in (
                    "ai_generated_style",
                    "has_images",
                    "image_heavy",
                    "needs_human_review",
                )
            }
        ),
        "checklist": _TEXTS,
        "entities": _list_of(_object({"name": _text(), "type": _text()})),
        "images": _list_of(_object({"source": _text(), "url": _text(), "caption": _text()})),
        "payload": _object(
            {
                "source_id": _text(MAX_SOURCE_ID_CHARS),
                "generator": _text(),
                "paragraphs": _whole(0, MAX_LIST_ITEMS * 100),
                "scenario": _text(),
                "seed": _whole(-(2**63), 2**63 - 1, expected="a whole number"),
            }
        ),
        "notes": _TEXTS,
        "ai_outline": _TEXTS,
        "ai_brief": _text(),
    },
    required=frozenset({"source_id", "title", "body"}),
)


def _known_source_id(raw: Mapping[str, object]) -> str | None:
    """The record's source id if it is itself valid (so a reject row can name it), else None."""
    try:
        return _identifier("source_id", raw.get("source_id"))
    except _Invalid:
        return None


def _content_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a normalized record: same content, same hash."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _to_post(record: dict[str, Any]) -> Post:
    """Map a validated, normalized record to its `Post`."""
    revision: dict[str, Any] = record.get("revision", {})
    flags: dict[str, Any] = record.get("flags", {})
    last_reviewed = revision.get("last_reviewed")
    return Post(
        source_id=record["source_id"],
        title=record["title"],
        body=record["body"],
        topic=record.get("topic"),
        summary=record.get("summary"),
        difficulty=record.get("difficulty"),
        reading_time=record.get("reading_time"),
        view_count=record.get("view_count"),
        revision_version=revision.get("version"),
        last_reviewed=date.fromisoformat(last_reviewed) if last_reviewed else None,
        needs_review=flags.get("needs_human_review") == 1,
        meta={name: value for name, value in record.items() if name not in _COLUMNS},
        content_hash=_content_hash(record),
    )
