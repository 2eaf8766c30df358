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
class HealthThresholds:
    """When `runner health` says a question is not ok (README, Monitoring)."""

    min_runs: int = 20  # runs per side before a rate or a comparison makes a verdict
    failure_rate: float = 0.05  # a task failing more than this in the last hour fails
    slower: float = 0.25  # a p50/p95 more than this much higher is a change
    wait_p95_seconds: float = 60.0  # a queue's wait p95 in the last hour above this is slow
    stuck_seconds: float = 600.0  # queued this long with no live worker on its queue
    clock_seconds: float = 180.0  # no cron tick for this long while the schedule has entries


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
    code_version: str | None = None  # a deploy's git sha; None: the git short sha, or the package's
    health: HealthThresholds = field(default_factory=lambda: HealthThresholds())
    web_token: str | None = field(default=None, repr=False)  # never printed
    web_origin: str | None = None
    web_readonly: bool = False
    web_hosts: tuple[str, ...] = ()  # host[:port] the console answers besides loopback names
    web_trusted_proxy: str | None = None  # "header[:hops]": where the client address comes from
    web_metrics_public: bool = False  # with a token: /metrics alone readable without it
    web_session_idle_seconds: float = 8 * 3600.0
    web_session_max_seconds: float = 7 * DAY
    redis_sentinel_password: str | None = field(default=None, repr=False)
    redis_min_replicas: int | None = None  # None: 1 behind Sentinel, else 0
    stop_seconds: float = 10.0  # a stopping worker hands its run over and exits within this
    # The site's own settings, read here because this is the one place that reads the
    # environment: where `poll_inbox` looks (None: `home / "inbox"`), the feed URLs
    # `poll_feeds` checks, the whole-time limit of a URL download, the deadline of asking a
    # URL for its version, and the period a URL without one is imported at most once in.
    inbox: Path | None = None
    feeds: tuple[str, ...] = ()
    download_deadline_seconds: float = 300.0
    url_check_seconds: float = 3.0
    url_min_interval_seconds: float = 900.0
    outbox_url: str | None = (
        None  # the database of the outbox the relay reads (runner.client.outbox)
    )
    history_url: str | None = None  # the history tables' database (runner.runs.history)
    history_delay_seconds: float = 30.0  # a succeeded or cancelled run moves this long after
    failed_seconds: int = 7 * DAY  # a failed run keeps its Redis record and RQ job this long
    history_seconds: int = 90 * DAY  # history older than this is pruned

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
            health=HealthThresholds(
                min_runs=int(_number(env, "RUNNER_HEALTH_MIN_RUNS", 20, low=1)),
                failure_rate=_number(env, "RUNNER_HEALTH_FAILURE_RATE", 0.05, low=0.0),
                slower=_number(env, "RUNNER_HEALTH_SLOWER", 0.25, low=0.0),
                wait_p95_seconds=_number(env, "RUNNER_HEALTH_WAIT_P95_SECONDS", 60.0, low=0.0),
                stuck_seconds=_number(env, "RUNNER_HEALTH_STUCK_SECONDS", 600.0, low=0.0),
                clock_seconds=_number(env, "RUNNER_HEALTH_CLOCK_SECONDS", 180.0, low=1.0),
            ),
            web_token=env.get("RUNNER_WEB_TOKEN") or None,
            web_origin=_origin(env.get("RUNNER_WEB_ORIGIN") or None),
            web_readonly=_flag(env, "RUNNER_WEB_READONLY"),
            web_hosts=tuple(env.get("RUNNER_WEB_HOSTS", "").replace(",", " ").lower().split()),
            web_trusted_proxy=env.get("RUNNER_WEB_TRUSTED_PROXY", "").strip().lower() or None,
            web_metrics_public=_metrics_public(env),
            web_session_idle_seconds=_number(env, "RUNNER_WEB_SESSION_IDLE", 8 * 3600.0, low=60),
            web_session_max_seconds=_number(env, "RUNNER_WEB_SESSION_MAX", 7.0 * DAY, low=60),
            redis_min_replicas=_optional_int(env, "RUNNER_REDIS_MIN_REPLICAS"),
            stop_seconds=_number(env, "RUNNER_STOP_SECONDS", 10.0, low=1.0),
            feeds=_urls(env, "RUNNER_FEEDS"),
            download_deadline_seconds=_number(
                env, "RUNNER_DOWNLOAD_DEADLINE_SECONDS", 300.0, low=1.0
            ),
            url_check_seconds=_number(env, "RUNNER_URL_CHECK_SECONDS", 3.0, low=0.1),
            url_min_interval_seconds=_number(env, "RUNNER_URL_MIN_INTERVAL", 900.0, low=1.0),
            redis_outage_seconds=_number(env, "RUNNER_REDIS_OUTAGE_SECONDS", 60.0, low=0.0),
            outbox_url=env.get("RUNNER_OUTBOX_URL") or None,
            history_url=env.get("RUNNER_HISTORY_URL") or None,
            history_delay_seconds=_number(env, "RUNNER_HISTORY_DELAY_SECONDS", 30.0, low=0.0),
            failed_seconds=int(_number(env, "RUNNER_FAILED_DAYS", 7.0, low=0.0) * DAY),
            history_seconds=int(_number(env, "RUNNER_HISTORY_DAYS", 90.0, low=0.0) * DAY),
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
    def outbox_database_url(self) -> str:
        """The database whose outbox the relay moves to Redis: `RUNNER_OUTBOX_URL`, else the
        content store's."""
        return self.outbox_url or self.store_url

    @property
    def history_database_url(self) -> str:
        """The history tables' database: `RUNNER_HISTORY_URL`, else a SQLite file under the
        home."""
        return self.history_url or f"sqlite:///{self.home / 'history.db'}"

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


def _urls(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma- or space-separated http(s) URLs; raises ConfigError naming one that is not."""
    urls = tuple(env.get(name, "").replace(",", " ").split())
    for url in urls:
        if not url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"{name}: {url!r} is not an http:// or https:// URL")
    return urls


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


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={raw!r} is not a flag; set it to 1 or 0")


def _metrics_public(env: Mapping[str, str]) -> bool:
    """RUNNER_WEB_METRICS_PUBLIC; the older RUNNER_WEB_PROTECT_METRICS (kept one release, with
    a warning from `runner web`) means its opposite."""
    if env.get("RUNNER_WEB_METRICS_PUBLIC", "") == "" and env.get(DEPRECATED_METRICS, ""):
        return not _flag(env, DEPRECATED_METRICS)
    return _flag(env, "RUNNER_WEB_METRICS_PUBLIC")


DEPRECATED_METRICS = "RUNNER_WEB_PROTECT_METRICS"


def _origin(raw: str | None) -> str | None:
    """`https://jobs.example.com` (scheme and host, no path): what browsers send as Origin."""
    if raw is None:
        return None
    origin = raw.strip().rstrip("/")
    scheme, sep, host = origin.partition("://")
    if scheme not in ("http", "https") or not sep or not host or "/" in host:
        raise ConfigError(
            f"RUNNER_WEB_ORIGIN={raw!r} is not an origin; set it to e.g. https://jobs.example.com"
        )
    return origin


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit():
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. 1 (or 0)")
    return int(raw)
