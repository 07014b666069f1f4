"""The REST API on real components, driven over HTTP with FastAPI's test client."""

from __future__ import annotations

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
    r = client.post("/v1/search", json={"query": "x", "scopes": ["no spaces allowed"]})  # the schema's scope pattern
    assert r.status_code == 422 and r.json()["code"] == "invalid_request" and "scopes" in r.json()["detail"]
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


def test_backend_failures_show_a_log_reference_never_the_cause(embedder, tmp_path, caplog):
    """An unreachable Chroma server: clients learn that it failed and a reference; the log has the cause."""
    from app import build_engine
    from core.config import ChromaSettings, Settings
    from tests.fakes.net import free_port

    port = free_port()
    engine = build_engine(Settings(data_dir=tmp_path / "data", chroma=ChromaSettings(url=f"http://127.0.0.1:{port}")),
                          embedder=embedder)
    try:
        with TestClient(create_app(engine)) as c, caplog.at_level("ERROR"):
            doc = _upload(c, [("notes.txt", b"The pilot runs until March.\n", "text/plain")]).json()["documents"][0]
            search = c.post("/v1/search", json={"query": "pilot"})
            listed = c.get("/v1/documents").json()["documents"][0]
    finally:
        engine.close()
    # The document says what failed in plain words and where the log has the rest; no address, no path.
    assert doc["status"] == "failed" and "(ref " in doc["error"]
    assert search.status_code == 503 and search.json()["code"] == "backend_error"
    for shown in (doc["error"], search.json()["detail"], listed["error"]):
        assert str(port) not in shown and "127.0.0.1" not in shown and str(tmp_path) not in shown
    for shown in (doc["error"], search.json()["detail"]):
        ref = shown.split("(ref ", 1)[1][:8]
        [logged] = [r for r in caplog.records if f"ref {ref}" in r.getMessage()]
        cause = logged.getMessage() + (str(logged.exc_info[1]) if logged.exc_info else "")
        assert "Chroma" in cause  # the operator finds the cause by the reference


def test_an_unexpected_error_answers_internal_error_with_the_logged_reference(engine, settings, caplog):
    """A broken database (a table gone) raises SQL errors: the client sees none of it."""
    import sqlite3

    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        assert client.get("/v1/documents").status_code == 200  # the database is open and in use
        with sqlite3.connect(settings.data_dir / "imp.sqlite3") as db:
            db.execute("DROP TABLE jobs")
        with caplog.at_level("ERROR"):
            r = client.get("/v1/jobs/0123456789abcdef")
    assert r.status_code == 500 and set(r.json()) == {"code", "detail"}
    assert r.json()["code"] == "internal_error" and r.json()["detail"].startswith("internal error (ref ")
    assert "SELECT" not in r.text and "jobs" not in r.text and str(settings.data_dir) not in r.text
    ref = r.json()["detail"].removeprefix("internal error (ref ").removesuffix(")")
    assert any(f"ref {ref}" in rec.getMessage() and "no such table" in str(rec.exc_info[1])
               for rec in caplog.records if rec.exc_info)


def test_openapi_declares_the_error_shape_and_the_bearer_token_on_every_route(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["ErrorOut"]["required"] == ["code", "detail"]
    by_id = {"/v1/answers/{answer_id}", "/v1/jobs/{job_id}", "/v1/documents/{doc_id}",
             "/v1/documents/{doc_id}/transcript"}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            declared = op["responses"]
            assert "500" in declared and "400" in declared, (method, path)
            if path.startswith("/v1/"):
                for status in ("401", "413", "422", "503"):
                    ref = declared[status]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), (method, path, status)
                assert op["security"] == [{"HTTPBearer": []}], (method, path)
            if path in by_id:
                assert "404" in declared, (method, path)
    for method, path in (("post", "/v1/search"), ("post", "/v1/ask"), ("post", "/v1/documents"),
                         ("post", "/v1/minutes"), ("get", "/v1/documents")):
        assert "403" in spec["paths"][path][method]["responses"], (method, path)
