"""Bad input never stops a batch or damages the index, and a crash never leaves half a document."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from app import build_engine
from core.models import DocStatus, IngestStatus

ROOT = Path(__file__).resolve().parents[2]


def _pdf(path: Path, text: str) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Each bad file with a phrase its failure reason must contain."""
    (folder / "empty.txt").write_bytes(b"")
    good_pdf = _pdf(folder / "tmp.pdf", "Quarterly numbers are final.").read_bytes()
    (folder / "tmp.pdf").unlink()
    (folder / "truncated.pdf").write_bytes(good_pdf[: len(good_pdf) // 3])
    writer = PdfWriter(clone_from=PdfReader(_pdf(folder / "plain.pdf", "Board minutes, confidential.")))
    (folder / "plain.pdf").unlink()
    writer.encrypt(user_password="hunter2", algorithm="RC4-128")
    with (folder / "encrypted.pdf").open("wb") as f:
        writer.write(f)
    (folder / "junk.txt").write_bytes(os.urandom(4096) + b"\x00" * 64)
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(512))
    with (folder / "huge-one-line.txt").open("wb") as f:
        block = b"all work and no play " * 50_000
        for _ in range(50 * 2**20 // len(block) + 1):
            f.write(block)
    return {
        "empty.txt": "empty",
        "truncated.pdf": "pdf",
        "encrypted.pdf": "encrypted",
        "junk.txt": "binary",
        "photo.png": "png",
        "huge-one-line.txt": "IMP_INGEST__MAX_CHARS",
    }


def test_bad_files_fail_with_reasons_and_the_rest_is_indexed(engine, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    expected = _bad_inputs(folder)
    (folder / "notes.md").write_text("# Notes\n\nThe offsite is in Lisbon in May.\n")
    _pdf(folder / "actually-a-pdf.txt", "The warranty lasts three years.")
    (folder / "latin1.txt").write_bytes("Le café du siège ouvre à 8 h.\n".encode("cp1252"))

    results = {Path(r.source).name: r for r in engine.ingest([folder])}

    for name, phrase in expected.items():
        assert results[name].status == IngestStatus.FAILED, name
        assert phrase.lower() in results[name].error.lower(), (name, results[name].error)
    for name in ("notes.md", "actually-a-pdf.txt", "latin1.txt"):
        assert results[name].status == IngestStatus.INDEXED, (name, results[name].error)
    assert engine.search("where is the offsite", k=1)[0].chunk.source.endswith("notes.md")
    warranty = engine.search("how long is the warranty", k=1)[0].chunk
    assert warranty.source.endswith("actually-a-pdf.txt") and warranty.page_start == 1
    assert "café du siège" in engine.search("café siège", k=1, mode="keyword")[0].chunk.text

    failed = {Path(d.source).name: d for d in engine.documents() if d.status == DocStatus.FAILED}
    assert set(failed) == set(expected)
    assert all(d.chunks == 0 and d.error for d in failed.values())


def test_a_file_that_turns_bad_keeps_its_last_good_version(engine, tmp_path):
    doc = tmp_path / "policy.pdf"
    _pdf(doc, "Remote work is allowed three days a week.")
    assert engine.ingest([doc])[0].status == IngestStatus.INDEXED
    doc.write_bytes(doc.read_bytes()[:200])

    result = engine.ingest([doc])[0]

    assert result.status == IngestStatus.FAILED
    assert "Remote work" in engine.search("remote work days", k=1)[0].chunk.text
    assert engine.document(result.doc_id).status == DocStatus.FAILED


def _wait_for_status(db: Path, status: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "ingestion finished before it could be interrupted"
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                    if con.execute("select 1 from documents where status = ?", (status,)).fetchone():
                        return
            except sqlite3.OperationalError:
                pass  # schema not created yet
        time.sleep(0.02)
    raise AssertionError(f"no document reached status {status!r}")


def test_a_killed_ingestion_shows_nothing_and_a_rerun_finishes(settings, embedder, tmp_path):
    big = tmp_path / "big.txt"
    lines = [f"Line {i}: the turbine inspection report number {i} lists blade wear of {i % 17} percent."
             for i in range(6000)]
    big.write_text("\n".join(lines))
    env = {**os.environ, "IMP_DATA_DIR": str(settings.data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "app", "ingest", str(big)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_status(settings.data_dir / "imp.sqlite3", "indexing", proc)
        time.sleep(0.5)  # let it write part of the chunks and vectors
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    engine = build_engine(settings, embedder=embedder)
    [doc] = engine.documents()
    assert doc.status == DocStatus.INDEXING and doc.version is None
    for mode in ("hybrid", "dense", "keyword"):
        assert engine.search("turbine inspection blade wear", k=5, mode=mode) == []

    result = engine.ingest([big])[0]

    assert result.status == IngestStatus.INDEXED
    assert engine.document(doc.doc_id).status == DocStatus.INDEXED
    assert len(engine.registry.chunks_of(doc.doc_id)) == result.chunks
    assert engine._retriever._vectors.count() == result.chunks
    assert "report number 4321" in engine.search("turbine report number 4321", k=1, mode="keyword")[0].chunk.text
