"""Concurrent ingests of one document: one complete version stays visible, and every answer is true.

The attack: four uploads of ``race.md`` with different contents at once all
answered "indexed", the committed version had no chunks, search found nothing,
and every later upload said "unchanged". Two `imp ingest` runs on the same files
showed an IntegrityError, SQL and parameters included, as a document's error.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.index.keyword import KeywordIndex
from core.index.vectors import ChromaVectorStore
from core.ingest.chunking import document_id
from core.ingest.pipeline import SUPERSEDED, IngestPipeline
from core.models import DocStatus, IngestStatus
from core.store.database import Database
from core.store.registry import CommitInfo, DocumentRegistry
from core.store.schema import ChunkRow, DocumentRow

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("amber", "cobalt", "saffron", "viridian")


def _text(word: str) -> str:
    return f"# Race\n\nThe code word of this upload is {word}.\n"


def _chunk_rows(database: Database, doc_id: str) -> int:
    with database.session() as s:
        return s.scalar(select(func.count()).select_from(ChunkRow).where(ChunkRow.doc_id == doc_id))


def _visible_words(engine) -> set[str]:
    found = set()
    for w in WORDS:
        for mode in ("keyword", "dense"):
            if any(w in h.chunk.text for h in engine.search(f"code word {w}", k=4, mode=mode)):
                found.add(w)
    return found


def _race(upload, contents: list[str]) -> list:
    barrier = threading.Barrier(len(contents))
    results: list = [None] * len(contents)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = upload(i, contents[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(contents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_four_concurrent_uploads_of_one_name_leave_one_complete_searchable_version(engine):
    results = _race(lambda i, text: engine.ingest_upload("race.md", io.BytesIO(text.encode())),
                    [_text(w) for w in WORDS])

    assert {r.status for r in results} <= {IngestStatus.INDEXED, IngestStatus.FAILED}
    assert all(r.error_code == SUPERSEDED for r in results if r.status == IngestStatus.FAILED)
    assert any(r.status == IngestStatus.INDEXED for r in results)
    doc = engine.document(results[0].doc_id)
    assert doc.status == DocStatus.INDEXED and doc.chunks > 0
    visible = engine.registry.chunks_of(doc.doc_id)
    assert len(visible) == doc.chunks
    [winner] = [w for w in WORDS if any(w in c.text for c in visible)]
    assert _visible_words(engine) == {winner}  # found by keywords and vectors; no loser's text anywhere
    assert _chunk_rows(engine.database, doc.doc_id) == doc.chunks  # no orphan rows of losing versions
    assert engine._retriever._vectors.count(doc.doc_id) == doc.chunks  # nor orphan vectors

    again = engine.ingest_upload("race.md", io.BytesIO(_text(winner).encode()))
    assert again.status == IngestStatus.UNCHANGED and again.chunks == doc.chunks
    other = next(w for w in WORDS if w != winner)
    changed = engine.ingest_upload("race.md", io.BytesIO(_text(other).encode()))
    assert changed.status == IngestStatus.INDEXED
    assert _visible_words(engine) == {other}


class GatedEmbedder:
    """The real embedder; embedding a text that holds ``word`` waits until ``gate`` opens."""

    def __init__(self, inner, word: str):
        self._inner = inner
        self._word = word
        self.entered = threading.Event()
        self.gate = threading.Event()

    model_id = property(lambda self: self._inner.model_id)
    max_tokens = property(lambda self: self._inner.max_tokens)

    def tokenizer(self):
        return self._inner.tokenizer()

    def embed(self, texts: list[str]):
        if any(self._word in t for t in texts):
            self.entered.set()
            assert self.gate.wait(60)
        return self._inner.embed(texts)


@pytest.fixture
def parts(tmp_path):
    """Real registry, Chroma and keyword index on temp folders, closed afterwards."""
    database = Database(f"sqlite:///{tmp_path / 'imp.sqlite3'}")
    registry = DocumentRegistry(database)
    vectors = ChromaVectorStore("race", path=tmp_path / "chroma")
    yield registry, vectors, KeywordIndex(registry, tmp_path / "bm25")
    vectors.close()
    database.close()


def test_an_older_upload_that_finishes_last_does_not_replace_a_newer_one(parts, embedder, tmp_path):
    registry, vectors, keywords = parts
    gated = GatedEmbedder(embedder, "cobalt")
    pipeline = IngestPipeline(registry, vectors, keywords, gated, loader_workers=0)
    files = {}
    for w in WORDS[:3]:
        files[w] = tmp_path / w / "race.md"
        files[w].parent.mkdir()
        files[w].write_text(_text(w))
    source = "upload:race.md"
    doc_id = document_id("default", source)
    assert pipeline.ingest(files["amber"], "default", source=source).status == IngestStatus.INDEXED

    out = {}
    older = threading.Thread(target=lambda: out.setdefault("cobalt", pipeline.ingest(files["cobalt"], "default",
                                                                                      source=source)))
    older.start()  # attempt 2: takes the writer lease, then waits inside embedding
    assert gated.entered.wait(60)
    waiting = threading.Thread(target=lambda: out.setdefault("saffron", pipeline.ingest(files["saffron"], "default",
                                                                                         source=source)))
    waiting.start()  # attempt 3: waits for the lease
    _wait_for_attempts(registry.database, doc_id, 3)
    newest = pipeline.ingest(files["amber"], "default", source=source)  # attempt 4: the visible content again
    gated.gate.set()
    older.join(60)
    waiting.join(60)

    assert newest.status == IngestStatus.UNCHANGED
    for w in ("cobalt", "saffron"):
        assert out[w].status == IngestStatus.FAILED and out[w].error_code == SUPERSEDED, out[w]
        assert "newer upload" in out[w].error
    record = registry.get(doc_id)
    assert record.status == DocStatus.INDEXED
    visible = registry.chunks_of(doc_id)
    assert visible and all("amber" in c.text for c in visible)
    assert _chunk_rows(registry.database, doc_id) == len(visible) == vectors.count(doc_id) == vectors.count(doc_id,
                                                                                                 record.version)


def test_concurrent_writers_through_the_pipeline_keep_every_invariant(parts, embedder, tmp_path):
    registry, vectors, keywords = parts
    pipeline = IngestPipeline(registry, vectors, keywords, embedder, loader_workers=2)
    source = "upload:race.md"
    doc_id = document_id("default", source)
    try:
        for round_ in range(3):
            files = []
            for w in WORDS:
                f = tmp_path / f"{round_}-{w}" / "race.md"
                f.parent.mkdir()
                f.write_text(_text(f"{w}{round_}"))
                files.append(f)
            results = _race(lambda i, _: pipeline.ingest(files[i], "default", source=source), WORDS)
            winners = [r for r in results if r.status == IngestStatus.INDEXED]
            assert winners and all(r.error_code == SUPERSEDED for r in results if r.status == IngestStatus.FAILED)
            record = registry.get(doc_id)
            visible = registry.chunks_of(doc_id)
            assert record.status == DocStatus.INDEXED and len(visible) == record.chunks > 0
            assert _chunk_rows(registry.database, doc_id) == record.chunks
            assert vectors.count(doc_id) == vectors.count(doc_id, record.version) == record.chunks
    finally:
        pipeline.close()


def _wait_for_attempts(database: Database, doc_id: str, n: int) -> None:
    """Until ``n`` ingests of the document have started (taken their attempt numbers)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with database.session() as s:
            if s.scalar(select(DocumentRow.attempts).where(DocumentRow.doc_id == doc_id)) == n:
                return
        time.sleep(0.01)
    raise AssertionError(f"{n} ingests never started")


