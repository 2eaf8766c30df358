"""URL feeds against real HTTP servers on 127.0.0.1: versions, deadlines, redirects, HTTP and
connection errors, the size limit, line counts, polling, and a feed without validators imported
once per period."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis

from jobs.downloads import READ_TIMEOUT_S, DeadlinePassed, HTTPRefused, download, feed_version
from jobs.sources import resolve
from runner.cli.commands import cli
from runner.config import Settings
from runner.errors import PermanentError, TransientError
from runner.keys import Keys
from runner.logs import read_events
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.index import RunIndex, RunQuery
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from scripts.gen_posts import generate_posts
from tests.conftest import wait_for, worker_env

SERVER_GIVES_UP_S = READ_TIMEOUT_S / 2  # a stalled or trickling answer is closed by then
MIB_OF_LINES = b"0123456789abcde\n" * (2**20 // 16)  # what a `generated` body is made of


@dataclass
class Feed:
    """What the local server answers for /feed.jsonl; `requests` counts the GETs it got,
    `heads` the HEADs."""

    body: bytes = b""
    etag: str | None = None
    modified: str | None = None
    trickle_s: float | None = None  # send one byte of the body per this many seconds
    trickle_headers_s: float | None = None  # ... of the headers
    head_refused: int | None = None  # answer HEAD with this status (405, 501)
    status: int | None = None  # answer every request with this status (HEAD: unless refused)
    generated: int | None = None  # send this many bytes of 16-byte lines instead of `body`
    reset: str | None = None  # "before the headers" or "in the body": reset the connection
    trickle_trailer: bool = False  # send the body chunked, then its trailer a byte per 0.1 s
    short_by: int = 0  # close the connection this many bytes short of the Content-Length
    stall: bool = False  # send the headers, then nothing
    released: threading.Event = field(default_factory=threading.Event)  # set at teardown
    redirect: str | None = None
    requests: int = 0
    heads: int = 0
    hung_up: int = 0  # stalled or trickled answers the client closed before the server gave up
    gave_up: int = 0  # ... the server closed first, after SERVER_GIVES_UP_S
    lock: threading.Lock = field(default_factory=threading.Lock)


def posts_body(n: int, *, seed: int, start: int = 1) -> bytes:
    posts = generate_posts(n, seed=seed, start=start)
    return b"".join(json.dumps(p).encode() + b"\n" for p in posts)


@pytest.fixture
def served() -> Iterator[tuple[Feed, str]]:
    feed = Feed()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            with feed.lock:
                feed.heads += 1
            if feed.head_refused:
                self.send_error(feed.head_refused)
                return
            self.answer(head=True)

        def do_GET(self) -> None:
            with feed.lock:
                feed.requests += 1
            self.answer(head=False)

        def answer(self, *, head: bool) -> None:
            if feed.status:
                self.send_error(feed.status)
                return
            if feed.reset == "before the headers":
                self.reset_connection()
                return
            if feed.trickle_headers_s is not None:
                with contextlib.suppress(OSError):  # the client gave up
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 1000:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(feed.trickle_headers_s)
                return
            if feed.redirect:
                self.send_response(302)
                self.send_header("Location", feed.redirect)
                self.end_headers()
                return
            self.send_response(200)
            if feed.trickle_trailer:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                size = len(feed.body) if feed.generated is None else feed.generated
                self.send_header("Content-Length", str(size))
            if feed.etag:
                self.send_header("ETag", feed.etag)
            if feed.modified:
                self.send_header("Last-Modified", feed.modified)
            self.end_headers()
            if head:
                return
            if feed.generated is not None:
                self.send_lines(feed.generated)
                return
            if feed.trickle_trailer:  # the whole body and its last chunk, then a trailer
                self.wfile.write(b"%x\r\n%s\r\n0\r\n" % (len(feed.body), feed.body))
                self.wait_for_hang_up(b"X-Checksum: " + b"x" * 1000, every_s=0.1)
                return
            if feed.reset == "in the body":
                self.wfile.write(feed.body[: len(feed.body) // 2])
                self.wfile.flush()
                time.sleep(0.5)  # the client has read the headers and is waiting for the rest
                self.reset_connection()
                return
            if feed.stall:  # until the server gives up (SERVER_GIVES_UP_S), body unsent
                self.wfile.flush()
                self.wait_for_hang_up(feed.body[:0])
                return
            if feed.trickle_s is None:
                self.wfile.write(feed.body[: len(feed.body) - feed.short_by])
                self.close_connection = True
                return
            self.wait_for_hang_up(feed.body, every_s=feed.trickle_s)

        def send_lines(self, size: int) -> None:
            """Send `size` bytes of 16-byte lines, a MiB at a time, as fast as the client reads."""
            block = memoryview(MIB_OF_LINES)
            with contextlib.suppress(OSError):  # the client stopped reading
                while size:
                    self.wfile.write(block[: min(size, len(block))])
                    size -= min(size, len(block))

        def reset_connection(self) -> None:
            """Close the connection with an RST, as a crashed server or proxy does."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def wait_for_hang_up(self, body: bytes, *, every_s: float = 0.1) -> None:
            """Send `body` a byte per `every_s` (or nothing) until the client closes the
            connection or SERVER_GIVES_UP_S passed (the body cut short), counting which."""
            gives_up = time.monotonic() + SERVER_GIVES_UP_S
            for byte in itertools.chain(body, itertools.repeat(None)):
                if time.monotonic() >= gives_up or feed.released.is_set():
                    with feed.lock:
                        feed.gave_up += 1
                    return
                try:
                    if byte is not None:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    closed, _, _ = select.select([self.connection], [], [], every_s)
                    if closed and not self.connection.recv(1):  # the client's FIN
                        raise ConnectionResetError
                except OSError:
                    with feed.lock:
                        feed.hung_up += 1
                    return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield feed, f"http://127.0.0.1:{server.server_port}/feed.jsonl"
    finally:
        feed.released.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(settings: Settings, served: tuple[Feed, str]) -> Settings:
    """The site's tasks, the served feed as the one configured feed, a 1-second deadline."""
    return settings.with_changes(
        tasks_module="jobs", queues=("imports", "cron", "default"), feeds=(served[1],),
        download_deadline_seconds=1.0,
    )  # fmt: skip


