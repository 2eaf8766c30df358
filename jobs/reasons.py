"""Reasons for a rejected record: msgspec's validation error turned into one readable line.

msgspec says where (`$.score.quality`) and which rule; the reason also says what came, so it
reads the value at that path in the raw record and the rule from the schema's type there:
`score.quality: expected 0-100, got 140`, `tools[1]: expected a string, got 5`.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import inspect

from jobs.schema import Record, show

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_RECORD_TYPE = inspect.type_info(Record)
_MISSING_VALUE = object()


def reason_for(error: msgspec.ValidationError, raw: object) -> str:
    """One line for `error`, raised checking `raw`: the field's path, the rule, what came."""
    found = _AT.match(str(error))
    assert found is not None  # the pattern matches any text
    message, path = found["message"], found["path"] or ""
    parts: list[str | int] = [name or int(index) for name, index in _PART.findall(path)]
    where = _render(parts)
    missing = _MISSING.match(message)
    if missing:
        return f"{_join(where, missing['name'])}: required field is missing"
    if not message.startswith("Expected "):  # raised by a Struct's __post_init__: `field: ...`
        return _join(where, message)
    kind = _type_at(parts)
    value = _value_at(raw, parts)
    if kind is None or value is _MISSING_VALUE:
        return f"{where or 'record'}: {message[0].lower()}{message[1:]}"
    return f"{where}: {_describe(kind, value)}"


def _render(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _join(where: str, tail: str) -> str:
    return f"{where}.{tail}" if where else tail


def _type_at(parts: list[str | int]) -> Any:
    """The schema's type (an `inspect` type) at `parts`, or None."""
    kind: Any = _RECORD_TYPE
    for part in parts:
        kind = _container(kind)
        if isinstance(part, int) and isinstance(kind, inspect.ListType):
            kind = kind.item_type
        elif isinstance(part, str) and isinstance(kind, inspect.StructType):
            kind = next((f.type for f in kind.fields if f.encode_name == part), None)
        else:
            return None
    return kind


def _container(kind: Any) -> Any:
    """Unwrap metadata and `| None` down to a struct or a list, if there is one."""
    if isinstance(kind, inspect.Metadata):
        kind = kind.type
    if isinstance(kind, inspect.UnionType):
        kind = next((t for t in kind.types if not isinstance(t, inspect.NoneType)), kind)
    return kind.type if isinstance(kind, inspect.Metadata) else kind


def _value_at(raw: object, parts: list[str | int]) -> object:
    value = raw
    for part in parts:
        try:
            value = value[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return _MISSING_VALUE
    return value


def _describe(kind: Any, value: object) -> str:
    """Say which rule of `kind` the value breaks: what was expected and what came."""
    described = ""
    if isinstance(kind, inspect.UnionType):
        members = [t for t in kind.types if not isinstance(t, inspect.NoneType)]
        is_flag = any(isinstance(t, inspect.BoolType) for t in members)
        kind = members[0]
        if is_flag and isinstance(kind, inspect.Metadata):
            return f"expected {_description(kind)}, got {show(value)}"
    if isinstance(kind, inspect.Metadata):
        described, kind = _description(kind), kind.type
    got = show(value)
    if isinstance(kind, inspect.IntType):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected {described or 'a whole number'}, got {got}"
        return f"expected {kind.ge:,}-{kind.le:,}, got {got}"
    if isinstance(kind, inspect.StrType):
        if isinstance(value, str) and kind.max_length and len(value) > kind.max_length:
            return f"{len(value):,} characters, the limit is {kind.max_length:,}"
        return f"expected {described or 'a string'}, got {got}"
    if isinstance(kind, inspect.ListType):
        if isinstance(value, list) and kind.max_length and len(value) > kind.max_length:
            return f"{len(value):,} items, the limit is {kind.max_length:,}"
        return f"expected a list, got {got}"
    if isinstance(kind, inspect.StructType):
        return f"expected an object, got {got}"
    return f"unexpected value {got}"


def _description(kind: inspect.Metadata) -> str:
    return str((kind.extra_json_schema or {}).get("description", ""))
