"""The Longformer embedder on a tiny randomly initialised model built here (no downloads)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from transformers import LongformerConfig, LongformerModel

from app import build_engine
from core.config import EmbedderSettings, Settings
from core.errors import BackendError
from core.index.embedders import LongformerEmbedder, bundled_minilm_path
from core.models import IngestStatus


@pytest.fixture(scope="module")
def tiny_longformer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-longformer")
    torch.manual_seed(0)
    config = LongformerConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, attention_window=[16, 16], pad_token_id=0,
    )
    LongformerModel(config).save_pretrained(folder)
    # Any fast tokenizer over the same vocabulary serves; the bundled MiniLM's is a BERT one.
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(bundled_minilm_path() / name, folder / name)
    return folder


def test_embeddings_are_normalised_and_ignore_padding(tiny_longformer):
    emb = LongformerEmbedder(tiny_longformer)
    assert emb.max_tokens == 128 - 2
    alone = emb.embed(["short text"])
    batched = emb.embed(["short text", "a much longer text " * 20])
    assert alone.shape == (1, 32)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # Attention-masked pooling: padding the short text in a batch must not change its vector.
    assert np.allclose(alone[0], batched[0], atol=1e-4)


def test_engine_indexes_with_the_longformer_backend(tiny_longformer, tmp_path):
    settings = Settings(data_dir=tmp_path / "data",
                        embedder=EmbedderSettings(backend="longformer", path=tiny_longformer))
    engine = build_engine(settings)
    doc = tmp_path / "long.txt"
    doc.write_text("\n".join(f"Paragraph {i} about the gearbox maintenance schedule." for i in range(200)))

    result = engine.ingest([doc])[0]

    assert result.status == IngestStatus.INDEXED
    chunks = engine.registry.chunks_of(result.doc_id)
    tok = engine._pipeline.chunker._tok
    assert max(len(tok(c.text, add_special_tokens=False)["input_ids"]) for c in chunks) <= 126
    assert engine.document(result.doc_id).embedding_model.startswith("longformer:")
    assert len(engine.search("gearbox maintenance", k=3, mode="dense")) == 3
    assert "Paragraph 77 " in engine.search("paragraph 77", k=1, mode="keyword")[0].chunk.text


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="model folder not found"):
        LongformerEmbedder(tmp_path / "nope").embed(["x"])
