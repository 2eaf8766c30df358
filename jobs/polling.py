"""`poll_feeds`: the feed URLs of `RUNNER_FEEDS`, checked each tick, imported once per version.

Each check is one HEAD (`jobs.sources.url_source`); a version not imported yet gets an import
run whose token is the URL and that version, so an hourly poll imports each new version of a
feed once, and an unchanged feed costs one request. A feed without validators (or that does
not answer the check in time) gets one run per `RUNNER_URL_MIN_INTERVAL` period, which
downloads it and skips the upsert when the body is the one imported last. A URL that cannot
be checked (an HTTP 4xx, a redirect off the web) is logged and skipped; the others are still
polled.
"""

from __future__ import annotations

from typing import Any

from jobs.sources import TASK, url_source
from runner import Run, TaskError


def poll_feeds(run: Run) -> dict[str, Any]:
    """Check every configured feed URL; enqueue an import for each new version."""
    counts = {"checked": 0, "enqueued": 0, "unchanged": 0, "unreachable": 0}
    for url in run.settings.feeds:
        try:
            source = url_source(
                url, check_s=run.settings.url_check_seconds,
                min_interval_s=run.settings.url_min_interval_seconds,
            )  # fmt: skip
        except TaskError as exc:
            counts["unreachable"] += 1
            run.log.warning("feed.unreachable", url=url, error=str(exc))
            continue
        counts["checked"] += 1
        token = source.token
        if run.state_of(token) is not None:
            counts["unchanged"] += 1
            continue
        result = run.enqueue(TASK, source.args, token=token)
        counts["enqueued"] += not result.deduplicated
        run.log.info("feed.new_version", url=url, token=token)
    run.log.info("feeds.polled", **counts)
    return counts
