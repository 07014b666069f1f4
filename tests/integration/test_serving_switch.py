"""Serving a trained embedder: re-index while search answers, atomic switch, rollback, restart, canary.

Real Chroma and SQLite under a temporary folder. The "trained" version is the bundled MiniLM
with its word embeddings perturbed (seeded): same tokenizer, visibly different vectors.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import build_engine, served_adapter
from bot.api import create_app
from core.config import IngestSettings, LLMSettings, ModelsSettings, Settings
from core.errors import InvalidRequest, NotFound
from core.index.serving import ChromaCollection
from core.models import Feedback
from core.store.database import Database
from core.store.served import ServedModels

EMBEDDER, ADAPTER = "imp-embedder", "imp-answer-adapter"
HOTEL = "How much is the hotel allowance in Europe?"
ZEPHYR = "Zephyr lab coffee machine PIN"
CORPUS = ("handbook.md", "security-policy.html", "q3-planning.eml", "design-review.vtt")


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Our own sample files, read in this process: the loader sandbox is not what these tests are about."""
    return Settings(data_dir=tmp_path / "data", ingest=IngestSettings(loader_workers=0))


@pytest.fixture
def corpus(samples) -> list[Path]:
    return [samples / name for name in CORPUS]


def _slots(engine) -> dict:
    return {m.slot: m for m in engine.served_models() if m.name == EMBEDDER}


def _visible(engine) -> int:
    return sum(d.chunks for d in engine.documents())


def _vectors(settings: Settings, collection: str, doc_id: str | None = None) -> int:
    store = ChromaCollection(collection, path=settings.data_dir / "chroma")
    try:
        return store.count(doc_id)
    finally:
        store.close()


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _top_similarity(engine, query: str) -> float:
    return engine.search(query, k=1, mode="dense")[0].similarity


def test_a_trained_embedder_is_served_after_a_reindex_search_never_notices(engine, settings, corpus, trained,
                                                                           tmp_path):
    engine.ingest(corpus)
    base = _slots(engine)["champion"]
    assert base.version == "base" and base.path is None
    before = _top_similarity(engine, HOTEL)
    corpus = _visible(engine)

    errors: list[BaseException] = []
    searched: list[str] = []
    stop, going = threading.Event(), threading.Event()

    def search_all_along() -> None:
        while not stop.is_set():
            try:
                hits = engine.search(HOTEL, k=3)
                assert hits and "180 EUR" in hits[0].chunk.text
                searched.append(engine.ask(HOTEL).embedder)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            if len(searched) >= 2 or errors:
                going.set()

    late = _write(tmp_path / "late", "zephyr.md", "# Zephyr lab\n\nThe Zephyr lab coffee machine PIN is 4417. "
                  "Ask Marta before changing it.\n")
    steps: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        if not steps:
            assert going.wait(60), "searches did not start"
            # Committed after the re-index listed what to embed: the switch must still catch it.
            assert engine.ingest([late])[0].chunks > 0
        steps.append((done, total))

    searcher = threading.Thread(target=search_all_along)
    searcher.start()
    try:
        report = engine.serve_model(EMBEDDER, "1", trained, progress=progress)
    finally:
        stop.set()
        searcher.join()

    assert not errors, errors
    assert searched and set(searched) <= {"base", "1"}
    assert (report.name, report.slot, report.version, report.previous_version) == (EMBEDDER, "champion", "1", "base")
    assert steps[0] == (0, corpus) and steps[-1] == (corpus, corpus)
    assert report.embedded == _visible(engine) > corpus and report.deleted == 0

    champion = _slots(engine)["champion"]
    assert champion.version == "1" and champion.path == str(trained) and champion.since is not None
    assert champion.collection == report.collection != base.collection
    assert _vectors(settings, champion.collection) == _visible(engine)
    assert _top_similarity(engine, HOTEL) != pytest.approx(before, abs=1e-4)  # the new model's vectors
    assert engine.search(ZEPHYR, k=1, mode="dense")[0].chunk.source.endswith("zephyr.md")

    answer = engine.ask(HOTEL)
    assert not answer.abstained and "180 EUR" in answer.text
    assert answer.embedder == "1" and engine.answer(answer.answer_id).embedder == "1"


