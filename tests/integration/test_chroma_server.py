"""IMP against a real Chroma server (`chroma run`) through IMP_CHROMA__URL."""

from __future__ import annotations


import pytest

from app import build_engine
from core.config import ChromaSettings, Settings
from core.errors import BackendError
from core.models import IngestStatus
from tests.fakes.net import free_port
from tests.support.servers import chroma_server

@pytest.fixture
def chroma_url(tmp_path):
    with chroma_server(tmp_path / "chroma-server") as url:
        yield url


def test_engine_indexes_and_searches_through_a_chroma_server(chroma_url, embedder, tmp_path, samples):
    settings = Settings(data_dir=tmp_path / "data", chroma=ChromaSettings(url=chroma_url))
    engine = build_engine(settings, embedder=embedder)

    results = engine.ingest([samples])

    assert {r.status for r in results} == {IngestStatus.INDEXED}
    assert not (settings.data_dir / "chroma").exists()
    hits = engine.search("who owns the regression fix", k=1, mode="dense")
    assert hits[0].chunk.source.endswith("q3-planning.eml")


def test_an_unreachable_chroma_server_fails_the_document_not_the_batch(embedder, tmp_path, samples):
    settings = Settings(data_dir=tmp_path / "data", chroma=ChromaSettings(url=f"http://127.0.0.1:{free_port()}"))
    engine = build_engine(settings, embedder=embedder)

    results = engine.ingest([samples / "handbook.md"])

    assert results[0].status == IngestStatus.FAILED and "Chroma" in results[0].error
    with pytest.raises(BackendError):
        engine.search("hotel", mode="dense")
