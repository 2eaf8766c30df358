"""Bounded downloads of feed URLs: one deadline for the whole transfer (headers included), a
size limit, and redirects only to http(s).

A feed's version is what identifies its content without downloading it: the server's `ETag`,
else its `Last-Modified`, asked with HEAD (a GET abandoned after its headers where HEAD is
refused) under a short deadline of its own. A server with neither, or one that does not
answer in time, has no version (`None`): `jobs.sources` then gives the import a token per
period, and the run itself compares the body with the last one imported.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.client import HTTPMessage, HTTPResponse
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from runner import PermanentError, TransientError

MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
READ_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 16
WEB_SCHEMES = ("http", "https")


class DeadlinePassed(TransientError):
    """A download took longer than its deadline."""


class HTTPRefused(PermanentError):
    """The server answered with an HTTP 4xx status (other than 429), or a HEAD with 501."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class _WebRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib alone also follows `ftp://`)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: HTTPMessage, newurl: str,
    ) -> urllib.request.Request | None:  # fmt: skip
        scheme = urlsplit(newurl).scheme.lower()
        if scheme not in WEB_SCHEMES:
            raise PermanentError(
                f"{req.full_url}: redirected to a {scheme}:// URL, which is not followed"
                " (only http and https are); import the feed from its http(s) address"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Watchdog:
    """Shuts the sockets of one transfer down at its deadline, so that no read waits past it:
    a socket timeout alone bounds each read, and a server that trickles its headers a byte at
    a time would hold `urlopen` for as long as it likes."""

    current = threading.local()  # the watchdog of the transfer this thread is making

    def __init__(self, seconds: float) -> None:
        self.sockets: list[socket.socket] = []
        self.timer = threading.Timer(max(0.0, seconds), self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        for sock in self.sockets:
            with suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    @classmethod
    def watch(cls, sock: socket.socket) -> None:
        watchdog = getattr(cls.current, "watchdog", None)
        if watchdog is not None:
            watchdog.sockets.append(sock)

    @contextmanager
    def running(self) -> Iterator[None]:
        self.current.watchdog = self
        self.timer.start()
        try:
            yield
        finally:
            self.timer.cancel()
            self.current.watchdog = None


class _HTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _Watchdog.watch(self.sock)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _Watchdog.watch(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


_OPENER = urllib.request.build_opener(_WebRedirectsOnly, _HTTPHandler, _HTTPSHandler)
HEAD_REFUSED = frozenset({400, 403, 404, 405, 501})  # answers to HEAD that a GET may not give


@dataclass(frozen=True, slots=True)
class _Transfer:
    """One GET of `url` that must be over by `ends_at` (monotonic), `seconds` from its start."""

    url: str
    seconds: float
    ends_at: float

    @classmethod
    def start(cls, url: str, seconds: float) -> _Transfer:
        return cls(url, seconds, time.monotonic() + seconds)

    def passed(self) -> DeadlinePassed:
        return DeadlinePassed(
            f"{self.url}: the download took longer than its deadline of {self.seconds:g} s"
        )

    def timeout(self) -> float:
        """How long the next socket operation may wait; raises DeadlinePassed when none."""
        left = self.ends_at - time.monotonic()
        if left <= 0:
            raise self.passed()
        return min(READ_TIMEOUT_S, left)

    @contextmanager
    def opened(self, method: str = "GET") -> Iterator[HTTPResponse]:
        """Open the URL; raises DeadlinePassed, TransientError or PermanentError, as a retry
        may fix it. The body is read inside the `with`, under the same deadline."""
        url = self.url
        try:
            request = urllib.request.Request(url, method=method)
            watchdog = _Watchdog(self.ends_at - time.monotonic())
            with watchdog.running(), _OPENER.open(request, timeout=self.timeout()) as response:
                yield response
        except urllib.error.HTTPError as exc:
            refused = method == "HEAD" and exc.code in HEAD_REFUSED  # a GET may still answer
            if (exc.code >= 500 or exc.code == 429) and not refused:
                raise TransientError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            raise HTTPRefused(f"{url}: HTTP {exc.code} {exc.reason}", status=exc.code) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                TimeoutError) as exc:  # fmt: skip
            if time.monotonic() >= self.ends_at:
                raise self.passed() from None
            raise TransientError(f"{url}: {getattr(exc, 'reason', exc)}") from None

    def chunks(self, response: HTTPResponse) -> Iterator[bytes]:
        """The body in chunks as they come, within the deadline and the size limit."""
        size = 0
        sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
        while True:
            if sock is not None:  # so that no single read waits past the deadline
                sock.settimeout(self.timeout())
            try:
                chunk = response.read1(CHUNK_BYTES)
            except TimeoutError:
                if time.monotonic() >= self.ends_at:
                    raise self.passed() from None
                raise TransientError(f"{self.url}: no data for {READ_TIMEOUT_S:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                if time.monotonic() >= self.ends_at:  # the watchdog shut the socket
                    raise self.passed() from None
                raise TransientError(f"{self.url}: {exc!r}") from None
            if not chunk:
                if time.monotonic() >= self.ends_at:  # the watchdog shut the socket
                    raise self.passed()
                if response.length:  # closed before its Content-Length: read1 says nothing
                    raise TransientError(
                        f"{self.url}: the body ended {response.length} bytes short of its"
                        " Content-Length"
                    )
                return
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise PermanentError(
                    f"{self.url}: larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB;"
                    " import it as a file"
                )
            if time.monotonic() >= self.ends_at:
                raise self.passed()
            yield chunk


def feed_version(url: str, *, check_s: float) -> str | None:
    """The version of the feed at `url` now from its validators, `etag ...` or `modified ...`;
    None when the server sends neither or does not answer within `check_s` (the headers of a
    HEAD, or of a GET whose body is never read where HEAD is refused). Raises PermanentError
    for a redirect off the web or an HTTP 4xx answer to the GET."""
    transfer = _Transfer.start(url, check_s)
    try:
        try:
            with transfer.opened("HEAD") as response:
                return _validator(response)
        except HTTPRefused as exc:
            if exc.status not in HEAD_REFUSED:
                raise
        with transfer.opened("GET") as response:
            return _validator(response)  # the body is left unread: closed with the response
    except TransientError:  # slow, dead, or failing now: the run will find out and say so
        return None


def _validator(response: HTTPResponse) -> str | None:
    if etag := response.headers.get("ETag"):
        return f"etag {etag}"
    if modified := response.headers.get("Last-Modified"):
        return f"modified {modified}"
    return None


@dataclass(frozen=True, slots=True)
class Downloaded:
    """What a download wrote: the body's sha256 and how many lines it has (the last one may
    lack its newline), both found in the one pass that writes it."""

    sha256: str
    lines: int


def download(url: str, into: Path, *, deadline_s: float) -> Downloaded:
    """Write the body at `url` to `into`; return its hash and line count. Raises DeadlinePassed
    when the whole transfer takes longer than `deadline_s`, PermanentError for what a retry
    cannot fix (HTTP 4xx, too large, a redirect off the web), TransientError for the rest."""
    transfer = _Transfer.start(url, deadline_s)
    digest = hashlib.sha256()
    lines, last = 0, b"\n"
    with transfer.opened() as response, into.open("wb") as out:
        for chunk in transfer.chunks(response):
            digest.update(chunk)
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
            out.write(chunk)
    return Downloaded(digest.hexdigest(), lines + (last != b"\n"))
