"""Text from feeds, arguments and errors made safe to show: control characters and the
Unicode controls that reorder or hide text (bidi overrides, zero-width marks) are written
out visibly as escapes (`\\u202e`, `\\x07`), in the console's pages and the CLI's output alike.
Newlines and tabs stay."""

from __future__ import annotations

import re
from typing import Any

HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every hidden or reordering character written as its escape."""
    return HIDDEN.sub(_escape, text)


def printable_data(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings) with every string made printable."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_data(v) for v in value]
    return value
