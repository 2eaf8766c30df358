"""Import sources: files, directories and http(s) URLs, checked when enqueued, fetched when run.

A file's token is its content hash; a URL's token is the URL with the feed's version at the
time of the check (`jobs.downloads.feed_version`: its ETag or Last-Modified), so a feed that
changes is imported again. A URL without a version (no validators, or no answer within the
check's deadline) gets the URL and the current period of `RUNNER_URL_MIN_INTERVAL` as its
token, and its run skips the upsert when the body is the one last imported from that URL: such
a feed is imported at most once per period, and the command line never waits for a download.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobs.downloads import WEB_SCHEMES, feed_version
from runner import InvalidArguments, PermanentError, content_token, derive_token

TASK = "import_posts"
DEFAULT_CHECK_S = 3.0
DEFAULT_MIN_INTERVAL_S = 900.0
FEED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".txt")


@dataclass(frozen=True, slots=True)
class Source:
    """One feed to import: where it is, and the token that makes its import happen once."""

    location: str
    token: str
    options: dict[str, Any] = field(default_factory=dict)  # more `import_posts` arguments

    @property
    def args(self) -> dict[str, Any]:
        """The `import_posts` arguments of this source."""
        return {"source": self.location, **self.options}


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in WEB_SCHEMES


def file_sha256(path: Path) -> str:
    """The content hash of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: Path) -> tuple[str, int]:
    """A file's content hash and line count (the last line may lack its newline), in one read."""
    digest, lines, last = hashlib.sha256(), 0, b"\n"
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
    return digest.hexdigest(), lines + (last != b"\n")


def url_token(url: str, version: str) -> str:
    """The token of importing `url` at `version`: each version of a feed is imported once."""
    return derive_token(TASK, {"source": url, "version": version})


def url_source(
    url: str, *, check_s: float = DEFAULT_CHECK_S,
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S, now: float | None = None,
) -> Source:  # fmt: skip
    """The source of importing `url` now: its token from the feed's validators, asked within
    `check_s`; without them, from the period of `min_interval_s` that `now` (epoch seconds,
    default the clock) falls in, and the run told to skip a body it imported last."""
    version = feed_version(url, check_s=check_s)
    if version is not None:
        return Source(url, url_token(url, version))
    moment = time.time() if now is None else now
    period = int(moment // min_interval_s)
    return Source(
        url, url_token(url, f"period {period} of {min_interval_s:g} s"), {"skip_unchanged": True}
    )


def resolve(
    location: str, *, check_s: float = DEFAULT_CHECK_S,
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S, now: float | None = None,
) -> list[Source]:  # fmt: skip
    """Sources for one command-line argument: a URL, a file, or every feed file in a directory.
    A file's token is its content hash, a URL's as `url_source` says, so the same content is
    never imported twice. Raises InvalidArguments (a usage error) for anything missing,
    unreadable or of another kind, and as `feed_version` does for a URL it cannot check."""
    if is_url(location):
        return [url_source(location, check_s=check_s, min_interval_s=min_interval_s, now=now)]
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
        digest, lines = file_digest(path)
    except OSError as exc:
        raise InvalidArguments(f"{path}: cannot read it ({exc.strerror})") from None
    # The line count rides along so that the run does not read the file once more for it.
    return Source(str(path.resolve()), content_token(TASK, digest), {"lines": lines})


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
