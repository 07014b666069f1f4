"""The relational database every store shares: its SQLAlchemy engine, SQLite's WAL mode, the schema, sessions.

One ``Database`` per database URL in a process; each store (the document registry, the answer
log, jobs, feedback, ...) takes it and opens its own sessions. Opening is lazy: the engine is
made and the tables created (or upgraded) on the first session, once, so building the stores
stays cheap.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.orm import Session, sessionmaker

from core.store.migrate import upgrade

log = logging.getLogger(__name__)

WAL_PATIENCE_S = 120.0  # how long a new connection waits to put a busy database in WAL mode


def make_sql_engine(url: str) -> SqlEngine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so CLI and server can share it."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DBAPI connection
            _use_wal(dbapi_conn)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def _use_wal(dbapi_conn, *, patience_s: float = WAL_PATIENCE_S) -> None:  # noqa: ANN001 - DBAPI connection
    """Put the database in WAL mode (once per file: it persists), waiting while another process holds it.

    Switching a database to WAL needs it to itself, and a process creating a new database's tables holds
    it for a while; SQLite then answers "database is locked", sometimes at once rather than after the
    busy timeout. So a connection looks first (a database already in WAL needs no switch) and retries the
    switch with backoff for up to ``patience_s`` seconds before giving up.
    """
    deadline = time.monotonic() + patience_s
    delay = 0.02
    while True:
        cur = dbapi_conn.cursor()
        try:
            mode = cur.execute("PRAGMA journal_mode").fetchone()
            if mode and str(mode[0]).lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() + delay > deadline:
                raise
            log.info("the database is busy; switching it to WAL again in %.2f s", delay)
        finally:
            cur.close()
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


class Database:
    """The database at ``url``: hands out sessions to the stores that share it."""

    def __init__(self, url: str):
        self._url = url
        self._engine: SqlEngine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._url

    def session(self) -> Session:
        """A new session; the first one creates the engine and brings the schema up to date."""
        if self._sessions is None:
            with self._lock:
                if self._sessions is None:
                    self._engine = make_sql_engine(self._url)
                    upgrade(self._engine)
                    self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._sessions()

    def close(self) -> None:
        """Close the engine's pooled connections (a later session opens new ones)."""
        if self._engine is not None:
            self._engine.dispose()
