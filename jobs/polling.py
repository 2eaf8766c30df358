"""`poll_feeds`: the feed URLs of `RUNNER_FEEDS`, checked each tick, imported once per version.

Each check is one GET (`jobs.downloads.feed_version`); a version not imported yet gets an
import run whose token is the URL and that version, so an hourly poll imports each new version
of a feed once, and an unchanged feed costs one request. A URL that cannot be checked is
logged and skipped; the others are still polled.
"""

from __future__ import annotations

from typing import Any

from jobs.downloads import feed_version
from jobs.sources import TASK, url_token
from runner import Run, TaskError


def poll_feeds(run: Run) -> dict[str, Any]:
    """Check every configured feed URL; enqueue an import for each new version."""
    counts = {"checked": 0, "enqueued": 0, "unchanged": 0, "unreachable": 0}
    for url in run.settings.feeds:
        try:
            version = feed_version(url, deadline_s=run.settings.download_deadline_seconds)
        except TaskError as exc:
            counts["unreachable"] += 1
            run.log.warning("feed.unreachable", url=url, error=str(exc))
            continue
        counts["checked"] += 1
        token = url_token(url, version)
        if run.state_of(token) is not None:
            counts["unchanged"] += 1
            continue
        result = run.enqueue(TASK, {"source": url}, token=token)
        counts["enqueued"] += not result.deduplicated
        run.log.info("feed.new_version", url=url, version=version, token=token)
    run.log.info("feeds.polled", **counts)
    return counts
