"""The engine end to end on real components: loaders, MiniLM, Chroma, bm25s, SQLite."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.errors import InvalidRequest, NotFound
from core.models import DocStatus, IngestStatus


def _by_name(results):
    return {Path(r.source).name: r for r in results}


def _vector_count(engine) -> int:
    return engine._retriever._vectors.count()


def test_sample_corpus_is_indexed_and_answers_a_question(engine, samples):
    results = engine.ingest([samples])
    assert {r.status for r in results} == {IngestStatus.INDEXED}
    assert len(results) == len(list(samples.iterdir()))

    hits = engine.search("how much is the hotel allowance in Europe?", k=3)
    assert Path(hits[0].chunk.source).name == "handbook.md"
    assert "180 EUR" in hits[0].chunk.text
    assert [h.rank for h in hits] == [1, 2, 3]


def test_make_run_corpus_answers_from_the_recorded_standup(engine, sample_corpus):
    results = _by_name(engine.ingest([sample_corpus]))
    assert {r.status for r in results.values()} == {IngestStatus.INDEXED}
    assert ".sources" not in {Path(r.source).parent.name for r in results.values()}
    recording = results["rotterdam-pilot-standup.m4a"]
    assert engine.document(recording.doc_id).kind == "audio"

    answer = engine.ask("What will the facilities team do about the charging stations?")
    assert not answer.abstained and "ventilation" in answer.text
    cited = answer.citations[0].chunk
    assert cited.doc_id == recording.doc_id
    # Cited to the moment: a chunk of a recording spans at most 30 s, and says who spoke.
    assert cited.start is not None and cited.end - cited.start <= 30.0 and cited.speakers
    transcript = engine.transcript(recording.doc_id)
    assert {s.speaker for s in transcript.segments} == {"Speaker 1", "Speaker 2"}


def test_pdf_hits_cite_pages_and_transcript_hits_cite_time_and_speaker(engine, samples):
    engine.ingest([samples])
    pdf_hit = engine.search("revenue expected for 2026", k=5)
    first_pdf = next(h for h in pdf_hit if h.chunk.source.endswith(".pdf"))
    assert first_pdf.chunk.page_start == 3

    vtt_hit = next(h for h in engine.search("battery runtime of the new cells", k=5)
                   if h.chunk.source.endswith(".vtt"))
    assert vtt_hit.chunk.start is not None and vtt_hit.chunk.end > vtt_hit.chunk.start
    assert "Priya" in vtt_hit.chunk.speakers


def test_ingesting_again_changes_nothing(engine, samples):
    first = engine.ingest([samples])
    vectors = _vector_count(engine)
    second = engine.ingest([samples])
    assert {r.status for r in second} == {IngestStatus.UNCHANGED}
    assert [r.doc_id for r in first] == [r.doc_id for r in second]
    assert _vector_count(engine) == vectors == sum(r.chunks for r in first)


def test_a_changed_file_replaces_its_old_chunks(engine, samples):
    engine.ingest([samples])
    before = _vector_count(engine)
    handbook = samples / "handbook.md"
    handbook.write_text(handbook.read_text().replace("180 EUR", "210 EUR"))

    result = engine.ingest([handbook])[0]
    assert result.status == IngestStatus.INDEXED

    texts = [h.chunk.text for h in engine.search("hotel costs reimbursed per night Europe", k=10, mode="keyword")]
    assert any("210 EUR" in t for t in texts)
    assert not any("180 EUR" in t for t in texts)
    assert _vector_count(engine) == before
    assert len(engine.documents()) == len(list(samples.iterdir()))


def test_deleted_document_leaves_search_and_the_vector_store(engine, samples):
    results = _by_name(engine.ingest([samples]))
    handbook = results["handbook.md"]
    before = _vector_count(engine)

    engine.delete(handbook.doc_id)

    for mode in ("hybrid", "dense", "keyword"):
        hits = engine.search("hotel allowance per night", k=10, mode=mode)
        assert all(h.chunk.doc_id != handbook.doc_id for h in hits)
    assert _vector_count(engine) == before - handbook.chunks
    assert handbook.doc_id not in {d.doc_id for d in engine.documents()}
    with pytest.raises(NotFound):
        engine.delete(handbook.doc_id)


def test_search_sees_only_the_scopes_it_names(engine, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("The acquisition of Contoso closes on 3 March for 120 million.\n")
    public = tmp_path / "public.txt"
    public.write_text("The cafeteria serves lunch from noon until two.\n")
    engine.ingest([secret], scope="C_BOARD")
    engine.ingest([public], scope="C_GENERAL")

    for mode in ("hybrid", "dense", "keyword"):
        hits = engine.search("acquisition of Contoso 120 million", k=10, scopes=["C_GENERAL"], mode=mode)
        assert all(h.chunk.scope == "C_GENERAL" for h in hits)
        assert not any("Contoso" in h.chunk.text for h in hits)
    both = engine.search("acquisition of Contoso", k=10, scopes=["C_GENERAL", "C_BOARD"])
    assert {h.chunk.scope for h in both} == {"C_GENERAL", "C_BOARD"}
    assert engine.search("acquisition of Contoso", k=10, scopes=["C_NOBODY"]) == []


def test_same_file_in_two_scopes_is_two_documents(engine, samples):
    a = engine.ingest([samples / "handbook.md"], scope="C1")[0]
    b = engine.ingest([samples / "handbook.md"], scope="C2")[0]
    assert a.doc_id != b.doc_id
    engine.delete(a.doc_id)
    assert engine.search("parental leave weeks", scopes=["C2"])[0].chunk.doc_id == b.doc_id


def test_chunks_never_exceed_the_embedder_window(engine, embedder, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text(("A sentence about robots and warehouses that repeats. " * 40 + "\n") * 30)
    engine.ingest([doc])
    chunks = engine.registry.chunks_of(engine.documents()[0].doc_id)
    tok = embedder.tokenizer()
    sizes = [len(tok(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert len(chunks) > 5
    assert max(sizes) <= embedder.max_tokens
    # Consecutive chunks overlap: the end of one reappears at the start of the next.
    assert chunks[0].text[-40:] in chunks[1].text


def test_bad_queries_and_scopes_get_clear_errors(engine):
    with pytest.raises(InvalidRequest, match="empty"):
        engine.search("   ")
    with pytest.raises(InvalidRequest, match="invalid scope"):
        engine.search("hello", scopes=["../etc"])


def test_registry_records_document_facts(engine, samples):
    engine.ingest([samples])
    docs = {Path(d.source).name: d for d in engine.documents()}
    pdf = docs["annual-report-2025.pdf"]
    assert pdf.status == DocStatus.INDEXED and pdf.kind == "pdf" and pdf.pages == 3
    assert pdf.embedding_model.startswith("sentence-transformers:all-MiniLM-L6-v2")
    assert docs["design-review.vtt"].duration == pytest.approx(36.0)


def test_by_id_reads_stay_inside_the_scopes_given(engine, tmp_path):
    secret = tmp_path / "board.txt"
    secret.write_text("The acquisition of Contoso closes on 3 March.\n")
    doc = engine.ingest([secret], scope="C_BOARD")[0]
    answer = engine.ask("When does the acquisition close?", ["C_BOARD"])
    job = engine.submit_minutes(doc_id=doc.doc_id, scope="C_BOARD")

    for read in (lambda s: engine.answer(answer.answer_id, scopes=s), lambda s: engine.job(job.job_id, scopes=s),
                 lambda s: engine.document(doc.doc_id, scopes=s), lambda s: engine.delete(doc.doc_id, scopes=s)):
        with pytest.raises(NotFound, match=r"^no (answer|job|document) with id '\w+'$"):
            read(["C_GENERAL"])
    assert engine.answer(answer.answer_id, scopes=["C_BOARD", "C_GENERAL"]).answer_id == answer.answer_id
    assert engine.answer(answer.answer_id).answer_id == answer.answer_id  # None: unrestricted (CLI, Slack)
    assert engine.document(doc.doc_id).scope == "C_BOARD"


def test_a_job_that_fails_unexpectedly_shows_a_reference_and_logs_the_cause(engine, caplog):
    from core.jobs import JobRunner, Outcome
    from core.store.jobs import JobStore

    def broken(job, report) -> Outcome:
        raise RuntimeError("cannot open /srv/imp/secret/path.db: (sqlite3.OperationalError) SELECT * FROM x")

    runner = JobRunner(JobStore(engine.database), {"broken": broken})
    with caplog.at_level("ERROR"):
        job = runner.submit("broken", "default", "upload:x.txt", params={})
        runner.close()
    failed = engine.job(job.job_id)
    assert failed.status.value == "failed" and failed.error.startswith("internal error (ref ")
    assert "/srv" not in failed.error and "SELECT" not in failed.error
    ref = failed.error.removeprefix("internal error (ref ").removesuffix(")")
    assert any(f"ref {ref}" in r.getMessage() and "/srv/imp" in str(r.exc_info[1]) for r in caplog.records)


def test_closing_the_engine_ends_its_document_loader_processes(engine, samples):
    engine.ingest([samples / "handbook.md"])
    pids = engine._pipeline.loader_pids()
    assert pids, "documents are read in loader processes"
    engine.close()
    assert all(_gone(pid) for pid in pids)
    assert engine.search("hotel allowance", 3)  # usable again: what it needs reopens


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (and been reaped) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
