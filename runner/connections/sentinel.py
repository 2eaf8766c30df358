"""Redis Sentinel: the `redis+sentinel://` URL, and a client that follows the master.

The URL form is the one of the `redis-sentinel-url` package (and Flask-Redis-Sentinel, which
uses it): `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`. The
password is the master's; the sentinels' own comes from `RUNNER_REDIS_SENTINEL_PASSWORD`.
`urllib.parse.urlsplit` cannot read several hosts (its `.port` raises), hence this parser.

The client is redis-py's `Sentinel.master_for`: every new connection asks the sentinels where
the master is, and a connection that finds itself on a demoted master (READONLY) or a dead one
fails with a ConnectionError, which the runner treats as an outage
(`runner.connections.redis.REDIS_DOWN`) and retries; the retry connects to the new master.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, unquote

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from runner.errors import ConfigError

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379
FORM = "redis+sentinel://[:password@]host:26379[,host:26379...]/service_name[/db]"


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed `redis+sentinel://` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    def redacted(self) -> str:
        """The URL with the password as `***` (hosts, service and db as given)."""
        auth = ""
        if self.password is not None or self.username:
            user = quote(self.username or "", safe="")
            auth = f"{user}:***@" if self.password is not None else f"{user}@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"{SCHEME}://{auth}{hosts}/{quote(self.service, safe='')}/{self.db}"


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(f"{SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read a `redis+sentinel://` URL; raises ConfigError (password hidden) when malformed."""
    rest = url[len(SCHEME) + 3 :]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    shown = url if password is None else f"{SCHEME}://{username or ''}:***@{hosts}/{path}"
    if "?" in path or "#" in path:
        raise _malformed(shown, "query parameters are not supported")
    sentinels = tuple(_host_port(part, shown) for part in hosts.split(","))
    segments = [unquote(s) for s in path.split("/")] if path else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments or not segments[0] or len(segments) > 2:
        raise _malformed(shown, "it needs the service name after the hosts (/mymaster[/db])")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise _malformed(shown, f"the database {segments[1]!r} is not a number")
        db = int(segments[1])
    return SentinelURL(sentinels, segments[0], db, username, password)


def master_client(
    parsed: SentinelURL, *, sentinel_password: str | None, **connection: Any
) -> Redis:
    """A client of `parsed`'s current master (found again after each failover); `connection`
    holds the master connections' options (timeouts, keepalive), also used for the sentinels."""
    sentinel_kwargs = {k: v for k, v in connection.items() if k.startswith("socket_")}
    # One try per sentinel: the client asks the next one, and callers retry the whole question.
    sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    sentinels = list(parsed.sentinels)
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **connection)  # type: ignore[no-untyped-call]
    master = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        connection_class=ClosingSentinelConnection,
    )
    return cast(Redis, master)


class ClosingSentinelConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection, closed when a read is interrupted, as a plain one is.

    redis-py's own keeps the socket after a read fails midway (its `disconnect_on_error`
    defaults to False there, True everywhere else), so the next command on it reads the
    stale reply: a worker stopped by SIGTERM in its blocking dequeue hung, then crashed."""

    def read_response(  # type: ignore[override]
        self, disable_decoding: bool = False, *, disconnect_on_error: bool = True, **options: Any
    ) -> Any:
        return super().read_response(
            disable_decoding, disconnect_on_error=disconnect_on_error, **options
        )


def _host_port(part: str, shown: str) -> tuple[str, int]:
    host, port = part.strip(), str(DEFAULT_PORT)
    if host.startswith("["):  # [IPv6]:port
        inside, _, after = host[1:].partition("]")
        host = inside
        if after.startswith(":"):
            port = after[1:]
        elif after:
            raise _malformed(shown, f"cannot read the host {part!r}")
    elif ":" in host:
        host, _, port = host.rpartition(":")
    if not host:
        raise _malformed(shown, "a sentinel host is empty")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _malformed(shown, f"the port {port!r} of {host} is not a port number")
    return host, int(port)


def _malformed(shown: str, why: str) -> ConfigError:
    return ConfigError(f"RUNNER_REDIS_URL={shown} is not a Sentinel URL: {why}; use {FORM}")
