"""Per-token scopes (IMP_API__TOKENS) on every REST route, on real components.

Team B's documents, answers, jobs and transcript exist; team A's token must not reach
them: naming a scope it does not open is 403, and an id of team B's is 404 with the
very body an id that does not exist gets, so ids cannot be probed for existence.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from bot.api import create_app
from core.models import Feedback

ADMIN, TEAM_A, TEAM_AB = "admin-token-0123456789", "team-a-token-0123456789", "team-ab-token-0123456789"
STANDUP_SECONDS = 8


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _wait(http: TestClient, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while (job := http.get(f"/v1/jobs/{job_id}", headers=_auth(ADMIN)).json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


@pytest.fixture
def world(engine, samples, sample_corpus, tmp_path):
    """Team A's handbook, team B's memo and a short recording, answers in A, B and both, ratings of them."""
    short = tmp_path / "standup.m4a"  # a few seconds of the sample stand-up: real speech, quick to transcribe
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(sample_corpus / "rotterdam-pilot-standup.m4a"),
                    "-t", str(STANDUP_SECONDS), "-c", "copy", str(short)], check=True)
    app = create_app(engine, tokens={ADMIN: ["*"], TEAM_A: ["team-a"], TEAM_AB: ["team-a", "team-b"]})
    with TestClient(app) as http:
        def upload(scope: str, name: str, data: bytes, **params) -> dict:
            r = http.post("/v1/documents", files=[("files", (name, data))], data={"scope": scope}, params=params,
                          headers=_auth(ADMIN))
            assert r.status_code in (200, 202), r.text
            return r.json()

        handbook = upload("team-a", "handbook.md", (samples / "handbook.md").read_bytes())["documents"][0]
        memo = upload("team-b", "memo.md", b"# Merger\nThe merger with Northwind closes on 3 March.\n")
        job = _wait(http, upload("team-b", "standup.m4a", short.read_bytes(), background="true")["jobs"][0]["job_id"])
        assert job["status"] == "done", job

        def ask(scopes: list[str], question: str) -> str:
            r = http.post("/v1/ask", json={"question": question, "scopes": scopes}, headers=_auth(ADMIN))
            return r.json()["answer_id"]

        answers = {"a": ask(["team-a"], "How much is the hotel allowance?"),
                   "b": ask(["team-b"], "When does the merger close?"),
                   "ab": ask(["team-a", "team-b"], "When does the merger close?")}
        for key, user in (("a", "U1"), ("b", "U2")):
            engine.record_feedback(Feedback(answers[key], user, "C1", 1, datetime(2025, 5, 1)))
        yield {"http": http, "handbook": handbook["doc_id"], "memo": memo["documents"][0]["doc_id"],
               "recording": job["doc_id"], "job": job["job_id"], "answers": answers}


def test_naming_a_scope_outside_the_token_is_forbidden(world):
    http, a = world["http"], _auth(TEAM_A)
    refused = [
        http.post("/v1/search", json={"query": "merger", "scopes": ["team-b"]}, headers=a),
        http.post("/v1/search", json={"query": "merger", "scopes": ["team-a", "team-b"]}, headers=a),
        http.post("/v1/search", json={"query": "merger"}, headers=a),  # "default" is not team A's either
        http.post("/v1/ask", json={"question": "When does the merger close?", "scopes": ["team-b"]}, headers=a),
        http.post("/v1/ask/stream", json={"question": "When does the merger close?", "scopes": ["team-b"]},
                  headers=a),
        http.post("/v1/minutes", data={"scope": "team-b", "doc_id": world["recording"]}, headers=a),
        http.post("/v1/documents", files=[("files", ("plant.md", b"Team A plants a note.\n"))],
                  data={"scope": "team-b"}, headers=a),
        http.get("/v1/documents", params={"scope": "team-b"}, headers=a),
    ]
    for r in refused:
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.request.url
        assert "'team-b'" in r.json()["detail"] or "'default'" in r.json()["detail"]
    assert "plant.md" not in http.get("/v1/documents", headers=_auth(ADMIN)).text  # nothing was uploaded

    hits = http.post("/v1/search", json={"query": "hotel allowance", "scopes": ["team-a"]}, headers=a).json()["hits"]
    assert hits and {h["scope"] for h in hits} == {"team-a"}


def test_ids_outside_the_token_are_not_found_exactly_like_missing_ids(world):
    http, a, admin = world["http"], _auth(TEAM_A), _auth(ADMIN)
    routes = {
        "answer": ("GET", "/v1/answers/{}", world["answers"]["b"]),
        "answer in A and B": ("GET", "/v1/answers/{}", world["answers"]["ab"]),
        "job": ("GET", "/v1/jobs/{}", world["job"]),
        "transcript": ("GET", "/v1/documents/{}/transcript", world["recording"]),
        "delete": ("DELETE", "/v1/documents/{}", world["memo"]),
    }
    for what, (method, path, ident) in routes.items():
        theirs = http.request(method, path.format(ident), headers=a)
        missing_id = "0" * len(ident)
        missing = http.request(method, path.format(missing_id), headers=a)
        assert theirs.status_code == missing.status_code == 404, what
        assert theirs.json() == {k: v.replace(missing_id, ident) for k, v in missing.json().items()}, what
    # Minutes by id in team A's own scope cannot reach team B's recording either.
    r = http.post("/v1/minutes", data={"scope": "team-a", "doc_id": world["recording"]}, headers=a)
    assert r.status_code == 404 and r.json()["code"] == "not_found"

    # Nothing was deleted, and the tokens that open team B read all of it.
    for token in (ADMIN, TEAM_AB):
        assert http.get(f"/v1/answers/{world['answers']['ab']}", headers=_auth(token)).status_code == 200
    assert "Northwind" in http.get(f"/v1/answers/{world['answers']['b']}", headers=admin).text
    assert http.get(f"/v1/jobs/{world['job']}", headers=_auth(TEAM_AB)).json()["status"] == "done"
    transcript = http.get(f"/v1/documents/{world['recording']}/transcript", headers=_auth(TEAM_AB))
    assert transcript.status_code == 200 and transcript.json()["segments"]
    assert http.get(f"/v1/answers/{world['answers']['a']}", headers=a).status_code == 200
    assert world["memo"] in {d["doc_id"] for d in http.get("/v1/documents", headers=admin).json()["documents"]}


def test_listings_show_only_the_tokens_scopes(world):
    http, a = world["http"], _auth(TEAM_A)
    docs = http.get("/v1/documents", headers=a).json()["documents"]
    assert [d["doc_id"] for d in docs] == [world["handbook"]]
    assert {d["scope"] for d in http.get("/v1/documents", headers=_auth(ADMIN)).json()["documents"]} == {
        "team-a", "team-b"}

    rated = http.get("/v1/feedback", headers=a).json()["feedback"]
    assert [f["answer_id"] for f in rated] == [world["answers"]["a"]]
    assert http.get("/v1/feedback", params={"answer_id": world["answers"]["b"]}, headers=a).json() == {"feedback": []}
    assert len(http.get("/v1/feedback", headers=_auth(ADMIN)).json()["feedback"]) == 2


def test_a_scoped_token_works_inside_its_scopes(world):
    http, a = world["http"], _auth(TEAM_A)
    r = http.post("/v1/documents", files=[("files", ("notes.md", b"Team A meets on Fridays at nine.\n"))],
                  data={"scope": "team-a"}, headers=a)
    assert r.status_code == 200 and r.json()["documents"][0]["status"] == "indexed"
    doc_id = r.json()["documents"][0]["doc_id"]
    answer = http.post("/v1/ask", json={"question": "When does team A meet?", "scopes": ["team-a"]}, headers=a)
    assert answer.status_code == 200 and "Fridays" in answer.json()["answer"]
    assert http.get(f"/v1/answers/{answer.json()['answer_id']}", headers=a).status_code == 200
    minutes = http.post("/v1/minutes", data={"scope": "team-a", "doc_id": doc_id}, headers=a)
    assert minutes.status_code == 202
    assert _wait(http, minutes.json()["job_id"])["scope"] == "team-a"
    assert http.get(f"/v1/jobs/{minutes.json()['job_id']}", headers=a).status_code == 200
    assert http.delete(f"/v1/documents/{doc_id}", headers=a).status_code == 200
