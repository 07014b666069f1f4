"""`imp ingest --ray` on a local Ray cluster: the same index as a plain ingest, idempotent, failures per file.

One local cluster serves the module (starting Ray takes seconds on 2 cores); the workers
build their preparers from Settings as the CLI builds them (app.build_ray_ingest), with the
bundled models. The CLI test joins the module's cluster through IMP_RAY__ADDRESS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app import build_engine, build_ray_ingest
from core.config import Settings, SpeechSettings
from core.models import IngestStatus

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
IMP = Path(sys.executable).with_name("imp")
QUERIES = ("parental leave", "when does the Rotterdam pilot start", "password rules", "price of the premium plan",
           "design review decisions")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from training.raycluster import ray_session

    with ray_session(None, num_cpus=2, storage=tmp_path_factory.mktemp("ray")) as session:
        yield session


def _corpus(tmp_path: Path) -> Path:
    """The sample corpus, its recording included, and a PDF that is not one."""
    dest = tmp_path / "corpus"
    shutil.copytree(ROOT / "samples", dest, ignore=shutil.ignore_patterns(".*"))
    (dest / "broken.pdf").write_bytes(b"%PDF-1.7\n this is not a PDF body")
    return dest


def _index(engine) -> dict:
    """What a user can see of an index: documents, their chunks, transcripts, and search results."""
    docs = {}
    for d in engine.documents():
        chunks = [(c.chunk_id, c.text, c.start, c.end, c.page_start) for c in engine.registry.chunks_of(d.doc_id)]
        docs[d.doc_id] = (d.source, d.status, d.kind, d.version, d.chunks, d.pages, d.duration, d.title, d.error,
                          chunks)
    hits = {q: [(h.chunk.chunk_id, round(h.score, 5)) for h in engine.search(q, k=5)] for q in QUERIES}
    return {"docs": docs, "hits": hits}


def _failed_reason(results, name: str) -> tuple[str, str]:
    [r] = [r for r in results if Path(r.source).name == name]
    assert r.status == IngestStatus.FAILED
    return r.error_code, r.error


def test_ray_ingest_matches_a_plain_ingest_and_adds_nothing_the_second_time(cluster, embedder, tmp_path):
    corpus = _corpus(tmp_path)
    # Whisper's words may change with the OpenMP thread count (the order of float sums): the plain ingest runs
    # with one thread, as Ray gives each worker of one CPU, and one recogniser on both sides.
    proc = _imp(tmp_path / "plain", None, "ingest", str(corpus), "--json",
                env={"IMP_SPEECH__WORKERS": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(proc.stdout)["documents"]
    speech = SpeechSettings(workers=1)
    plain = build_engine(Settings(data_dir=tmp_path / "plain", speech=speech), embedder=embedder)
    settings = Settings(data_dir=tmp_path / "ray", speech=speech)
    fanned = build_engine(settings, embedder=embedder)
    try:
        seen, steps = [], []
        results = fanned.ingest([corpus], on_result=seen.append, on_step=lambda *s: steps.append(s),
                                fan_out=build_ray_ingest(settings, 2))

        # Every file reported once, in order, with the same outcome as a plain ingest.
        assert [(r.source, r.status.value, r.chunks, r.error) for r in results] == [
            (d["source"], d["status"], d["chunks"], d["error"]) for d in expected]
        assert sorted(r.source for r in seen) == sorted(r.source for r in results)
        assert sum(r.status == IngestStatus.INDEXED for r in results) == len(results) - 1
        code, reason = _failed_reason(results, "broken.pdf")
        assert code == "corrupt_document" and "PDF" in reason and str(tmp_path) not in reason
        # The recording was transcribed on a worker; its progress reached this process.
        assert any(what == "transcribing rotterdam-pilot-standup.m4a" for what, _, _ in steps)

        index = _index(fanned)
        assert index == _index(plain)  # documents, chunk ids and texts, search results: the same
        [recording] = [d for d in fanned.documents() if d.kind == "audio"]
        assert fanned.transcript(recording.doc_id) == plain.transcript(recording.doc_id)

        again = fanned.ingest([corpus], fan_out=build_ray_ingest(settings, 2))
        assert {r.status for r in again if Path(r.source).name != "broken.pdf"} == {IngestStatus.UNCHANGED}
        assert _index(fanned) == index
        assert fanned.registry.count_chunks() == sum(r.chunks for r in results)
    finally:
        plain.close()
        fanned.close()


def _kill_first_preparing_worker(stop: threading.Event, killed: list[int]) -> None:
    """What the kernel's OOM killer does to a worker: SIGKILL while it prepares a file."""
    import psutil

    while not stop.is_set() and not killed:
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd and cmd[0].startswith("ray::_Worker.prepare"):
                os.kill(p.info["pid"], signal.SIGKILL)
                killed.append(p.info["pid"])
                return
        time.sleep(0.05)


