"""The drift check over a real engine: questions embedded by the bundled MiniLM, answers and ratings in SQLite.

A stream that moves from one topic to another is flagged; a stream that keeps to its topic
is not; a rise in 👎 is flagged and asks the scheduled retraining to run; `imp drift check
--json` prints the stable shape; the scheduler runs the check, claimed per interval.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from typer.testing import CliRunner

from app import build_drift_check
from core.config import SchedulerSettings
from core.models import DocStatus
from core.store.claims import ClaimStore
from core.store.database import Database
from core.store.monitor import MonitorStore
from core.store.schema import DocumentRow
from ops.monitor.check import DriftCheck
from ops.monitor.drift import DOWN_RATE, INGEST_FAILURE_RATE, QUERY_EMBEDDING, SIGNALS, DriftConfig
from ops.scheduler import (
    DRIFT,
    DRIFT_JOB_ID,
    JOB_ID,
    RETRAIN,
    RetrainPolicy,
    build_scheduler,
    interval_window,
)
from tests.support.drift_data import AnswerStream, questions, rate

WINDOW = 40
CONFIG = DriftConfig(permutations=200, seed=0)


def _check(engine, window: int = WINDOW, **kw) -> DriftCheck:
    return DriftCheck(engine.database, engine.embed_questions, CONFIG, window=window, **kw)


def _signal(report, name):
    return next(s for s in report.signals if s.name == name)


def test_a_shift_of_topic_is_flagged_and_a_steady_stream_is_not(engine):
    stream = AnswerStream(engine.database)
    stream.add(questions("policy", WINDOW, seed=1))
    stream.add(questions("policy", WINDOW, seed=2))  # same topic, other samples
    steady = _check(engine).run(dry_run=True)
    embedding = _signal(steady, QUERY_EMBEDDING)
    assert not embedding.drifted and embedding.p_value > 0.05
    assert embedding.detail["n_recent"] == WINDOW and embedding.detail["n_previous"] == WINDOW

    stream.add(questions("design", WINDOW, seed=3))  # people start asking about something else
    shifted = _check(engine).run(dry_run=True)
    embedding = _signal(shifted, QUERY_EMBEDDING)
    assert embedding.drifted and embedding.p_value < CONFIG.mmd_p_value and embedding.score > embedding.threshold
    assert [s.name for s in shifted.signals] == list(SIGNALS)
    assert MonitorStore(engine.database).latest_check() is None  # a dry run records nothing


def test_a_rise_in_down_ratings_is_flagged_recorded_and_asks_for_retraining(engine):
    stream = AnswerStream(engine.database)
    before = stream.add(questions("policy", 20, seed=4))
    rate(engine, before[:2], -1)
    rate(engine, before[2:], 1)
    check = _check(engine, window=20)
    calm = check.run()
    assert not _signal(calm, DOWN_RATE).drifted and "not enough data" in _signal(calm, DOWN_RATE).detail["note"]

    after = stream.add(questions("policy", 20, seed=5))
    rate(engine, after[:10], -1)
    rate(engine, after[10:], 1)
    report = check.run()
    down = _signal(report, DOWN_RATE)
    assert down.drifted and down.detail["recent"] == 0.5 and down.detail["previous"] == 0.1
    assert not _signal(report, QUERY_EMBEDDING).drifted

    store = MonitorStore(engine.database)
    assert [s["name"] for s in store.latest_check().signals] == list(SIGNALS)
    assert store.open_incidents()[DOWN_RATE].score == down.score
    assert [(a.signal, a.event) for a in report.alerts] == [(DOWN_RATE, "opened")]
    requested = ClaimStore(engine.database).pending_request(RETRAIN)
    assert requested is not None and requested.startswith("drift: down_rate")

    # Still drifting: no second incident, no second request.
    ClaimStore(engine.database).clear_request(RETRAIN)
    again = check.run()
    assert _signal(again, DOWN_RATE).drifted and again.alerts == []
    assert ClaimStore(engine.database).pending_request(RETRAIN) is None
    assert store.incident_counts() == {DOWN_RATE: 1}


def test_failed_ingests_above_the_threshold_are_flagged(engine):
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.database.session() as s, s.begin():
        for i in range(60):
            status = DocStatus.FAILED.value if i in (45, 57) else DocStatus.INDEXED.value  # 2 of the newest 40
            s.add(DocumentRow(doc_id=f"d{i:03d}", source=f"f{i}.txt", scope="default", status=status,
                              updated_at=now + timedelta(seconds=i)))
    signal = _signal(_check(engine).run(dry_run=True), INGEST_FAILURE_RATE)
    assert signal.drifted and signal.detail["failed"] == 2 and signal.detail["n_recent"] == WINDOW
    assert signal.threshold == 0.005 and signal.detail["previous"] == 0.0


def test_the_cli_prints_the_json_shape_and_records_unless_dry_run(tmp_path, monkeypatch, embedder):
    from cli import cli
    from core.config import Settings

    data = tmp_path / "cli-data"
    monkeypatch.setenv("IMP_DATA_DIR", str(data))
    settings = Settings()
    database = Database(settings.database_url)
    stream = AnswerStream(database)
    stream.add(questions("policy", 12, seed=6))
    stream.add(questions("design", 12, seed=7))
    database.close()

    runner = CliRunner()
    result = runner.invoke(cli, ["drift", "check", "--window", "12", "--json", "--dry-run"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"signals", "alerts"}
    assert [s["name"] for s in payload["signals"]] == list(SIGNALS)
    for s in payload["signals"]:
        assert {"name", "score", "threshold", "p_value", "drifted"} <= set(s)
    embedding = next(s for s in payload["signals"] if s["name"] == QUERY_EMBEDDING)
    assert embedding["drifted"] is True and embedding["p_value"] < 0.05
    assert [a["event"] for a in payload["alerts"]] == ["opened"] and payload["alerts"][0]["delivered"] == []

    database = Database(settings.database_url)
    try:
        assert MonitorStore(database).latest_check() is None  # --dry-run recorded nothing
        result = runner.invoke(cli, ["drift", "check", "--window", "12", "--json"])
        assert result.exit_code == 0, result.output  # drift is not an error
        assert MonitorStore(database).latest_check().window == 12
        assert QUERY_EMBEDDING in MonitorStore(database).open_incidents()
        assert ClaimStore(database).pending_request(RETRAIN).startswith("drift: query_embedding")
    finally:
        database.close()

    bad = runner.invoke(cli, ["drift", "check", "--window", "3"])
    assert bad.exit_code == 2


def test_the_scheduler_runs_the_drift_check_once_per_interval(engine, settings):
    stream = AnswerStream(engine.database)
    stream.add(questions("policy", WINDOW, seed=8))
    stream.add(questions("design", WINDOW, seed=9))
    check = build_drift_check(settings.model_copy(update={"monitor": settings.monitor.model_copy(
        update={"window": WINDOW, "permutations": 100})}), engine)

    def drift_check() -> dict:
        report = check.run()
        return {"drifted": report.drifted}

    results: list[object] = []
    scheduler = build_scheduler(SchedulerSettings(retrain_cron="0 2 * * *", timezone="UTC"), settings.database_url,
                                claims=ClaimStore(engine.database), policy=RetrainPolicy(1000),
                                retrain=lambda reason: {}, count_new_ratings=lambda since: 0, owner="replica-a",
                                background=True, drift_check=drift_check, drift_interval_s=3600)
    scheduler.add_listener(lambda e: results.append(e.retval if e.code == EVENT_JOB_EXECUTED else e.exception),
                           EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    try:
        assert scheduler.get_job(JOB_ID) is not None  # the nightly retraining is still there
        job = scheduler.get_job(DRIFT_JOB_ID)
        assert job is not None and job.next_run_time > datetime.now(UTC)
        window = interval_window(3600, datetime.now(UTC))
        scheduler.modify_job(DRIFT_JOB_ID, next_run_time=datetime.now(UTC))
        deadline = time.monotonic() + 60
        while not results and time.monotonic() < deadline:
            time.sleep(0.05)
        assert results and isinstance(results[0], dict), results
        # A second replica firing in the same interval finds it taken.
        scheduler.modify_job(DRIFT_JOB_ID, next_run_time=datetime.now(UTC))
        deadline = time.monotonic() + 60
        while len(results) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown()
    first, second = results[0], results[1]
    if not first["window"] == second["window"] == window:  # the hour turned during the test
        pytest.skip("the interval changed while the test ran")
    assert first["status"] == "done" and QUERY_EMBEDDING in first["result"]["drifted"]
    assert second["status"] == "taken" and second["window"] == first["window"]
    claim = ClaimStore(engine.database).get(DRIFT, window)
    assert claim is not None and claim.status == "done"
    assert MonitorStore(engine.database).latest_check() is not None


def test_the_scheduler_runs_a_purge_it_is_given_and_checks_its_cron(engine, settings):
    from core.errors import InvalidRequest
    from ops.scheduler import PURGE, PURGE_JOB_ID

    base = dict(claims=ClaimStore(engine.database), policy=RetrainPolicy(1000), retrain=lambda reason: {},
                count_new_ratings=lambda since: 0, owner="replica-a", background=True)
    cron = SchedulerSettings(retrain_cron="0 2 * * *", timezone="UTC")
    with pytest.raises(InvalidRequest, match="IMP_RETENTION__CRON"):
        build_scheduler(cron, settings.database_url, purge=lambda: {}, purge_cron="61 * * * *", **base)

    purged: list[int] = []
    results: list[object] = []
    scheduler = build_scheduler(cron, settings.database_url, purge=lambda: purged.append(1) or {"answers": 3},
                                purge_cron="30 3 * * *", **base)
    scheduler.add_listener(lambda e: results.append(e.retval if e.code == EVENT_JOB_EXECUTED else e.exception),
                           EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    try:
        assert scheduler.get_job(DRIFT_JOB_ID) is None  # no drift check handed in: not scheduled
        assert scheduler.get_job(PURGE_JOB_ID).next_run_time.strftime("%H:%M") == "03:30"
        scheduler.modify_job(PURGE_JOB_ID, next_run_time=datetime.now(UTC))
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown()
    assert purged == [1] and results[0]["status"] == "done" and results[0]["result"] == {"answers": 3}
    assert ClaimStore(engine.database).last(PURGE).status == "done"


def test_the_served_scheduler_wires_the_drift_check_and_the_purge(engine, settings):
    from app import build_retrain_scheduler
    from ops.scheduler import PURGE_JOB_ID

    scheduler = build_retrain_scheduler(settings, engine, background=True)
    scheduler.start()
    try:
        drift = scheduler.get_job(DRIFT_JOB_ID)
        assert drift is not None and drift.trigger.interval.total_seconds() == settings.monitor.interval_s
        assert scheduler.get_job(JOB_ID) is not None and scheduler.get_job(PURGE_JOB_ID) is not None
    finally:
        scheduler.shutdown()


def test_an_embedder_failure_leaves_the_other_signals_standing(engine):
    def broken(texts: list[str]):
        raise OSError("model folder gone")

    stream = AnswerStream(engine.database)
    stream.add(questions("policy", 20, seed=10), abstained=False)
    stream.add(questions("policy", 20, seed=11), abstained=True)
    report = DriftCheck(engine.database, broken, CONFIG, window=20).run()
    embedding = _signal(report, QUERY_EMBEDDING)
    assert not embedding.drifted and "could not embed" in embedding.detail["note"]
    assert _signal(report, "abstain_rate").drifted  # 0 % → 100 %
    assert MonitorStore(engine.database).latest_check() is not None
