"""The post record's schema in msgspec: types, limits and nesting, checked in one decoding pass.

`Record` is what a feed line must be. msgspec enforces the types and the limits in C while it
decodes; each Struct's `__post_init__` adds the few rules a type cannot say (a title that is
not blank, a real calendar date) and normalizes text (trimmed, except `body` and `source_id`).
Unknown keys are ignored and a null optional field counts as absent, so both are left out of
the record, of `meta` and of the content hash.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

from msgspec import Meta, Struct

MAX_SOURCE_ID_CHARS = 200
MAX_TITLE_CHARS = 500
MAX_BODY_CHARS = 1_000_000
MAX_TEXT_CHARS = 10_000
MAX_VERSION_CHARS = 100
MAX_LIST_ITEMS = 1_000
MAX_READING_TIME = 10_000
MAX_VIEW_COUNT = 10**15
MAX_PARAGRAPHS = MAX_LIST_ITEMS * 100
_SHOWN_CHARS = 40

Text = Annotated[str, Meta(max_length=MAX_TEXT_CHARS)]
Texts = Annotated[list[Text], Meta(max_length=MAX_LIST_ITEMS)]
Percent = Annotated[int, Meta(ge=0, le=100)]
# A 0/1 flag; JSON true/false are accepted too and stored as 1/0.
Flag = Annotated[int, Meta(ge=0, le=1, description="0 or 1")] | bool
Day = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="a date YYYY-MM-DD")]


class Invalid(ValueError):
    """A value breaks a rule the types cannot say; the message is `field: reason`."""


def _trimmed(value: str | None) -> str | None:
    return None if value is None else value.strip()


def _trimmed_all(values: list[str] | None) -> list[str] | None:
    return None if values is None else [value.strip() for value in values]


class _Part(Struct, omit_defaults=True, gc=False):
    """A nested object of the record: every field optional, null the same as absent."""


class Score(_Part):
    quality: Percent | None = None
    freshness: Percent | None = None
    depth: Percent | None = None
    clarity: Percent | None = None


class Revision(_Part):
    status: Text | None = None
    version: Annotated[str, Meta(max_length=MAX_VERSION_CHARS)] | None = None
    last_reviewed: Day | None = None

    def __post_init__(self) -> None:
        self.status, self.version = _trimmed(self.status), _trimmed(self.version)
        if self.last_reviewed is not None:
            try:
                date.fromisoformat(self.last_reviewed)
            except ValueError:
                shown = show(self.last_reviewed)
                raise Invalid(f"last_reviewed: not a real date: {shown}") from None


class Flags(_Part):
    ai_generated_style: Flag | None = None
    has_images: Flag | None = None
    image_heavy: Flag | None = None
    needs_human_review: Flag | None = None

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            if isinstance(value := getattr(self, name), bool):
                setattr(self, name, int(value))


class Entity(_Part):
    name: Text | None = None
    type: Text | None = None

    def __post_init__(self) -> None:
        self.name, self.type = _trimmed(self.name), _trimmed(self.type)


class Image(_Part):
    source: Text | None = None
    url: Text | None = None
    caption: Text | None = None

    def __post_init__(self) -> None:
        self.source, self.url = _trimmed(self.source), _trimmed(self.url)
        self.caption = _trimmed(self.caption)


class Payload(_Part):
    source_id: Annotated[str, Meta(max_length=MAX_SOURCE_ID_CHARS)] | None = None
    generator: Text | None = None
    paragraphs: Annotated[int, Meta(ge=0, le=MAX_PARAGRAPHS)] | None = None
    scenario: Text | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None

    def __post_init__(self) -> None:
        self.source_id, self.generator = _trimmed(self.source_id), _trimmed(self.generator)
        self.scenario = _trimmed(self.scenario)


class Record(Struct, omit_defaults=True, gc=False):
    """One post as a feed carries it: `source_id`, `title` and `body` required, the rest not."""

    source_id: Annotated[str, Meta(max_length=MAX_SOURCE_ID_CHARS)]
    title: Annotated[str, Meta(max_length=MAX_TITLE_CHARS)]
    body: Annotated[str, Meta(max_length=MAX_BODY_CHARS)]
    topic: Text | None = None
    summary: Text | None = None
    stack: Texts | None = None
    tools: Texts | None = None
    code_language: Text | None = None
    difficulty: Text | None = None
    reading_time: (
        Annotated[int, Meta(ge=0, le=MAX_READING_TIME, description="a whole number of minutes")]
        | None
    ) = None
    view_count: Annotated[int, Meta(ge=0, le=MAX_VIEW_COUNT)] | None = None
    score: Score | None = None
    revision: Revision | None = None
    reference: Text | None = None
    hash: Text | None = None
    flags: Flags | None = None
    checklist: Texts | None = None
    entities: Annotated[list[Entity], Meta(max_length=MAX_LIST_ITEMS)] | None = None
    images: Annotated[list[Image], Meta(max_length=MAX_LIST_ITEMS)] | None = None
    payload: Payload | None = None
    notes: Texts | None = None
    ai_outline: Texts | None = None
    ai_brief: Text | None = None

    def __post_init__(self) -> None:
        check_source_id(self.source_id)
        self.title = self.title.strip()
        if not self.title:
            raise Invalid("title: must not be empty")
        if not self.body.strip():
            raise Invalid("body: must not be empty")
        self.topic, self.summary = _trimmed(self.topic), _trimmed(self.summary)
        self.code_language = _trimmed(self.code_language)
        self.difficulty = _trimmed(self.difficulty)
        self.reference, self.hash = _trimmed(self.reference), _trimmed(self.hash)
        self.ai_brief = _trimmed(self.ai_brief)
        self.stack, self.tools = _trimmed_all(self.stack), _trimmed_all(self.tools)
        self.checklist, self.notes = _trimmed_all(self.checklist), _trimmed_all(self.notes)
        self.ai_outline = _trimmed_all(self.ai_outline)


def check_source_id(source_id: str) -> None:
    """Raise Invalid unless `source_id` is non-empty printable text with no whitespace."""
    if source_id.isprintable() and source_id.split() == [source_id]:
        return
    if not source_id.strip():
        raise Invalid("source_id: must not be empty")
    raise Invalid(f"source_id: expected printable text without spaces, got {show(source_id)}")


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
