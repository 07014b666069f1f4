"""The REST API on real components, driven over HTTP with FastAPI's test client."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bot.api import create_app

TOKEN = "s3cr3t-token-for-tests-only"


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine)) as c:
        yield c


def _upload(client, files, scope="default", **kw):
    return client.post("/v1/documents", files=[("files", f) for f in files], data={"scope": scope}, **kw)


def test_upload_search_list_delete(client, samples):
    r = _upload(client, [("handbook.md", (samples / "handbook.md").read_bytes(), "text/markdown"),
                         ("report.pdf", (samples / "annual-report-2025.pdf").read_bytes(), "application/pdf")],
                scope="C123")
    assert r.status_code == 200
    docs = r.json()["documents"]
    assert [d["status"] for d in docs] == ["indexed", "indexed"]
    assert all(d["chunks"] > 0 and d["error"] is None for d in docs)

    r = client.post("/v1/search", json={"query": "gross margin and operating expenses", "k": 2, "scopes": ["C123"]})
    assert r.status_code == 200
    hit = r.json()["hits"][0]
    assert set(hit) == {"rank", "doc_id", "source", "text", "score", "page", "start", "end", "speaker", "scope",
                        "location"}
    assert hit["source"] == "upload:report.pdf" and hit["page"] == 2 and hit["scope"] == "C123"
    assert "48.2 million" in hit["text"]

    # The default scope is "default": nothing was uploaded there.
    assert client.post("/v1/search", json={"query": "revenue growth"}).json() == {"hits": []}

    listed = client.get("/v1/documents").json()["documents"]
    assert {d["source"] for d in listed} == {"upload:handbook.md", "upload:report.pdf"}
    assert {d["status"] for d in listed} == {"indexed"}

    doc_id = docs[1]["doc_id"]
    assert client.delete(f"/v1/documents/{doc_id}").json()["doc_id"] == doc_id
    r = client.post("/v1/search", json={"query": "revenue growth in 2025", "k": 5, "scopes": ["C123"]})
    assert all(h["doc_id"] != doc_id for h in r.json()["hits"])


def test_uploading_the_same_name_again_replaces_the_document(client):
    first = _upload(client, [("notes.txt", b"The launch is on Monday.\n", "text/plain")]).json()["documents"][0]
    again = _upload(client, [("notes.txt", b"The launch is on Monday.\n", "text/plain")]).json()["documents"][0]
    changed = _upload(client, [("notes.txt", b"The launch moved to Thursday.\n", "text/plain")]).json()["documents"][0]
    assert again["status"] == "unchanged" and changed["status"] == "indexed"
    assert first["doc_id"] == again["doc_id"] == changed["doc_id"]
    hits = client.post("/v1/search", json={"query": "when is the launch", "k": 5}).json()["hits"]
    assert [h["text"] for h in hits] == ["The launch moved to Thursday."]


def test_bad_uploads_fail_alone_and_the_service_keeps_working(client, samples):
    good = ("handbook.md", (samples / "handbook.md").read_bytes(), "text/markdown")
    bad = [
        ("../../etc/passwd", b"root:x:0:0\n", "text/plain"),
        ("empty.txt", b"", "text/plain"),
        ("junk.bin", bytes(range(256)) * 64, "application/octet-stream"),
        ("broken.pdf", (samples / "annual-report-2025.pdf").read_bytes()[:700], "application/pdf"),
    ]
    r = _upload(client, [bad[0], bad[1], good, bad[2], bad[3]])
    assert r.status_code == 200
    docs = {d["source"]: d for d in r.json()["documents"]}
    assert docs["upload:handbook.md"]["status"] == "indexed"
    assert docs["../../etc/passwd"]["status"] == "failed"
    assert "unsafe file name" in docs["../../etc/passwd"]["error"]
    assert "empty" in docs["upload:empty.txt"]["error"]
    assert docs["upload:junk.bin"]["status"] == "failed"
    assert docs["upload:broken.pdf"]["status"] == "failed"
    hits = client.post("/v1/search", json={"query": "parental leave", "k": 1}).json()["hits"]
    assert hits[0]["source"] == "upload:handbook.md"
    assert client.get("/healthz").json()["status"] == "ok"


def test_errors_are_json_with_code_and_detail(client):
    r = client.delete("/v1/documents/does-not-exist")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.post("/v1/search", json={"query": "", "k": 5})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request" and "query" in r.json()["detail"]
    r = client.post("/v1/search", json={"query": "x", "scopes": ["no spaces allowed"]})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    r = client.post("/v1/search", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and set(r.json()) == {"code", "detail"}


def test_token_protects_every_v1_route_but_not_health(engine):
    with TestClient(create_app(engine, api_token=SecretStr(TOKEN))) as c:
        assert c.get("/v1/documents").status_code == 401
        bad = c.get("/v1/documents", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["code"] == "unauthorized"
        assert c.post("/v1/search", json={"query": "x"}).status_code == 401
        assert _upload(c, [("a.txt", b"hello there\n", "text/plain")]).status_code == 401
        ok = c.get("/v1/documents", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert c.get("/healthz").status_code == 200


def test_metrics_and_openapi(client):
    client.post("/v1/search", json={"query": "anything"})
    body = client.get("/metrics").text
    assert 'imp_http_requests_total{method="POST",route="/v1/search",status="200"} 1.0' in body
    assert "imp_search_seconds_count 1.0" in body
    spec = client.get("/openapi.json").json()
    assert {"/v1/documents", "/v1/search", "/healthz", "/metrics"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
