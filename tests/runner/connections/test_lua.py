"""The Lua scripts of the engine: each names its keys and arguments before using them, has a
distinct name, and is registered once per Redis client; a declared script's Lua and Python
sides are made from one declaration."""

from __future__ import annotations

import ast
import gc
import re
import weakref
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import NoScriptError

from runner.connections.lua import Arg, LuaScript, Pairs, Rest, registered
from tests.conftest import RedisServer

RUNNER = Path(__file__).resolve().parents[3] / "runner"
POSITIONAL = re.compile(r"\b(KEYS|ARGV)\[")
# `local name = KEYS[1]`, or several at once: `local run, log = KEYS[k], KEYS[k+4]`
NAMING = re.compile(r"^\s*local [\w, ]+ = (KEYS|ARGV|tonumber\(ARGV|cjson\.decode\(ARGV)\[")


def scripts() -> dict[str, str]:
    """module:NAME -> the Lua text of every module-level script in runner/."""
    found = {}
    for path in sorted(RUNNER.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                # a script may be built from pieces: `PART + """..."""`
                pieces = [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
                text = "\n".join(p for p in pieces if isinstance(p, str))
                if "redis.call" in text:
                    found[f"{path.stem}:{node.targets[0].id}"] = text
    return found


def test_every_script_names_its_keys_and_arguments_before_using_them() -> None:
    found = scripts()
    assert len(found) >= 9, sorted(found)
    wrong = [
        f"{name}: {line.strip()}"
        for name, text in found.items()
        for line in text.splitlines()
        if POSITIONAL.search(line.split("--")[0]) and not NAMING.match(line)
    ]
    assert not wrong, "use a named local:\n" + "\n".join(wrong)


def test_scripts_have_distinct_names() -> None:
    names = [name.split(":")[1].lstrip("_") for name in scripts()]
    assert len(names) == len(set(names)), sorted(names)


def test_a_script_is_registered_once_per_client(redis: Redis) -> None:
    other = Redis(connection_pool=redis.connection_pool)
    assert registered(redis, "return 1") is registered(redis, "return 1")
    assert registered(other, "return 1") is not registered(redis, "return 1")
    assert registered(redis, "return 1")() == 1


def test_a_client_that_registered_scripts_is_freed_with_its_connections(
    redis_server: RedisServer,
) -> None:
    # Given a client that ran a script, then is dropped by its owner
    other = redis_server.client()
    assert registered(other, "return 2")() == 2
    gone = weakref.ref(other)
    del other
    # Then nothing the scripts' cache holds keeps it (or its socket) alive
    gc.collect()
    assert gone() is None


# Every kind of argument, a fixed one after the pairs, and a reply that shows each as Lua saw it.
ECHO = LuaScript(
    keys={"first": "a key", "second": "another"},
    args={
        "name": "a string",
        "count": Arg("a number", number=True),
        "fields": Pairs("some pairs"),
        "after": "one after the pairs",
        "more": Pairs("more pairs"),
        "rest": Rest("the rest"),
    },
    body="""
return {first, second, name, type(count), fields_n, {unpack(ARGV, fields_from, fields_to)},
        after, more_n, {unpack(ARGV, rest_from, #ARGV)}}
""",
)


def test_a_declared_script_sees_each_key_and_argument_by_the_name_python_gave_it(
    redis: Redis,
) -> None:
    keys = {"second": "k2", "first": "k1"}  # in any order: placed by name
    args = {"name": "n", "count": 3, "fields": {"a": 1, "b": 2}, "after": "x", "more": [],
            "rest": ["r1", "r2"]}  # fmt: skip
    assert ECHO(redis, keys=keys, args=args) == [
        b"k1", b"k2", b"n", b"number", 2, [b"a", b"1", b"b", b"2"], b"x", 0, [b"r1", b"r2"]
    ]  # fmt: skip


def test_a_declared_scripts_prologue_names_every_key_and_argument_with_what_it_is() -> None:
    prologue = ECHO.prologue()
    assert "local first = KEYS[1]  -- a key" in prologue
    assert "local second = KEYS[2]  -- another" in prologue
    assert "local count = tonumber(ARGV[2])  -- a number" in prologue
    assert "local fields_n = tonumber(ARGV[at])  -- some pairs: pairs" in prologue
    assert ECHO.source.endswith("#ARGV)}}\n") and ECHO.source.index(prologue) == 0


@pytest.mark.parametrize(
    "keys, args, message",
    [
        ({"first": "k1"}, {}, "keys: missing ['second']"),
        ({"first": "k1", "second": "k2", "third": "k3"}, {}, "not declared ['third']"),
        ({"first": "k1", "second": "k2"}, {"name": "n"}, "arguments: missing ['after', 'count'"),
    ],
)
def test_a_call_that_names_a_key_or_argument_the_script_does_not_declare_is_refused(
    redis: Redis, keys: dict[str, str], args: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        ECHO(redis, keys=keys, args=args)


def test_pairs_given_as_a_flat_list_must_be_even() -> None:
    args = {"name": "n", "count": 1, "fields": ["a"], "after": "x", "more": [], "rest": []}
    with pytest.raises(ValueError, match="fields: an odd number"):
        ECHO.values({"first": "k1", "second": "k2"}, args)


def test_only_the_last_argument_can_take_the_rest() -> None:
    with pytest.raises(ValueError, match="only the last argument can be Rest"):
        LuaScript(keys={}, args={"rest": Rest("r"), "after": "a"}, body="return 1")


def test_a_staged_script_unknown_to_redis_replies_noscript_and_a_call_loads_it(
    redis: Redis,
) -> None:
    script = LuaScript(keys={}, args={"n": Arg("a number", number=True)}, body="return n + 1")
    pipe = redis.pipeline(transaction=False)
    script.stage(pipe, keys={}, args={"n": 1})
    assert isinstance(pipe.execute(raise_on_error=False)[0], NoScriptError)
    assert script(redis, keys={}, args={"n": 1}) == 2
    pipe = redis.pipeline(transaction=False)
    script.stage(pipe, keys={}, args={"n": 2})
    assert pipe.execute() == [3]
