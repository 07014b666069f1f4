"""`imp worker`: the scheduled retraining process starts, stores its job, stops on SIGTERM, refuses a bad cron."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def _worker(data_dir: Path, **env: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IMP_")}
    environ.update({"IMP_DATA_DIR": str(data_dir), **env})
    return subprocess.Popen([sys.executable, "-c", "from cli import cli; cli()", "worker"], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_bad_cron_is_refused_naming_the_setting(tmp_path):
    proc = _worker(tmp_path / "data", IMP_SCHEDULER__RETRAIN_CRON="every night")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "IMP_SCHEDULER__RETRAIN_CRON" in err


def test_the_worker_stores_its_jobs_and_stops_on_sigterm(tmp_path):
    data = tmp_path / "data"
    proc = _worker(data, IMP_SCHEDULER__RETRAIN_CRON="30 3 * * *", IMP_RETENTION__CRON="15 4 * * *")
    try:
        db = data / "imp.sqlite3"
        deadline = time.monotonic() + 120
        jobs: list = []
        while time.monotonic() < deadline and len(jobs) < 3:
            assert proc.poll() is None, proc.stderr.read()
            if db.exists():
                try:
                    with sqlite3.connect(db) as conn:
                        jobs = conn.execute("select id, next_run_time from apscheduler_jobs").fetchall()
                except sqlite3.OperationalError:  # the table is not there yet
                    pass
            time.sleep(0.5)
        next_runs = {name: time.gmtime(at) for name, at in jobs}
        assert sorted(next_runs) == ["imp-drift-check", "imp-retention-purge", "imp-retrain"]
        # UTC, as IMP_SCHEDULER__TIMEZONE defaults
        assert (next_runs["imp-retrain"].tm_hour, next_runs["imp-retrain"].tm_min) == (3, 30)
        assert (next_runs["imp-retention-purge"].tm_hour, next_runs["imp-retention-purge"].tm_min) == (4, 15)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "retraining check on '30 3 * * *'" in err
    finally:
        if proc.poll() is None:
            proc.kill()
