"""Durations as the CLI's tables, the console's pages and health's one-line answers show them."""

from __future__ import annotations

import pytest

from runner.monitoring.durations import ago, duration, rounded_duration


@pytest.mark.parametrize(
    ("seconds", "table", "page"),
    [
        (None, "-", "-"),
        (0.314, "0.31s", "0.31 s"),
        (59.7, "59s", "59 s"),  # cut, never shown as a minute it has not reached
        (184.9, "3m04s", "3m 04s"),
        (7530.0, "2h05m", "2h 05m"),
    ],
)
def test_a_duration_reads_the_same_in_a_table_and_on_a_page(
    seconds: float | None, table: str, page: str
) -> None:
    assert duration(seconds) == table
    assert duration(seconds, spaced=True) == page


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.012, "12 ms"), (0.42, "0.4 s"), (12.0, "12 s"), (210.0, "3.5 min"), (7560.0, "2.1 h")],
)
def test_a_one_line_answer_rounds_to_a_unit_that_fits(seconds: float, text: str) -> None:
    assert rounded_duration(seconds) == text
    assert rounded_duration(float("nan")) == rounded_duration(None) == "-"


def test_ago_says_how_long_ago_or_how_soon() -> None:
    assert ago(1_000.0, now=1_042.0) == "42s ago"
    assert ago(1_000.0, now=1_000.0 + 3 * 86_400 + 5) == "3d ago"
    assert ago(1_180.0, now=1_000.0) == "in 3m"
    assert ago(None) == ago(0) == "-"
