"""The lock file: what ./scripts/test installs is exactly what requirements.lock pins, and the
lock covers every dependency pyproject.toml names (a dependency added without `scripts/lock`
fails here)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    return {normalized(name): version for name, version in PIN.findall(text)}


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = [*project["dependencies"], *extras["dev"], *extras["otel"]]
    return {normalized(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in specs}


def test_every_locked_package_is_installed_at_its_locked_version() -> None:
    pins = locked()
    assert pins, "requirements.lock pins nothing"
    wrong = {
        name: (version, metadata.version(name))
        for name, version in pins.items()
        if metadata.version(name) != version
    }
    assert wrong == {}, "installed versions differ from the lock (name: (locked, installed))"


def test_the_lock_covers_every_declared_dependency() -> None:
    missing = declared() - set(locked())
    assert missing == set(), f"run ./scripts/lock: {sorted(missing)} not in requirements.lock"


def test_every_locked_package_has_a_hash() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements.lock").read_text().strip())
    unhashed = [b.split("==")[0] for b in blocks if "==" in b and "--hash=sha256:" not in b]
    assert unhashed == []
