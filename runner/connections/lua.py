"""Lua scripts: declared once, by the names of their keys and arguments, and registered once
per Redis client.

A `LuaScript` declares its keys and arguments in order, each with a line saying what it is.
The Lua prologue (`local run = KEYS[2]  -- the run hash`) and the Python call
(`script(redis, keys={"run": ...}, args={...})`) are both made from that one declaration, so
the two sides cannot drift apart: a call that names a key or argument the script does not
declare, or leaves one out, is refused before it reaches Redis.

An argument is one value (`Arg`, or just its description), field/value pairs (`Pairs`: a
mapping or an even flat list in Python; `name_n` pairs from `ARGV[name_from]` to
`ARGV[name_to]` in Lua), or the arguments left at the end (`Rest`: a sequence in Python;
`ARGV[name_from]` to `#ARGV` in Lua).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

SCRIPTS_ATTRIBUTE = "_runner_scripts"  # on each client: script source -> its Script


def registered(redis: Redis, source: str) -> Script:
    """`source` registered on `redis`, the first time it is asked for on that client.

    The scripts live on the client itself, so a client that goes away takes them along: a
    map held by this module would keep every client (and its connections) alive, each
    Script holding the client it was registered on."""
    scripts: dict[str, Script] = redis.__dict__.setdefault(SCRIPTS_ATTRIBUTE, {})
    if source not in scripts:
        scripts[source] = redis.register_script(source)
    return scripts[source]


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument; `number`: converted with `tonumber` in the prologue."""

    about: str
    number: bool = False


@dataclass(frozen=True, slots=True)
class Pairs:
    """Field/value pairs, passed as their count and then the pairs."""

    about: str


@dataclass(frozen=True, slots=True)
class Rest:
    """The arguments left at the end (the last argument declared)."""

    about: str


Declared = str | Arg | Pairs | Rest


class LuaScript:
    """A script's keys and arguments, declared in order, and its body (which uses them by
    name); `uses` are the Lua functions it calls, put before the prologue."""

    def __init__(
        self,
        *,
        keys: Mapping[str, str],
        args: Mapping[str, Declared],
        body: str,
        uses: Sequence[str] = (),
    ) -> None:
        self.keys = dict(keys)
        self.args = {name: Arg(d) if isinstance(d, str) else d for name, d in args.items()}
        rests = [name for name, d in self.args.items() if isinstance(d, Rest)]
        if rests and rests != [list(self.args)[-1]]:
            raise ValueError(f"only the last argument can be Rest, not {rests}")
        self.source = "".join(uses) + self.prologue() + body
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def prologue(self) -> str:
        """The Lua lines that name every key and argument, in declared order."""
        lines = [f"local {name} = KEYS[{i}]  -- {about}" for i, (name, about) in
                 enumerate(self.keys.items(), start=1)]  # fmt: skip
        fixed: int | None = 1  # the next argument's index while it is fixed; then `at`
        for name, declared in self.args.items():
            if isinstance(declared, Rest):
                start = "at" if fixed is None else str(fixed)
                lines.append(f"local {name}_from = {start}  -- {declared.about}, to #ARGV")
            elif isinstance(declared, Pairs):
                if fixed is not None:
                    lines.append(f"local at = {fixed}")
                    fixed = None
                lines += [
                    f"local {name}_n = tonumber(ARGV[at])  -- {declared.about}: pairs",
                    f"local {name}_from, {name}_to = at + 1, at + 2 * {name}_n",
                    f"at = {name}_to + 1",
                ]
            else:
                index = "at" if fixed is None else str(fixed)
                value = f"tonumber(ARGV[{index}])" if declared.number else f"ARGV[{index}]"
                lines.append(f"local {name} = {value}  -- {declared.about}")
                if fixed is None:
                    lines.append("at = at + 1")
                else:
                    fixed += 1
        return "\n" + "\n".join(lines) + "\n"

    def values(
        self, keys: Mapping[str, str], args: Mapping[str, Any]
    ) -> tuple[list[str], list[Any]]:
        """The positional KEYS and ARGV of a call that names them; ValueError when a name is
        missing or not declared."""
        if keys.keys() != self.keys.keys():  # a C set comparison: a call's hot path
            _same_names("keys", self.keys, keys)
        if args.keys() != self.args.keys():
            _same_names("arguments", self.args, args)
        flat: list[Any] = []
        for name, declared in self.args.items():
            value = args[name]
            if declared.__class__ is Arg:
                flat.append(value)
            elif isinstance(declared, Pairs):
                pairs = _flat_pairs(name, value)
                flat += [len(pairs) // 2, *pairs]
            else:  # Rest
                flat += list(value)
        return [keys[name] for name in self.keys], flat

    def __call__(self, redis: Redis, *, keys: Mapping[str, str], args: Mapping[str, Any]) -> Any:
        """Run it on `redis` (loading it when Redis does not know it)."""
        key_list, arg_list = self.values(keys, args)
        return registered(redis, self.source)(keys=key_list, args=arg_list)

    def stage(
        self, pipeline: Pipeline, *, keys: Mapping[str, str], args: Mapping[str, Any]
    ) -> None:
        """Queue it in `pipeline` by its sha alone: the reply is a NoScriptError when Redis
        does not know it (the caller then calls it, which loads it)."""
        key_list, arg_list = self.values(keys, args)
        pipeline.evalsha(self.sha, len(key_list), *key_list, *arg_list)


def _same_names(what: str, declared: Mapping[str, object], given: Mapping[str, object]) -> None:
    missing, unknown = set(declared) - set(given), set(given) - set(declared)
    if missing or unknown:
        raise ValueError(f"{what}: missing {sorted(missing)}, not declared {sorted(unknown)}")


def _flat_pairs(name: str, value: Mapping[str, Any] | Sequence[Any]) -> list[Any]:
    if isinstance(value, Mapping):
        return [item for pair in value.items() for item in pair]
    if len(value) % 2:
        raise ValueError(f"{name}: an odd number of values for field/value pairs")
    return list(value)
