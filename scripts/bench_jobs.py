"""The plain-RQ side of the bench: a trivial job function, and a burst worker to drain it.

    python -m scripts.bench_jobs REDIS_URL simple|fork QUEUE

Kept tiny on purpose: RQ's forking `Worker` imports the job's module in every work horse.
"""

from __future__ import annotations

import sys
from typing import Any

NOOP = "scripts.bench_jobs.noop"


def noop(**kwargs: Any) -> dict[str, Any]:
    """The baseline job: the same shape as the runner's `noop` task (echo the arguments)."""
    return {"echo": kwargs}


def main(argv: list[str]) -> int:
    """Drain QUEUE with RQ's SimpleWorker (`simple`) or forking Worker (`fork`), then exit."""
    from redis import Redis
    from rq import SimpleWorker, Worker
    from rq.serializers import JSONSerializer

    url, kind, queue = argv
    worker_class = SimpleWorker if kind == "simple" else Worker
    worker = worker_class([queue], connection=Redis.from_url(url), serializer=JSONSerializer)
    # The same RQ logging level as the runner's horse (`runner.worker.horse.horse_main`).
    worker.work(burst=True, logging_level="WARNING", with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
