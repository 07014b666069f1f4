"""The REST edge before any body is read: tokens, Host names and body caps, on a real server.

The attacks are sent as an attacker sends them: raw HTTP over a socket to uvicorn on
127.0.0.1, announcing (or streaming) a huge body. The refusal must come back at once,
without the body: the client never has to send it.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bot.api import create_app
from cli import cli
from tests.fakes.net import serving
from tests.fakes.slack_server import FakeSlack

TOKEN = "edge-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _exchange(port: int, head: str, chunks=(), timeout: float = 10.0) -> tuple[int, dict, int]:
    """Send ``head``, then ``chunks`` until the server answers; (status, JSON body, body bytes sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode())
        sent = 0
        s.settimeout(0.05)
        got = b""
        for chunk in chunks:
            try:
                got += s.recv(65536)
            except TimeoutError:
                pass
            if got:
                break
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        s.settimeout(timeout)
        while b"\r\n\r\n" not in got or not _complete(got):
            data = s.recv(65536)
            if not data:
                break
            got += data
    head_part, _, body = got.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), json.loads(body or b"{}"), sent


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def _request(method: str, path: str, port: int, *headers: str) -> str:
    return "\r\n".join([f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers, "", ""])


def _temp_files_held() -> int:
    """Files this process holds open in the temp folder (spooled multipart parts live there)."""
    tmp, held = tempfile.gettempdir(), 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            held += os.readlink(fd).startswith(tmp)
        except OSError:
            continue
    return held


@pytest.fixture
def port(engine):
    with serving(create_app(engine, tokens={TOKEN: ["*"]}, upload_limit=3 << 20)) as p:
        yield p


@pytest.mark.parametrize("path, content_type", [("/v1/search", "application/json"),
                                                ("/v1/documents", "multipart/form-data; boundary=x")])
def test_without_a_token_a_huge_body_is_refused_before_it_is_sent(port, path, content_type):
    started = time.monotonic()
    status, body, _ = _exchange(port, _request("POST", path, port, f"Content-Type: {content_type}",
                                               "Content-Length: 400000000"))
    assert status == 401 and body["code"] == "unauthorized"
    status, body, sent = _exchange(port, _request("POST", path, port, f"Content-Type: {content_type}",
                                                  "Transfer-Encoding: chunked"),
                                   [b"100000\r\n" + b"a" * 0x100000 + b"\r\n"] * 400)
    assert status == 401 and sent < 32 << 20  # the refusal came while the 400 MiB were still being sent
    assert time.monotonic() - started < 10  # reading 400 MB first took 4 s or more


def test_a_wrong_token_is_refused_like_no_token(port):
    status, body, _ = _exchange(port, _request("GET", "/v1/documents", port, "Authorization: Bearer nope"))
    assert (status, body["code"]) == (401, "unauthorized")
    status, _, _ = _exchange(port, _request("GET", "/v1/documents", port, f"Authorization: Bearer {TOKEN}"))
    assert status == 200


def test_bodies_above_the_cap_are_refused_at_the_cap(port):
    status, body, _ = _exchange(port, _request("POST", "/v1/search", port, f"Authorization: Bearer {TOKEN}",
                                               "Content-Type: application/json", "Content-Length: 2000000"))
    assert status == 413 and body["code"] == "too_large" and "1 MiB" in body["detail"]

    status, body, sent = _exchange(port, _request("POST", "/v1/search", port, f"Authorization: Bearer {TOKEN}",
                                                  "Content-Type: application/json", "Transfer-Encoding: chunked"),
                                   [b"100000\r\n" + b"a" * 0x100000 + b"\r\n"] * 200)
    assert status == 413 and body["code"] == "too_large" and sent < 64 << 20


