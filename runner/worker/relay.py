"""The outbox relay: moves committed outbox rows (runner.client.outbox) to Redis, then deletes them.

One pass reads a batch of rows (a short read), enqueues them in one call of the enqueue script
(dedup by token: a row relayed twice, because the relay died between the enqueue and the
delete or because two relays read it, is one run), then deletes them in a small transaction.
A row whose task is no longer registered, or whose arguments no longer fit it, stays in the
table with its reason (`error`); each pass reports how many are kept, which `runner health`
shows. Between passes it waits for a PostgreSQL NOTIFY of a commit (LISTEN), else polls every
`POLL_SECONDS`.

The relay is database side-work (DESIGN.md, Decisions 4): every worker's supervisor runs one
in a process of its own (`relay_main`), never in the loop that restarts horses; its database
has connect and statement timeouts, so a hung database delays the outbox, never a job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from runner.client.outbox import CHANNEL, rows_table
from runner.client.sync import Client, make_request
from runner.config import Settings
from runner.errors import InvalidArguments, RunnerError, UnknownTask
from runner.keys import Keys
from runner.runs.enqueue import Request
from runner.runs.move import Mover
from runner.tasks import TaskRegistry

log = structlog.get_logger("runner.worker.relay")
BATCH = 100  # rows per pass: one enqueue call, one delete transaction
POLL_SECONDS = 0.2  # the wait between passes without LISTEN/NOTIFY (p95 budget: 1 s)
LISTEN_POLL_SECONDS = 2.0  # with LISTEN, a pass at least this often anyway
ABSENT_SECONDS = 30.0  # no outbox table (or database) yet: look again this often
TIMEOUT_SECONDS = 5  # connect and statement timeouts
REPORT_TTL_SECONDS = 300


def relay_engine(url: str) -> Engine | None:
    """An engine for the outbox's database with connect and statement timeouts; None for a
    SQLite file that does not exist (opening it would create it)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or not Path(parsed.database).exists():
            return None
        return sa.create_engine(parsed, connect_args={"timeout": TIMEOUT_SECONDS})
    ms = TIMEOUT_SECONDS * 1000
    given = parsed.query.get("options") or ""  # the URL's own (a search_path, say) stay
    given = " ".join(given) if isinstance(given, tuple) else given
    options = f"{given} -c statement_timeout={ms} -c lock_timeout={ms}".strip()
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    parsed = parsed.difference_update_query(["options"])
    connect_args = {"connect_timeout": TIMEOUT_SECONDS, "options": options}
    return sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)


