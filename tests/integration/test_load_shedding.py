"""Load shedding at the REST edge: a full gate answers 503 with Retry-After, a full job queue 429.

Real app, real engine and real gates; a test holds a gate's only place itself (as a
long request would), so which request is refused is certain rather than a race.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app import build_engine, build_gates
from bot.admission import Gate, GateLimits
from bot.api import create_app
from core.config import Settings
from core.errors import Busy
from core.jobs import JobRunner, Outcome
from core.store.database import Database
from core.store.jobs import JobStore

TOKEN = "shedding-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gated(engine):
    gates = {"search": Gate("search", GateLimits(limit=1, queue=0, max_wait_s=5)),
             "answer": Gate("answer", GateLimits(limit=1, queue=1, max_wait_s=0.3))}
    with TestClient(create_app(engine, api_token=SecretStr(TOKEN), gates=gates)) as http:
        yield http, gates


def test_a_full_gate_answers_503_with_retry_after_and_serves_again_once_free(gated):
    http, gates = gated
    assert http.post("/v1/search", json={"query": "hotel"}, headers=AUTH).status_code == 200
    with gates["search"].enter():  # a long search holds the only place; nobody may wait
        r = http.post("/v1/search", json={"query": "hotel"}, headers=AUTH)
        assert r.status_code == 503
        assert r.json()["code"] == "overloaded"
        assert int(r.headers["retry-after"]) >= 1
        # Cheap reads are never gated.
        assert http.get("/v1/documents", headers=AUTH).status_code == 200
        assert http.get("/healthz").status_code == 200
        # An unauthenticated request is refused by the edge before it could take a place.
        assert http.post("/v1/search", json={"query": "hotel"}).status_code == 401
    assert http.post("/v1/search", json={"query": "hotel"}, headers=AUTH).status_code == 200
    metrics = http.get("/metrics").text
    assert 'imp_requests_shed_total{gate="search"} 1.0' in metrics
    assert 'imp_gate_running{gate="search"} 0.0' in metrics


def test_a_waiting_request_is_served_when_a_place_frees_and_refused_when_its_wait_runs_out(gated):
    http, gates = gated
    gate = gates["answer"]
    results: dict[str, int] = {}

    def ask(name: str) -> None:
        results[name] = http.post("/v1/ask", json={"question": "How much is the hotel allowance?"},
                                  headers=AUTH).status_code

    with gate.enter():
        ask("gave up")  # the queue has room, but the place is not freed within 0.3 s
    assert results == {"gave up": 503}

    leave = threading.Event()
    holder = threading.Thread(target=lambda: _hold(gate, leave))
    holder.start()
    while gate.running < 1:
        time.sleep(0.01)
    waiter = threading.Thread(target=ask, args=("waited",))
    waiter.start()
    while gate.waiting < 1:
        time.sleep(0.01)
    leave.set()
    waiter.join(30)
    holder.join(5)
    assert results["waited"] == 200


def _hold(gate: Gate, leave: threading.Event) -> None:
    with gate.enter():
        leave.wait(10)


def test_admission_settings_build_one_gate_per_class_and_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("IMP_ADMISSION__SEARCH__LIMIT", "3")
    monkeypatch.setenv("IMP_ADMISSION__SEARCH__QUEUE", "7")
    gates = build_gates(Settings(data_dir=tmp_path))
    assert set(gates) == {"search", "answer", "ingest"}
    assert (gates["search"].limits.limit, gates["search"].limits.queue) == (3, 7)
    assert gates["answer"].limits.limit >= 1  # 0 in settings: one per core
    monkeypatch.setenv("IMP_ADMISSION__ENABLED", "false")
    assert build_gates(Settings(data_dir=tmp_path)) == {}


def test_the_job_queue_refuses_past_its_bound_and_takes_work_again_when_it_drains(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    release = threading.Event()
    runner = JobRunner(JobStore(database), {"slow": lambda job, report: (release.wait(10), Outcome({}))[1]},
                       max_queued=2)
    try:
        first = runner.submit("slow", "default", "a", params={})
        runner.submit("slow", "default", "b", params={})
        with pytest.raises(Busy) as busy:
            runner.submit("slow", "default", "c", params={})
        assert busy.value.retry_after >= 5
        with pytest.raises(Busy):
            runner.check_room()
        release.set()
        deadline = time.monotonic() + 10
        while runner.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.store.get(first.job_id).status.value == "done"
        runner.submit("slow", "default", "d", params={})  # room again
    finally:
        release.set()
        runner.close()
        database.close()


def test_a_background_upload_past_the_job_bound_gets_429_and_stores_nothing(tmp_path, embedder, sample_corpus):
    settings = Settings(data_dir=tmp_path / "data", admission={"max_queued_jobs": 1})
    engine = build_engine(settings, embedder=embedder)
    recording = (sample_corpus / "rotterdam-pilot-standup.m4a").read_bytes()
    try:
        with TestClient(create_app(engine)) as http:
            first = http.post("/v1/documents", params={"background": "true"},
                              files=[("files", ("standup.m4a", recording))])
            assert first.status_code == 202, first.text
            # Transcribing the stand-up takes seconds; meanwhile the queue is full.
            r = http.post("/v1/documents", params={"background": "true"},
                          files=[("files", ("notes.md", b"# Notes\nThe launch moves to May.\n"))])
            assert r.status_code == 429, r.text
            assert r.json()["code"] == "busy"
            assert int(r.headers["retry-after"]) >= 5
            stored = [p.name for p in Path(settings.data_dir / "files").rglob("*") if p.is_file()]
            assert "notes.md" not in stored
            job = first.json()["jobs"][0]["job_id"]
            deadline = time.monotonic() + 120
            while http.get(f"/v1/jobs/{job}").json()["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            again = http.post("/v1/documents", params={"background": "true"},
                              files=[("files", ("notes.md", b"# Notes\nThe launch moves to May.\n"))])
            assert again.status_code == 202
    finally:
        engine.close()
