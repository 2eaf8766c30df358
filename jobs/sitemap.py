"""The sitemap: every post's URL, streamed from the store into `sitemap.xml`.

The sitemap protocol allows 50,000 URLs per file. Up to that many posts `sitemap.xml` is one
`urlset`; past it, the URLs go into `sitemap-1.xml`, `sitemap-2.xml`, ... and `sitemap.xml`
becomes the `sitemapindex` that lists them. Every file is written to a temporary file beside
it, fsynced and renamed over the old one; the parts before the index, so a reader of the
index finds its parts, and parts that fell out of use are removed after it.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import quote
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from sqlalchemy import Engine

SITEMAP = "sitemap.xml"
URLS_PER_FILE = 50_000
XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
URLSET = ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n', "</urlset>\n")
INDEX = (
    '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n',
    "</sitemapindex>\n",
)
PATH_SAFE = "!$&'()*+,;=:@"  # RFC 3986 path characters beyond letters, digits and -._~
XML_QUOTES = {"'": "&apos;", '"': "&quot;"}


def url_element(base_url: str, source_id: str, updated: datetime) -> str:
    """One `<url>` line: the post's URL (percent-encoded, then XML-escaped) and lastmod."""
    loc = f"{base_url.rstrip('/')}/posts/{quote(source_id, safe=PATH_SAFE)}"
    return (
        f"  <url><loc>{escape(loc, XML_QUOTES)}</loc><lastmod>{updated:%Y-%m-%d}</lastmod></url>\n"
    )


def part_element(base_url: str, name: str, written: datetime) -> str:
    """One `<sitemap>` line of the index: a part's URL beside `sitemap.xml`, and lastmod."""
    loc = escape(f"{base_url.rstrip('/')}/{name}", XML_QUOTES)
    return f"  <sitemap><loc>{loc}</loc><lastmod>{written:%Y-%m-%d}</lastmod></sitemap>\n"


def write_sitemap(
    engine: Engine, directory: Path, *, base_url: str, per_file: int = URLS_PER_FILE
) -> int:
    """Write every post's URL under `directory` (see the module); returns the count. Raises
    OSError when the directory cannot be written; the published files are then as they were
    or, past one file, each of them whole."""
    from jobs.store import iter_post_urls

    directory.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        count = 0
        out = _start(directory, temps, URLSET[0])
        for source_id, updated in iter_post_urls(engine):
            if count and count % per_file == 0:
                _finish(out, URLSET[1])
                out = _start(directory, temps, URLSET[0])
            out.write(url_element(base_url, source_id, updated))
            count += 1
        _finish(out, URLSET[1])
        if len(temps) == 1:
            kept = [_publish(temps[0], directory / SITEMAP)]
        else:
            kept = _publish_parts(directory, temps, base_url=base_url)
        for stale in set(directory.glob("sitemap-*.xml")) - set(kept):
            stale.unlink()
    except BaseException:
        for temp in temps:
            with suppress(FileNotFoundError):
                os.unlink(temp)
        raise
    _fsync_directory(directory)  # make the renames themselves durable
    return count


def _publish_parts(directory: Path, temps: list[Path], *, base_url: str) -> list[Path]:
    """Rename the parts into place, then write and publish the index over them."""
    names = [f"sitemap-{number}.xml" for number in range(1, len(temps) + 1)]
    kept = [_publish(temp, directory / name) for temp, name in zip(temps, names, strict=True)]
    index = _start(directory, temps, INDEX[0])
    written = datetime.now(UTC)
    for name in names:
        index.write(part_element(base_url, name, written))
    _finish(index, INDEX[1])
    return [*kept, _publish(temps[-1], directory / SITEMAP)]


def _start(directory: Path, temps: list[Path], opening: str) -> TextIO:
    """Open a new temporary file in `directory` (recorded in `temps`) and write its head."""
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{SITEMAP}.", suffix=".tmp")
    temps.append(Path(temp))
    out = os.fdopen(fd, "w", encoding="utf-8")
    out.write(XML_HEAD + opening)
    return out


def _finish(out: TextIO, closing: str) -> None:
    out.write(closing)
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _publish(temp: Path, path: Path) -> Path:
    os.chmod(temp, 0o644)
    os.replace(temp, path)
    return path


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
