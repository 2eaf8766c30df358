"""Deploy marks: when each code version started running, so health can say whether the last
deploy changed anything. The first worker or clock to start with a `RUNNER_CODE_VERSION`
different from the latest mark's records a mark (one Lua call: any number of processes starting
together make one), a rollback A -> B -> A makes a new mark for A, and `runner deploy mark`
records one by hand. A process without `RUNNER_CODE_VERSION` (a `runner worker --burst` started
to debug a queue) marks nothing: the version it works out for itself (the git sha) says what
code it runs, not that anything was deployed."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import structlog
from redis import Redis
from redis.exceptions import RedisError

from runner.config import Settings
from runner.connections.lua import registered
from runner.keys import Keys
from runner.record import texts

log = structlog.get_logger("runner.runs.deploys")
PROJECT = Path(__file__).resolve().parents[1]

# Add a mark unless the latest one is for the same version (or `always`). Returns 1 if added.
_MARK = """
local marks = KEYS[1]         -- the marks: JSON {version, label, at, by} scored by time
local version = ARGV[1]       -- the code version the mark is for
local mark = ARGV[2]          -- the mark's JSON
local at = ARGV[3]            -- its time, epoch seconds
local always = ARGV[4]        -- '1': mark even when the latest mark has this version
local latest = redis.call('ZREVRANGE', marks, 0, 0)[1]
if always ~= '1' and latest and cjson.decode(latest).version == version then return 0 end
redis.call('ZADD', marks, at, mark)
return 1
"""


@cache
def _git_short_sha(root: Path) -> str | None:
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def code_version(settings: Settings) -> str:
    """What code this process runs: `RUNNER_CODE_VERSION` (a deploy sets it to its git sha),
    else the short sha when the project is a git checkout, else the package's version."""
    if settings.code_version:
        return settings.code_version.replace("|", "-")  # '|' separates the figures' fields
    sha = _git_short_sha(PROJECT)
    if sha:
        return sha
    try:
        return metadata.version("site-runner")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class DeployMark:
    """One mark: a code version, when it was marked, by whom, and an operator's label."""

    version: str
    at: float
    by: str
    label: str = ""


class DeployMarks:
    """Records and reads the deploy marks."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.key = Keys(settings.prefix).deploys
        self._mark = registered(redis, _MARK)

    def mark(
        self, version: str, *, by: str, label: str = "", always: bool = False,
        at: float | None = None,
    ) -> DeployMark | None:  # fmt: skip
        """Record a mark for `version` unless the latest mark is for it already (`always`:
        record it anyway, as `runner deploy mark` does); the mark, or None."""
        at = time.time() if at is None else at
        mark = DeployMark(version=version, at=at, by=by, label=label)
        raw = json.dumps(
            {"version": version, "label": label, "at": at, "by": by}, separators=(",", ":")
        )
        added = self._mark(keys=[self.key], args=[version, raw, at, int(always)])
        return mark if added else None

    def all(self, *, since: float = 0.0) -> list[DeployMark]:
        """Marks since `since`, oldest first."""
        return [_parse(m) for m in texts(self.redis.zrangebyscore(self.key, since, "+inf"))]

    def latest(self, n: int = 2) -> list[DeployMark]:
        """The newest `n` marks, newest first."""
        return [_parse(m) for m in texts(self.redis.zrevrange(self.key, 0, n - 1))]

    def previous_version(self, mark: DeployMark) -> DeployMark | None:
        """The newest mark before `mark` with another version: what `mark` replaced."""
        older = texts(self.redis.zrevrangebyscore(self.key, f"({mark.at}", "-inf", 0, 50))
        return next((m for m in map(_parse, older) if m.version != mark.version), None)


def mark_deploy(redis: Redis, settings: Settings, *, by: str) -> None:
    """At a worker's or clock's start: mark the deployment's `RUNNER_CODE_VERSION` if it is new
    (logged); nothing without one; a Redis failure is logged and ignored (the process starts
    anyway, the next one marks)."""
    if not settings.code_version:
        return
    version = code_version(settings)
    try:
        mark = DeployMarks(redis, settings).mark(version, by=by)
    except RedisError as exc:
        log.warning("deploy.mark_failed", version=version, error=str(exc))
        return
    if mark is not None:
        log.info("deploy.marked", version=version, by=by)


def _parse(raw: str) -> DeployMark:
    fields = cast(dict[str, Any], json.loads(raw))
    return DeployMark(
        version=str(fields["version"]), at=float(fields["at"]), by=str(fields.get("by", "")),
        label=str(fields.get("label", "")),
    )  # fmt: skip