def _commit_info(chunks: int = 0) -> CommitInfo:
    return CommitInfo(kind="text", title=None, chunks=chunks, segments=chunks, pages=None, duration=None,
                      embedding_model="m", index_signature="sig")


def test_status_and_version_end_as_sequential_ingests_in_arrival_order_would_leave_them(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'imp.sqlite3'}")
    registry = DocumentRegistry(database)
    try:
        first = registry.start("d1", "upload:a.md", "default")
        second = registry.start("d1", "upload:a.md", "default")
        assert (first, second) == (1, 2)
        registry.fail("d1", "upload:a.md", "default", second, 10, "corrupt_document", "the newer upload is damaged")
        lease = registry.lock("d1", "upload:a.md", "default", first)
        registry.begin(lease, first, "v1", 10)
        assert registry.commit(lease, first, "v1", _commit_info())
        lease.release()
        record = registry.get("d1")
        # First "indexed v1", then "failed": v1 stays visible and the status is the newer failure.
        assert record.version == "v1" and record.status == DocStatus.FAILED
        assert record.error == "the newer upload is damaged"
        # An attempt older than the visible one has nothing left to write.
        assert registry.lock("d1", "upload:a.md", "default", first) is None
    finally:
        database.close()


def test_a_writer_that_stops_renewing_loses_its_lease_and_cannot_commit(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'imp.sqlite3'}")
    registry = DocumentRegistry(database)
    try:
        slow = registry.start("d1", "upload:a.md", "default")
        fast = registry.start("d1", "upload:a.md", "default")
        stalled = registry.lock("d1", "upload:a.md", "default", slow, ttl_s=0.3)
        registry.begin(stalled, slow, "v-slow", 1)
        taker = registry.lock("d1", "upload:a.md", "default", fast, ttl_s=30, wait_s=20)  # after the expiry
        registry.begin(taker, fast, "v-fast", 1)
        assert registry.commit(taker, fast, "v-fast", _commit_info())
        taker.release()
        assert not registry.commit(stalled, slow, "v-slow", _commit_info())
        stalled.release()
        assert registry.get("d1").version == "v-fast"
    finally:
        database.close()


def test_two_cli_runs_on_the_same_files_index_each_once_without_database_errors(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\nThe shared budget line {i} is {i * 111} euros.\n")
    env = {**os.environ, "IMP_DATA_DIR": str(tmp_path / "data")}
    procs = [subprocess.Popen([sys.executable, "-m", "app", "ingest", "--json", str(folder)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]

    for (stdout, stderr), p in zip(outputs, procs, strict=True):
        assert p.returncode == 0, stderr[-2000:]
        assert "IntegrityError" not in stdout + stderr and "SQL" not in stdout + stderr
        docs = json.loads(stdout)["documents"]
        assert len(docs) == 6
        assert {d["status"] for d in docs} <= {"indexed", "unchanged"}, docs
    database = Database(f"sqlite:///{tmp_path / 'data' / 'imp.sqlite3'}")
    registry = DocumentRegistry(database)
    try:
        records = registry.list()
        assert len(records) == 6
        for record in records:
            assert record.status == DocStatus.INDEXED and record.error is None
            assert len(registry.chunks_of(record.doc_id)) == record.chunks == _chunk_rows(database, record.doc_id)
    finally:
        database.close()