def test_rollback_embeds_only_the_delta_and_a_restart_serves_the_champion(engine, settings, embedder, corpus,
                                                                          trained, tmp_path, caplog):
    engine.ingest(corpus)
    engine.serve_model(EMBEDDER, "1", trained)
    added = engine.ingest([_write(tmp_path / "new", "zephyr.md", "The Zephyr lab coffee machine PIN is 4417.\n")])[0]

    back = engine.serve_model(EMBEDDER, "base", None)
    assert (back.version, back.previous_version) == ("base", "1")
    assert back.embedded == added.chunks  # the kept base collection only missed what came after the switch
    assert engine.ask(HOTEL).embedder == "base"
    assert engine.search(ZEPHYR, k=1, mode="dense")[0].chunk.doc_id == added.doc_id

    engine.delete(added.doc_id)
    again = engine.serve_model(EMBEDDER, "1", trained)
    assert again.embedded == 0 and again.deleted == added.chunks  # removed while version 1 rested
    engine.close()

    restarted = build_engine(settings, embedder=embedder)
    try:
        assert _slots(restarted)["champion"].version == "1"
        assert restarted.ask(HOTEL).embedder == "1"
    finally:
        restarted.close()

    # Version 2 was promoted, then its folder went missing: start anyway, on the base model, and say so.
    pointers = ServedModels(Database(settings.database_url))
    pointers.put(EMBEDDER, "champion", "2", path=str(tmp_path / "imp-embedder-2"), model_id=None, collection=None)
    with caplog.at_level("WARNING"):
        fallback = build_engine(settings, embedder=embedder)
    try:
        assert any("version 2" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
        assert any("BASE EMBEDDER" in r.getMessage() for r in caplog.records)
        assert _slots(fallback)["champion"].version == "base"
        answer = fallback.ask(HOTEL)
        assert answer.embedder == "base" and "180 EUR" in answer.text
    finally:
        fallback.close()


def test_another_process_notices_a_switch_and_catches_up(settings, embedder, corpus, trained, tmp_path):
    serving, training = build_engine(settings, embedder=embedder), build_engine(settings, embedder=embedder)
    try:
        serving.ingest(corpus)
        assert serving.ask(HOTEL).embedder == "base"
        training.serve_model(EMBEDDER, "1", trained)
        # Ingested by the serving process before it notices: written to the base collection only.
        late = serving.ingest([_write(tmp_path / "late", "zephyr.md", "The Zephyr lab coffee machine PIN is 4417.\n")])
        deadline = time.monotonic() + 15
        while serving.ask(HOTEL).embedder != "1":
            assert time.monotonic() < deadline, "the switch was not noticed"
            time.sleep(0.2)
        collection = _slots(serving)["champion"].collection
        deadline = time.monotonic() + 15  # the delta sync runs right after the swap
        while _vectors(settings, collection, late[0].doc_id) != late[0].chunks:
            assert time.monotonic() < deadline, "the document ingested meanwhile never reached the new collection"
            time.sleep(0.2)
        assert training.search(ZEPHYR, k=1, mode="dense")[0].chunk.doc_id == late[0].doc_id
    finally:
        serving.close()
        training.close()


def test_a_canary_routes_its_share_to_the_challenger_and_feedback_counts_per_version(settings, embedder, corpus,
                                                                                      trained, tmp_path):
    canary = settings.model_copy(update={"models": ModelsSettings(canary_share=1.0)})
    engine = build_engine(canary, embedder=embedder)
    quiet = build_engine(settings, embedder=embedder)  # share 0: another replica without the canary
    try:
        engine.ingest(corpus)
        report = engine.serve_model(EMBEDDER, "1", trained, slot="challenger")
        assert (report.slot, report.previous_version) == ("challenger", None)
        slots = _slots(engine)
        assert slots["champion"].version == "base" and slots["challenger"].version == "1"

        routed = engine.ask(HOTEL)
        assert routed.embedder == "1"
        with TestClient(create_app(engine)) as api:
            assert api.post("/v1/ask", json={"question": HOTEL}).json()["embedder"] == "1"
        assert quiet.ask(HOTEL).embedder == "base"
        # Plain search stays on the champion unless asked for the challenger.
        champion_sim = _top_similarity(engine, HOTEL)
        assert champion_sim == pytest.approx(_top_similarity(quiet, HOTEL), abs=1e-5)
        challenger_sim = engine.search(HOTEL, k=1, mode="dense", slot="challenger")[0].similarity
        assert challenger_sim != pytest.approx(champion_sim, abs=1e-4)

        plain = quiet.ask(HOTEL)
        now = plain.created_at
        for answer, user, rating in ((routed, "ana", 1), (routed, "ben", 1), (routed, "cy", -1), (plain, "ana", -1)):
            engine.record_feedback(Feedback(answer.answer_id, user, "C1", rating, now))
        engine.retract_feedback(routed.answer_id, "ben", 1)
        assert engine.feedback_by_version(EMBEDDER) == {"1": (1, 1), "base": (0, 1)}

        # Ingested and deleted while both serve: written to both collections, removed from both.
        doc = engine.ingest([_write(tmp_path / "new", "zephyr.md", "The Zephyr lab coffee machine PIN is 4417.\n")])[0]
        collections = [m.collection for m in _slots(engine).values()]
        assert [_vectors(settings, c, doc.doc_id) for c in collections] == [doc.chunks, doc.chunks]
        engine.delete(doc.doc_id)
        assert [_vectors(settings, c, doc.doc_id) for c in collections] == [0, 0]

        assert engine.retire(EMBEDDER) is True and "challenger" not in _slots(engine)
        assert engine.ask(HOTEL).embedder == "base"  # the whole share goes to the champion again
        with pytest.raises(InvalidRequest):
            engine.retire(EMBEDDER, "champion")
    finally:
        engine.close()
        quiet.close()


def test_an_answer_adapter_is_recorded_and_applied_at_the_next_start(engine, settings, tmp_path, caplog):
    with pytest.raises(NotFound):
        engine.serve_model(ADAPTER, "2", tmp_path / "nowhere")
    folder = tmp_path / "adapter-2"
    folder.mkdir()
    report = engine.serve_model(ADAPTER, "2", folder)
    assert report.restart_required and (report.version, report.previous_version) == ("2", None)
    assert {(m.name, m.slot, m.version) for m in engine.served_models()} >= {(ADAPTER, "champion", "2")}

    served = ServedModels(Database(settings.database_url))
    transformers = settings.model_copy(update={"llm": LLMSettings(backend="transformers")})
    assert served_adapter(transformers, served) == (folder, "2")
    assert served_adapter(settings, served) == (None, None)  # extractive answers use no adapter
    folder.rmdir()
    with caplog.at_level("WARNING"):
        assert served_adapter(transformers, served) == (None, "base")
    assert any("BASE ADAPTER" in r.getMessage() for r in caplog.records)
