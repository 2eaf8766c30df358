"""Stream the posts of one feed file, whatever its size, as `Parsed` or `Rejected` items.

Three formats: JSON Lines (position = physical line number), a JSON array (position =
element index, read with a small incremental scanner) and a page export (position 1).
Memory stays flat: at most one line or element (`MAX_LINE_BYTES`) is held at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from jobs.pages import parse_page
from jobs.posts import MAX_LINE_BYTES, Item, Rejected, decode_post, validate_post

Format = Literal["jsonl", "json-array", "page"]

MAX_PAGE_BYTES = 5 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_IN_STRING = re.compile(rb'["\\]')
# Skip, in one C-level match, whole strings and every byte that cannot end or nest an element;
# stop at a bracket, at a string left open by the end of the chunk, and (at the top) at a comma.
_SKIP_INNER = re.compile(rb'(?:[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.DOTALL)
_SKIP_TOP = re.compile(rb'(?:[^"\[\]{},]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.DOTALL)


def detect_format(path: Path) -> Format:
    """Name the feed format from the suffix, else from the first non-blank byte.

    Raises OSError when the file cannot be read.
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    with path.open("rb") as stream:
        first = _skip_blank(stream)[:1]
    if suffix == ".txt":
        return "page"
    if first == b"{":
        return "jsonl"
    return "json-array" if first == b"[" or suffix == ".json" else "page"


def read_feed(path: Path, *, after: int = 0) -> Iterator[Item]:
    """Stream the items of `path` whose position is greater than `after`.

    Items at or before `after` (a checkpoint) are skipped without being decoded or validated.
    Raises OSError at once when the file cannot be read.
    """
    readers = {"jsonl": _read_lines, "json-array": _read_array, "page": _read_page}
    return readers[detect_format(path)](path, after)


def _skip_blank(stream: BinaryIO) -> bytes:
    """Read past a UTF-8 BOM and whitespace; return the data from there (b"" at the end)."""
    chunk = stream.read(max(CHUNK_BYTES, len(_BOM))).removeprefix(_BOM).lstrip(_WHITESPACE)
    while not chunk and (more := stream.read(CHUNK_BYTES)):
        chunk = more.lstrip(_WHITESPACE)
    return chunk


def _too_long(size: int, *, what: str) -> str:
    return f"{what} too long: {size:,} bytes, the limit is {MAX_LINE_BYTES:,}"


def _read_lines(path: Path, after: int) -> Iterator[Item]:
    """JSON Lines: one record per line; blank lines are skipped but still counted."""
    with path.open("rb") as stream:
        number = 0
        while raw := stream.readline(MAX_LINE_BYTES + 2):
            number += 1
            if not raw.endswith(b"\n") and len(raw) == MAX_LINE_BYTES + 2:
                size = len(raw) + _drain_line(stream)
                if number > after:
                    yield Rejected(number, None, _too_long(size, what="line"))
                continue
            if number <= after:
                continue
            line = raw.removesuffix(b"\n").removesuffix(b"\r")
            if number == 1:
                line = line.removeprefix(_BOM)
            if len(line) > MAX_LINE_BYTES:
                yield Rejected(number, None, _too_long(len(line), what="line"))
            elif line.strip(_WHITESPACE):
                yield decode_post(line, position=number, what="line")


def _drain_line(stream: BinaryIO) -> int:
    """Read and discard the rest of an over-long line in chunks; return its byte count."""
    size = 0
    while chunk := stream.readline(CHUNK_BYTES):
        size += len(chunk)
        if chunk.endswith(b"\n"):
            return size - len(b"\r\n" if chunk.endswith(b"\r\n") else b"\n")
    return size