def import_url(
    redis: Redis, settings: Settings, url: str, *, now: float | None = None, check_s: float = 5
) -> tuple[str, bool]:
    """Enqueue an import of `url` as `runner import` does: (token, deduplicated)."""
    [source] = resolve(url, check_s=check_s, now=now)
    task = load_registry("jobs").get("import_posts")
    enqueued = Enqueuer(redis, settings).enqueue(Request(task, source.args, source.token))
    return enqueued.token, enqueued.deduplicated


def test_a_feed_that_changes_is_imported_again_and_the_same_content_is_deduplicated(
    served: tuple[Feed, str], redis: Redis, settings: Settings, runs: Runs,
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a feed of 20 posts served with an ETag, imported once
    feed, url = served
    feed.body, feed.etag = posts_body(20, seed=1), '"v1"'
    first, _ = import_url(redis, settings, url)
    drain()
    # When the same URL is imported again, unchanged
    again, deduplicated = import_url(redis, settings, url)
    # Then it is the same run
    assert (again, deduplicated) == (first, True)
    # When the feed changes (5 more posts, a new ETag) and the URL is imported again
    feed.body, feed.etag = posts_body(20, seed=1) + posts_body(5, seed=2, start=100), '"v2"'
    second, deduplicated = import_url(redis, settings, url)
    drain()
    # Then it is a new run, which imports the new version
    assert second != first and not deduplicated
    results = [runs.get(token) for token in (first, second)]
    assert [r.state if r else None for r in results] == ["succeeded", "succeeded"]
    assert results[0].result["inserted"] == 20  # type: ignore[union-attr]
    assert (results[1].result["inserted"], results[1].result["unchanged"]) == (5, 20)  # type: ignore[union-attr]


def test_the_version_is_the_etag_else_last_modified_else_none(served: tuple[Feed, str]) -> None:
    # Given a feed served with an ETag and a Last-Modified
    feed, url = served
    feed.body, feed.etag, feed.modified = b"one\n", '"e1"', "Tue, 01 Dec 2026 10:00:00 GMT"
    # Then its version is the ETag, asked with one HEAD and no GET
    assert feed_version(url, check_s=5) == 'etag "e1"'
    assert (feed.heads, feed.requests) == (1, 0)
    # When it has only a Last-Modified, then that is the version
    feed.etag = None
    assert feed_version(url, check_s=5) == "modified Tue, 01 Dec 2026 10:00:00 GMT"
    # When it has neither, then it has no version (and the body was not downloaded)
    feed.modified = None
    assert feed_version(url, check_s=5) is None
    assert feed.requests == 0


@pytest.mark.parametrize("refused", [400, 403, 404, 405, 501])
def test_where_head_is_refused_the_headers_of_a_get_give_the_version(
    refused: int, served: tuple[Feed, str]
) -> None:
    # Given a server that answers HEAD with 405 (or 501, Not Implemented: not a fault a
    # retry fixes; or 400, 403, 404, as servers that only know GET do) and trickles its body
    # (a byte per second)
    feed, url = served
    feed.body, feed.etag, feed.head_refused, feed.trickle_s = b"x" * 100, '"g"', refused, 1.0
    # When the version is asked
    version = feed_version(url, check_s=5)
    # Then it came from the GET's headers: one HEAD, one GET, its body abandoned
    assert version == 'etag "g"'
    assert (feed.heads, feed.requests) == (1, 1)


@pytest.mark.load_sensitive
def test_a_server_that_trickles_its_headers_has_no_version_and_the_command_says_queued(
    served: tuple[Feed, str], settings: Settings, runs: Runs
) -> None:
    # Given a server that sends its headers a byte every 0.2 s (200 s in all)
    feed, url = served
    feed.trickle_headers_s = 0.2
    # When its version is asked within 1 s
    started = time.monotonic()
    assert feed_version(url, check_s=1) is None
    # Then the check gave up at its deadline, not after the headers
    assert time.monotonic() - started < 1 + 5
    # And `runner import URL` queues its run at once (RUNNER_URL_CHECK_SECONDS=1)
    env = {**worker_env(settings), "RUNNER_URL_CHECK_SECONDS": "1"}
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["import", url, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout.splitlines()[0])
    assert shown["state"] == "queued" and not shown["deduplicated"]
    assert time.monotonic() - started < 1 + 5
    # With a token for this period, and told to skip a body it imported last
    record = runs.get(shown["token"])
    assert record is not None and record.args == {"source": url, "skip_unchanged": True}


@pytest.mark.load_sensitive  # the 1 s deadline must cut in before the server's 15 s
@pytest.mark.parametrize("server", ["stalls after the headers", "trickles a byte per 0.2 s"])
def test_a_server_that_sends_its_headers_then_stalls_is_cut_off_by_the_whole_deadline(
    server: str, served: tuple[Feed, str], tmp_path: Path
) -> None:
    # Given a server that sends the headers of a 1,000-byte feed, then nothing, or one byte
    # every 0.2 s (200 s in all), and closes the connection after SERVER_GIVES_UP_S: less
    # than a read's own timeout, which therefore never fires here
    assert SERVER_GIVES_UP_S < READ_TIMEOUT_S
    feed, url = served
    feed.body = b"x" * 1000
    if server.startswith("stalls"):
        feed.stall = True
    else:
        feed.trickle_s = 0.2
    # When it is downloaded with a 1-second deadline
    # Then the deadline of the whole download stops it
    with pytest.raises(DeadlinePassed, match="deadline of 1 s"):
        download(url, tmp_path / "feed.part", deadline_s=1)
    # ... by closing the connection before the server gave up (a download bounded per read
    # only reads on until the server closes it, and is late by SERVER_GIVES_UP_S)
    wait_for(lambda: feed.hung_up + feed.gave_up, timeout=READ_TIMEOUT_S, what="the answer's end")
    assert (feed.hung_up, feed.gave_up) == (1, 0), "the server gave up before the deadline"


def test_a_chunked_answer_whose_end_never_comes_is_cut_off_by_the_whole_deadline(
    served: tuple[Feed, str], tmp_path: Path
) -> None:
    # Given a server that sends a feed in chunks, its last chunk, then a trailer a byte per
    # 0.1 s (100 s in all): each read gets data, so only the deadline of the whole can stop it
    feed, url = served
    feed.body, feed.trickle_trailer = posts_body(5, seed=8), True
    # When it is downloaded with a 1-second deadline
    # Then the download stops at the deadline, as one past it: the answer never ended
    with pytest.raises(DeadlinePassed, match="deadline of 1 s"):
        download(url, tmp_path / "feed.part", deadline_s=1)


def test_a_body_short_of_its_content_length_is_a_transient_error(
    served: tuple[Feed, str], tmp_path: Path
) -> None:
    # Given a server that closes the connection 10 bytes short of the Content-Length it sent
    feed, url = served
    feed.body, feed.short_by = posts_body(20, seed=3), 10
    # When it is downloaded
    # Then the download fails, retryably (the next attempt may get the whole body), saying so
    with pytest.raises(TransientError, match="10 bytes short of its Content-Length"):
        download(url, tmp_path / "feed.part", deadline_s=5)
    # And the whole body, once sent, downloads
    feed.short_by = 0
    assert download(url, tmp_path / "feed.part", deadline_s=5).lines == 20


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        (b"", 0),
        (b"one", 1),
        (b"post\n" * 99_999 + b"last", 100_000),
        (b"post\n" * 100_000, 100_000),
    ],
    ids=["empty", "one line without its newline", "500 kB, the last line without it", "500 kB"],
)
def test_a_download_counts_its_lines_the_last_one_with_or_without_its_newline(
    body: bytes, lines: int, served: tuple[Feed, str], tmp_path: Path
) -> None:
    # Given a feed (the long ones, of 500 kB, arrive in several reads)
    feed, url = served
    feed.body = body
    # When it is downloaded
    downloaded = download(url, tmp_path / "feed.part", deadline_s=30)
    # Then the file is the body, and its hash and line count are the body's
    assert (tmp_path / "feed.part").read_bytes() == body
    assert (downloaded.sha256, downloaded.lines) == (hashlib.sha256(body).hexdigest(), lines)


