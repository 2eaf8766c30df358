"""Search: runner_run_search (each run's arguments and error as text) and its index; and
runner_state_counts (runs per state, kept by the writer and the pruner).

SQLite: an FTS5 table with the trigram tokenizer over it, kept by triggers. PostgreSQL: a GIN
trigram index (`pg_trgm`, created here if it can be). Either missing (an SQLite without FTS5,
a role that may not create the extension): search reads every row with LIKE/ILIKE, and says
so in one warning line (runner.runs.search).

Revision ID: h0002
"""

from __future__ import annotations

import json

import sqlalchemy as sa
import structlog
from alembic import op  # a module-level proxy of Operations

from runner.runs.history_tables import search_text

revision = "h0002"
down_revision = "h0001"
branch_labels = None
depends_on = None

log = structlog.get_logger("runner.runs.search")
FTS = "runner_run_search_fts"
TRIGRAM_INDEX = "ix_runner_run_search_trgm"
SQLITE_INDEX = [
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(text, content='runner_run_search',"
    " content_rowid='id', tokenize='trigram')",
    f"CREATE TRIGGER {FTS}_insert AFTER INSERT ON runner_run_search BEGIN"
    f" INSERT INTO {FTS}(rowid, text) VALUES (new.id, new.text); END",
    f"CREATE TRIGGER {FTS}_delete AFTER DELETE ON runner_run_search BEGIN"
    f" INSERT INTO {FTS}({FTS}, rowid, text) VALUES ('delete', old.id, old.text); END",
    f"CREATE TRIGGER {FTS}_update AFTER UPDATE ON runner_run_search BEGIN"
    f" INSERT INTO {FTS}({FTS}, rowid, text) VALUES ('delete', old.id, old.text);"
    f" INSERT INTO {FTS}(rowid, text) VALUES (new.id, new.text); END",
]


def upgrade() -> None:
    op.create_table(
        "runner_run_search",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("token", sa.String(200), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.UniqueConstraint("token", "generation", name="uq_runner_run_search_run"),
    )  # fmt: skip
    op.create_table(
        "runner_state_counts",
        sa.Column("state", sa.String(20), primary_key=True),
        sa.Column("runs", sa.BigInteger, nullable=False),
    )
    conn = op.get_bind()
    conn.exec_driver_sql("INSERT INTO runner_state_counts (state, runs)"
                         " SELECT state, count(*) FROM runner_runs GROUP BY state")  # fmt: skip
    if conn.dialect.name == "sqlite":
        _sqlite_index(conn)
    elif conn.dialect.name == "postgresql":
        _trigram_index(conn)
    _fill(conn)


def _sqlite_index(conn: sa.Connection) -> None:
    try:
        with conn.begin_nested():
            for statement in SQLITE_INDEX:
                conn.exec_driver_sql(statement)
    except sa.exc.OperationalError as exc:  # no FTS5, or no trigram tokenizer (< 3.34)
        log.warning("history.search_unindexed", reason=str(exc.orig).splitlines()[0][:200])


def _trigram_index(conn: sa.Connection) -> None:
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:  # not allowed (needs CREATE on the database) or absent
        said = str(exc.orig).splitlines()[0][:200]
        log.warning("history.search_unindexed", reason=f"CREATE EXTENSION pg_trgm: {said}")
        return
    schema = conn.exec_driver_sql(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    ).scalar()  # the extension may live in another schema than the tables (`public`)
    opclass = f'"{schema}".gin_trgm_ops'
    on = f"runner_run_search USING gin (text {opclass})"
    conn.exec_driver_sql(f"CREATE INDEX {TRIGRAM_INDEX} ON {on}")


def _fill(conn: sa.Connection) -> None:
    """The search text of the runs history held before this revision."""
    runs = sa.table("runner_runs", sa.column("token"), sa.column("generation"),
                    sa.column("fields"))  # fmt: skip
    search = sa.table("runner_run_search", sa.column("token"), sa.column("generation"),
                      sa.column("text"))  # fmt: skip
    rows = conn.execute(sa.select(runs.c.token, runs.c.generation, runs.c.fields)).all()
    for start in range(0, len(rows), 1000):
        batch = [{"token": token, "generation": gen, "text": search_text(json.loads(fields))}
                 for token, gen, fields in rows[start : start + 1000]]  # fmt: skip
        conn.execute(search.insert(), batch)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FTS}")
    op.drop_table("runner_run_search")
    op.drop_table("runner_state_counts")
