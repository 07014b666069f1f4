"""Fine-tuning the bundled MiniLM as a Ray Train run (and a Ray Tune search) on a real local Ray cluster.

The pairs are project questions in office jargon ("Who is the DRI for ...?", "What's the
burn cap on ...?") against plain-worded passages, with another passage about the same
project as the hard negative. Training sees eight projects; the held-out pairs ask the
same kinds of question about four others, so what the model learns (jargon to wording)
is what the held-out ranking needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidRequest
from core.index.embedders import SentenceTransformerEmbedder, bundled_minilm_path
from training.embedder import RayConfig, TrainConfig, train_embedder, tune_embedder
from training.metrics import hit_at, mrr_at, pooled
from training.raycluster import ray_session
from training.types import Pair

from tests.integration.jargon import HELD_OUT, TRAIN

CONFIG = TrainConfig(epochs=2, batch_size=20, seed=0)


def _ranking(embedder, pairs: list[Pair]) -> dict:
    """How the embedder ranks each query's passage among every held-out passage, as search would."""
    passages = list(dict.fromkeys(t for p in pairs for t in (p.positive, *p.negatives)))
    queries, docs = embedder.embed([p.query for p in pairs]), embedder.embed(passages)
    rows = []
    for q, pair in zip(queries, pairs, strict=True):
        found = [passages[i] == pair.positive for i in np.argsort(-(docs @ q))[:10]]
        rows.append({"hit@1": hit_at(found, 1), "hit@5": hit_at(found, 5), "mrr@10": mrr_at(found, 10)})
    return pooled(rows)


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-runs")


@pytest.fixture(scope="module")
def cluster(storage):
    """One local Ray cluster for the module; the trainers find it running and leave it running."""
    with ray_session(None, storage=storage) as session:
        yield session


@pytest.fixture(scope="module")
def trained(cluster, storage, tmp_path_factory):
    epochs: list[dict] = []
    out = tmp_path_factory.mktemp("models") / "minilm-projects"
    model = train_embedder(bundled_minilm_path(), TRAIN, out, CONFIG, RayConfig(storage=storage),
                           eval_pairs=HELD_OUT, on_epoch=epochs.append)
    return model, epochs


def test_the_local_cluster_is_started_once_and_reused(cluster, storage):
    assert cluster.local and cluster.cpus >= 1
    with ray_session(None, storage=storage) as inner:
        assert not inner.started  # joined the running one, so it will not shut it down
        assert inner.address == cluster.address


def test_trained_model_serves_as_a_drop_in_embedder(trained):
    model, _ = trained
    base, tuned = SentenceTransformerEmbedder(), SentenceTransformerEmbedder(model.path)
    text = ["Who is the DRI for the Nimbus backup?", "The Nimbus backup is due on 27 July."]
    base_vecs, tuned_vecs = base.embed(text), tuned.embed(text)

    assert tuned_vecs.shape == base_vecs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(tuned_vecs, axis=1), 1.0, atol=1e-4)
    assert tuned.max_tokens == base.max_tokens  # chunks cut for the old model fit the new one
    assert tuned.tokenizer()(text)["input_ids"] == base.tokenizer()(text)["input_ids"]
    assert not np.allclose(tuned_vecs, base_vecs, atol=1e-3)  # it learned something


def test_trained_model_ranks_held_out_answers_higher(trained):
    model, _ = trained
    before = _ranking(SentenceTransformerEmbedder(), HELD_OUT)
    after = _ranking(SentenceTransformerEmbedder(model.path), HELD_OUT)

    assert after["hit@5"] >= before["hit@5"]
    assert after["hit@1"] >= before["hit@1"]  # the right passage comes first at least as often
    assert after["mrr@10"] > before["mrr@10"]  # and ranks higher overall (0.80 -> 0.95 when measured)


def test_history_has_one_entry_per_epoch_and_reaches_the_caller(trained):
    model, epochs = trained
    assert [row["epoch"] for row in model.history] == [1, 2]
    assert epochs == model.history  # on_epoch saw every epoch, in order, as recorded
    for row in model.history:
        assert row["loss"] > 0 and row["seconds"] > 0
        assert 0 <= row["hit@5"] <= 1 and 0 <= row["mrr@10"] <= 1
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    assert model.examples == len(TRAIN) and model.peak_rss_mb > 100 and model.seconds > 0
    assert model.config == CONFIG


def test_tuning_tries_each_trial_and_keeps_the_best(cluster, storage, tmp_path):
    out = tmp_path / "best"
    # One CPU per trial: both trials run at once on a 2-core machine.
    result = tune_embedder(bundled_minilm_path(), TRAIN[:20], out, TrainConfig(epochs=1, batch_size=10),
                           RayConfig(storage=storage, cpus_per_worker=1), trials=2, eval_pairs=HELD_OUT[:10])

    assert len(result.trials) == 2
    for trial in result.trials:
        assert trial["error"] is None
        assert 1e-5 <= trial["learning_rate"] <= 1e-4 and trial["epochs"] in (1, 2)
        assert 0 <= trial["hit@5"] <= 1
    best = result.best
    assert best.history[-1]["hit@5"] == max(t["hit@5"] for t in result.trials)
    assert best.config.learning_rate in [t["learning_rate"] for t in result.trials]
    assert len(best.history) == best.config.epochs
    assert SentenceTransformerEmbedder(out).embed(["burn cap"]).shape == (1, 384)
    assert not any(storage.glob("embedder-tune-*"))  # the run's checkpoints were cleaned up


@pytest.mark.parametrize("case", ["no pairs", "not a model", "batch of one", "empty query", "no eval pairs"])
def test_bad_input_is_refused_before_anything_runs(case, tmp_path):
    base, pairs, config = bundled_minilm_path(), TRAIN, TrainConfig()
    ray = RayConfig(storage=tmp_path / "runs")
    if case == "no pairs":
        pairs = []
    elif case == "not a model":
        base = tmp_path / "junk"
        base.mkdir()
        (base / "weights.bin").write_bytes(b"\0" * 16)
    elif case == "batch of one":
        config = TrainConfig(batch_size=1)
    elif case == "empty query":
        pairs = [*TRAIN[:3], Pair(query="  ", positive="text")]
    with pytest.raises(InvalidRequest):
        if case == "no eval pairs":
            tune_embedder(base, pairs, tmp_path / "out", config, ray, trials=2, eval_pairs=())
        else:
            train_embedder(base, pairs, tmp_path / "out", config, ray)
    assert not (tmp_path / "out").exists()


def test_a_non_empty_output_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("someone's model")
    with pytest.raises(InvalidRequest):
        train_embedder(bundled_minilm_path(), TRAIN, out, TrainConfig(), RayConfig(storage=tmp_path / "runs"))
    assert (out / "keep.txt").read_text() == "someone's model"
