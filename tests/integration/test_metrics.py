"""/metrics moves with real work: documents ingested over REST, questions asked over REST and in Slack,
👍/👎 given as Slack reactions, drift written by the monitor; read back as Prometheus parses it.

The engine counts where it does the work (core.observe), so every front door sharing it is counted;
label values stay bounded (no user, question or file name ever becomes one).
"""

from __future__ import annotations

import logging
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import build_engine
from bot.api import create_app
from core.models import Feedback
from core.store.schema import AlertRow, MonitorCheckRow
from tests.fakes import slack_payloads as sp
from tests.fakes.slack_server import FakeSlack
from tests.integration.slack.conftest import SlackRig, make_rig, wait_until

HOTEL_Q = "How much are hotel costs reimbursed per night in Europe?"
UNANSWERED_Q = "What colour is the submarine in the basement aquarium?"


def scrape(http: TestClient) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (sample name, sorted labels)."""
    resp = http.get("/metrics")
    assert resp.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, sample: str, **labels: str) -> float:
    """One sample's value, 0 when absent (a counter that never moved has no series)."""
    return samples.get((sample, tuple(sorted(labels.items()))), 0.0)


def labelled(samples: dict, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        fake.add_user("U0ALICE", "alice", real_name="Alice Jones")
        fake.add_user("U0BOB", "bob", real_name="Bob Smith")
        fake.add_channel("C0GENERAL", "general", members=["U0ALICE", "U0BOB", "UIMPBOT"])
        yield fake


@pytest.fixture
def rig(engine, fake_slack):
    bot, http = make_rig(engine, fake_slack)
    with http:
        yield SlackRig(http, fake_slack, bot, engine)


def ask_in_slack(rig: SlackRig) -> tuple[str, str]:
    """Mention IMP in #general; (the answer message's ts, the answer id)."""
    inner = sp.app_mention(f"<@UIMPBOT> {HOTEL_Q}")
    assert rig.event(inner) == 200
    rig.slack.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("thread_ts") == inner["ts"])
    [posted] = [m for m in rig.slack.messages("C0GENERAL") if m.get("user") == "UIMPBOT" and m.get("blocks")
                and m.get("thread_ts") == inner["ts"]]
    answer_id = wait_until(lambda: rig.bot.deps.state.answer_at("C0GENERAL", posted["ts"]), timeout=10,
                           what="the answer to be linked to its message")
    return posted["ts"], answer_id


def test_answers_ratings_documents_and_stages_are_counted_whichever_door_they_came_in_by(rig, samples):
    http, model = rig.http, rig.engine.model_id
    files = [("handbook.md", (samples / "handbook.md").read_bytes(), "text/markdown"),
             ("broken.pdf", (samples / "annual-report-2025.pdf").read_bytes()[:700], "application/pdf"),
             ("../../etc/passwd", b"root:x:0:0\n", "text/plain")]
    r = http.post("/v1/documents", files=[("files", f) for f in files], data={"scope": "C0GENERAL"})
    assert [d["status"] for d in r.json()["documents"]] == ["indexed", "failed", "failed"]

    asked = [http.post("/v1/ask", json={"question": q, "scopes": ["C0GENERAL"]}) for q in (HOTEL_Q, UNANSWERED_Q)]
    assert [r.json()["abstained"] for r in asked] == [False, True]
    assert {r.json()["model"] for r in asked} == {model}
    ts, _ = ask_in_slack(rig)  # the Slack front door, through the same engine
    for user, emoji in (("U0ALICE", "+1"), ("U0BOB", "thumbsdown")):
        assert rig.event(sp.reaction(emoji, user=user, ts=ts)) == 200
    wait_until(lambda: len(rig.engine.feedback()) == 2, timeout=20, what="both ratings to be stored")

    m = scrape(http)
    assert value(m, "imp_answers_total", abstained="false", model=model) == 2  # REST and Slack
    assert value(m, "imp_answers_total", abstained="true", model=model) == 1
    assert value(m, "imp_feedback_total", rating="up", model=model) == 1
    assert value(m, "imp_feedback_total", rating="down", model=model) == 1
    assert value(m, "imp_ingest_documents_total", status="indexed", kind="markdown") == 1
    assert value(m, "imp_ingest_documents_total", status="failed", kind="pdf") == 1  # read as a PDF, then failed
    assert value(m, "imp_ingest_documents_total", status="failed", kind="unknown") == 1  # refused: unsafe name
    for stage, at_least in (("embed", 4), ("retrieve", 3), ("generate", 2), ("ingest", 2)):
        assert value(m, "imp_stage_duration_seconds_count", stage=stage) >= at_least, stage
    assert value(m, "imp_stage_duration_seconds_sum", stage="ingest") > 0
    for stage in ("transcribe", "minutes"):  # present from the start, at zero
        assert ("imp_stage_duration_seconds_count", (("stage", stage),)) in m
    assert value(m, "imp_stage_duration_seconds_count", stage="minutes") == 0
    ask = {"route": "/v1/ask", "method": "POST", "status": "200"}
    assert value(m, "imp_request_duration_seconds_count", **ask) == 2
    assert value(m, "imp_request_duration_seconds_bucket", **ask, le="+Inf") == 2
    assert value(m, "imp_request_duration_seconds_count", route="/slack/events", method="POST", status="200") == 3
    assert value(m, "imp_http_requests_total", method="POST", route="/v1/ask", status="200") == 2  # kept as before
    assert value(m, "imp_ingested_documents_total", status="failed") == 2

    assert value(m, "imp_model_info", name="imp-embedder", version="base", alias="champion") == 1
    assert labelled(m, "imp_model_info") == [{"name": "imp-embedder", "version": "base", "alias": "champion"}]
    assert m[("imp_slack_waiting", ())] == 0  # the Slack queue's depth is exported; every question was answered
    assert value(m, "imp_jobs_pending") == 0

    shown = {v for (_, labels) in m for _, v in labels}
    for private in ("U0ALICE", "U0BOB", "C0GENERAL", "handbook", "broken", "passwd", "hotel", "submarine"):
        assert not any(private.lower() in v.lower() for v in shown), private


