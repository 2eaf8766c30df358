"""Field checks: each returns the normalized value or a one-line reason naming the field."""

from __future__ import annotations

import pytest

from jobs.checks import Check, Invalid, day, flag, list_of, object_of, text, whole


def reason(check: Check, value: object, path: str = "field") -> str:
    with pytest.raises(Invalid) as problem:
        check(path, value)
    return str(problem.value)


def test_text_strips_and_names_what_is_wrong() -> None:
    assert text(10)("t", "  hi  ") == "hi"
    assert text(10, strip=False)("t", " hi ") == " hi "
    assert reason(text(3), "four") == "field: 4 characters, the limit is 3"
    assert reason(text(10), 12) == "field: expected a string, got 12"
    assert reason(text(10), "a\x00b") == "field: contains a NUL byte"
    assert reason(text(10, required=True), "   ") == "field: must not be empty"


def test_numbers_flags_and_days_reject_lookalikes() -> None:
    assert whole(0, 5)("n", 3) == 3
    assert (
        reason(whole(0, 5, expected="minutes"), "twelve") == 'field: expected minutes, got "twelve"'
    )
    assert reason(whole(0, 5), True) == "field: expected a whole number, got true"
    assert reason(whole(0, 5), 6) == "field: expected 0-5, got 6"
    assert (flag("f", True), flag("f", 0)) == (1, 0)
    assert reason(flag, 2) == "field: expected 0 or 1, got 2"
    assert day("d", "2024-02-29") == "2024-02-29"
    assert reason(day, "2023-02-29") == 'field: not a real date: "2023-02-29"'
    assert reason(day, "29/02/2024") == 'field: expected a date YYYY-MM-DD, got "29/02/2024"'


def test_containers_name_the_path_to_the_bad_value() -> None:
    record = object_of(
        {"tags": list_of(text(5), max_items=2), "n": whole(0, 9)}, required=frozenset({"n"})
    )
    assert record("", {"tags": ["a"], "n": 1, "extra": 0}) == {"tags": ["a"], "n": 1}
    assert reason(record, {"tags": ["a"]}, path="") == "n: required field is missing"
    assert reason(record, {"n": 1, "tags": ["ok", "too long"]}, path="") == (
        "tags[1]: 8 characters, the limit is 5"
    )
    assert reason(record, {"n": 1, "tags": ["a", "b", "c"]}, path="") == (
        "tags: 3 items, the limit is 2"
    )
    assert reason(record, [1], path="post") == "post: expected an object, got array"
