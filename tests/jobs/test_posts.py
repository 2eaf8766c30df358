"""Tests for jobs/posts.py: validation rules, their reasons, the mapping and the content hash."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest

from jobs.posts import (
    Parsed,
    Post,
    Rejected,
    decode_post,
    validate_post,
    version_key,
)
from jobs.schema import MAX_BODY_CHARS, MAX_LIST_ITEMS


def full_record() -> dict[str, Any]:
    """A record with every field, shaped like the site's sample article."""
    return {
        "source_id": "alphanode-032655",
        "title": "production checklist for keeping staging close to production",
        "body": "intro\n\n## production checks\n\n```python\nprint('ok')\n```",
        "topic": "keeping staging close to production / python services",
        "summary": "a summary",
        "stack": ["python services", "backend", "python"],
        "tools": ["fastapi", "pytest"],
        "code_language": "python",
        "difficulty": "advanced",
        "reading_time": 12,
        "view_count": 384999,
        "score": {"quality": 77, "freshness": 48, "depth": 70, "clarity": 96},
        "revision": {"status": "drafted", "version": "1.1.2", "last_reviewed": "2024-01-12"},
        "reference": "anp-ref-032655-7930",
        "hash": "d254b96df69e5ac99c8fc8a0",
        "flags": {
            "ai_generated_style": 1,
            "has_images": 1,
            "image_heavy": 0,
            "needs_human_review": 1,
        },
        "checklist": ["capture the current behavior", "create a safe backup"],
        "entities": [{"name": "python services", "type": "stack"}],
        "images": [{"source": "unsplash", "url": "https://img.example/1.jpg", "caption": "ref 1"}],
        "payload": {
            "source_id": "alphanode-032655",
            "generator": "anp content synthesizer",
            "paragraphs": 7,
            "scenario": "for a content heavy programming website",
            "seed": 32655,
        },
        "notes": ["view count is synthetic"],
    }


def post_of(record: object) -> Post:
    item = validate_post(record, position=1)
    assert isinstance(item, Parsed), item
    return item.post


def reason_for(record: object) -> str:
    item = validate_post(record, position=1)
    assert isinstance(item, Rejected), item
    return item.reason


def with_change(path: str, value: object) -> dict[str, Any]:
    """The full record with the field at `path` (`score.quality`) set, or deleted for DELETE."""
    record = full_record()
    *parents, last = path.split(".")
    target: Any = record
    for name in parents:
        target = target[name]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return record


DELETE = object()


def test_a_full_record_maps_to_a_post_with_columns_and_meta() -> None:
    # Given a record with every field
    record = full_record()
    # When it is validated
    post = post_of(record)
    # Then the columns come from their fields and from revision and flags
    assert (post.source_id, post.title, post.difficulty) == (
        "alphanode-032655",
        record["title"],
        "advanced",
    )
    assert (post.reading_time, post.view_count) == (12, 384999)
    assert post.revision_version == "1.1.2"
    assert post.last_reviewed == date(2024, 1, 12)
    assert post.needs_review is True
    # And meta holds every other field, as JSON the same as in the record
    meta = json.loads(post.meta_json())
    assert meta == {name: value for name, value in record.items() if name in post.meta}
    assert set(post.meta) == set(record) - {
        "source_id",
        "title",
        "body",
        "topic",
        "summary",
        "difficulty",
        "reading_time",
        "view_count",
    }
    assert meta["revision"]["last_reviewed"] == "2024-01-12"
    assert len(post.content_hash) == 64


def test_a_minimal_record_needs_only_source_id_title_and_body() -> None:
    post = post_of({"source_id": "a-1", "title": "t", "body": "b"})
    assert (post.topic, post.last_reviewed, post.needs_review, post.meta) == (None, None, False, {})


def test_unknown_keys_and_null_optional_fields_are_left_out() -> None:
    # Given a record with an unknown key and a null topic
    record = {**full_record(), "surprise": {"deep": [1, 2]}, "topic": None}
    # When it is validated
    post = post_of(record)
    # Then neither is stored
    assert "surprise" not in post.meta
    assert post.topic is None


def test_flags_accept_booleans_and_store_them_as_numbers() -> None:
    post = post_of(with_change("flags.needs_human_review", False))
    assert post.needs_review is False
    assert json.loads(post.meta_json())["flags"]["needs_human_review"] == 0
    assert post_of(with_change("flags.needs_human_review", True)).needs_review is True