def test_minutes_are_timed_and_a_rating_already_given_is_not_counted_again(engine, samples):
    engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    with TestClient(create_app(engine)) as http:
        answer_id = http.post("/v1/ask", json={"question": HOTEL_Q, "scopes": ["C0GENERAL"]}).json()["answer_id"]
        rating = Feedback(answer_id, "U0ALICE", "C0GENERAL", -1, datetime(2025, 6, 1))
        assert engine.record_feedback(rating)
        assert not engine.record_feedback(rating)  # the same person's same rating again (a retried event)
        minutes = engine.minutes(samples / "design-review.vtt")
        assert minutes.summary and minutes.model
        m = scrape(http)
    assert value(m, "imp_feedback_total", rating="down", model=engine.model_id) == 1
    assert value(m, "imp_feedback_total", rating="up", model=engine.model_id) == 0
    assert value(m, "imp_stage_duration_seconds_count", stage="minutes") == 1


def test_drift_scores_and_alerts_appear_once_the_monitor_wrote_them(engine):
    with TestClient(create_app(engine)) as http:
        m = scrape(http)
        assert labelled(m, "imp_drift_score") == labelled(m, "imp_drift_alerts_total") == []
        when = datetime(2025, 6, 1, 12)
        with engine.database.session() as s:
            s.add(MonitorCheckRow(checked_at=when.replace(hour=11), window=200, seconds=0.1,
                                  signals=[{"name": "embedding", "score": 0.9}]))
            s.add(MonitorCheckRow(checked_at=when, window=200, seconds=0.1, signals=[
                {"name": "embedding", "score": 0.31, "threshold": 0.1, "p_value": 0.002, "drifted": True},
                {"name": "abstention", "score": 0.04, "threshold": 0.1, "p_value": 0.4, "drifted": False},
                {"name": "Who asked: alice@example.com", "score": 1.0},  # not a signal name: never a label
                {"name": "thumbs_down", "score": "high"},
            ]))
            for signal in ("embedding", "embedding", "thumbs_down"):
                s.add(AlertRow(signal=signal, opened_at=when, score=0.3, threshold=0.1, message="drift"))
            s.commit()
        m = scrape(http)
    assert {tuple(d.values()) for d in labelled(m, "imp_drift_score")} == {("embedding",), ("abstention",)}
    assert value(m, "imp_drift_score", signal="embedding") == pytest.approx(0.31)  # the latest check
    assert value(m, "imp_drift_score", signal="abstention") == pytest.approx(0.04)
    assert value(m, "imp_drift_alerts_total", signal="embedding") == 2
    assert value(m, "imp_drift_alerts_total", signal="thumbs_down") == 1


class Broken:
    """An observer whose every method fails: what a bug in a metrics library would look like."""

    def stage(self, name, seconds):  # noqa: ANN001
        raise RuntimeError("stage")

    def answered(self, answer):  # noqa: ANN001
        raise RuntimeError("answered")

    def rated(self, rating, model):  # noqa: ANN001
        raise RuntimeError("rated")

    def ingested(self, status, kind):  # noqa: ANN001
        raise RuntimeError("ingested")


def test_a_failing_observer_never_fails_the_work_and_is_logged(settings, embedder, samples: Path, caplog):
    engine = build_engine(settings, embedder=embedder, observer=Broken())
    try:
        with caplog.at_level(logging.WARNING, logger="core.observe"):
            [result] = engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
            answer = engine.ask(HOTEL_Q, ["C0GENERAL"])
        assert result.status.value == "indexed"
        assert "180 EUR" in answer.text and not answer.abstained
        failed = {r.getMessage() for r in caplog.records if r.name == "core.observe"}
        assert {"observer Broken failed in answered", "observer Broken failed in ingested"} <= failed
        # The app's metrics still count beside it.
        with TestClient(create_app(engine)) as http:
            http.post("/v1/ask", json={"question": HOTEL_Q, "scopes": ["C0GENERAL"]})
            m = scrape(http)
        assert value(m, "imp_answers_total", abstained="false", model=engine.model_id) == 1
    finally:
        engine.close()


def test_a_recording_counts_its_transcription_and_its_kind(settings, embedder, sample_corpus, tmp_path):
    clip = tmp_path / "standup.wav"  # the stand-up's first seconds: enough speech, quick to recognise
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(sample_corpus / "rotterdam-pilot-standup.m4a"), "-t", "8",
                    "-ac", "1", "-ar", "16000", str(clip)], check=True, timeout=60)
    quick = settings.model_copy(update={"speech": settings.speech.model_copy(update={"diarize": False})})
    engine = build_engine(quick, embedder=embedder)
    with TestClient(create_app(engine)) as http:  # closes the engine when it ends
        r = http.post("/v1/documents", data={"scope": "C0GENERAL"},
                      files=[("files", ("standup.wav", clip.read_bytes(), "audio/wav"))])
        assert r.json()["documents"][0]["status"] == "indexed"
        m = scrape(http)
    assert value(m, "imp_stage_duration_seconds_count", stage="transcribe") == 1
    assert value(m, "imp_stage_duration_seconds_sum", stage="transcribe") > 0
    assert value(m, "imp_ingest_documents_total", status="indexed", kind="audio") == 1