def test_a_feed_of_512_mib_downloads_and_a_larger_one_fails_for_good_saying_what_to_do(
    served: tuple[Feed, str],
) -> None:
    # Given a feed of exactly 512 MiB (16-byte lines), downloaded and thrown away
    feed, url = served
    feed.generated = 512 * 2**20
    # Then all of it downloads
    assert download(url, Path(os.devnull), deadline_s=60).lines == 512 * 2**20 // 16
    # When it is one byte larger
    feed.generated += 1
    # Then the download fails, not retryably, saying to import it as a file
    with pytest.raises(PermanentError, match=r": larger than 512 MiB; import it as a file$"):
        download(url, Path(os.devnull), deadline_s=60)


@pytest.mark.parametrize("status", [429, 500, 501, 502, 503])
def test_a_server_error_or_too_many_requests_is_retried_and_leaves_the_version_unknown(
    status: int, served: tuple[Feed, str], tmp_path: Path
) -> None:
    # Given a server that answers every request with a 5xx status or 429 Too Many Requests
    feed, url = served
    feed.body, feed.etag, feed.status = posts_body(5, seed=7), '"s"', status
    # When the feed is downloaded, then it fails retryably (the server may be back by the
    # next attempt), saying which status it got
    with pytest.raises(TransientError, match=f"HTTP {status} "):
        download(url, tmp_path / "feed.part", deadline_s=5)
    # And asking its version gives none: the run will find out and say so
    assert feed_version(url, check_s=5) is None


