"""Retraining on a schedule: one replica per window, due only with enough new ratings or a drift
request, a persisted job store, and failures recorded without stopping the scheduler.

Claims run on a SQLite file and on a throwaway PostgreSQL cluster (skipped, with the reason,
where no PostgreSQL server or driver is installed).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from core.config import SchedulerSettings
from core.errors import InvalidRequest
from core.models import Feedback
from core.store.claims import ClaimStore
from core.store.database import Database
from ops.scheduler import (
    JOB_ID,
    JOB_REF,
    RETRAIN,
    RetrainPolicy,
    build_scheduler,
    parse_schedule,
    ratings_counter,
    retrain_due,
    run_retrain_window,
    window_for,
)

WINDOW = "2026-12-02T02:00Z"


# -- databases ---------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'imp.sqlite3'}"


def _claims(url: str, **kw) -> ClaimStore:
    database = Database(url)
    database.session().close()  # tables exist before any race
    return ClaimStore(database, **kw)


def _many(since: datetime | None) -> int:
    return 1000


# -- one replica per window ----------------------------------------------------------


def test_two_threads_firing_the_same_window_train_once(db_url):
    stores = [_claims(db_url), _claims(db_url)]
    calls: list[str] = []
    barrier = threading.Barrier(2)
    outcomes: list[dict] = []

    def retrain(reason: str) -> dict:
        calls.append(reason)
        time.sleep(0.2)  # still running while the other replica tries
        return {"model": "m-1"}

    def replica(i: int) -> None:
        barrier.wait(timeout=10)
        outcomes.append(run_retrain_window(stores[i], f"replica-{i}", WINDOW, _many, retrain, RetrainPolicy(1)))

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert len(calls) == 1
    assert sorted(o["status"] for o in outcomes) == ["taken", "trained"]
    run = stores[0].get(RETRAIN, WINDOW)
    assert run.finished_at is not None and run.status == "trained"
    assert json.loads(run.outcome)["result"] == {"model": "m-1"}


def _replica_process(url: str, marker: str, barrier, results) -> None:
    claims = ClaimStore(Database(url))

    def retrain(reason: str) -> dict:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return {"pid": os.getpid()}

    barrier.wait(timeout=60)
    results.put(run_retrain_window(claims, f"proc-{os.getpid()}", WINDOW, _many, retrain, RetrainPolicy(1))["status"])


def test_two_processes_firing_the_same_window_train_once(db_url, tmp_path):
    _claims(db_url)  # create the tables
    marker = tmp_path / "retrained.txt"
    # Fresh interpreters, not forks of this threaded one; the fork server imports this module once.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_replica_process, args=(db_url, str(marker), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    statuses = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    assert statuses == ["taken", "trained"]
    assert len(marker.read_text().splitlines()) == 1


def test_a_stale_unfinished_claim_is_taken_over_and_a_finished_one_never(db_url):
    patient = _claims(db_url)  # the default: a run may take 12 hours
    impatient = _claims(db_url, stale_after=timedelta(0))

    assert patient.claim(RETRAIN, WINDOW, "dead-replica")
    assert not patient.claim(RETRAIN, WINDOW, "other")  # still running, as far as anyone knows
    time.sleep(0.01)
    assert impatient.claim(RETRAIN, WINDOW, "rescuer")  # unfinished for longer than its stale_after
    assert patient.get(RETRAIN, WINDOW).owner == "rescuer"
    # The dead owner's late finish does not overwrite the rescuer's run.
    assert not patient.finish(RETRAIN, WINDOW, '{"status": "trained"}', owner="dead-replica")
    assert patient.finish(RETRAIN, WINDOW, '{"status": "skipped"}', owner="rescuer")
    time.sleep(0.01)
    assert not impatient.claim(RETRAIN, WINDOW, "late")  # finished runs are never taken over
    assert patient.last(RETRAIN).status == "skipped"


# -- when retraining is due -------------------------------------------------------------


def _rate(engine, answer_id: str, user: str) -> None:
    assert engine.record_feedback(Feedback(answer_id, user, "C1", 1, datetime.now(UTC)))


def test_due_only_with_enough_new_ratings_or_a_drift_request(engine):
    claims = ClaimStore(engine.database)
    count, policy = ratings_counter(engine), RetrainPolicy(min_new_feedback=3)
    answer = engine.ask("When is the quarterly review?")
    trained: list[str] = []

    def retrain(reason: str) -> dict:
        trained.append(reason)
        return {"promoted": False}

    for user in ("U1", "U2"):
        _rate(engine, answer.answer_id, user)
    due, why = retrain_due(claims, count, policy)
    assert not due and "only 2 new ratings" in why and "3 needed" in why
    outcome = run_retrain_window(claims, "r1", "2026-12-01T02:00Z", count, retrain, policy)
    assert outcome["status"] == "skipped" and trained == []

    _rate(engine, answer.answer_id, "U3")
    due, why = retrain_due(claims, count, policy)
    assert due and "3 new ratings" in why
    assert run_retrain_window(claims, "r1", "2026-12-02T02:00Z", count, retrain, policy)["status"] == "trained"
    assert len(trained) == 1

    # Ratings used by that training no longer count.
    due, why = retrain_due(claims, count, policy)
    assert not due and "only 0 new ratings since the last training" in why

    claims.request(RETRAIN, "drift: answer 👍 rate fell from 0.8 to 0.5")
    due, why = retrain_due(claims, count, policy)
    assert due and "drift" in why
    outcome = run_retrain_window(claims, "r1", "2026-12-03T02:00Z", count, retrain, policy)
    assert outcome["status"] == "trained" and "drift" in trained[-1]
    assert claims.pending_request(RETRAIN) is None  # cleared by the training it asked for


def test_a_request_made_during_training_survives_it(sqlite_url):
    claims = _claims(sqlite_url)
    claims.request(RETRAIN, "drift: first")

    def retrain(reason: str) -> dict:
        time.sleep(0.01)
        claims.request(RETRAIN, "drift: newer, seen while training")
        return {}

    assert run_retrain_window(claims, "r1", WINDOW, lambda since: 0, retrain, RetrainPolicy(5))["status"] == "trained"
    assert claims.pending_request(RETRAIN) == "drift: newer, seen while training"


def test_a_failing_retrain_is_recorded_and_retried_next_window(sqlite_url):
    claims = _claims(sqlite_url)

    def broken(reason: str) -> dict:
        raise RuntimeError("ray cluster unreachable")

    outcome = run_retrain_window(claims, "r1", WINDOW, _many, broken, RetrainPolicy(1))
    assert outcome["status"] == "failed" and "ray cluster unreachable" in outcome["error"]
    assert claims.get(RETRAIN, WINDOW).status == "failed"
    assert claims.last(RETRAIN, status="trained") is None
    assert retrain_due(claims, lambda since: 5 if since is None else 0, RetrainPolicy(5))[0]  # still due


# -- the schedule ------------------------------------------------------------------------


def test_cron_settings_are_checked_and_read_as_crontab():
    with pytest.raises(InvalidRequest, match="IMP_SCHEDULER__RETRAIN_CRON"):
        parse_schedule("0 2 * *", "UTC")
    with pytest.raises(InvalidRequest, match="IMP_SCHEDULER__RETRAIN_CRON"):
        parse_schedule("0 25 * * *", "UTC")
    with pytest.raises(InvalidRequest, match="IMP_SCHEDULER__TIMEZONE"):
        parse_schedule("0 2 * * *", "Mars/Olympus_Mons")
    sunday = parse_schedule("0 2 * * 0", "UTC").get_next_fire_time(None, datetime(2026, 1, 5, tzinfo=UTC))
    assert sunday.strftime("%A %H:%M") == "Sunday 02:00"  # crontab's 0, not APScheduler 3's Monday


def test_replicas_running_one_fire_at_different_moments_name_the_same_window():
    trigger = parse_schedule("0 2 * * *", "Europe/Paris")
    grace = timedelta(hours=1, minutes=10)
    on_time = window_for(trigger, datetime(2026, 1, 10, 1, 0, 0, tzinfo=UTC), grace)
    late = window_for(trigger, datetime(2026, 1, 10, 1, 42, 17, tzinfo=UTC), grace)
    assert on_time == late == "2026-01-10T01:00Z"  # 02:00 in Paris


class _Recorder:
    """What the scheduled job did: training calls and the results APScheduler saw."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.calls: list[str] = []
        self.results: list[object] = []

    def retrain(self, reason: str) -> dict:
        self.calls.append(reason)
        if self.fail:
            raise RuntimeError("out of GPU memory")
        return {"model": "m-2"}

    def listen(self, event) -> None:
        self.results.append(event.retval if event.code == EVENT_JOB_EXECUTED else event.exception)

    def wait(self, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.results) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.results) >= n, f"the job ran {len(self.results)} times, expected {n}"


