"""Minutes through the engine, the CLI and the REST API, on the embedded defaults (no LLM)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.api import create_app
from core.errors import NotFound, UnsupportedFormat
from core.formats.minutes import from_dict
from core.minutes.base import check_evidence
from core.store.jobs import JobStore
from tests.conftest import SAMPLES

STANDUP = SAMPLES / "rotterdam-pilot-standup.m4a"

PLANNING = """\
Dana: Good morning. Today we plan the battery rollout for the October batch.
Priya: The new cells give us nine hours of runtime, up from six.
Marco: Charging takes ninety minutes with the fast charger.
Dana: Decision: we adopt the new cells for the October production batch.
Priya: I will send the thermal test report to the supplier by Friday.
Marco: Who signs off the safety certificate for the new cells?
Dana: Let's close for today.
"""


def _wait(client: TestClient, job_id: str, seconds: float = 180.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish in {seconds} s")


@pytest.fixture
def planning(tmp_path) -> Path:
    path = tmp_path / "battery-planning.txt"
    path.write_text(PLANNING)
    return path


def test_minutes_of_a_text_transcript_carry_verbatim_evidence(engine, planning):
    meeting = engine.meeting(planning)
    minutes = engine.minutes(planning)
    assert minutes.attendees == ["Dana", "Priya", "Marco"]
    assert minutes.summary and not minutes.timed
    assert any("new cells" in d.text for d in minutes.decisions)
    action = next(a for a in minutes.action_items if "thermal test report" in a.task)
    assert action.owner == "Priya" and action.due_text and "Friday" in action.due_text
    assert action.evidence[0].turn == 5 and action.evidence[0].start == 5.0  # turn numbers for text
    assert check_evidence(meeting, minutes) == []


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_minutes_of_a_recording_point_at_the_moment(engine):
    minutes = engine.minutes(STANDUP)
    assert minutes.timed and set(minutes.attendees) == {"Speaker 1", "Speaker 2"}
    # "Decision: we keep the pilot running until the end of June ..." is found whatever the recogniser wrote
    # for the pause after "Decision" (a comma on one x86 CPU, a period on another); words, not punctuation.
    assert any(len(_words(d.text) & {"keep", "pilot", "running", "june"}) >= 3 for d in minutes.decisions)
    assert any(len(_words(a.task) & {"send", "weekly", "pilot", "report"}) >= 3 for a in minutes.action_items)
    for item in minutes.decisions + minutes.action_items:
        for e in item.evidence:
            assert e.start is not None and 0 <= e.start <= e.end <= 48.0 and e.speaker
    assert check_evidence(engine.meeting(STANDUP), minutes) == []


def test_minutes_of_an_ingested_document_respect_its_scope(engine, planning):
    [result] = engine.ingest([planning], scope="C7")
    minutes = engine.minutes(result.doc_id, scopes=["C7"])
    assert minutes.decisions
    with pytest.raises(NotFound):
        engine.minutes(result.doc_id, scopes=["C8"])
    with pytest.raises(UnsupportedFormat):
        engine.minutes(SAMPLES / "price-list.csv")


def test_rest_minutes_job_returns_minutes_and_survives_a_restart(engine, planning, settings):
    with TestClient(create_app(engine)) as client:
        with planning.open("rb") as f:
            r = client.post("/v1/minutes", files={"file": ("planning.txt", f, "text/plain")}, data={"scope": "C1"})
        assert r.status_code == 202
        job = _wait(client, r.json()["job_id"])
        assert job["status"] == "done" and job["kind"] == "minutes"
        minutes = from_dict(job["result"])
        assert minutes.attendees == ["Dana", "Priya", "Marco"] and minutes.action_items
        assert client.post("/v1/minutes", data={"doc_id": "nope", "scope": "C1"}).status_code == 404
        assert client.post("/v1/minutes", data={"scope": "C1"}).status_code == 400

    # A service that died mid-job left it "running"; the next start resumes it from its stored params.
    store = JobStore(engine.database)
    stale = store.create("minutes", "C1", "upload:planning.txt", params={"path": str(planning)})
    store.progress(stale.job_id, "writing minutes", 1, 3)
    with TestClient(create_app(engine)) as client:
        job = _wait(client, stale.job_id)
        assert job["status"] == "done" and from_dict(job["result"]).decisions


def test_cli_minutes_json_and_markdown(tmp_path, planning):
    imp = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "imp"
    if not imp.exists():
        pytest.skip("the imp console script is not installed in .venv")
    env = {"IMP_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(imp), "minutes", str(planning), "--json"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"title", "date", "attendees", "summary", "topics", "decisions", "action_items",
            "open_questions"} <= set(data)
    assert all(item["evidence"] for item in data["decisions"] + data["action_items"])
    md = tmp_path / "minutes.md"
    assert subprocess.run([str(imp), "minutes", str(planning), "--markdown", "--out", str(md)], env=env,
                          timeout=300).returncode == 0
    text = md.read_text()
    assert text.startswith("# ") and "## Decisions" in text and "## Action items" in text and "“" in text
    bad = subprocess.run([str(imp), "minutes", str(SAMPLES / "price-list.csv")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 2 and "minutes are made from" in bad.stderr