@pytest.mark.parametrize("status", [400, 403, 404, 410, 451])
def test_a_client_error_fails_the_download_for_good_and_the_version_check_too(
    status: int, served: tuple[Feed, str], tmp_path: Path
) -> None:
    # Given a server that answers every request with a 4xx status other than 429
    feed, url = served
    feed.body, feed.etag, feed.status = posts_body(5, seed=7), '"c"', status
    # When the feed is downloaded, then it fails, not retryably, with that status, after one GET
    with pytest.raises(HTTPRefused, match=f"HTTP {status} ") as caught:
        download(url, tmp_path / "feed.part", deadline_s=5)
    assert (caught.value.status, feed.requests) == (status, 1)
    # And asking its version fails the same way (a HEAD refused with 400, 403 or 404 after a GET)
    with pytest.raises(HTTPRefused, match=f"HTTP {status} "):
        feed_version(url, check_s=5)


@pytest.mark.parametrize("where", ["before the headers", "in the body"])
def test_a_connection_reset_by_the_server_is_retried_as_such(
    where: str, served: tuple[Feed, str], tmp_path: Path
) -> None:
    # Given a server that resets the connection (as a crashed server or proxy does) before it
    # sends its headers, or halfway through the body
    feed, url = served
    feed.body, feed.reset = posts_body(20, seed=4), where
    # When the feed is downloaded, long before its deadline
    # Then the download fails retryably, saying the connection was reset, not that it was late
    with pytest.raises(TransientError, match="reset by peer") as caught:
        download(url, tmp_path / "feed.part", deadline_s=30)
    assert not isinstance(caught.value, DeadlinePassed)