def test_a_streamed_upload_over_the_cap_leaves_no_temp_file_and_nothing_stored(port, settings):
    held = _temp_files_held()
    part = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n")
    chunks = [f"{len(part):x}\r\n".encode() + part + b"\r\n"] + [b"100000\r\n" + b"a" * 0x100000 + b"\r\n"] * 100
    status, body, sent = _exchange(port, _request("POST", "/v1/documents", port, f"Authorization: Bearer {TOKEN}",
                                                  "Content-Type: multipart/form-data; boundary=x",
                                                  "Transfer-Encoding: chunked"), chunks)
    assert status == 413 and body["code"] == "too_large" and sent < 64 << 20
    time.sleep(0.2)  # the server thread closes the parser's files as the exception unwinds
    assert _temp_files_held() <= held
    stored = settings.data_dir / "files"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def test_the_upload_cap_follows_the_ingest_limits(tmp_path, embedder):
    """The largest file IMP takes passes the edge; a request far above it is refused there."""
    from app import build_engine
    from core.config import IngestSettings, Settings, SpeechSettings

    limit = 64 << 10
    engine = build_engine(Settings(data_dir=tmp_path / "d", ingest=IngestSettings(max_file_mb=1 / 16),
                                   speech=SpeechSettings(max_file_mb=1 / 16)), embedder=embedder)
    text = b"The pilot stays in Rotterdam until March.\n"
    at_limit = text + b" " * (limit - len(text))
    try:
        with TestClient(create_app(engine, tokens={TOKEN: None})) as c:
            r = c.post("/v1/documents", files=[("files", ("notes.txt", at_limit))], headers=AUTH)
            assert r.status_code == 200 and r.json()["documents"][0]["status"] == "indexed"
            r = c.post("/v1/documents", files=[("files", ("more.txt", at_limit + b"x"))], headers=AUTH)
            refused = r.json()["documents"][0]
            assert refused["status"] == "failed" and "IMP_INGEST__MAX_FILE_MB" in refused["error"]
            r = c.post("/v1/documents", files=[("files", ("huge.txt", at_limit * 40))], headers=AUTH)
            assert r.status_code == 413 and r.json()["code"] == "too_large"
    finally:
        engine.close()


def test_open_paths_need_no_token_and_everything_else_does(engine):
    with TestClient(create_app(engine, tokens={TOKEN: None})) as c:
        for path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
            assert c.get(path).status_code == 200, path
        for method, path in (("GET", "/v1/documents"), ("GET", "/v1/jobs/x"), ("GET", "/v1/answers/x"),
                             ("GET", "/v1/feedback"), ("POST", "/v1/ask"), ("POST", "/v1/minutes"),
                             ("DELETE", "/v1/documents/x"), ("GET", "/v1/documents/x/transcript"),
                             ("GET", "/elsewhere")):
            r = c.request(method, path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            assert r.json() == {"code": "unauthorized", "detail": "missing or wrong bearer token"}


def test_a_host_outside_the_allowed_names_is_refused_before_the_body(engine):
    app = create_app(engine, allowed_hosts=["localhost", "127.0.0.1", "::1", "imp.example.com"])
    with TestClient(app, base_url="http://imp.example.com") as c:
        assert c.get("/v1/documents").status_code == 200
        assert c.get("/v1/documents", headers={"host": "IMP.example.com:8443"}).status_code == 200
        assert c.get("/v1/documents", headers={"host": "[::1]:8000"}).status_code == 200
        for host in ("rebind.attacker.example", "imp.example.com.evil.example", ""):
            r = c.get("/v1/documents", headers={"host": host})
            assert r.status_code == 400 and r.json()["code"] == "invalid_host", host
        assert c.get("/healthz", headers={"host": "rebind.attacker.example"}).status_code == 400
    with serving(app) as p:  # a rebound page cannot make the server read a body either
        status, body, _ = _exchange(p, "POST /v1/search HTTP/1.1\r\nHost: rebind.attacker.example\r\n"
                                       "Content-Length: 400000000\r\n\r\n")
        assert (status, body["code"]) == (400, "invalid_host")


# ----- `imp serve` refuses a configuration that would leave the API open ---------------------------

def _serve(tmp_path, **env: str):
    return CliRunner().invoke(cli, ["serve"], env={"IMP_DATA_DIR": str(tmp_path / "data"), **env})


def test_serve_with_slack_needs_an_api_token(tmp_path):
    with FakeSlack() as fake:
        result = _serve(tmp_path, IMP_SLACK__BOT_TOKEN=fake.token, IMP_SLACK__SIGNING_SECRET="a-signing-secret-1",
                        IMP_SLACK__API_URL=fake.api_url)
    assert result.exit_code == 2
    assert "IMP_API__TOKEN" in result.output and "Slack" in result.output


def test_serve_beyond_loopback_needs_a_token_and_scoped_tokens_count(tmp_path):
    result = _serve(tmp_path, IMP_API__HOST="0.0.0.0")
    assert result.exit_code == 2 and "IMP_API__TOKENS" in result.output


@pytest.mark.parametrize("tokens, why", [
    ('{"short-secret": ["C1"]}', "shorter than 16"),
    ('{"changeme": ["C1"]}', "placeholder"),
    ('{"a-long-enough-secret-1": ["no spaces"]}', "list of scopes"),
    ('{"a-long-enough-secret-1": []}', "list of scopes"),
    ('["a-long-enough-secret-1"]', "JSON object"),
    ('{"a-long-enough-secret-1": ["C1"', "not JSON"),
])
def test_bad_scoped_tokens_are_refused_by_name_never_shown(tmp_path, tokens, why):
    result = _serve(tmp_path, IMP_API__TOKENS=tokens)
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "IMP_API__TOKENS" in output and why in output
    assert not any(token in output for token in ("short-secret", "changeme", "a-long-enough-secret-1"))
