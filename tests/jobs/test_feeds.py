"""Tests for jobs/feeds.py (streaming readers) and scripts/gen_posts.py (synthetic feeds)."""

from __future__ import annotations

import importlib.util
import json
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import jobs.feeds
from jobs.feeds import detect_format, read_feed
from jobs.posts import MAX_LINE_BYTES, Item, Parsed, Rejected, decode_post, validate_post

BOM = "\ufeff".encode()


def record(n: int, **fields: Any) -> dict[str, Any]:
    """A small valid record numbered `n`, with `fields` changed."""
    return {"source_id": f"feed-{n}", "title": f"post {n}", "body": "## part\n\ntext", **fields}


def line(n: int, **fields: Any) -> bytes:
    return json.dumps(record(n, **fields)).encode()


def without(n: int, name: str) -> bytes:
    raw = record(n)
    del raw[name]
    return json.dumps(raw).encode()


def summary(items: list[Item]) -> list[tuple[int, str, str | None]]:
    """(position, source id or reason, source id of a reject) for each item."""
    return [
        (item.position, item.post.source_id, None)
        if isinstance(item, Parsed)
        else (item.position, item.reason, item.source_id)
        for item in items
    ]


# Each hostile line: its bytes, its line end, and what must come of it:
# ("parsed", source id), ("rejected", start of the reason, source id) or None for a blank line.
LATIN1_TITLE = b'{"source_id": "feed-13", "title": "caf\xe9", "body": "b"}'
LATIN1_AT = LATIN1_TITLE.index(b"\xe9")
HOSTILE: list[tuple[bytes, bytes, tuple[Any, ...] | None]] = [
    (BOM + line(1), b"\n", ("parsed", "feed-1")),
    (line(2), b"\r\n", ("parsed", "feed-2")),
    (b"", b"\n", None),
    (
        b'{"source_id": "feed-4", "title": ',
        b"\n",
        ("rejected", "invalid JSON: Expecting value", None),
    ),
    (b"[1, 2, 3]", b"\n", ("rejected", "record: expected a JSON object, got array", None)),
    (b'"just text"', b"\n", ("rejected", 'record: expected a JSON object, got "just text"', None)),
    (without(7, "title"), b"\n", ("rejected", "title: required field is missing", "feed-7")),
    (line(8, body=""), b"\n", ("rejected", "body: must not be empty", "feed-8")),
    (
        line(9, reading_time="twelve"),
        b"\n",
        ("rejected", 'reading_time: expected a whole number of minutes, got "twelve"', "feed-9"),
    ),
    (
        line(10, reading_time=True),
        b"\r\n",
        ("rejected", "reading_time: expected a whole", "feed-10"),
    ),
    (
        line(11, score={"quality": 140}),
        b"\n",
        ("rejected", "score.quality: expected 0-100, got 140", "feed-11"),
    ),
    (
        line(12, revision={"last_reviewed": "2023-02-29"}),
        b"\n",
        ("rejected", 'revision.last_reviewed: not a real date: "2023-02-29"', "feed-12"),
    ),
    (LATIN1_TITLE, b"\n", ("rejected", f"line 13: invalid UTF-8 at byte {LATIN1_AT}", None)),
    (b"[" * 100_000, b"\n", ("rejected", "nesting too deep", None)),
    (b'{"a":' * 100_000, b"\n", ("rejected", "nesting too deep", None)),
    (
        line(16, body="x" * 3 * 1024 * 1024),
        b"\n",
        ("rejected", "body: 3,145,728 characters, the limit is 1,000,000", "feed-16"),
    ),
    (line(17, title="a\u0000b"), b"\n", ("rejected", "title: contains a NUL byte", "feed-17")),
    (
        b'{"source_id": "feed-18", "title": "a\x00b", "body": "b"}',
        b"\n",
        ("rejected", "invalid JSON: Invalid control character", None),
    ),
    (b"   \t  ", b"\r\n", None),
    (line(20, view_count=-1), b"\n", ("rejected", "view_count: expected 0-", "feed-20")),
    (b"null", b"\n", ("rejected", "record: expected a JSON object, got null", None)),
    (line(22, unknown_field="y" * 3 * 1024 * 1024), b"\n", ("parsed", "feed-22")),
    (line(23, title="ünïcödé ✓"), b"\r\n", ("parsed", "feed-23")),
    (line(24) + b" trailing", b"\n", ("rejected", "invalid JSON: Extra data", None)),
    (line(25), b"", ("parsed", "feed-25")),
]


