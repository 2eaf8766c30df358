"""The post record: what one article is, how a feed's record becomes one, and its content hash.

INTERFACE (fixed; other modules rely on it): `Post`, `Parsed`, `Rejected`, `Item`,
`version_key`, `validate_post`, `decode_post`.

`decode_post` turns one JSON text (a feed line) into a `Parsed` post or a `Rejected` item in
one msgspec pass (`jobs.schema`); `validate_post` does the same for an already decoded
record (a page export). A reason is one line naming the field, what was expected and what came
(`reading_time: expected a whole number of minutes, got "twelve"`). Every string that reaches
a `Post` is free of NUL bytes and unpaired surrogates, so PostgreSQL can store it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import msgspec

from jobs.reasons import reason_for
from jobs.schema import (
    MAX_SOURCE_ID_CHARS,
    Invalid,
    Record,
    check_source_id,
    show,
    trim,
)

MAX_LINE_BYTES = 16 * 1024 * 1024


class Post(msgspec.Struct, frozen=True, gc=False):
    """A validated post, ready for the store. `meta` holds every other field: JSON values or
    the schema's Structs (msgspec encodes both; `meta_json` gives it as JSON)."""

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
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    content_hash: str = ""

    def meta_json(self) -> str:
        """`meta` as compact JSON text, as the store writes it."""
        return _JSON.encode(self.meta).decode()


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

# Fields that have their own column in `posts`; every other field goes to `meta`.
COLUMNS = (
    *("source_id", "title", "body", "topic", "summary", "difficulty", "reading_time"),
    "view_count",
)
_DECODER = msgspec.json.Decoder(Record)
# The content hash is sha256 of the record's canonical JSON: keys sorted, no spaces, UTF-8
# (the bytes of `json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`,
# which made the hashes stored before msgspec: the same post keeps the same hash).
_CANONICAL = msgspec.json.Encoder(order="sorted")
_JSON = msgspec.json.Encoder()
_META_FIELDS = tuple(name for name in Record.__struct_fields__ if name not in COLUMNS)
_NUL_ESCAPE = b"\\u0000"


def version_key(version: str | None) -> tuple[int, ...]:
    """Order revision versions like `1.1.2`; a missing or non-numeric part counts as 0."""
    if not version:
        return ()
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def decode_post(data: bytes, *, position: int, what: str = "line") -> Item:
    """Decode and check one UTF-8 JSON text; every failure becomes a `Rejected`, never raises.

    The fast path is one typed msgspec decode. A text msgspec refuses, or one with an escaped
    NUL (which msgspec would decode), is decoded again by the stdlib to find the reason.
    """
    if _NUL_ESCAPE not in data:
        try:
            record = _DECODER.decode(data)
        except (msgspec.MsgspecError, RecursionError):
            pass
        else:
            trim(record)
            return Parsed(position, _to_post(record))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejected(position, None, f"{what} {position}: invalid UTF-8 at byte {error.start}")
    try:
        value = json.loads(text)
    except RecursionError:
        return Rejected(position, None, "nesting too deep")
    except json.JSONDecodeError as error:
        return Rejected(position, None, f"invalid JSON: {error.msg} (column {error.colno})")
    except ValueError as error:  # e.g. an integer with more than 4,300 digits
        return Rejected(position, None, f"invalid JSON: {str(error)[:80]}")
    return validate_post(value, position=position)


def validate_post(raw: object, *, position: int) -> Item:
    """Check one decoded record and map it to a `Post`; bad input gives `Rejected`, never raises."""
    if not isinstance(raw, dict):
        return Rejected(position, None, f"record: expected a JSON object, got {show(raw)}")
    try:
        record = msgspec.convert(raw, Record)
    except msgspec.ValidationError as error:
        return Rejected(position, _known_source_id(raw), reason_for(error, raw))
    except RecursionError:
        return Rejected(position, None, "nesting too deep")
    trim(record)
    unsafe = _unsafe_text(msgspec.to_builtins(record), "")
    if unsafe is not None:
        return Rejected(position, _known_source_id(raw), unsafe)
    return Parsed(position, _to_post(record))


def _unsafe_text(value: object, path: str) -> str | None:
    """The reason for the first string with a NUL or an unpaired surrogate under `value`."""
    for where, text in _strings(value, path):
        if "\x00" in text:
            return f"{where}: contains a NUL byte"
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return f"{where}: contains an unpaired UTF-16 surrogate"
    return None


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _strings(item, f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _known_source_id(raw: dict[Any, Any]) -> str | None:
    """The record's source id if it is itself valid (so a reject row can name it), else None."""
    source_id = raw.get("source_id")
    if not isinstance(source_id, str) or len(source_id) > MAX_SOURCE_ID_CHARS:
        return None
    try:
        check_source_id(source_id)
        source_id.encode("utf-8")
    except (Invalid, UnicodeEncodeError):
        return None
    return source_id


def _to_post(record: Record) -> Post:
    """Map a checked, normalized record to its `Post`."""
    revision, flags = record.revision, record.flags
    reviewed = revision.last_reviewed if revision is not None else None
    meta = {name: value for name in _META_FIELDS if (value := getattr(record, name)) is not None}
    return Post(
        source_id=record.source_id,
        title=record.title,
        body=record.body,
        topic=record.topic,
        summary=record.summary,
        difficulty=record.difficulty,
        reading_time=record.reading_time,
        view_count=record.view_count,
        revision_version=revision.version if revision is not None else None,
        last_reviewed=date.fromisoformat(reviewed) if reviewed else None,
        needs_review=flags is not None and flags.needs_human_review == 1,
        meta=meta,
        content_hash=hashlib.sha256(_CANONICAL.encode(record)).hexdigest(),
    )
