"""A new connection puts the database's SQLite file in WAL mode even while another process holds the file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from core.store.database import _use_wal, make_sql_engine


def test_the_switch_to_wal_waits_for_a_writer_that_holds_the_new_database(tmp_path):
    db = tmp_path / "imp.sqlite3"
    sqlite3.connect(db).close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE'); c.execute('CREATE TABLE t (x)')\n"
        "print('held', flush=True); time.sleep(1.5); c.execute('COMMIT')\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        conn = sqlite3.connect(db, timeout=0.1)  # a short busy timeout: the waiting is _use_wal's own
        started = time.monotonic()
        _use_wal(conn, patience_s=30)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert time.monotonic() - started >= 0.5  # it waited for the holder instead of failing
        conn.close()
    finally:
        holder.wait(timeout=30)


def test_a_lock_that_outlasts_the_patience_is_reported(tmp_path):
    db = tmp_path / "imp.sqlite3"
    sqlite3.connect(db).close()
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    conn = sqlite3.connect(db, timeout=0.05)
    try:
        try:
            _use_wal(conn, patience_s=0.3)
        except sqlite3.OperationalError as e:
            assert "locked" in str(e)
        else:
            raise AssertionError("the switch to WAL succeeded while another connection held the database")
    finally:
        conn.close()
        holder.execute("ROLLBACK")
        holder.close()


def test_the_registry_engine_opens_its_file_in_wal_mode(tmp_path):
    engine = make_sql_engine(f"sqlite:///{tmp_path / 'imp.sqlite3'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
