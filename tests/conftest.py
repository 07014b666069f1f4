"""Shared fixtures: real components on temporary folders, one embedding model per test run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest

from app import build_engine
from core.config import Settings
from core.index.embedders import make_embedder

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """Tests never inherit IMP_* settings from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("IMP_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def embedder():
    """The bundled all-MiniLM-L6-v2, loaded once per test run."""
    e = make_embedder("sentence-transformers", None)
    e.warm_up()
    return e


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def engine(settings, embedder):
    engine = build_engine(settings, embedder=embedder)
    yield engine
    engine.close()  # a run of hundreds of tests must not pile up open files


RECORDINGS = ("*.m4a", "*.mp3", "*.mp4", "*.wav")


@pytest.fixture
def samples(tmp_path) -> Path:
    """A private copy of the sample documents, safe to modify.

    Without the sample recording: transcribing it would add seconds to every test that
    ingests the corpus. ``sample_corpus`` has everything `make run` ingests.
    """
    dest = tmp_path / "samples"
    shutil.copytree(SAMPLES, dest, ignore=shutil.ignore_patterns(".*", *RECORDINGS))
    return dest


@pytest.fixture
def sample_corpus(tmp_path) -> Path:
    """The whole sample corpus as `make run` ingests it, the recorded stand-up included."""
    dest = tmp_path / "corpus"
    shutil.copytree(SAMPLES, dest)
    return dest


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster of our own on 127.0.0.1 (tests/support/servers.py), started once when first needed."""
    from tests.support.servers import postgres_cluster

    with postgres_cluster() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or a new database in the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'imp.sqlite3'}"
    from tests.support.servers import new_database

    return new_database(request.getfixturevalue("postgres"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A stand-in for a fine-tuned embedder: the bundled MiniLM with its word embeddings perturbed (seeded),
    saved as a sentence-transformers folder: same tokenizer, visibly different vectors."""
    import torch
    from sentence_transformers import SentenceTransformer

    from core.index.embedders import bundled_minilm_path

    model = SentenceTransformer(str(bundled_minilm_path()), device="cpu", local_files_only=True)
    with torch.no_grad():
        weights = model[0].auto_model.embeddings.word_embeddings.weight
        noise = torch.randn(weights.shape, generator=torch.Generator().manual_seed(1))
        weights.add_(noise * weights.std() * 0.8)
    folder = tmp_path_factory.mktemp("registry") / "imp-embedder-1"
    model.save(str(folder))
    return folder