def _read_page(path: Path, after: int) -> Iterator[Item]:
    """A page export: the whole file is one post at position 1."""
    if after >= 1:
        return
    with path.open("rb") as stream:
        data = stream.read(MAX_PAGE_BYTES + 1)
    if len(data) > MAX_PAGE_BYTES:
        yield Rejected(1, None, f"page too large: over {MAX_PAGE_BYTES:,} bytes")
        return
    try:
        record = parse_page(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        yield Rejected(1, None, f"page: invalid UTF-8 at byte {error.start}")
        return
    except ValueError as error:
        yield Rejected(1, None, str(error))
        return
    yield validate_post(record, position=1)


def _read_array(path: Path, after: int) -> Iterator[Item]:
    """A JSON array: each element is one record; a broken end gives one `Rejected`, then stop."""
    with path.open("rb") as stream:
        for element in _ArrayScanner(stream, after=after).elements():
            if element.problem is not None:
                yield Rejected(element.index, None, element.problem)
            elif element.size > MAX_LINE_BYTES:
                yield Rejected(element.index, None, _too_long(element.size, what="element"))
            elif element.blank:
                yield Rejected(element.index, None, "invalid JSON: empty element")
            else:
                yield decode_post(bytes(element.text), position=element.index, what="element")


@dataclass(slots=True)
class _Element:
    """The raw bytes of one array element (cut at `MAX_LINE_BYTES`), or why it is broken."""

    index: int
    text: bytearray
    size: int = 0
    blank: bool = True
    problem: str | None = None


class _ArrayScanner:
    """Find element boundaries in a JSON array, tracking string, escape and bracket state.

    Only `"`, `\\`, brackets, braces and commas matter, and none of them can occur inside a
    multi-byte UTF-8 sequence, so the scanner works on raw bytes.
    """

    def __init__(self, stream: BinaryIO, *, after: int) -> None:
        self.stream = stream
        self.after = after
        self.depth = 0  # nesting inside the current element
        self.in_string = False
        self.escaped = False  # a backslash ended the previous chunk
        self.element = _Element(1, bytearray())
        self.finished: list[_Element] = []

    def elements(self) -> Iterator[_Element]:
        """Yield the elements after `after`; a broken array ends with one element's problem."""
        chunk = _skip_blank(self.stream)
        if not chunk.startswith(b"["):
            shown = "an empty file" if not chunk else repr(chunk[:20].decode("utf-8", "replace"))
            yield _Element(1, bytearray(), problem=f"expected a JSON array, got {shown}")
            return
        chunk = chunk[1:]
        while chunk:
            end, state = self._scan(chunk)
            yield from self.finished
            if state == "closed":
                yield from self._trailing(chunk[end:])
            if state != "open":
                return
            chunk = self.stream.read(CHUNK_BYTES)
        if self.element.index > self.after:
            self.element.problem = "truncated JSON: the file ends before the array is closed"
            yield self.element

    def _scan(self, chunk: bytes) -> tuple[int, Literal["open", "closed", "broken"]]:
        """Scan one chunk into `finished` elements; say where and whether the array ended."""
        self.finished = []
        start = index = 0
        if self.escaped:
            index, self.escaped = 1, False
        while index < len(chunk):
            if self.in_string:  # only a string cut by the chunk's end comes here
                index = self._scan_string(chunk, index)
                continue
            skipped = (_SKIP_INNER if self.depth else _SKIP_TOP).match(chunk, index)
            index = skipped.end() if skipped else index
            if index == len(chunk):
                break
            char, index = chunk[index : index + 1], index + 1
            if char == b'"':
                self.in_string = True
            elif char in b"[{":
                self.depth += 1
            elif self.depth > 0:
                self.depth -= 1
            elif char == b"}":
                self._keep(chunk[start:index])
                self.element.problem = "invalid JSON: a '}' that closes nothing"
                self.finished.append(self.element)
                return index, "broken"
            else:  # a comma or the closing bracket at the top level of the array
                self._keep(chunk[start : index - 1])
                start = index
                if char == b"]" and self.element.index == 1 and self.element.blank:
                    return index, "closed"  # an empty array
                self._next_element()
                if char == b"]":
                    return index, "closed"
        self._keep(chunk[start:])
        return len(chunk), "open"

    def _scan_string(self, chunk: bytes, index: int) -> int:
        """Go on through a string from `index`; return where scanning resumes."""
        match = _IN_STRING.search(chunk, index)
        if match is None:
            return len(chunk)
        if match.group() == b'"':
            self.in_string = False
            return match.end()
        self.escaped = match.end() >= len(chunk)  # the escaped byte opens the next chunk
        return match.end() + 1

    def _keep(self, data: bytes) -> None:
        """Add bytes to the current element, holding at most `MAX_LINE_BYTES + 1` of them."""
        element = self.element
        element.size += len(data)
        element.blank = element.blank and not data.strip(_WHITESPACE)
        if element.index > self.after and len(element.text) <= MAX_LINE_BYTES:
            element.text += data[: MAX_LINE_BYTES + 1 - len(element.text)]

    def _next_element(self) -> None:
        """Hand over the finished element (if wanted) and start the next one."""
        if self.element.index > self.after:
            self.finished.append(self.element)
        self.element = _Element(self.element.index + 1, bytearray())

    def _trailing(self, rest: bytes) -> Iterator[_Element]:
        """Report anything but whitespace after the closing `]`, reading on only while blank."""
        while not rest.strip(_WHITESPACE):
            rest = self.stream.read(CHUNK_BYTES)
            if not rest:
                return
        if self.element.index > self.after:
            problem = "unexpected text after the closing ']'"
            yield _Element(self.element.index, bytearray(), problem=problem)
