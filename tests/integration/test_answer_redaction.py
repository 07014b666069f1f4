"""A stored answer never serves again the text of a document deleted, or replaced, since it was given.

Answers are asked and read back over REST (the real FastAPI app on the real engine):
first the answer is shown whole, then its document is deleted or replaced, and the
same GET shows neither the cited passage nor the sentences that rested on it, and
says that sources were removed. Answers citing two documents are stored through the
real answer log with passages the real index retrieved, so the test can choose which
sentence rests on which source.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.api import create_app
from core.answer.redaction import redact
from core.models import Answer, Chunk, Citation
from core.store.answers import AnswerLog

HOTEL = "What is the hotel limit per night in Europe?"
LUNCH_DOC = ("# Cafeteria\n\nThe staff cafeteria serves lunch from 11:30 to 14:00. The vegetarian dish "
             "of the day costs 6.50 EUR.\n")
LAUNCH_V1 = "# Launch\n\nThe Falcon product launch is planned for 3 March in Rotterdam, with 40 guests.\n"
LAUNCH_V2 = "# Launch\n\nThe Falcon product launch moved to 9 June in Antwerp, with 60 guests.\n"


@pytest.fixture
def api(engine):
    with TestClient(create_app(engine)) as client:
        yield client


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _doc_id(engine, name: str) -> str:
    return next(d.doc_id for d in engine.documents() if d.source.endswith(name))


def _stored(engine, text: str, chunks: list[Chunk]) -> str:
    """An answer citing ``chunks`` as [1], [2]..., kept in the engine's answer log; returns its id."""
    answer = Answer(answer_id=uuid.uuid4().hex, question="What do the policies say?", text=text, abstained=False,
                    citations=[Citation(n, c) for n, c in enumerate(chunks, 1)], scopes=["default"],
                    model="extractive", timings_ms={"retrieve": 1.0, "generate": 1.0, "total": 2.0},
                    created_at=datetime.now(UTC).replace(tzinfo=None))
    AnswerLog(engine.database, engine.registry).save(answer, search_query=answer.question)
    return answer.answer_id


def test_an_answer_from_a_deleted_document_no_longer_shows_its_text(engine, api, samples):
    engine.ingest([samples / "handbook.md", samples / "price-list.csv"])
    asked = api.post("/v1/ask", json={"question": HOTEL}).json()
    assert "180 EUR" in asked["answer"] and asked["citations"]
    assert "180 EUR" in api.get(f"/v1/answers/{asked['answer_id']}").json()["answer"]  # whole while it exists

    assert api.delete(f"/v1/documents/{_doc_id(engine, 'handbook.md')}").status_code == 200
    resp = api.get(f"/v1/answers/{asked['answer_id']}")
    assert resp.status_code == 200
    shown = resp.json()
    served = json.dumps(shown)
    assert "180 EUR" not in served and "Hotel costs" not in served and "handbook" not in served
    assert shown["citations"] == [] and shown["abstained"] is True
    assert "no longer available" in shown["answer"] and "deleted" in shown["answer"]


def test_only_the_sentences_resting_on_a_removed_source_are_removed(engine, api, samples, tmp_path):
    engine.ingest([samples / "handbook.md", _write(tmp_path / "docs", "cafeteria.md", LUNCH_DOC)])
    hotel = engine.search("hotel costs reimbursed per night in Europe", 1)[0].chunk
    lunch = engine.search("when does the cafeteria serve lunch", 1)[0].chunk
    assert "180 EUR" in hotel.text and "11:30" in lunch.text
    answer_id = _stored(engine, "Hotel costs are reimbursed up to 180 EUR per night in Europe [1]. Receipts: yes. "
                                "The staff cafeteria serves lunch from 11:30 to 14:00 [2]. Daily. "
                                "Both policies apply to every office [1][2].", [hotel, lunch])

    engine.delete(_doc_id(engine, "cafeteria.md"))
    shown = api.get(f"/v1/answers/{answer_id}").json()
    assert shown["answer"].startswith("Hotel costs are reimbursed up to 180 EUR per night in Europe [1]. "
                                      "Receipts: yes. (1 source of this answer was deleted")
    assert "11:30" not in json.dumps(shown) and "Daily" not in shown["answer"] and "Both" not in shown["answer"]
    assert [(c["n"], c["doc_id"]) for c in shown["citations"]] == [(1, hotel.doc_id)]  # [1] still means [1]
    assert shown["abstained"] is False


