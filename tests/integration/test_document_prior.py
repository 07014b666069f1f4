"""The document prior in hybrid search, on real components: it reorders documents, never scopes or one document."""

from __future__ import annotations

from pathlib import Path

from app import build_engine
from core.config import Settings


def _ranked(engine, query: str, scopes: list[str]) -> list[str]:
    return [h.chunk.chunk_id for h in engine.search(query, k=10, scopes=scopes)]


def test_a_scope_with_one_document_ranks_the_same_with_or_without_the_prior(tmp_path, samples, embedder):
    data = tmp_path / "data"
    queries = ["how much is the hotel allowance in Europe?", "who approves expenses", "laptop"]
    plain = build_engine(Settings(data_dir=data), embedder=embedder)
    try:
        plain.ingest([samples / "handbook.md"], scope="C_ONE")
        before = [_ranked(plain, q, ["C_ONE"]) for q in queries]
    finally:
        plain.close()
    prior = build_engine(Settings(data_dir=data, search={"doc_weight": 2.0}), embedder=embedder)
    try:
        assert [_ranked(prior, q, ["C_ONE"]) for q in queries] == before
        assert all(before)
    finally:
        prior.close()


def test_with_the_prior_search_stays_inside_its_scopes_and_finds_the_answer(tmp_path, samples, embedder):
    engine = build_engine(Settings(data_dir=tmp_path / "data", search={"doc_weight": 1.0}), embedder=embedder)
    try:
        engine.ingest([samples])
        secret = tmp_path / "secret.txt"
        secret.write_text("The acquisition of Contoso closes on 3 March for 120 million.\n")
        engine.ingest([secret], scope="C_BOARD")
        hits = engine.search("how much is the hotel allowance in Europe?", k=3)
        assert Path(hits[0].chunk.source).name == "handbook.md" and "180 EUR" in hits[0].chunk.text
        assert [h.rank for h in hits] == [1, 2, 3]
        assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))
        general = engine.search("acquisition of Contoso 120 million", k=10)
        assert general and not any("Contoso" in h.chunk.text or h.chunk.scope == "C_BOARD" for h in general)
        board = engine.search("acquisition of Contoso 120 million", k=10, scopes=["C_BOARD"])
        assert board and all(h.chunk.scope == "C_BOARD" for h in board)
    finally:
        engine.close()
