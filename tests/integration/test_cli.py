"""The `imp` command line as a user runs it: a real process, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.fakes.net import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
IMP = Path(sys.executable).with_name("imp")


def _imp(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMP_")}
    env["IMP_DATA_DIR"] = str(data_dir)
    proc = subprocess.run([str(IMP), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_ingest_search_docs_delete_round_trip(tmp_path, samples):
    data = tmp_path / "data"
    (samples / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage")

    ingested = json.loads(_imp(data, "ingest", str(samples), "--scope", "C42", "--json").stdout)["documents"]
    by_name = {Path(d["source"]).name: d for d in ingested}
    assert set(ingested[0]) == {"doc_id", "source", "status", "chunks", "error"}
    assert by_name["broken.pdf"]["status"] == "failed" and by_name["broken.pdf"]["error"]
    assert by_name["handbook.md"]["status"] == "indexed"

    hits = json.loads(_imp(data, "search", "parental leave", "-k", "2", "--scope", "C42", "--json").stdout)["hits"]
    assert len(hits) == 2 and Path(hits[0]["source"]).name == "handbook.md"
    assert set(hits[0]) == {"rank", "doc_id", "source", "text", "score", "page", "start", "end", "speaker", "scope",
                            "location"}
    assert json.loads(_imp(data, "search", "parental leave", "--json").stdout) == {"hits": []}

    docs = json.loads(_imp(data, "docs", "--json").stdout)["documents"]
    assert len(docs) == len(ingested)

    doc_id = by_name["handbook.md"]["doc_id"]
    assert doc_id in _imp(data, "delete", doc_id).stdout
    missing = _imp(data, "delete", doc_id, check=False)
    assert missing.returncode == 2 and "no document" in missing.stderr


def test_ingest_of_a_missing_path_is_a_clear_error(tmp_path):
    proc = _imp(tmp_path / "data", "ingest", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr


def test_serve_refuses_a_public_interface_without_a_token(tmp_path):
    proc = _imp(tmp_path / "data", "serve", "--host", "0.0.0.0", check=False)
    assert proc.returncode == 2 and "IMP_API__TOKEN" in proc.stderr


def test_serve_answers_over_http(tmp_path, samples):
    data = tmp_path / "data"
    _imp(data, "ingest", str(samples / "handbook.md"))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IMP_")}, "IMP_DATA_DIR": str(data)}
    server = subprocess.Popen([str(IMP), "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", server)
        r = httpx.post(f"{base}/v1/search", json={"query": "expense reports deadline", "k": 1}, timeout=30)
        assert r.status_code == 200
        assert "30 days" in r.json()["hits"][0]["text"]
    finally:
        server.terminate()
        server.wait(timeout=30)