def test_a_document_replaced_by_a_new_version_takes_its_old_text_out_of_answers(engine, api, tmp_path):
    folder = tmp_path / "docs"
    engine.ingest([_write(folder, "launch.md", LAUNCH_V1)])
    asked = api.post("/v1/ask", json={"question": "When and where is the Falcon launch?"}).json()
    assert "3 March" in asked["answer"]

    engine.ingest([_write(folder, "launch.md", LAUNCH_V1)])  # the same content again: a new version it is not
    assert "3 March" in api.get(f"/v1/answers/{asked['answer_id']}").json()["answer"]

    engine.ingest([_write(folder, "launch.md", LAUNCH_V2)])
    shown = api.get(f"/v1/answers/{asked['answer_id']}").json()
    assert "3 March" not in json.dumps(shown) and "Rotterdam" not in json.dumps(shown)
    assert shown["citations"] == [] and "replaced" in shown["answer"]


def test_redaction_keeps_an_answer_whose_sources_are_all_there_as_it_was(engine, samples):
    engine.ingest([samples / "handbook.md"])
    answer = engine.ask(HOTEL)
    again = engine.answer(answer.answer_id)
    assert (again.text, again.citations, again.abstained) == (answer.text, answer.citations, answer.abstained)
    assert again.removed_sources == 0


def test_the_notes_of_a_redacted_answer_quote_nothing_that_was_removed():
    """Validation's notes may quote a dropped draft sentence; a redacted answer keeps only its own note."""
    gone = Chunk("c9", "d9", "v1", 0, "upload:salaries.md", "default", "The CEO earns 900,000 EUR a year.")
    answer = Answer("a" * 32, "What does the CEO earn?", "The CEO earns 900,000 EUR a year [1].", False,
                    [Citation(1, gone)], ["default"], "extractive", {}, datetime(2026, 1, 5),
                    notes=["dropped a sentence no source supports: 'The CEO also gets 900,000 EUR in shares'"])
    redacted = redact(answer, visible=set())
    assert "900,000" not in redacted.text + " ".join(redacted.notes)
    assert redacted.removed_sources == 1 and redacted.citations == []


@pytest.mark.parametrize("text", ["[1" + ",1" * 20000, "[" + "1" * 40000, "a [1]. " * 6000, " " * 40000 + "[1]"],
                         ids=["commas", "digits", "sentences", "spaces"])
def test_redacting_a_hostile_answer_text_takes_linear_time(text):
    gone = Chunk("c1", "d1", "v1", 0, "upload:x.md", "default", "x")
    answer = Answer("a" * 32, "q", text, False, [Citation(1, gone)], ["default"], "extractive", {},
                    datetime(2026, 1, 5))
    started = time.perf_counter()
    assert redact(answer, visible=set()).citations == []
    assert time.perf_counter() - started < 1.0  # milliseconds; generous against a quadratic regex


def test_minutes_of_a_document_deleted_since_no_longer_show_its_quotes(api, engine, samples):
    """The sibling of a stored answer: a minutes job's result quotes the document it was written from."""
    engine.ingest([samples / "design-review.vtt"])
    doc_id = _doc_id(engine, "design-review.vtt")
    job_id = api.post("/v1/minutes", data={"doc_id": doc_id}).json()["job_id"]
    deadline = time.monotonic() + 60
    while (job := api.get(f"/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "done" and job["result"]["summary"]
    assert api.delete(f"/v1/documents/{doc_id}").status_code == 200
    after = api.get(f"/v1/jobs/{job_id}").json()
    assert after["result"] is None
    assert "deleted" in after["error"]
    summary = job["result"]["summary"]
    assert isinstance(summary, str) and summary[:40] not in json.dumps(after, ensure_ascii=False)