class Relay:
    """Moves committed outbox rows to Redis (see the module's docstring)."""

    def __init__(
        self, redis: Redis, settings: Settings, *, registry: TaskRegistry | None = None,
        engine: Engine | None = None, batch: int = BATCH,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.client = Client(redis, settings, registry=registry)
        self.engine = engine
        self.batch = batch
        self.table = rows_table()
        self.key = Keys(settings.prefix).outbox_kept
        self._listener: Any = None

    def relay_once(self) -> int:
        """One pass: enqueue up to `batch` committed rows and delete them; returns how many
        were moved. Raises SQLAlchemyError (database) and RedisUnavailable (Redis)."""
        engine = self._engine()
        if engine is None:
            return 0
        t = self.table
        with engine.connect() as conn:
            query = sa.select(t).where(t.c.error.is_(None)).order_by(t.c.id).limit(self.batch)
            rows = conn.execute(query).all()
        moved: list[int] = []
        requests: list[Request] = []
        kept: list[tuple[int, str]] = []
        for row in rows:
            try:
                requests.append(self._request(row))
                moved.append(row.id)
            except (UnknownTask, InvalidArguments) as exc:
                kept.append((row.id, str(exc)))
        if requests:
            self.client.enqueue_many(requests)
        if moved or kept:
            with engine.begin() as conn:
                if moved:
                    conn.execute(t.delete().where(t.c.id.in_(moved)))
                for row_id, why in kept:
                    conn.execute(t.update().where(t.c.id == row_id).values(error=why))
            for row_id, why in kept:
                log.warning("outbox.row_kept", row=row_id, reason=why)
            self.report(engine)
        return len(moved)

    def report(self, engine: Engine) -> int:
        """Count the rows kept with a reason and tell Redis (`runner health` reads it)."""
        t = self.table
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).where(t.c.error.is_not(None)))
            kept = int(count.scalar() or 0)
            first = conn.execute(
                sa.select(t.c.error).where(t.c.error.is_not(None)).order_by(t.c.id).limit(1)
            ).scalar()
        state = json.dumps({"kept": kept, "reason": first or "", "at": time.time()})
        self.client.redis.set(self.key, state, ex=REPORT_TTL_SECONDS)
        return kept

    def run(self, *, stopped: Callable[[], bool] = lambda: False) -> None:
        """Relay until `stopped()`: a pass, then a wait for a commit's NOTIFY or the poll."""
        reported_at = 0.0
        told_absent = False
        while not stopped():
            pause = POLL_SECONDS
            try:
                if self.relay_once() >= self.batch:
                    continue
                engine = self._engine()
                if engine is None:
                    pause = ABSENT_SECONDS
                elif time.monotonic() - reported_at > REPORT_TTL_SECONDS / 5:
                    self.report(engine)
                    reported_at = time.monotonic()
            except (SQLAlchemyError, RunnerError) as exc:
                said = str(exc).splitlines()[0][:300]
                if isinstance(exc, DBAPIError) and "outbox" in str(exc.orig):
                    if not told_absent:  # a site that has no outbox (yet): said once
                        log.info("outbox.absent", error=said, retry_seconds=ABSENT_SECONDS)
                    told_absent, pause = True, ABSENT_SECONDS
                else:
                    log.warning("outbox.relay_failed", error=said)
                    pause = 1.0
                self._close_listener()
            self._wait(pause)

    def _request(self, row: Any) -> Request:
        task = self.client.registry.get(row.task)
        due = row.due_at if row.due_at is not None and row.due_at > time.time() else None
        return make_request(task, json.loads(row.args), token=row.token, queue=row.queue,
                            at=due, traceparent=row.traceparent)  # fmt: skip

    def _engine(self) -> Engine | None:
        if self.engine is None:
            self.engine = relay_engine(self.settings.outbox_database_url)
        return self.engine

    def _wait(self, pause: float) -> None:
        """Sleep `pause`, or on PostgreSQL until a commit's NOTIFY (at most a few seconds)."""
        try:
            listener = self._listen()
            if listener is None or pause > LISTEN_POLL_SECONDS:
                time.sleep(pause)
                return
            for _ in listener.notifies(timeout=LISTEN_POLL_SECONDS, stop_after=1):
                break
        except Exception as exc:  # a lost connection: poll until it is back
            log.warning("outbox.listen_failed", error=str(exc)[:300])
            self._close_listener()
            time.sleep(pause)

    def _listen(self) -> Any:
        engine = self._engine()
        if engine is None or engine.dialect.name != "postgresql":
            return None
        if self._listener is None:
            import psycopg

            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            conn = psycopg.connect(url, autocommit=True, connect_timeout=TIMEOUT_SECONDS)
            conn.execute(f"LISTEN {CHANNEL}")
            self._listener = conn
        return self._listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None


def relay_main(settings: Settings, parent: int) -> int:
    """The relay process a worker's supervisor forks: relay until the supervisor is gone."""
    import os

    import runner.logs as logs
    from runner.connections.redis import connect
    from runner.worker.horse import die_with_parent

    die_with_parent(parent)
    logs.configure()
    redis = connect(settings, check=False)
    relay = Relay(redis, settings)
    stopped = lambda: os.getppid() != parent  # noqa: E731
    mover = Mover(redis, settings)  # the history move, in a thread of this process
    threading.Thread(target=mover.run, kwargs={"stopped": stopped}, daemon=True).start()
    relay.run(stopped=stopped)
    return 0