RULES: list[tuple[str, object, str]] = [
    ("source_id", DELETE, "source_id: required field is missing"),
    ("title", DELETE, "title: required field is missing"),
    ("body", DELETE, "body: required field is missing"),
    ("title", "   ", "title: must not be empty"),
    ("body", "\n\n", "body: must not be empty"),
    ("source_id", "", "source_id: must not be empty"),
    ("title", None, "title: expected a string, got null"),
    ("title", 42, "title: expected a string, got 42"),
    ("source_id", "two words", 'source_id: expected printable text without spaces, got "two'),
    ("source_id", "x" * 201, "source_id: 201 characters, the limit is 200"),
    ("title", "t" * 501, "title: 501 characters, the limit is 500"),
    ("body", "b" * 3_145_728, "body: 3,145,728 characters, the limit is 1,000,000"),
    (
        "reading_time",
        "twelve",
        'reading_time: expected a whole number of minutes, got "twelve"',
    ),
    ("reading_time", True, "reading_time: expected a whole number of minutes, got true"),
    ("reading_time", 12.5, "reading_time: expected a whole number of minutes, got 12.5"),
    ("reading_time", 10_001, "reading_time: expected 0-10,000, got 10001"),
    ("view_count", -5, "view_count: expected 0-1,000,000,000,000,000, got -5"),
    ("score.quality", 140, "score.quality: expected 0-100, got 140"),
    ("score.depth", "deep", 'score.depth: expected a whole number, got "deep"'),
    ("score", [77], "score: expected an object, got array"),
    (
        "revision.last_reviewed",
        "2024-02-30",
        'revision.last_reviewed: not a real date: "2024-02-30"',
    ),
    (
        "revision.last_reviewed",
        "12/01/2024",
        "revision.last_reviewed: expected a date YYYY-MM-DD",
    ),
    (
        "revision.last_reviewed",
        "20240112",
        "revision.last_reviewed: expected a date YYYY-MM-DD",
    ),
    ("flags.has_images", 2, "flags.has_images: expected 0 or 1, got 2"),
    ("stack", "python", 'stack: expected a list, got "python"'),
    ("tools", ["git", 5], "tools[1]: expected a string, got 5"),
    ("entities", [{"name": 1}], "entities[0].name: expected a string, got 1"),
    ("notes", ["n"] * (MAX_LIST_ITEMS + 1), "notes: 1,001 items, the limit is 1,000"),
    ("payload.seed", "x", 'payload.seed: expected a whole number, got "x"'),
    ("title", "a\x00b", "title: contains a NUL byte"),
    ("body", "body\x00", "body: contains a NUL byte"),
    ("checklist", ["ok", "bad\x00"], "checklist[1]: contains a NUL byte"),
    ("images", [{"caption": "\x00"}], "images[0].caption: contains a NUL byte"),
    ("summary", "lone \ud800 surrogate", "summary: contains an unpaired UTF-16 surrogate"),
]


@pytest.mark.parametrize(("path", "value", "reason"), RULES)
def test_each_rule_rejects_with_a_reason_naming_the_field(
    path: str, value: object, reason: str
) -> None:
    # Given a full record with one field broken
    record = with_change(path, value)
    # When it is validated
    got = reason_for(record)
    # Then the one-line reason names the field, what was expected and what came
    assert got.startswith(reason)
    assert "\n" not in got


@pytest.mark.parametrize(
    ("raw", "shown"),
    [([1, 2], "array"), ("text", '"text"'), (5, "5"), (None, "null"), (True, "true")],
)
def test_a_record_that_is_not_an_object_is_rejected(raw: object, shown: str) -> None:
    item = validate_post(raw, position=9)
    assert item == Rejected(9, None, f"record: expected a JSON object, got {shown}")


def test_the_rejection_names_the_source_id_only_when_it_is_valid() -> None:
    # Given two broken records, one with a good source id and one with a NUL in it
    good = validate_post(with_change("reading_time", "x"), position=3)
    bad = validate_post({**full_record(), "source_id": "a\x00"}, position=4)
    # Then only the good one is named, so a reject row never stores a NUL
    assert isinstance(good, Rejected) and good.source_id == "alphanode-032655"
    assert isinstance(bad, Rejected) and bad.source_id is None


def test_what_came_is_cut_short_in_the_reason() -> None:
    reason = reason_for(with_change("reading_time", "x" * 5000))
    assert len(reason) < 120
    assert reason.endswith("…")


def test_a_body_at_the_limit_is_accepted() -> None:
    assert len(post_of(with_change("body", "b" * MAX_BODY_CHARS)).body) == MAX_BODY_CHARS


