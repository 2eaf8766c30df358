"""The site's cron schedule, in UTC. `runner cron list` shows it with the next fire times.

Each firing's token is `task@slot`, so a system crontab (`runner cron tick`) and any number
of clocks (`runner cron run`) can run at once: every slot is enqueued once.
"""

from __future__ import annotations

from runner import CronEntry

SITE_URL = "https://example.org"

SCHEDULE: list[CronEntry] = [
    # New files in the inbox; a file's token is its content hash, so none is imported twice.
    CronEntry("poll_inbox", "* * * * *", task="poll_inbox"),
    # The partner feeds of RUNNER_FEEDS: each new version is imported once (a no-op when unset).
    CronEntry("poll_feeds", "17 * * * *", task="poll_feeds"),
    CronEntry("refresh_freshness", "7 * * * *", task="refresh_freshness"),
    CronEntry("build_sitemap", "30 3 * * *", task="build_sitemap", args={"base_url": SITE_URL}),
    CronEntry("prune", "0 4 * * *", task="prune"),
]
