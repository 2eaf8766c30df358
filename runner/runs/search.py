"""Search: the runs whose arguments (an import's file name or URL) or error contain a text,
newest first, from history and from Redis with no seam (a run in both is Redis's).

History is searched by its index (runner.runs.history_tables' `runner_run_search`): on SQLite
an FTS5 trigram table (a substring of three characters or more, any case), on PostgreSQL a GIN
trigram index (`pg_trgm`) under ILIKE. Without that index (no FTS5; a role that could not
create the extension) the same search reads every row, and says so once in a warning line.
The runs still in Redis (live ones and those not moved yet: a few minutes' worth) are read
from the newest `LIVE_CAP` entries of their index, their texts compared the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunRecord, RunState, texts
from runner.runs.history import HistoryStore
from runner.runs.history_tables import runs_table, search_table, search_text

log = structlog.get_logger("runner.runs.search")
MIN_CHARS = 3  # a trigram: a shorter text would match nearly everything, from no index
MAX_CHARS = 200
LIVE_CAP = 20_000  # Redis index entries one search examines at most
FTS_IDS = 5_000  # SQLite: more matches than this, and the runs are walked newest first
FTS = "runner_run_search_fts"  # SQLite's FTS5 table (migration h0002)
TRIGRAM_INDEX = "ix_runner_run_search_trgm"  # PostgreSQL's GIN index (migration h0002)
_WARNED: set[str] = set()  # the databases already said to be searched without their index


@dataclass(frozen=True, slots=True)
class Search:
    """What to find: `text` in a run's arguments or error, and the listing's filters."""

    text: str
    state: RunState | None = None
    task: str | None = None
    since: float | None = None  # created after (with a state: entered it after)
    limit: int = 50

    def __post_init__(self) -> None:
        if not MIN_CHARS <= len(self.text.strip()) <= MAX_CHARS:
            raise ValueError(
                f"a search needs {MIN_CHARS} to {MAX_CHARS} characters, not {len(self.text)}"
            )

    def matches(self, record: RunRecord, text: str) -> bool:
        """Whether a run in Redis matches (`since` is its index's score: checked there)."""
        return (
            self.text.strip().casefold() in text.casefold()
            and (self.state is None or record.state == self.state)
            and (self.task is None or record.task == self.task)
        )


def search_runs(
    redis: Redis, settings: Settings, history: HistoryStore, search: Search
) -> list[RunRecord]:
    """The runs of `search`, newest first, at most its limit: Redis's, then history's whose
    token Redis does not hold."""
    live = search_live(redis, settings, search)
    moved = HistorySearch(history).find(search)
    keys = Keys(settings.prefix)
    pipe = redis.pipeline(transaction=False)
    for r in moved:
        pipe.exists(keys.run(r.token))
    in_redis = {r.token for r, there in zip(moved, pipe.execute(), strict=True) if there}
    seen = {r.token for r in live} | in_redis
    found = [*live, *(r for r in moved if r.token not in seen)]
    return sorted(found, key=lambda r: r.created_at, reverse=True)[: search.limit or None]


def search_live(redis: Redis, settings: Settings, search: Search) -> list[RunRecord]:
    """The runs in Redis that match, newest first, among the newest `LIVE_CAP` of its index
    (the state's, the task's, or every run's)."""
    keys = Keys(settings.prefix)
    index = (keys.by_state(search.state) if search.state
             else keys.by_task(search.task) if search.task else keys.runs)  # fmt: skip
    low = "-inf" if search.since is None else repr(search.since)
    found: list[RunRecord] = []
    for offset in range(0, LIVE_CAP, 500):
        tokens = texts(redis.zrevrangebyscore(index, "+inf", low, start=offset, num=500))
        pipe = redis.pipeline(transaction=False)
        for token in tokens:
            pipe.hgetall(keys.run(token))
        for raw in pipe.execute():
            if not raw:
                continue
            record = RunRecord.from_hash(raw)
            fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
            if search.matches(record, search_text(fields)):
                found.append(record)
        if len(tokens) < 500 or (search.limit and len(found) >= search.limit):
            break
    return found[: search.limit or None]


class HistorySearch:
    """Searches history's runs by their search text (see the module's docstring)."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def find(self, search: Search) -> list[RunRecord]:
        """History's runs that match, newest first, at most `search.limit` (0: all)."""
        engine = self.store.reading()
        if engine is None:
            return []
        r, s = runs_table, search_table
        query = sa.select(r.c.fields).join(
            s, sa.and_(s.c.token == r.c.token, s.c.generation == r.c.generation)
        )
        query = query.where(*self._filters(search)).order_by(r.c.created_at.desc())
        if search.limit:
            query = query.limit(search.limit)
        try:
            with engine.connect() as conn:
                indexed = self._indexed(conn)
                if indexed is None:
                    return []  # no search table yet: an empty or older history
                query = query.where(self._matching(conn, search.text.strip(), indexed=indexed))
                raw: Sequence[Any] = conn.execute(query).scalars().all()
        except sa.exc.OperationalError as exc:  # down or too slow: Redis's runs are shown
            log.warning("history.search_failed", error=str(exc.orig or exc).splitlines()[0][:200])
            return []
        return [_record(f) for f in raw]

    def _filters(self, search: Search) -> list[Any]:
        r = runs_table
        found: list[Any] = []
        if search.state is not None:
            found.append(r.c.state == search.state)
        if search.task is not None:
            found.append(r.c.task == search.task)
        if search.since is not None:
            found.append((r.c.finished_at if search.state else r.c.created_at) >= search.since)
        return found

    def _matching(self, conn: sa.Connection, text: str, *, indexed: bool) -> Any:
        s = search_table
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        if conn.dialect.name == "sqlite" and indexed:
            phrase = '"' + text.replace('"', '""') + '"'  # one FTS5 string: no query syntax
            ids = conn.execute(
                sa.text(f"SELECT rowid FROM {FTS} WHERE {FTS} MATCH :phrase LIMIT :most"),
                {"phrase": phrase, "most": FTS_IDS + 1},
            )
            found = list(ids.scalars())
            if len(found) <= FTS_IDS:
                return s.c.id.in_(found)
            # A text that many runs hold: reading every match to sort them costs more than
            # walking the runs newest first until a page of them matched.
        if conn.dialect.name == "sqlite":
            return s.c.text.like(like, escape="\\")  # ASCII case-insensitive, as the index
        return s.c.text.ilike(like, escape="\\")  # with pg_trgm's index: read from it

    def _indexed(self, conn: sa.Connection) -> bool | None:
        """Whether the search table has its index (None: no search table); warns once per
        database when it has none."""
        if conn.dialect.name == "sqlite":
            sql = "SELECT count(*) FROM sqlite_master WHERE name IN ('runner_run_search', :index)"
            there = int(conn.execute(sa.text(sql), {"index": FTS}).scalar() or 0)
            table, index = there >= 1, there == 2
        else:
            sql = ("SELECT to_regclass('runner_run_search') IS NOT NULL,"
                   " to_regclass(CAST(:index AS text)) IS NOT NULL")  # fmt: skip
            row = conn.execute(sa.text(sql), {"index": TRIGRAM_INDEX}).one()
            table, index = bool(row[0]), bool(row[1])
        if not table:
            return None
        url = conn.engine.url.render_as_string(hide_password=True)
        if not index and url not in _WARNED:
            _WARNED.add(url)
            log.warning("history.search_unindexed", database=url,
                        fix="see docs/history.md, Search (PostgreSQL needs pg_trgm)")  # fmt: skip
        return index


def _record(raw: str) -> RunRecord:
    fields: dict[str, str] = json.loads(raw)
    return RunRecord.from_hash({k.encode(): v.encode() for k, v in fields.items()})