def test_the_content_hash_ignores_key_order_and_json_layout() -> None:
    # Given the same record with keys reversed at every level and written pretty-printed
    record = full_record()

    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: reverse(value[key]) for key in reversed(value)}
        return [reverse(item) for item in value] if isinstance(value, list) else value

    pretty = json.loads(json.dumps(reverse(record), indent=4))
    # When both are validated
    # Then their hashes are equal
    assert post_of(record).content_hash == post_of(pretty).content_hash


def test_the_content_hash_changes_when_content_changes() -> None:
    base = post_of(full_record()).content_hash
    changed = [
        with_change("body", full_record()["body"] + "!"),
        with_change("score.quality", 78),
        with_change("notes", ["another note"]),
        with_change("revision.version", "1.1.3"),
    ]
    hashes = {post_of(record).content_hash for record in changed}
    assert base not in hashes
    assert len(hashes) == len(changed)


def test_validation_does_not_change_the_input() -> None:
    record = full_record()
    before = copy.deepcopy(record)
    post_of(record)
    assert record == before


def test_version_key_orders_versions_numerically() -> None:
    versions = ["1.10.0", "1.2", "2.0.0", "1.2.1", None, "1.9.9"]
    assert sorted(versions, key=version_key) == [None, "1.2", "1.2.1", "1.9.9", "1.10.0", "2.0.0"]
    assert version_key("1.x.3") == (1, 0, 3)


# Content hashes of these records as the validators before msgspec computed them and stored
# them (sha256 of json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# of the normalized record); frozen here, not recomputed, so a change of the hash shows.
HASH_BEFORE_MSGSPEC = "f00b94f9a3a162cc65b75e8f66c8f87aa0065947f294f05def0017977c3b48af"
TRICKY_HASH_BEFORE_MSGSPEC = "c0c8b139cfb60b152bd2ff6cc9af246fcfd08cfc97cdb589e294a3f2a6c5e673"


def tricky_record() -> dict[str, Any]:
    """Text to trim, a control character, U+2028, boolean flags, a null, an unknown key."""
    return {
        **full_record(),
        "title": "  spaced \u2028 title\x01 ",
        "topic": None,
        "flags": {"needs_human_review": True, "has_images": False},
        "stack": [" a ", "ü"],
        "extra": 1,
        "score": {},
    }


@pytest.mark.parametrize(
    ("record", "stored"),
    [(full_record(), HASH_BEFORE_MSGSPEC), (tricky_record(), TRICKY_HASH_BEFORE_MSGSPEC)],
)
def test_a_post_keeps_the_hash_it_was_stored_with_before_msgspec(
    record: dict[str, Any], stored: str
) -> None:
    # Given a record whose hash the old validators stored
    # When it is checked from a dict and decoded from a feed line
    line = json.dumps(record).encode()
    decoded = decode_post(line, position=1)
    # Then both give the very hash stored before, so a re-import finds it unchanged
    assert post_of(record).content_hash == stored
    assert isinstance(decoded, Parsed) and decoded.post.content_hash == stored
    assert decoded.post == post_of(record)


def test_decoding_a_line_and_checking_its_record_agree_on_every_broken_field() -> None:
    # Given each broken record of the rule table, as a feed line
    for path, value, _ in RULES:
        if isinstance(value, str) and "\ud800" in value:
            continue  # not encodable as UTF-8 at all; the feed tests cover escaped surrogates
        record = with_change(path, value)
        # When it is decoded from bytes
        item = decode_post(json.dumps(record, ensure_ascii=False).encode(), position=1)
        # Then it is rejected with the reason the record check gives
        assert item == validate_post(record, position=1), path


SPACES = [chr(code) for code in range(0x110000) if chr(code).isspace()]


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_line_trims_every_kind_of_whitespace_as_the_record_check_does(
    ensure_ascii: bool, indent: int | None
) -> None:
    for space in SPACES:
        # Given texts with one kind of whitespace before or after them, at every depth
        record = full_record()
        record["topic"] = f"{space}topic"
        record["stack"] = ["python", f"backend{space}"]
        record["entities"] = [{"name": f"{space}name{space}", "type": "stack"}]
        record["revision"]["version"] = f"1.2{space}"
        record["payload"]["source_id"] = f"{space}x"
        # When the line is decoded
        line = json.dumps(record, ensure_ascii=ensure_ascii, indent=indent).encode()
        decoded = decode_post(line, position=1)
        # Then it is the post the record check gives, texts trimmed, hash and all
        assert decoded == validate_post(record, position=1), repr(space)
        assert isinstance(decoded, Parsed) and decoded.post.topic == "topic"