@pytest.fixture
def hostile_feed(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"".join(content + end for content, end, _ in HOSTILE))
    return path


def test_a_hostile_feed_gives_each_line_its_outcome(hostile_feed: Path) -> None:
    # Given a JSON Lines feed with one trap per line
    # When it is read
    items = list(read_feed(hostile_feed))
    # Then blank lines give nothing and every other line gives one item at its line number
    expected = [(number, want) for number, (_, _, want) in enumerate(HOSTILE, 1) if want]
    assert [item.position for item in items] == [number for number, _ in expected]
    for item, (number, want) in zip(items, expected, strict=True):
        if want[0] == "parsed":
            assert isinstance(item, Parsed), (number, item)
            assert item.post.source_id == want[1]
        else:
            assert isinstance(item, Rejected), (number, item)
            assert item.reason.startswith(want[1]), (number, item.reason)
            assert item.source_id == want[2], number
            assert "\n" not in item.reason


def test_the_bom_and_crlf_do_not_reach_the_record(hostile_feed: Path) -> None:
    # Given the hostile feed, whose line 1 has a BOM and line 2 ends in CRLF
    items = list(read_feed(hostile_feed))
    # Then those lines give the very posts their records give without the BOM or CR
    assert items[:2] == [validate_post(record(n), position=n) for n in (1, 2)]


def test_resuming_after_any_line_gives_exactly_the_rest(hostile_feed: Path) -> None:
    # Given the items of a whole read
    everything = list(read_feed(hostile_feed))
    # When the read resumes after each possible checkpoint
    for after in range(len(HOSTILE) + 1):
        # Then it yields exactly the items past the checkpoint, unchanged
        assert list(read_feed(hostile_feed, after=after)) == [
            item for item in everything if item.position > after
        ]


def test_resuming_skips_earlier_lines_without_validating_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a feed of 100 posts and a validator that counts its calls
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"\n".join(line(n) for n in range(1, 101)))
    seen: list[int] = []

    def counting(data: bytes, *, position: int, what: str) -> Item:
        seen.append(position)
        return decode_post(data, position=position, what=what)

    monkeypatch.setattr(jobs.feeds, "decode_post", counting)
    # When the read resumes after line 90
    items = list(read_feed(path, after=90))
    # Then only the last ten lines were validated
    assert seen == list(range(91, 101))
    assert [item.position for item in items] == seen


def test_a_line_over_the_limit_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    # Given a feed whose second line is one byte over the line limit
    huge = b'{"source_id": "big", "body": "' + b"a" * MAX_LINE_BYTES + b'"}'
    path = tmp_path / "feed.jsonl"
    path.write_bytes(line(1) + b"\n" + huge + b"\r\n" + line(3) + b"\n")
    # When it is read
    items = list(read_feed(path))
    # Then that line is rejected with its size and the lines around it are read
    assert summary(items) == [
        (1, "feed-1", None),
        (2, f"line too long: {len(huge):,} bytes, the limit is {MAX_LINE_BYTES:,}", None),
        (3, "feed-3", None),
    ]
    assert summary(list(read_feed(path, after=2))) == [(3, "feed-3", None)]


TRICKY = [
    record(1, title='quotes " and \\ backslashes \\\\" ] } , [ {'),
    record(2, title="\\", notes=["[", "]", "{", "}", ",", '"', "\\"]),
    record(3, body="é ✓ 日本語 \u2028", stack=["a", "b"]),
    record(4, score={"quality": 1, "freshness": 2, "depth": 3, "clarity": 4}),
    record(5),
]


