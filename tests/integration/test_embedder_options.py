"""Embedder options for the CPU: int8 quantization, query threads, the query cache (bundled MiniLM)."""

from __future__ import annotations

import numpy as np
import pytest

from app import build_embedder, build_engine
from core.config import EmbedderSettings, Settings
from core.errors import BackendError
from core.index.embedders import make_embedder

TEXTS = ["Who owns the regression fix?", "The hotel allowance in Europe is 180 euros per night.",
         "The rover firmware freeze is on the 14th."]


@pytest.fixture(scope="module")
def int8():
    e = make_embedder("sentence-transformers", None, quantize="int8", query_threads=1, cache=8)
    e.warm_up()
    return e


def test_an_int8_embedder_finds_the_same_neighbours_under_its_own_model_id(embedder, int8):
    assert int8.model_id != embedder.model_id and int8.model_id.endswith("+int8")
    full, quant = embedder.embed(TEXTS), int8.embed(TEXTS)
    assert quant.shape == full.shape and np.allclose(np.linalg.norm(quant, axis=1), 1.0, atol=1e-4)
    assert (full * quant).sum(axis=1).min() > 0.85
    q_full, q_quant = embedder.embed(["who fixes the regression"])[0], int8.embed(["who fixes the regression"])[0]
    assert int((full @ q_full).argmax()) == int((quant @ q_quant).argmax()) == 0


def test_a_repeated_query_gets_the_same_vector_and_leaves_torch_threads_as_they_were(int8):
    import torch

    before = torch.get_num_threads()
    first = int8.embed(["what is the hotel allowance"])
    kept = first.copy()
    first[0, 0] = 42.0  # a caller scribbling on its result must not change the next answer
    assert np.array_equal(int8.embed(["what is the hotel allowance"]), kept)
    assert torch.get_num_threads() == before


def test_int8_on_a_gpu_is_refused_with_the_setting_named():
    with pytest.raises(BackendError, match="IMP_EMBEDDER__QUANTIZE"):
        make_embedder("sentence-transformers", None, device="cuda", quantize="int8")


def test_an_engine_with_the_int8_setting_indexes_and_answers_searches(tmp_path, samples):
    settings = Settings(data_dir=tmp_path / "data", embedder=EmbedderSettings(quantize="int8"))
    engine = build_engine(settings, embedder=build_embedder(settings))
    try:
        engine.ingest([samples / "handbook.md"])
        hits = engine.search("How much is the hotel allowance per night in Europe?", k=1)
        assert "hotel" in hits[0].chunk.text.lower()
    finally:
        engine.close()
