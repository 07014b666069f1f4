"""The schema's version: Alembic migrations (core/store/migrations), run once by whichever process comes first.

Every process that opens the database brings it up to date before its first session, so a
new IMP on an old database upgrades it without a separate step (``imp db upgrade`` does the
same by hand, e.g. as a deployment hook). Several processes (API replicas, the worker, a
CLI) may start at once: the migration runs under a lock, a PostgreSQL advisory lock on a
server or a file lock beside a SQLite file, and the others wait and then find it done.

Three starting points:
- a new, empty database: the tables are created from the models and stamped with the
  newest revision (what Alembic recommends; tests check that the migrations give the same
  schema);
- a database from before Alembic (IMP's tables, no ``alembic_version``): the migrations
  run from the start, and the baseline adopts what is there (0001_baseline.py);
- a database with a revision: the migrations after it run.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SqlEngine

from core.store.schema import Base

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).parent / "migrations"
# pg_advisory_lock key: a fixed number other applications on the server are unlikely to use ("IMP_SCH").
_PG_LOCK = 0x494D505F534348
_LOCAL = threading.Lock()  # one migration at a time within a process (flock is per process on Linux)


@functools.cache
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(SCRIPTS))


def head() -> str:
    """The newest revision this IMP knows."""
    return _scripts().get_current_head()


def current(engine: SqlEngine) -> str | None:
    """The database's revision; None for a new database or one from before Alembic."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: SqlEngine) -> str:
    """Bring the database to the newest revision (see the module's docstring); returns what was done."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    with _exclusive(engine) as conn, conn.begin():
        context = MigrationContext.configure(conn)
        revision = context.get_current_revision()
        if revision == head():
            return "up to date"
        if revision is None and not set(inspect(conn).get_table_names()) & set(Base.metadata.tables):
            Base.metadata.create_all(conn)
            context.stamp(_scripts(), "head")
            log.info("database created at revision %s", head())
            return f"created at {head()}"
        config = Config()
        config.set_main_option("script_location", str(SCRIPTS))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        log.warning("database upgraded from %s to %s", revision or "before Alembic", head())
        return f"upgraded from {revision or 'before Alembic'} to {head()}"


def adopt(conn: Connection, metadata: MetaData) -> None:
    """Create ``metadata``'s missing tables, and add the nullable columns and indexes an existing table lacks.

    For a database made before Alembic, whose tables may lack the newest columns (and indexes, which
    the old upgrade never added); what exists is left as it is (only additive changes, nothing is lost).
    """
    have = set(inspect(conn).get_table_names())
    quote = conn.dialect.identifier_preparer.quote
    for table in metadata.sorted_tables:
        if table.name not in have:
            table.create(conn)
            continue
        columns = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for column in table.columns:
            if column.name in columns:
                continue
            if not column.nullable:
                raise RuntimeError(f"the existing table {table.name} lacks the required column {column.name}; "
                                   "this database was not made by IMP")
            conn.execute(text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} "
                              f"{column.type.compile(conn.dialect)}"))
            log.info("database adopted: added %s.%s", table.name, column.name)
        indexes = {i["name"] for i in inspect(conn).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                log.info("database adopted: added index %s", index.name)


@contextmanager
def _exclusive(engine: SqlEngine) -> Iterator[Connection]:
    """A connection on which this process alone migrates: other processes wait for it."""
    with _LOCAL, engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK})
                conn.commit()
            return
        database = engine.url.database if conn.dialect.name == "sqlite" else None
        if not database or database == ":memory:":
            yield conn
            return
        with open(f"{database}.migrate-lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield conn
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
