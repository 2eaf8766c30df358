"""Import sources: files, directories and http(s) URLs, checked when enqueued, fetched when run."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runner import InvalidArguments, PermanentError, TransientError, content_token, derive_token

TASK = "import_posts"
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 30.0
FEED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".txt")


@dataclass(frozen=True, slots=True)
class Source:
    """One feed to import: where it is, and the token that makes its import happen once."""

    location: str
    token: str


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


def file_sha256(path: Path) -> str:
    """The content hash of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(location: str) -> list[Source]:
    """Sources for one command-line argument: a URL, a file, or every feed file in a directory.
    A file's token is its content hash, so the same content is never imported twice. Raises
    InvalidArguments (a usage error) for anything missing, unreadable or of another kind."""
    if is_url(location):
        return [Source(location, derive_token(TASK, {"source": location}))]
    if "://" in location:
        raise InvalidArguments(f"{location}: only http:// and https:// URLs can be imported")
    path = Path(location).expanduser()
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir() if _is_feed(p))
        except OSError as exc:
            raise InvalidArguments(
                f"{location}: cannot list the directory ({exc.strerror})"
            ) from None
        return [_file_source(p) for p in files]
    if not path.exists():
        raise InvalidArguments(f"{location}: no such file or directory")
    return [_file_source(path)]


def _is_feed(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in FEED_SUFFIXES


def _file_source(path: Path) -> Source:
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise InvalidArguments(f"{path}: cannot read it ({exc.strerror})") from None
    return Source(str(path.resolve()), content_token(TASK, digest))


def fetch(location: str, *, spool: Path, token: str) -> str:
    """The local path of a source: a file as it is, a URL downloaded (atomically) into the
    spool. Raises TransientError for what a retry may fix, PermanentError otherwise."""
    if not is_url(location):
        path = Path(location)
        if not path.is_file():
            raise PermanentError(f"{location}: the file is gone; restore it, then rerun")
        return location
    spool.mkdir(parents=True, exist_ok=True)
    suffix = Path(urlsplit(location).path).suffix.lower()
    name = hashlib.sha256(token.encode()).hexdigest()[:24] + (
        suffix if suffix in FEED_SUFFIXES else ".feed"
    )
    target = spool / name
    if target.exists():
        return str(target)
    partial = spool / f".{name}.{os.getpid()}.part"
    try:
        _download(location, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return str(target)


def _download(url: str, into: Path) -> None:
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            into.open("wb") as out,
        ):
            size = 0
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise PermanentError(
                        f"{url}: larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB; import it as a file"
                    )
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise TransientError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        raise PermanentError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise TransientError(f"{url}: {getattr(exc, 'reason', exc)}") from None
