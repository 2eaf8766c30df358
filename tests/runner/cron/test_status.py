"""What an operator is shown of a schedule entry (runner.cron.status)."""

from __future__ import annotations

from runner.cron.status import describe


def test_the_schedule_in_words() -> None:
    assert describe("* * * * *") == "every minute"
    assert describe("*/5 * * * *") == "every 5 minutes"
    assert describe("0 * * * *") == "hourly at :00"
    assert describe("7 * * * *") == "hourly at :07"
    assert describe("30 6 * * *") == "daily at 06:30 UTC"
    assert describe("0 6 * * 1") == "weekly on Monday at 06:00 UTC"
    assert describe("0 6 1 * *") == "0 6 1 * *"
