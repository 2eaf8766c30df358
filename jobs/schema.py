"""The post record's schema in msgspec: types, limits and nesting, checked in one decoding pass.

`Record` is what a feed line must be. msgspec enforces the types and the limits in C while it
decodes; each Struct's `__post_init__` adds the few rules a type cannot say (a title that is
not blank, a real calendar date) and normalizes text (trimmed, except `body` and `source_id`).
Unknown keys are ignored and a null optional field counts as absent, so both are left out of
the record, of `meta` and of the content hash. `trim` strips the texts after decoding, by a
function generated once per Struct (as `dataclasses` generates `__init__`): a walk over a
plan cost a getattr, a dispatch and a setattr per field of every post, a quarter of the
import's time; the generated code reads and writes each field directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from msgspec import Meta, Struct, inspect

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


class Image(_Part):
    source: Text | None = None
    url: Text | None = None
    caption: Text | None = None


class Payload(_Part):
    source_id: Annotated[str, Meta(max_length=MAX_SOURCE_ID_CHARS)] | None = None
    generator: Text | None = None
    paragraphs: Annotated[int, Meta(ge=0, le=MAX_PARAGRAPHS)] | None = None
    scenario: Text | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None


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
        if not self.title.strip():
            raise Invalid("title: must not be empty")
        if not self.body.strip():
            raise Invalid("body: must not be empty")


def trim(record: Record) -> None:
    """Strip surrounding whitespace off every text of a record in place, but source_id and body."""
    _TRIMMERS[Record](record)


_STEPS = {  # what the generated trimmer does with a field's value `v` of each kind
    "text": "part.{name} = v.strip()",
    "texts": "part.{name} = [item.strip() for item in v]",
    "part": "trimmers[type(v)](v)",
    "parts": "for item in v: trimmers[type(item)](item)",
}


def _trimmer(part: type[Struct], plan: tuple[tuple[str, str], ...]) -> Callable[[Any], None]:
    """Generate the function that trims the fields of `plan` on a `part` in place."""
    lines = ["def trim(part):"]
    for name, kind in plan:
        assert name.isidentifier()  # field names of this module's Structs, never input
        lines += [f"    v = part.{name}", "    if v is not None:"]
        lines.append("        " + _STEPS[kind].format(name=name))
    lines.append("    return None")
    scope: dict[str, Any] = {"trimmers": _TRIMMERS}
    exec("\n".join(lines), scope)  # the source is built above from field names only
    trimmer: Callable[[Any], None] = scope["trim"]
    trimmer.__qualname__ = f"trim_{part.__name__}"
    return trimmer


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


def _plan(part: type[Struct], keep: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """Which fields of `part` hold text (`text`, `texts`) or nested parts (`part`, `parts`)."""
    info = inspect.type_info(part)
    assert isinstance(info, inspect.StructType)
    plan = []
    for field in info.fields:
        kind = _kind(field.type)
        if kind is not None and field.name not in keep:
            plan.append((field.name, kind))
    return tuple(plan)


def _kind(kind: object) -> str | None:
    if isinstance(kind, inspect.UnionType):
        kind = next(t for t in kind.types if not isinstance(t, inspect.NoneType))
    if isinstance(kind, inspect.Metadata):
        kind = kind.type
    if isinstance(kind, inspect.StrType):
        return "text"
    if isinstance(kind, inspect.StructType):
        return "part"
    if isinstance(kind, inspect.ListType):
        item = (
            kind.item_type.type if isinstance(kind.item_type, inspect.Metadata) else kind.item_type
        )
        return "texts" if isinstance(item, inspect.StrType) else "parts"
    return None


_TRIMMERS: dict[type[Struct], Callable[[Any], None]] = {}
_TRIMMERS.update(
    (part, _trimmer(part, _plan(part, frozenset())))
    for part in (Score, Revision, Flags, Entity, Image, Payload)
)
_TRIMMERS[Record] = _trimmer(Record, _plan(Record, frozenset({"source_id", "body"})))
