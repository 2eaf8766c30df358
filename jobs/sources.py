"""Import sources: files, directories and http(s) URLs, checked when enqueued, fetched when run.

A file's token is its content hash; a URL's token is the URL with the feed's version at the
time of the check (`jobs.downloads.feed_version`), so a feed that changes is imported again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jobs.downloads import WEB_SCHEMES, feed_version
from runner import InvalidArguments, PermanentError, content_token, derive_token

TASK = "import_posts"
DEFAULT_DEADLINE_S = 300.0
FEED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".txt")


@dataclass(frozen=True, slots=True)
class Source:
    """One feed to import: where it is, and the token that makes its import happen once."""

    location: str
    token: str


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in WEB_SCHEMES


def file_sha256(path: Path) -> str:
    """The content hash of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def url_token(url: str, version: str) -> str:
    """The token of importing `url` at `version`: each version of a feed is imported once."""
    return derive_token(TASK, {"source": url, "version": version})


def resolve(location: str, *, deadline_s: float = DEFAULT_DEADLINE_S) -> list[Source]:
    """Sources for one command-line argument: a URL, a file, or every feed file in a directory.
    A file's token is its content hash, a URL's its version now (one GET), so the same content
    is never imported twice. Raises InvalidArguments (a usage error) for anything missing,
    unreadable or of another kind, and as `feed_version` does for a URL it cannot check."""
    if is_url(location):
        return [
            Source(location, url_token(location, feed_version(location, deadline_s=deadline_s)))
        ]
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


def spool_path(location: str, *, spool: Path, token: str) -> Path:
    """Where the download of a URL source for run `token` is kept (one file per run)."""
    suffix = Path(urlsplit(location).path).suffix.lower()
    name = hashlib.sha256(token.encode()).hexdigest()[:24]
    return spool / (name + (suffix if suffix in FEED_SUFFIXES else ".feed"))


def local_file(location: str) -> Path:
    """A file source's path; raises PermanentError when the file is gone."""
    path = Path(location)
    if not path.is_file():
        raise file_gone(location)
    return path


def file_gone(location: str) -> PermanentError:
    """The error of a feed removed before or during its import: a retry cannot bring it back."""
    return PermanentError(f"{location}: the file is gone; restore it, then rerun")