def _scheduler(url: str, rec: _Recorder, cron: str = "0 2 * * *", count: Callable = _many):
    scheduler = build_scheduler(SchedulerSettings(retrain_cron=cron, timezone="UTC"), url,
                                claims=_claims(url), policy=RetrainPolicy(1), retrain=rec.retrain,
                                count_new_ratings=count, owner="replica-a", background=True)
    scheduler.add_listener(rec.listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    return scheduler


def test_a_background_scheduler_runs_the_retraining_job(sqlite_url):
    rec = _Recorder()
    scheduler = _scheduler(sqlite_url, rec)
    scheduler.start()
    try:
        scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))  # run now rather than at 02:00
        rec.wait(1)
    finally:
        scheduler.shutdown()
    assert rec.calls and rec.results[0]["status"] == "trained"
    assert ClaimStore(Database(sqlite_url)).last(RETRAIN).status == "trained"


def test_a_failing_retrain_does_not_stop_the_scheduler(sqlite_url):
    rec = _Recorder(fail=True)
    scheduler = _scheduler(sqlite_url, rec)
    scheduler.start()
    try:
        scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))
        rec.wait(1)
        assert rec.results[0]["status"] == "failed" and "out of GPU memory" in rec.results[0]["error"]
        assert scheduler.running and scheduler.get_job(JOB_ID).next_run_time > datetime.now(UTC)
        scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))
        rec.wait(2)  # it still runs the job
    finally:
        scheduler.shutdown()
    assert ClaimStore(Database(sqlite_url)).last(RETRAIN).status == "failed"


