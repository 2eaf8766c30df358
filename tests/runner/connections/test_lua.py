"""The Lua scripts of the engine: each names its keys and arguments before using them, has a
distinct name, and is registered once per Redis client."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from redis import Redis

from runner.connections.lua import registered

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
