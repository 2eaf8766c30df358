"""Parse one page export (the site's text form of an article) into a raw post record.

A page reads: decoration lines (`|`), the title, the article (intro, an image reference and
its caption, section headings, paragraphs, an unfenced code block, `•` bullet lists), then
a `<site> post meta` block whose labels run straight into their values (`reading time12`)
or head bullet lists (`  • quality: 77`), and a trailing `Similar Posts` line.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

_SPACES = str.maketrans({"\u00a0": " ", "\u2007": " ", "\u202f": " ", "\t": "    "})
_META_MARKER = re.compile(r"[\w-]+ post meta", re.IGNORECASE)
_TRAILER = re.compile(r"similar posts\b", re.IGNORECASE)
_BULLET = re.compile(r"\s*[•◦‣▪]\s*(?P<text>.*)")
_CAPTION = re.compile(r"(?P<caption>.+?)\.?\s+image source:\s*(?P<source>.*)", re.IGNORECASE)
_WHOLE = re.compile(r"-?[0-9]{1,30}")
_LANGUAGE = re.compile(r"[\w+#.-]{1,30}")

# Meta labels as exported -> record fields; tried longest first, so labels may hold spaces.
_LABELS = {
    label: label.replace(" ", "_")
    for label in (
        *("topic", "summary", "ai outline", "ai brief", "stack", "tools", "code language"),
        *("difficulty", "reading time", "view count", "score", "revision", "reference", "hash"),
        *("flags", "checklist", "entities", "payload", "notes"),
    )
} | {"image sources": "images"}
_LONGEST_FIRST = sorted(_LABELS, key=len, reverse=True)
_TEXT_LISTS = frozenset({"ai_outline", "stack", "tools", "checklist", "notes"})
_OBJECTS = frozenset({"score", "revision", "flags", "payload"})
_OBJECT_LISTS = frozenset({"entities", "images"})
_WHOLE_NUMBERS = frozenset(
    {"reading_time", "view_count", "quality", "freshness", "depth", "clarity", "paragraphs"}
    | {"seed", "ai_generated_style", "has_images", "image_heavy", "needs_human_review"}
)

# A line is code when it opens like code or ends like code; prose ends a sentence.
_CODE_START = re.compile(
    r"""\s+\S                                  # indented
    | (from\s+[\w.]+\s+)?import\s+[\w.{*]     | (async\s+)?def\s+\w+\s*\(
    | class\s+\w+\s*[(:{]                     | @\w[\w.]*(\(|$)
    | (return|yield|raise|await|echo)\b       | (const|let|var)\s+\w+\s*=
    | (function|func|fn)\s+\w+\s*\(           | \#include\b | <\?php | \$\s | //\s? | \#\s
    | (SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP)\s+[A-Z*\w]
    | [A-Za-z_$][\w.$\[\]'"]*\s*(=|\+=|-=|:=)\s*\S     # assignment
    | [A-Za-z_$][\w.$]*\(.*\)\s*;?$                     # call
    | [}\])]
    """,
    re.VERBOSE,
)
_CODE_END = re.compile(r"[{};]\s*$|\)\s*:\s*$")
_CODE_MARK = re.compile(r"[(){}\[\]=;]")


@dataclass(slots=True)
class _Meta:
    """The meta block being read: scalars, text lists, objects and lists of objects."""

    scalars: dict[str, object] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    objects: dict[str, dict[str, object]] = field(default_factory=dict)
    object_lists: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    def start(self, name: str, value: str) -> None:
        """Begin the field `name`, whose label line carried `value` (often empty)."""
        if name in _TEXT_LISTS:
            self.lists[name] = [value] if value else []
        elif name in _OBJECTS:
            self.objects[name] = {}
        elif name in _OBJECT_LISTS:
            self.object_lists[name] = []
        else:
            self.scalars[name] = _number_or_text(name, value)

    def add(self, name: str, text: str) -> None:
        """Add one bullet under `name`; raises ValueError for a pair without `key: value`."""
        if name in _TEXT_LISTS:
            self.lists[name].append(text)
        elif name in _OBJECTS:
            key, value = _pair(name, text)
            self.objects[name][key] = _number_or_text(key, value)
        elif name in _OBJECT_LISTS:
            key, value = _pair(name, text)
            items = self.object_lists[name]
            if not items or key in items[-1]:
                items.append({})
            items[-1][key] = value

    def record(self) -> dict[str, object]:
        """The fields read so far as one raw record, `source_id` taken from the payload."""
        record: dict[str, object] = {**self.scalars, **self.lists, **self.objects}
        record.update(self.object_lists)
        source_id = self.objects.get("payload", {}).get("source_id")
        if source_id is not None:
            record["source_id"] = source_id
        return record


def parse_page(text: str) -> dict[str, object]:
    """Turn one page export into a raw record for `validate_post`.

    Raises ValueError, with a one-line reason, when the text is not a page export.
    """
    lines = [line.translate(_SPACES).rstrip() for line in _lines(text)]
    marker = next((i for i, line in enumerate(lines) if _META_MARKER.fullmatch(line.strip())), None)
    if marker is None:
        raise ValueError("not a page export: no '<site> post meta' line")
    meta = _read_meta(lines[marker + 1 :])
    record = meta.record()
    article = _skip_decoration(lines[:marker])
    if not article:
        raise ValueError("not a page export: no title before the post meta block")
    record["title"] = article[0].strip()
    language = str(record.get("code_language", "")).lower()
    record["body"] = _body(
        _blocks(article[1:]),
        language=language if _LANGUAGE.fullmatch(language) else "",
        images=meta.object_lists.get("images", []),
    )
    return record


def _lines(text: str) -> list[str]:
    """Split into lines, dropping a UTF-8 BOM and any CRLF or CR line ends."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _skip_decoration(lines: list[str]) -> list[str]:
    """Drop the leading lines that carry no words (blank lines, `|` separators)."""
    for index, line in enumerate(lines):
        if any(char.isalnum() for char in line):
            return lines[index:]
    return []


def _read_meta(lines: list[str]) -> _Meta:
    """Read the meta block; label lines start fields, bullet lines fill them."""
    meta = _Meta()
    current: str | None = None
    for line in lines:
        if not line.strip():
            continue
        bullet = _BULLET.fullmatch(line)
        if bullet is not None:
            if current is not None:
                meta.add(current, bullet["text"].strip())
            continue
        if _TRAILER.match(line.strip()):
            break
        current, value = _label(line.strip())
        if current is not None:
            meta.start(current, value)
    return meta


def _label(line: str) -> tuple[str | None, str]:
    """Split `reading time12` into (`reading_time`, `12`); unknown labels give (None, line)."""
    lowered = line.lower()
    for label in _LONGEST_FIRST:
        if lowered.startswith(label):
            return _LABELS[label], line[len(label) :].removeprefix(":").strip()
    return None, line


def _pair(name: str, text: str) -> tuple[str, str]:
    """Split a `last reviewed: 2024-01-12` bullet into (`last_reviewed`, `2024-01-12`)."""
    key, colon, value = text.partition(":")
    if not colon or not key.strip():
        raise ValueError(f"not a page export: expected 'key: value' under {name}, got {text!r:.60}")
    return "_".join(key.lower().split()), value.strip()


def _number_or_text(name: str, value: str) -> object:
    """Whole-number fields become ints when they read as one; anything else stays text."""
    return int(value) if name in _WHOLE_NUMBERS and _WHOLE.fullmatch(value) else value


def _blocks(lines: list[str]) -> list[list[str]]:
    """Group lines into blocks separated by blank lines."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _body(blocks: list[list[str]], *, language: str, images: list[dict[str, object]]) -> str:
    """Render the article blocks as Markdown: `##` headings, fenced code, `-` lists, images."""
    parts: list[str] = []
    for kind, lines in _classify(blocks):
        if kind == "code":
            code = textwrap.dedent("\n".join(lines))
            parts.append(f"```{language}\n{code}\n```")
        elif kind == "list":
            parts.append("\n".join(f"- {_bullet(line)}" for line in lines))
        elif kind == "image":
            parts.extend(_image(lines, images))
        elif kind == "heading":
            parts.append(f"## {lines[0].strip()}")
        else:
            parts.append("\n".join(line.strip() for line in lines))
    return "\n\n".join(parts)


def _classify(blocks: list[list[str]]) -> list[tuple[str, list[str]]]:
    """Name each block's kind; code blocks split by blank lines are joined back together."""
    kinds: list[tuple[str, list[str]]] = []
    for index, block in enumerate(blocks):
        kind = _kind(block, blocks[index + 1] if index + 1 < len(blocks) else None)
        if kind == "code" and kinds and kinds[-1][0] == "code":
            kinds[-1][1].extend(["", *block])
            continue
        if kind == "image" and len(block) == 1 and kinds and kinds[-1][1] == [_caption(block)]:
            kinds.pop()  # the image's reference line stood alone before its caption line
        kinds.append((kind, list(block)))
    return kinds


def _kind(block: list[str], following: list[str] | None) -> str:
    """One of list, image, code, heading (a short line that heads a block) or paragraph."""
    if all(_BULLET.fullmatch(line) for line in block):
        return "list"
    if _CAPTION.fullmatch(block[-1].strip()):
        return "image"
    if _is_code(block):
        return "code"
    heads_text = following is not None and not (len(following) == 1 and _is_heading(following[0]))
    return "heading" if len(block) == 1 and heads_text and _is_heading(block[0]) else "paragraph"


def _bullet(line: str) -> str:
    match = _BULLET.fullmatch(line)
    return match["text"].strip() if match else line.strip()


def _caption(block: list[str]) -> str:
    match = _CAPTION.fullmatch(block[-1].strip())
    return match["caption"] if match else ""


def _image(block: list[str], images: list[dict[str, object]]) -> list[str]:
    """An image block as `![caption](url)`, dropped when no image source gives its URL."""
    caption = _caption(block)
    others = [line.strip() for line in block[:-1] if line.strip() != caption]
    url = _image_url(caption, images)
    return ["\n".join(others)] * bool(others) + ([f"![{caption}]({url})"] if url else [])


def _is_heading(line: str) -> bool:
    """A short line of a few words that does not end a sentence."""
    text = line.strip()
    short = len(text) <= 80 and len(text.split()) <= 8
    return short and text[-1] not in ".,;:!?" and not _BULLET.fullmatch(line)


def _is_code(block: list[str]) -> bool:
    """Every line looks like code, and a one-line block carries code punctuation too."""
    if not all(_is_code_line(line) for line in block):
        return False
    return len(block) > 1 or bool(_CODE_MARK.search(block[0]))


def _is_code_line(line: str) -> bool:
    if _BULLET.fullmatch(line):
        return False
    text = line.strip()
    if text[-1] in ".!?" and len(text.split()) >= 5:
        return False  # a sentence, even if it starts with "for" or "if"
    return bool(_CODE_START.match(line) or _CODE_END.search(line))


def _image_url(caption: str, images: list[dict[str, object]]) -> str | None:
    """The URL of the image whose caption matches, with spaces and `)` escaped for Markdown."""
    for image in images:
        url = image.get("url")
        if str(image.get("caption", "")).casefold() == caption.casefold() and isinstance(url, str):
            return url.replace(" ", "%20").replace(")", "%29") or None
    return None