def test_the_job_store_survives_restarts_and_a_missed_fire_runs(sqlite_url):
    first = _scheduler(sqlite_url, _Recorder())
    first.start()
    next_run = first.get_job(JOB_ID).next_run_time
    first.shutdown()
    assert next_run > datetime.now(UTC)

    # A job store that adds nothing finds the job in the database, with its next run time. (Read
    # through the store itself: a scheduler, even a paused one, processes due jobs as it shuts down.)
    store = SQLAlchemyJobStore(url=sqlite_url)
    store.start(BackgroundScheduler(timezone="UTC"), "default")
    stored = store.lookup_job(JOB_ID)
    assert stored is not None and stored.func_ref == JOB_REF and stored.next_run_time == next_run
    # The replica was down when the job was due five minutes ago.
    stored._modify(next_run_time=datetime.now(UTC) - timedelta(minutes=5))
    store.update_job(stored)
    store.shutdown()

    rec = _Recorder()
    restarted = _scheduler(sqlite_url, rec)
    restarted.start()
    try:
        rec.wait(1)  # the missed fire runs on start (within the misfire grace time)
        assert rec.results[0]["status"] == "trained"
        assert restarted.get_job(JOB_ID).next_run_time == next_run
    finally:
        restarted.shutdown()

    # A changed schedule replaces the stored one.
    moved = _scheduler(sqlite_url, _Recorder(), cron="30 3 * * *")
    moved.start()
    try:
        assert moved.get_job(JOB_ID).next_run_time.strftime("%H:%M") == "03:30"
    finally:
        moved.shutdown()
