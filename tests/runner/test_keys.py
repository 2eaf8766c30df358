"""Redis key names (runner.keys): every key the runner writes is built there, under its prefix,
and no two kinds of key share a name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace

import pytest
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState
from runner.runs.enqueue import Enqueued


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, prefix="site-a:")


def every_key(keys: Keys) -> dict[str, str]:
    """Each kind of key, named with sample arguments."""
    found = {}
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name == "prefix":
            continue
        if isinstance(member, property):
            found[name] = getattr(keys, name)
        else:
            count = len(inspect.signature(member).parameters) - 1
            found[name] = getattr(keys, name)(*["x", 1][:count] if count == 2 else ["x"] * count)
    return found


def test_every_kind_of_key_is_under_the_prefix_and_has_its_own_name() -> None:
    names = every_key(Keys("site-a:"))

    assert len(names) >= 30
    assert all(key.startswith("site-a:") for key in names.values())
    assert len(set(names.values())) == len(names), "two kinds of key share a name"
    by_state = {Keys().by_state(state) for state in RunState}
    assert len(by_state) == len(RunState)


def test_a_run_leaves_only_keys_under_its_prefix_and_rqs(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis
) -> None:
    enqueue("noop", n=1)
    drain()

    written = {key.decode() for key in redis.scan_iter()}
    assert written and any(key.startswith("site-a:run:") for key in written)
    assert all(key.startswith(("site-a:", "rq:")) for key in written), sorted(written)