def write_array(path: Path, elements: list[Any], *, tail: str = "") -> Path:
    path.write_text(json.dumps(elements, indent=2, ensure_ascii=False) + tail, encoding="utf-8")
    return path


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64 * 1024])
def test_a_json_array_streams_element_by_element(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Given an array whose strings hold brackets, quotes and escapes, read in small chunks
    monkeypatch.setattr(jobs.feeds, "CHUNK_BYTES", chunk)
    path = write_array(tmp_path / "feed.json", TRICKY)
    # When it is read
    items = list(read_feed(path))
    # Then each element is the same post as the one decoded whole
    assert items == [validate_post(raw, position=n) for n, raw in enumerate(TRICKY, 1)]
    assert [item.position for item in read_feed(path, after=3)] == [4, 5]


def test_a_truncated_array_ends_with_one_rejection(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text("[" + json.dumps(record(1)) + ", " + json.dumps(record(2))[:-10])
    assert summary(list(read_feed(path))) == [
        (1, "feed-1", None),
        (2, "truncated JSON: the file ends before the array is closed", None),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", []),
        ("  [ ]\n", []),
        (
            '[{"a":}, 7, ' + json.dumps(record(3)) + "]",
            [(1, "invalid JSON"), (2, "record: expected a JSON object, got 7"), (3, "feed-3")],
        ),
        ("[" + json.dumps(record(1)) + ",]", [(1, "feed-1"), (2, "invalid JSON: empty element")]),
        (
            "[" + json.dumps(record(1)) + "] and more",
            [(1, "feed-1"), (2, "unexpected text after the closing ']'")],
        ),
        ("[" + json.dumps(record(1)) + "}, {}]", [(1, "invalid JSON: a '}' that closes nothing")]),
        ("[" + "[" * 100_000 + "]" * 100_000 + "]", [(1, "nesting too deep")]),
        ("not json at all", [(1, "expected a JSON array, got 'not json at all'")]),
        ("", [(1, "expected a JSON array, got an empty file")]),
    ],
)
def test_a_broken_array_is_reported_element_by_element(
    tmp_path: Path, text: str, expected: list[tuple[int, str]]
) -> None:
    path = tmp_path / "feed.json"
    path.write_text(text, encoding="utf-8")
    got = [(position, what) for position, what, _ in summary(list(read_feed(path)))]
    assert len(got) == len(expected)
    for (position, what), (want_position, want) in zip(got, expected, strict=True):
        assert position == want_position
        assert what.startswith(want), what


def test_invalid_utf8_in_an_element_names_the_element(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_bytes(b"[" + line(1) + b', {"title": "caf\xe9"}]')
    assert summary(list(read_feed(path)))[1] == (2, "element 2: invalid UTF-8 at byte 15", None)


def test_an_element_over_the_limit_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.feeds, "MAX_LINE_BYTES", 1000)
    path = write_array(tmp_path / "feed.json", [record(1, body="x" * 2000), record(2)])
    reasons = summary(list(read_feed(path)))
    assert (
        reasons[0][1].startswith("element too long: 2,") and "the limit is 1,000" in reasons[0][1]
    )
    assert reasons[1] == (2, "feed-2", None)


PAGE = """|

a small page

intro paragraph for the page.

alphanode post meta

reading time3
payload
  • source id: page-000001
Similar Posts
"""


def test_a_page_export_is_one_post_at_position_one(tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    path.write_text(PAGE, encoding="utf-8")
    items = list(read_feed(path))
    assert summary(items) == [(1, "page-000001", None)]
    assert isinstance(items[0], Parsed) and items[0].post.reading_time == 3
    assert list(read_feed(path, after=1)) == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"no meta here", "not a page export"),
        (b"caf\xe9", "page: invalid UTF-8 at byte 3"),
        (b"x" * (5 * 1024 * 1024 + 1), "page too large"),
        (PAGE.replace("  • source id: page-000001", "").encode(), "source_id: required"),
    ],
)
def test_a_broken_page_is_one_rejection(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "page.txt"
    path.write_bytes(content)
    [item] = read_feed(path)
    assert isinstance(item, Rejected) and item.position == 1
    assert item.reason.startswith(reason)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("feed.jsonl", b"[1]", "jsonl"),
        ("feed.ndjson", b"", "jsonl"),
        ("feed.json", b"  \n [", "json-array"),
        ("feed.json", b"{}\n{}", "jsonl"),
        ("feed.json", b"", "json-array"),
        ("page.txt", b"[not json]", "page"),
        ("export", BOM + b" {", "jsonl"),
        ("export", b"[", "json-array"),
        ("export", b"|\n\ntitle", "page"),
    ],
)
def test_the_format_comes_from_the_suffix_then_the_first_byte(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert detect_format(path) == expected


def test_an_unreadable_file_raises_at_once(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        detect_format(tmp_path / "missing.json")
    with pytest.raises(OSError):
        read_feed(tmp_path / "missing.json")  # before the first item is asked for


def peak_while_reading(path: Path) -> tuple[int, int]:
    """(items read, peak bytes allocated) while streaming `path`."""
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_feed(path))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_memory_stays_flat_however_long_the_feed(tmp_path: Path, layout: str) -> None:
    # Given a generated feed of 50,000 posts, over 15 MB
    path = tmp_path / f"feed.{layout}"
    with path.open("w", encoding="utf-8") as out:
        gen_posts.write_feed(
            (record(n, summary="s" * 300) for n in range(50_000)), out, format=layout
        )
    assert path.stat().st_size > 15_000_000
    # When it is streamed, then the peak allocation is a small fraction of the file
    count, peak = peak_while_reading(path)
    assert count == 50_000
    assert peak < 2_000_000, f"peak {peak:,} bytes"


def load_gen_posts() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "gen_posts.py"
    spec = importlib.util.spec_from_file_location("gen_posts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_posts"] = module
    spec.loader.exec_module(module)
    return module


gen_posts = load_gen_posts()
generate: Callable[..., Any] = gen_posts.generate_posts


def test_generated_posts_are_deterministic_by_seed() -> None:
    assert list(generate(50, seed=7)) == list(generate(50, seed=7))
    assert list(generate(50, seed=7)) != list(generate(50, seed=8))


def test_start_cuts_disjoint_slices_of_the_same_feed() -> None:
    whole = list(generate(30, seed=3))
    assert list(generate(10, seed=3, start=20)) == whole[20:]
    assert [post["source_id"] for post in generate(2, seed=3, start=122)] == [
        "alphanode-000123",
        "alphanode-000124",
    ]


def test_every_generated_post_validates_and_looks_like_an_article() -> None:
    for number, raw in enumerate(generate(2_000, seed=11), 1):
        item = validate_post(raw, position=number)
        assert isinstance(item, Parsed), item
        body = item.post.body
        sections = [text for text in body.splitlines() if text.startswith("## ")]
        assert 3 <= len(sections) <= 4
        assert f"```{raw['code_language']}\n" in body
        assert raw["difficulty"] in {"beginner", "intermediate", "advanced"}
        assert item.post.last_reviewed is not None


@pytest.mark.parametrize(("layout", "suffix"), [("jsonl", ".jsonl"), ("json", ".json")])
def test_the_command_line_writes_a_feed_the_reader_accepts(
    tmp_path: Path, layout: str, suffix: str
) -> None:
    # Given a feed written by the command line
    path = tmp_path / f"made{suffix}"
    status = gen_posts.main(
        ["25", "--seed", "5", "--start", "100", "--format", layout, "--out", str(path)]
    )
    # When it is read back
    items = list(read_feed(path))
    # Then every post is parsed, in order, numbered from --start + 1
    assert status == 0
    assert all(isinstance(item, Parsed) for item in items)
    assert [item.position for item in items] == list(range(1, 26))
    assert summary(items)[0][1] == "alphanode-000101"
