"""Mutants of the Lua scripts held in a Python module's string constants.

Python mutation tools see a Lua script as one string, so they never change the run state
machine's logic. This finds every string that calls `redis.call` (as
tests/runner/connections/test_lua.py does), or has a line of Lua's `if ... then` (a piece of a
script that only reads, such as a guard handed to a function that builds the script), and makes
one mutant per change of three kinds, each on one line of the script:

- `lua/flip`: a comparison flipped (`==` and `~=`, `<` and `>=`, `>` and `<=`);
- `lua/drop-call`: one statement that starts with `redis.call` removed (all its lines), or
  the call of `local x = redis.call(...)` replaced by `false`;
- `lua/swap-keys`: two consecutive `KEYS[i]` of one script swapped.

A mutant is the whole module's text with that one change, so it is applied like any other:
write the file, run the tests, put the original back.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

FLIPS = {"==": "~=", "~=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
# A Lua comparison operator, not part of `<<`, `>>`, `->`, `==>` and the like.
COMPARISON = re.compile(r"(?<![<>=~-])(==|~=|<=|>=|<|>)(?![<>=])")
KEY_INDEX = re.compile(r"KEYS\[([^\]]+)\]")
# `local name = redis.call(...)`: the call dropped, the local left `false`
LOCAL_CALL = re.compile(r"^(\s*local [\w, ]+= )redis\.call\(")
# a line of Lua that no Python string of prose has: `if ... then`
LUA_IF = re.compile(r"^\s*if\b.*\bthen\b", re.MULTILINE)


@dataclass(frozen=True)
class LuaMutant:
    """One change to one Lua script of a module."""

    id: str  # stable within one version of the module: `lua/<kind>:<line>:<n>`
    line: int  # the first changed line (1-based) in the module
    original: str  # the changed line(s) before
    mutated: str  # and after
    source: str  # the whole module with the change


def script_lines(source: str) -> list[range]:
    """The line ranges (1-based, of the module) of every string constant that is Lua."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        is_lua = "redis.call" in node.value or LUA_IF.search(node.value)
        if is_lua and node.end_lineno is not None:
            found.append(range(node.lineno, node.end_lineno + 1))
    return found


def mutants(source: str) -> Iterator[LuaMutant]:
    """Every Lua mutant of `source`, in the order of the lines they change."""
    lines = source.splitlines(keepends=True)
    for span in script_lines(source):
        yield from _flips(lines, span)
        yield from _dropped_calls(lines, span)
        yield from _swapped_keys(lines, span)


def _code(line: str) -> str:
    """The line without its Lua comment (`--` to the end)."""
    return line.split("--", 1)[0]


def _with(lines: list[str], start: int, replacement: list[str]) -> str:
    """The module with lines[start : start + len(replacement)] replaced (0-based start)."""
    return "".join(lines[:start] + replacement + lines[start + len(replacement) :])


def _flips(lines: list[str], span: range) -> Iterator[LuaMutant]:
    for number in span:
        line = lines[number - 1]
        code = _code(line)
        for n, match in enumerate(COMPARISON.finditer(code)):
            if code.count('"', 0, match.start()) % 2 or code.count("'", 0, match.start()) % 2:
                continue  # inside a Lua string literal
            flipped = line[: match.start()] + FLIPS[match.group(1)] + line[match.end() :]
            yield LuaMutant(
                f"lua/flip:{number}:{n}", number, line, flipped, _with(lines, number - 1, [flipped])
            )


def _dropped_calls(lines: list[str], span: range) -> Iterator[LuaMutant]:
    for number in span:
        line = lines[number - 1]
        local = LOCAL_CALL.match(line)
        if not line.lstrip().startswith("redis.call(") and not local:
            continue
        # the statement runs until its parentheses balance
        end, depth = number, 0
        while end in span:
            code = _code(lines[end - 1])
            depth += code.count("(") - code.count(")")
            if depth <= 0:
                break
            end += 1
        if end not in span:
            continue
        count = end - number + 1
        indent = line[: len(line) - len(line.lstrip())]
        first = f"{local.group(1)}false\n" if local else f"{indent}-- (mutant: call removed)\n"
        blank = [first] + ["\n"] * (count - 1)
        yield LuaMutant(
            f"lua/drop-call:{number}:0",
            number,
            "".join(lines[number - 1 : end]),
            "".join(blank),
            _with(lines, number - 1, blank),
        )


def _swapped_keys(lines: list[str], span: range) -> Iterator[LuaMutant]:
    declared = [
        (number, match)
        for number in span
        if _code(lines[number - 1]).lstrip().startswith("local ")
        for match in KEY_INDEX.finditer(_code(lines[number - 1]))
    ]
    for (first, a), (second, b) in pairwise(declared):
        if first == second:
            line = lines[first - 1]
            swapped = (
                line[: a.start()]
                + b.group(0)
                + line[a.end() : b.start()]
                + a.group(0)
                + line[b.end() :]
            )
            replacement = [swapped]
        else:
            one, two = lines[first - 1], lines[second - 1]
            replacement = [
                one[: a.start()] + b.group(0) + one[a.end() :],
                *lines[first : second - 1],
                two[: b.start()] + a.group(0) + two[b.end() :],
            ]
        yield LuaMutant(
            f"lua/swap-keys:{first}:{a.group(1)}-{b.group(1)}",
            first,
            "".join(lines[first - 1 : second]),
            "".join(replacement),
            _with(lines, first - 1, replacement),
        )
