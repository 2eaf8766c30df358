"""Lua scripts registered once per Redis client, for code that gets its client per call."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from redis import Redis
from redis.commands.core import Script

# client -> script source -> its Script; a client that goes away takes its scripts along.
_registered: WeakKeyDictionary[Redis, dict[str, Script]] = WeakKeyDictionary()


def registered(redis: Redis, source: str) -> Script:
    """`source` registered on `redis`, the first time it is asked for on that client."""
    scripts = _registered.setdefault(redis, {})
    if source not in scripts:
        scripts[source] = redis.register_script(source)
    return scripts[source]
