"""Bounded downloads of feed URLs: one deadline for the whole transfer, a size limit, and
redirects only to http(s).

A feed's version is what identifies its content without storing it: the server's `ETag`, else
its `Last-Modified`, else the sha256 of the body (a server with neither costs a full transfer
per check). The token of a URL import carries that version, so a changed feed is a new unit
of work and an unchanged one is deduplicated, wherever the check and the import run.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


_OPENER = urllib.request.build_opener(_WebRedirectsOnly)


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
    def opened(self) -> Iterator[HTTPResponse]:
        """Open the URL; raises TransientError or PermanentError, as a retry may fix it."""
        url = self.url
        try:
            with _OPENER.open(url, timeout=self.timeout()) as response:
                yield response
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise TransientError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            raise PermanentError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
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
            except OSError as exc:
                raise TransientError(f"{self.url}: {exc}") from None
            if not chunk:
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


def feed_version(url: str, *, deadline_s: float) -> str:
    """The version of the feed at `url` now: `etag ...`, `modified ...` or `sha256 ...`.

    One GET: with a validator, only the headers are read. Raises as `download` does."""
    transfer = _Transfer.start(url, deadline_s)
    with transfer.opened() as response:
        if etag := response.headers.get("ETag"):
            return f"etag {etag}"
        if modified := response.headers.get("Last-Modified"):
            return f"modified {modified}"
        digest = hashlib.sha256()
        for chunk in transfer.chunks(response):
            digest.update(chunk)
        return f"sha256 {digest.hexdigest()}"


def download(url: str, into: Path, *, deadline_s: float) -> str:
    """Write the body at `url` to `into`; return its sha256. Raises DeadlinePassed when the
    whole transfer takes longer than `deadline_s`, PermanentError for what a retry cannot fix
    (HTTP 4xx, too large, a redirect off the web), TransientError for the rest."""
    transfer = _Transfer.start(url, deadline_s)
    digest = hashlib.sha256()
    with transfer.opened() as response, into.open("wb") as out:
        for chunk in transfer.chunks(response):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()
