"""Bad input never stops a batch or damages the index, and a crash never leaves half a document."""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


def _wait_for_writing(db: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the document is being indexed and its chunk texts are written (its vectors come next)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "ingestion finished before it could be interrupted"
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                    if con.execute("select 1 from documents d join chunks c on c.doc_id = d.doc_id "
                                   "where d.status = 'indexing' limit 1").fetchone():
                        return
            except sqlite3.OperationalError:
                pass  # schema not created yet
        time.sleep(0.02)
    raise AssertionError("the document never started being written")


def test_a_killed_ingestion_shows_nothing_and_a_rerun_finishes(settings, embedder, tmp_path):
    big = tmp_path / "big.txt"
    lines = [f"Line {i}: the turbine inspection report number {i} lists blade wear of {i % 17} percent."
             for i in range(6000)]
    big.write_text("\n".join(lines))
    env = {**os.environ, "IMP_DATA_DIR": str(settings.data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "app", "ingest", str(big)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_writing(settings.data_dir / "imp.sqlite3", proc)
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


# -- what users are shown when something fails -------------------------------------------------

_REF = re.compile(r"\(ref ([0-9a-f]{8})\)")


def _shown_nowhere(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into {text!r}"
    assert "SELECT" not in text and "INSERT" not in text and "Traceback" not in text


def test_an_index_failure_shows_a_reference_and_only_the_log_has_the_detail(settings, embedder, tmp_path, caplog):
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "chroma").write_text("not a folder")  # the vector store cannot open
    note = tmp_path / "notes.md"
    note.write_text("# Notes\n\nThe offsite is in Lisbon in May.\n")
    engine = build_engine(settings, embedder=embedder)
    try:
        with caplog.at_level(logging.ERROR, logger="core.ingest.pipeline"):
            [result] = engine.ingest([note])
        record = engine.document(result.doc_id)
    finally:
        engine.close()

    assert result.status == IngestStatus.FAILED and result.error_code == "backend_error"
    assert re.fullmatch(r"cannot open the vector store \(Chroma\) \(ref [0-9a-f]{8}\)", result.error), result.error
    assert record.error == result.error
    _shown_nowhere(result.error, str(settings.data_dir))
    ref = _REF.search(result.error).group(1)
    [logged] = [r for r in caplog.records if ref in r.getMessage()]
    assert str(settings.data_dir / "chroma") in logging.Formatter().format(logged)  # the cause, with the same ref


def test_a_file_that_cannot_be_opened_says_so_without_the_server_path(engine, tmp_path):
    folder = tmp_path / "srv-private-share" / "finance"
    folder.mkdir(parents=True)
    (folder / "gone.pdf").write_bytes(b"%PDF-1.4")
    (folder / "report.pdf").symlink_to(folder / "gone.pdf")
    (folder / "gone.pdf").unlink()  # a dangling link: listed in the folder, unreadable

    [result] = engine.ingest([folder])

    assert result.status == IngestStatus.FAILED and result.error_code == "unreadable"
    assert result.error.startswith("cannot read the file: no such file or directory (ref ")
    _shown_nowhere(result.error, "srv-private-share", str(tmp_path))
    _shown_nowhere(engine.document(result.doc_id).error, "srv-private-share")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_in_an_unreadable_folder_fails_with_a_plain_reason(engine, tmp_path):
    folder = tmp_path / "srv-private-share"
    folder.mkdir()
    (folder / "plan.md").write_text("# Plan\n")
    os.chmod(folder / "plan.md", 0)
    try:
        [result] = engine.ingest([folder / "plan.md"])
    finally:
        os.chmod(folder / "plan.md", 0o600)
    assert result.status == IngestStatus.FAILED and "permission denied" in result.error
    _shown_nowhere(result.error, "srv-private-share")


def test_a_damaged_spreadsheet_gets_a_plain_reason_without_library_paths(engine, tmp_path):
    import io
    import zipfile

    import openpyxl

    buffer = io.BytesIO()
    book = openpyxl.Workbook()
    book.active["A1"] = "total"
    book.save(buffer)
    folder = tmp_path / "srv-private-share"
    folder.mkdir()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, \
            zipfile.ZipFile(folder / "budget.xlsx", "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]  # cut in the middle of an element
            out.writestr(info.filename, data)

    [result] = engine.ingest([folder / "budget.xlsx"])

    assert result.status == IngestStatus.FAILED and result.error_code == "corrupt_document"
    assert "XLSX" in result.error
    _shown_nowhere(result.error, "srv-private-share", str(tmp_path))


def test_a_database_from_before_concurrent_ingest_is_upgraded_in_place(settings, embedder, tmp_path):
    note = tmp_path / "notes.md"
    note.write_text("# Notes\n\nThe offsite is in Lisbon in May.\n")
    engine = build_engine(settings, embedder=embedder)
    try:
        assert engine.ingest([note])[0].status == IngestStatus.INDEXED
    finally:
        engine.close()
    db = settings.data_dir / "imp.sqlite3"
    with sqlite3.connect(db) as con:  # as a release from before these columns left it: no Alembic revision either
        for column in ("attempts", "committed_attempt", "status_attempt", "writer", "writer_until"):
            con.execute(f"alter table documents drop column {column}")
        for column in ("owner", "owner_until"):
            con.execute(f"alter table jobs drop column {column}")
        con.execute("drop table alembic_version")

    engine = build_engine(settings, embedder=embedder)
    try:
        assert engine.ingest([note])[0].status == IngestStatus.UNCHANGED
        note.write_text("# Notes\n\nThe offsite moved to Porto in June.\n")
        assert engine.ingest([note])[0].status == IngestStatus.INDEXED
        assert "Porto" in engine.search("where is the offsite", k=1)[0].chunk.text
    finally:
        engine.close()
