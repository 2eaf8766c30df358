"""Who is asking: proxy headers (refused on a console without a token) and the client's address,
from the socket or, behind a trusted proxy (`RUNNER_WEB_TRUSTED_PROXY=header[:hops]`), from the
header that proxy sets."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Scope

from runner.errors import ConfigError

PROXY_HEADERS = frozenset({
    "forwarded", "via", "x-real-ip", "true-client-ip", "cf-connecting-ip", "x-client-ip",
    "x-cluster-client-ip", "fastly-client-ip", "x-original-forwarded-for", "client-ip",
})  # fmt: skip


def proxy_headers(headers: Headers) -> list[str]:
    """The headers of `headers` that a proxy sets (every `X-Forwarded-*` among them)."""
    return sorted({
        name for name in headers if name in PROXY_HEADERS or name.startswith("x-forwarded-")
    })  # fmt: skip


def parse_trusted(raw: str | None) -> tuple[str, int] | None:
    """`x-forwarded-for:2` as (header, hops); raises ConfigError when malformed."""
    if raw is None:
        return None
    header, _, hops = raw.partition(":")
    if not header or not (hops or "1").isdigit() or int(hops or "1") < 1:
        raise ConfigError(
            f"RUNNER_WEB_TRUSTED_PROXY={raw!r} is not header[:hops]; set it to e.g. "
            "x-forwarded-for:1 (one proxy that appends the client's address) or x-real-ip"
        )
    return header.strip().lower(), int(hops or "1")


def client_address(scope: Scope, headers: Headers, trusted: tuple[str, int] | None) -> str:
    """The address throttling and the logs name: the socket's peer, or behind `trusted` proxies
    the address `hops` from the right of its header (what the nearest proxy saw)."""
    peer = scope.get("client")
    address = str(peer[0]) if peer else "unknown"
    if trusted is None:
        return address
    header, hops = trusted
    values = [v.strip() for v in ",".join(headers.getlist(header)).split(",") if v.strip()]
    if len(values) < hops:
        return address
    return values[-hops][:100]
