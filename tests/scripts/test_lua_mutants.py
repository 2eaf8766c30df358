"""scripts/lua_mutants.py: every mutant of the engine's Lua scripts is a different script that
Redis still compiles, so a surviving mutant is a gap in the tests, never a typo."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from redis import Redis

from scripts import lua_mutants

RUNNER = Path(__file__).resolve().parents[2] / "runner"
MODULES = sorted(p for p in RUNNER.rglob("*.py") if lua_mutants.script_lines(p.read_text()))


def strings(source: str) -> list[str]:
    """The string constants of a module, in order (a mutant may leave a script without any
    `redis.call`, so they are matched by position, not by looking like Lua)."""
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_the_state_machines_scripts_get_flips_and_dropped_calls() -> None:
    # Given the module of the run record's scripts (declared: their keys are bound by name on
    # both sides, runner.connections.lua, so no two of them can be swapped)
    source = (RUNNER / "runs" / "scripts.py").read_text()
    # When its mutants are made
    kinds = {m.id.split(":")[0] for m in lua_mutants.mutants(source)}
    # Then both kinds that apply are among them
    assert kinds == {"lua/flip", "lua/drop-call"}


def test_positional_keys_get_swapped() -> None:
    # Given a module whose scripts still name KEYS[i] themselves
    source = (RUNNER / "runs" / "move.py").read_text()
    # When its mutants are made
    kinds = {m.id.split(":")[0] for m in lua_mutants.mutants(source)}
    # Then consecutive keys are swapped among them
    assert "lua/swap-keys" in kinds


def test_every_piece_of_a_declared_script_gets_mutants() -> None:
    # Given the run record's scripts, some built from pieces (a guard handed to _requeue, one
    # of which only reads through a Lua function and has no redis.call of its own)
    source = (RUNNER / "runs" / "scripts.py").read_text()
    pieces = [
        node.args[0] if node.args else next(k.value for k in node.keywords if k.arg == "body")
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("_requeue", "LuaScript")
    ]
    # When its mutants are made
    lines = {m.line for m in lua_mutants.mutants(source)}
    # Then every guard and body has one on one of its lines
    bare = [p.lineno for p in pieces if not lines & set(range(p.lineno, (p.end_lineno or 0) + 1))]
    assert len(pieces) >= 12 and not bare, bare


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_mutant_changes_one_script_and_still_compiles(module: Path, redis: Redis) -> None:
    # Given a module with Lua scripts
    source = module.read_text()
    original = strings(source)
    # When each of its mutants is made
    found = list(lua_mutants.mutants(source))
    assert found, f"{module.name}: no mutant"
    assert len({m.id for m in found}) == len(found), "mutant ids are not unique"
    for mutant in found:
        # Then it differs from the original in exactly one of its scripts
        assert mutant.source != source and mutant.mutated != mutant.original, mutant.id
        mutated = strings(mutant.source)
        assert len(mutated) == len(original), mutant.id
        changed = [m for o, m in zip(original, mutated, strict=True) if o != m]
        assert len(changed) == 1, mutant.id
        # and Redis compiles the changed script (SCRIPT LOAD fails on a syntax error)
        redis.script_load(changed[0])
