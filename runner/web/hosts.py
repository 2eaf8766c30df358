"""Which `Host` and `Origin` the console answers: loopback names and addresses (on its own port
when it knows it), the hosts of `RUNNER_WEB_HOSTS` and the host of `RUNNER_WEB_ORIGIN`. A page
of another name that resolves to this machine (DNS rebinding) is refused before routing."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from runner.config import Settings
from runner.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` are loopback; every other address or name is not."""
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """`host[:port]` (IPv6 in brackets) as (lower-case host, port or None); None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = value.partition(":")
        if ":" in port_text:
            return None
    host = host.rstrip(".")
    if not host or any(c in host for c in "/\\@?#% ") or not host.isascii():
        return None
    if not port_text:
        return host, None
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        return None
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class HostList:
    """The `host[:port]` names this console answers to; an entry without a port matches any."""

    entries: frozenset[tuple[str, int | None]]
    port: int | None = None  # the console's own port: loopback names match on it alone

    @classmethod
    def for_console(cls, settings: Settings, *, port: int | None = None) -> HostList:
        """The allow-list of a console bound to `port`; raises ConfigError naming a bad entry."""
        entries = set()
        extra = list(settings.web_hosts)
        if settings.web_origin:
            extra.append(settings.web_origin.partition("://")[2])
        for raw in extra:
            parsed = split_host(raw)
            if parsed is None:
                raise ConfigError(
                    f"RUNNER_WEB_HOSTS: {raw!r} is not a host[:port]; set it to e.g. "
                    "jobs.example.com,jobs.internal:8080"
                )
            entries.add(parsed)
        return cls(frozenset(entries), port)

    def allows(self, host_header: str, *, loopback: bool = True) -> bool:
        parsed = split_host(host_header)
        if parsed is None:
            return False
        host, port = parsed
        if is_loopback(host):
            return loopback and (self.port is None or port in (None, self.port))
        return (host, None) in self.entries or (host, port) in self.entries

    def allows_origin(self, origin: str, *, public: str | None) -> bool:
        """A browser's Origin is this console's own: the public origin, or http(s) on a host of
        the list (loopback names only when there is no public origin); never compared with the
        request's own Host."""
        origin = origin.rstrip("/").lower()
        if public is not None and origin == public.lower():
            return True
        scheme, sep, hostport = origin.partition("://")
        if scheme not in ("http", "https") or not sep:
            return False
        return self.allows(hostport, loopback=public is None)


def check_bind(settings: Settings, host: str) -> None:
    """A console reachable from other machines needs a token and the names it answers to;
    raises ConfigError with the fix otherwise."""
    if is_loopback(host):
        return
    if not settings.web_token:
        raise ConfigError(
            f"--host {host} is reachable from other machines: set RUNNER_WEB_TOKEN to a long "
            "random secret first, or bind --host 127.0.0.1"
        )
    if not settings.web_hosts and not settings.web_origin:
        raise ConfigError(
            f"--host {host} is reachable from other machines: set RUNNER_WEB_HOSTS (the names "
            "browsers use, e.g. jobs.example.com) or RUNNER_WEB_ORIGIN, so that no other name "
            "pointing here is answered"
        )