def test_a_worker_killed_mid_file_fails_that_file_and_the_rest_commit(cluster, embedder, tmp_path):
    recording = tmp_path / "two_voices.flac"
    shutil.copy(DATA / "two_voices.flac", recording)
    note = tmp_path / "notes.md"
    note.write_text("# Offsite\n\nThe offsite is in Lisbon in May.\n")
    settings = Settings(data_dir=tmp_path / "data")
    engine = build_engine(settings, embedder=embedder)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_preparing_worker, args=(stop, killed), daemon=True)
    killer.start()
    try:
        first, second = engine.ingest([recording, note], fan_out=build_ray_ingest(settings, 1))
    finally:
        stop.set()
        killer.join()
        engine.close()
    assert killed, "no worker was seen preparing"
    assert first.status == IngestStatus.FAILED and first.error_code == "worker_died"
    assert first.error == "the Ray worker preparing this file stopped (it crashed or was killed)"
    assert second.status == IngestStatus.INDEXED  # a fresh worker took the next file
    engine = build_engine(settings, embedder=embedder)
    try:
        assert "Lisbon" in engine.search("where is the offsite", k=1)[0].chunk.text
        assert {d.source: d.status.value for d in engine.documents()}[str(recording.resolve())] == "failed"
    finally:
        engine.close()


def test_workers_embed_with_the_served_trained_embedder(cluster, embedder, trained, tmp_path):
    note = tmp_path / "zephyr.md"
    note.write_text("# Zephyr lab\n\nThe Zephyr lab coffee machine PIN is 4417.\n")
    settings = Settings(data_dir=tmp_path / "data")
    engine = build_engine(settings, embedder=embedder)
    try:
        engine.serve_model("imp-embedder", "1", trained)  # the champion now: a worker must load it from its folder
        [result] = engine.ingest([note], fan_out=build_ray_ingest(settings, 1))
        assert result.status == IngestStatus.INDEXED, result.error
        assert engine.ask("Zephyr lab coffee machine PIN").embedder == "1"
        [hit] = engine.search("Zephyr lab coffee machine PIN", k=1, mode="dense")
        assert hit.chunk.doc_id == result.doc_id
    finally:
        engine.close()


def _imp(data_dir: Path, address: str | None, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("IMP_")}
    run_env.update(IMP_DATA_DIR=str(data_dir), **({"IMP_RAY__ADDRESS": address} if address else {}), **(env or {}))
    return subprocess.run([str(IMP), *args], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=600)


def test_the_command_joins_the_cluster_and_exits_as_a_plain_ingest_does(cluster, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"%PDF-1.7\n not a PDF")
    (folder / "b.docx").write_bytes(b"PK\x03\x04 not a zip")
    data = tmp_path / "data"

    proc = _imp(data, cluster.address, "ingest", str(folder), "--ray", "--workers", "1", "--json")
    assert proc.returncode == 1, proc.stderr  # every file failed: exit 1, as a plain ingest
    docs = json.loads(proc.stdout)["documents"]
    assert [(Path(d["source"]).name, d["status"]) for d in docs] == [("a.pdf", "failed"), ("b.docx", "failed")]
    assert all(d["error"] and str(tmp_path) not in d["error"] for d in docs)

    (folder / "c.md").write_text("# Notes\n\nThe budget review is on Friday.\n")
    proc = _imp(data, cluster.address, "ingest", str(folder), "--ray", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "1 indexed, 0 unchanged, 2 failed" in proc.stdout

    wrong = _imp(data, cluster.address, "ingest", str(folder), "--workers", "2")
    assert wrong.returncode == 2 and "--workers needs --ray" in wrong.stderr
