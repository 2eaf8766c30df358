"""Settings: one frozen dataclass built from the environment; CLI options override fields."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.errors import ConfigError

DAY = 86_400


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a runner process needs to know; pass it explicitly, never as a global."""

    home: Path = Path("var")
    redis_url: str | None = None
    database_url: str | None = None
    queues: tuple[str, ...] = ("imports", "cron", "default")
    lease_seconds: float = 30.0
    prefix: str = "runner:"
    retention_seconds: int = 14 * DAY
    max_attempts: int = 5
    log_max_events: int = 2_000
    tasks_module: str = "jobs"
    redis_outage_seconds: float = 60.0
    inbox: Path | None = None  # where `poll_inbox` looks; None: `home / "inbox"`
    code_version: str | None = None  # a deploy's git sha; None: the package's version
    redis_sentinel_password: str | None = field(default=None, repr=False)
    redis_min_replicas: int | None = None  # None: 1 behind Sentinel, else 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read `RUNNER_*` variables; raises ConfigError naming the variable that is malformed."""
        env = os.environ if env is None else env
        home = Path(env.get("RUNNER_HOME", "var")).expanduser().absolute()
        queues = tuple(q.strip() for q in env.get("RUNNER_QUEUES", "").split(",") if q.strip())
        return cls(
            home=home,
            redis_url=env.get("RUNNER_REDIS_URL") or None,
            redis_sentinel_password=env.get("RUNNER_REDIS_SENTINEL_PASSWORD") or None,
            database_url=env.get("RUNNER_DATABASE_URL") or None,
            queues=queues or ("imports", "cron", "default"),
            lease_seconds=_number(env, "RUNNER_LEASE_SECONDS", 30.0, low=0.5),
            prefix=env.get("RUNNER_PREFIX", "runner:"),
            retention_seconds=int(_number(env, "RUNNER_RETENTION_DAYS", 14.0, low=0.0) * DAY),
            max_attempts=int(_number(env, "RUNNER_MAX_ATTEMPTS", 5, low=1)),
            tasks_module=env.get("RUNNER_TASKS", "jobs"),
            inbox=Path(env["RUNNER_INBOX"]).expanduser() if env.get("RUNNER_INBOX") else None,
            code_version=env.get("RUNNER_CODE_VERSION") or None,
            redis_min_replicas=_optional_int(env, "RUNNER_REDIS_MIN_REPLICAS"),
        )

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced; a None value leaves its field as it is (an
        option that was not given keeps the environment's value)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def store_url(self) -> str:
        """The content store's URL: `RUNNER_DATABASE_URL` or a SQLite file under the home."""
        return self.database_url or f"sqlite:///{self.home / 'content.db'}"

    @property
    def reaper_interval(self) -> float:
        """How often a worker looks for expired leases and due retries."""
        return min(5.0, max(0.2, self.lease_seconds / 4))

    @property
    def min_replicas(self) -> int:
        """How many replicas must confirm a claim or an enqueue before the runner relies on
        it: 1 behind Sentinel (a failover promotes a replica), 0 for a single server."""
        if self.redis_min_replicas is not None:
            return self.redis_min_replicas
        return 1 if (self.redis_url or "").lower().startswith("redis+sentinel://") else 0

    @property
    def lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)


def _number(env: Mapping[str, str], name: str, default: float, *, low: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default:g}") from None
    if value < low:
        raise ConfigError(f"{name}={raw!r} is too small; it must be at least {low:g}")
    return value


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit():
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. 1 (or 0)")
    return int(raw)