def test_a_server_that_is_down_is_retried_saying_so_and_has_no_version(tmp_path: Path) -> None:
    # Given a URL whose port nothing listens on
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/feed.jsonl"
    # When the feed is downloaded, long before its deadline
    # Then the download fails retryably, saying the connection was refused, not that it was late
    with pytest.raises(TransientError, match="Connection refused") as caught:
        download(url, tmp_path / "feed.part", deadline_s=30)
    assert not isinstance(caught.value, DeadlinePassed)
    # And the feed has no version: the run will find out and say so
    assert feed_version(url, check_s=5) is None


def test_a_server_silent_for_longer_than_a_read_may_wait_is_retried_saying_so(
    served: tuple[Feed, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given reads that wait 1 s at most (not 30: the test would be slow) and a server that
    # sends its headers, then nothing
    monkeypatch.setattr("jobs.downloads.READ_TIMEOUT_S", 1.0)
    feed, url = served
    feed.body, feed.stall = b"x" * 1000, True
    # When the feed is downloaded with a deadline far off
    # Then the download fails retryably, saying the server sent nothing for 1 s, not that the
    # download was late
    with pytest.raises(TransientError, match="no data for 1 s") as caught:
        download(url, tmp_path / "feed.part", deadline_s=30)
    assert not isinstance(caught.value, DeadlinePassed)


def test_a_run_fails_after_three_deadlines_with_a_readable_error(
    served: tuple[Feed, str], redis: Redis, settings: Settings, runs: Runs,
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a trickling feed and a 1-second download deadline
    feed, url = served
    feed.body, feed.etag, feed.trickle_s = b"x" * 1000, '"t"', 0.2
    token, _ = import_url(redis, settings, url)
    requests_before = feed.requests
    # When a worker runs the import
    drain(timeout=60)
    # Then the run failed after exactly three downloads, saying why and what to do
    record = runs.get(token)
    assert record is not None and record.state == "failed"
    assert record.error is not None
    assert "deadline of 1 s" in record.error["message"]
    assert "RUNNER_DOWNLOAD_DEADLINE_SECONDS" in record.error["message"]
    assert feed.requests - requests_before == 3


def test_a_redirect_to_ftp_is_refused(served: tuple[Feed, str], tmp_path: Path) -> None:
    feed, url = served
    feed.redirect = "ftp://127.0.0.1/feed.jsonl"
    with pytest.raises(PermanentError, match=r"redirected to a ftp:// URL, which is not followed"):
        feed_version(url, check_s=5)
    with pytest.raises(PermanentError, match="ftp://"):
        download(url, tmp_path / "feed.part", deadline_s=5)


def test_poll_feeds_imports_a_changed_feed_once_and_an_unchanged_one_costs_one_request(
    served: tuple[Feed, str], redis: Redis, settings: Settings, runs: Runs, index: RunIndex,
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a configured feed URL
    feed, _ = served
    feed.body, feed.etag = posts_body(10, seed=3), '"a"'
    enqueuer = Enqueuer(redis, settings)
    poll = load_registry("jobs").get("poll_feeds")

    def tick(n: int) -> dict[str, int]:
        enqueuer.enqueue(Request(poll, {}, token=f"poll_feeds@{n}"))
        drain()
        record = runs.get(f"poll_feeds@{n}")
        assert record is not None and record.state == "succeeded", record
        return record.result  # type: ignore[no-any-return]

    # When it is polled, then polled again unchanged
    assert tick(1)["enqueued"] == 1
    requests, heads = feed.requests, feed.heads
    assert tick(2) == {"checked": 1, "enqueued": 0, "unchanged": 1, "unreachable": 0}
    # Then the unchanged poll made one request (a HEAD) and imported nothing
    assert (feed.heads - heads, feed.requests - requests) == (1, 0)
    assert len(index.runs(RunQuery(task="import_posts"))) == 1
    # When the feed changes and is polled
    feed.body, feed.etag = posts_body(12, seed=3), '"b"'
    assert tick(3)["enqueued"] == 1
    # Then the new version was imported, once
    imports_ = index.runs(RunQuery(task="import_posts"))
    assert len(imports_) == 2 and all(r.state == "succeeded" for r in imports_)


def test_without_validators_a_feed_is_imported_once_per_period_and_an_unchanged_body_skipped(
    served: tuple[Feed, str], redis: Redis, settings: Settings, runs: Runs,
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a feed of 20 posts with neither ETag nor Last-Modified, imported at t0
    feed, url = served
    feed.body = posts_body(20, seed=5)
    t0 = 1_800_000_000.0  # the start of a 15-minute period
    first, _ = import_url(redis, settings, url, now=t0)
    drain()
    assert runs.get(first).result["inserted"] == 20  # type: ignore[union-attr]
    # When it is imported again in the same period
    again, deduplicated = import_url(redis, settings, url, now=t0 + 899)
    # Then it is the same run: nothing was downloaded for it
    assert (again, deduplicated) == (first, True)
    # When it is imported in the next period, its body unchanged
    gets = feed.requests
    second, deduplicated = import_url(redis, settings, url, now=t0 + 900)
    drain()
    # Then a new run downloaded it once, skipped the upsert and succeeded with zero counters
    assert second != first and not deduplicated
    assert feed.requests - gets == 1
    record = runs.get(second)
    assert record is not None and record.state == "succeeded"
    counters = {k: record.result[k] for k in ("inserted", "updated", "unchanged", "stale")}
    assert counters == {"inserted": 0, "updated": 0, "unchanged": 0, "stale": 0}
    assert "import.unchanged" in [e["event"] for _, e in read_events(redis, Keys(), second)]
    # When the body changes (5 posts more) and it is imported in the period after
    feed.body = posts_body(20, seed=5) + posts_body(5, seed=6, start=100)
    third, _ = import_url(redis, settings, url, now=t0 + 1800)
    drain()
    # Then the new body is imported
    record = runs.get(third)
    assert record is not None and record.state == "succeeded"
    assert (record.result["inserted"], record.result["unchanged"]) == (5, 20)
    # And a body equal to an older import but not to the last one is imported too
    feed.body = posts_body(20, seed=5)
    fourth, _ = import_url(redis, settings, url, now=t0 + 2700)
    drain()
    assert runs.get(fourth).result["unchanged"] == 20  # type: ignore[union-attr]


def test_a_run_against_a_server_that_trickles_its_headers_fails_within_its_deadline(
    served: tuple[Feed, str], redis: Redis, settings: Settings, runs: Runs,
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a server that trickles its headers, and a 1-second download deadline
    feed, url = served
    feed.trickle_headers_s = 0.2
    token, _ = import_url(redis, settings, url, check_s=1)
    # When a worker runs the import
    drain(timeout=60)
    # Then the run failed, saying the download passed its deadline, after three downloads
    record = runs.get(token)
    assert record is not None and record.state == "failed" and record.error is not None
    assert "deadline of 1 s" in record.error["message"]
    assert feed.requests == 3
