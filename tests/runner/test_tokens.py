"""Idempotency tokens (runner.tokens): the same work has the same token, a cron firing one
per slot, and the RQ job ids derived from a token stay within RQ's alphabet."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from runner.errors import InvalidArguments
from runner.tokens import (
    MAX_TOKEN_CHARS,
    canonical_json,
    check_token,
    content_token,
    derive_token,
    job_id,
    slot_token,
)


def test_the_same_arguments_in_any_order_make_the_same_token() -> None:
    one = derive_token("import", {"a": 1, "b": [1, 2]})

    assert one == derive_token("import", {"b": [1, 2], "a": 1})
    assert one != derive_token("import", {"a": 2, "b": [1, 2]})
    assert one.startswith("import:") and len(one) == len("import:") + 32


def test_arguments_that_are_not_json_are_refused() -> None:
    with pytest.raises(InvalidArguments, match="JSON values"):
        canonical_json({"when": datetime.now(UTC)})
    with pytest.raises(InvalidArguments, match="JSON values"):
        canonical_json({"x": float("nan")})


def test_a_slot_token_names_the_minute_in_utc() -> None:
    six_in_paris = datetime(2026, 11, 27, 7, 0, tzinfo=timezone(timedelta(hours=1)))

    assert slot_token("chime", six_in_paris) == "chime@2026-11-27T06:00Z"


def test_a_content_token_is_the_content_hash_not_the_path() -> None:
    digest = "ab" * 32

    assert content_token("import", digest) == f"import:{digest[:32]}"


def test_a_token_with_spaces_empty_or_too_long_is_refused() -> None:
    assert check_token("greet-ada") == "greet-ada"
    for bad in ("", "with space", "x" * (MAX_TOKEN_CHARS + 1), "tab\t"):
        with pytest.raises(InvalidArguments, match="is invalid"):
            check_token(bad)


def test_job_ids_use_only_rqs_characters_and_differ_by_attempt() -> None:
    first, second = job_id("import:é lots/of:chars", 1), job_id("import:é lots/of:chars", 2)

    assert re.fullmatch(r"[A-Za-z0-9_-]+", first) and first.endswith("-1")
    assert first != second and first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0]
