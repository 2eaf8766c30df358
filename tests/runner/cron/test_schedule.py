"""Cron entries (runner.cron.schedule): refused when invalid, catch-up of missed slots, a
schedule checked against its registry."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest

from runner.cron.schedule import CronEntry, check_schedule
from runner.errors import ConfigError, UnknownTask
from runner.tasks import load_registry
from tests.cron_tasks import SCHEDULE
from tests.runner.cron.test_ticks import SIX, at


def test_an_invalid_entry_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"cron entry 'nightly'.*not a cron expression"):
        CronEntry("nightly", "0 25 * * *", task="noop")
    with pytest.raises(ValueError, match="cron entry 'seconds'"):
        CronEntry("seconds", "* * * * * *", task="noop")  # six fields: croniter's seconds
    with pytest.raises(ValueError, match="never matches"):
        CronEntry("feb30", "0 0 30 2 *", task="noop")
    with pytest.raises(ValueError, match="catch_up=0"):
        CronEntry("e", "* * * * *", task="noop", catch_up=0)
    with pytest.raises(ValueError, match="overlap='queue'"):
        CronEntry("e", "* * * * *", task="noop", overlap="queue")
    with pytest.raises(ValueError, match="JSON"):
        CronEntry("e", "* * * * *", task="noop", args={"when": datetime.now()})


def test_catch_up_fires_only_the_newest_missed_slots() -> None:
    # Given entries last handled at 06:00 and a tick at 06:10
    every, three = CronEntry("a", "* * * * *", task="a"), SCHEDULE[1]
    quarter = CronEntry("q", "*/15 * * * *", task="q", catch_up=5)
    # Then each gets its newest `catch_up` slots after 06:00, oldest first
    assert every.pending(after=SIX, until=at(10)) == [at(10)]
    assert three.pending(after=SIX, until=at(10)) == [at(8), at(9), at(10)]
    assert quarter.pending(after=SIX, until=at(100)) == [at(m) for m in (30, 45, 60, 75, 90)]
    assert quarter.pending(after=SIX, until=at(10)) == []
    # And an entry that never fired gets only the current slot, if it is due
    assert three.pending(after=None, until=at(10)) == [at(10)]
    assert quarter.pending(after=None, until=at(10)) == []


def test_a_schedule_with_a_task_twice_or_an_unknown_task_is_refused() -> None:
    registry = load_registry("tests.cron_tasks")
    twice = [*SCHEDULE, CronEntry("again", "5 * * * *", task="hourly_chime")]
    with pytest.raises(ConfigError, match="task \\['hourly_chime'\\]"):
        check_schedule(twice, registry)
    with pytest.raises(UnknownTask, match="no_such_task"):
        check_schedule([CronEntry("x", "* * * * *", task="no_such_task")], registry)
    # A line that only looks like an entry (a name and a task) is refused, naming the type
    look_alike = SimpleNamespace(name="x", task="hourly_chime")
    with pytest.raises(ConfigError, match=r"use runner\.cron\.schedule\.CronEntry"):
        check_schedule([look_alike], registry)
