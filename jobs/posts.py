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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jobs.checks import Invalid, day, flag, list_of, object_of, show, text, whole

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
        return Rejected(position, None, f"record: expected a JSON object, got {show(raw)}")
    try:
        record = _RECORD("", raw)
    except Invalid as problem:
        return Rejected(position, _known_source_id(raw), str(problem))
    return Parsed(position, _to_post(record))


# Fields that have their own column in `posts`; every other field goes to `meta`.
_COLUMNS = frozenset(
    {"source_id", "title", "body", "topic", "summary", "difficulty", "reading_time", "view_count"}
)


def _identifier(path: str, value: object) -> str:
    """A source id: non-empty printable text with no whitespace, like `alphanode-032655`."""
    source_id: str = text(MAX_SOURCE_ID_CHARS, required=True, strip=False)(path, value)
    if not source_id.isprintable() or source_id.split() != [source_id]:
        raise Invalid(f"{path}: expected printable text without spaces, got {show(source_id)}")
    return source_id


_TEXT = text(MAX_TEXT_CHARS)
_TEXTS = list_of(_TEXT, max_items=MAX_LIST_ITEMS)
_RECORD = object_of(
    {
        "source_id": _identifier,
        "title": text(MAX_TITLE_CHARS, required=True),
        "body": text(MAX_BODY_CHARS, required=True, strip=False),
        "topic": _TEXT,
        "summary": _TEXT,
        "stack": _TEXTS,
        "tools": _TEXTS,
        "code_language": _TEXT,
        "difficulty": _TEXT,
        "reading_time": whole(0, MAX_READING_TIME, expected="a whole number of minutes"),
        "view_count": whole(0, MAX_VIEW_COUNT),
        "score": object_of(
            {name: whole(0, 100) for name in ("quality", "freshness", "depth", "clarity")}
        ),
        "revision": object_of(
            {"status": _TEXT, "version": text(MAX_VERSION_CHARS), "last_reviewed": day}
        ),
        "reference": _TEXT,
        "hash": _TEXT,
        "flags": object_of(
            {
                name: flag
                for name in (
                    "ai_generated_style",
                    "has_images",
                    "image_heavy",
                    "needs_human_review",
                )
            }
        ),
        "checklist": _TEXTS,
        "entities": list_of(object_of({"name": _TEXT, "type": _TEXT}), max_items=MAX_LIST_ITEMS),
        "images": list_of(
            object_of({"source": _TEXT, "url": _TEXT, "caption": _TEXT}), max_items=MAX_LIST_ITEMS
        ),
        "payload": object_of(
            {
                "source_id": text(MAX_SOURCE_ID_CHARS),
                "generator": _TEXT,
                "paragraphs": whole(0, MAX_LIST_ITEMS * 100),
                "scenario": _TEXT,
                "seed": whole(-(2**63), 2**63 - 1, expected="a whole number"),
            }
        ),
        "notes": _TEXTS,
        "ai_outline": _TEXTS,
        "ai_brief": _TEXT,
    },
    required=frozenset({"source_id", "title", "body"}),
)


def _known_source_id(raw: Mapping[str, object]) -> str | None:
    """The record's source id if it is itself valid (so a reject row can name it), else None."""
    try:
        return _identifier("source_id", raw.get("source_id"))
    except Invalid:
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
