"""Retention: what is older than IMP_RETENTION__DAYS goes, legal holds keep theirs, documents stay searchable.

Answers, ratings, chat links, uploads, transcripts and jobs are made through the real
engine and stores, then dated back through the database (the only way to be 100 days
old inside a test). What an operator notices is asserted: the old answer is gone with
its ratings, the held scope's are not, the upload's file left the disk while its
document is still found by search, a dry run deletes nothing, each purge is recorded,
and a second purge finds nothing more.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from app import build_purge, build_retention
from bot.chat.state import ChatState
from bot.chat.state import PostRow as ChatPostRow  # the chat_posts table, the chat layer's own
from cli import cli
from core.errors import InvalidRequest, NotFound
from core.models import Feedback, JobStatus, SpeechSegment, Transcript
from core.store.database import Database
from core.store.jobs import JobStore
from core.store.retention import KINDS, Retention
from core.store.schema import AnswerRow, DocumentRow, FeedbackRow, JobRow, TranscriptRow
from core.store.transcripts import TranscriptStore
from ops.retention import run_purge

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
OLD, HELD = "C0OLD", "C0HELD"
LEAVE = "How many weeks of parental leave do parents receive?"
SECRETS = "How often do service credentials rotate?"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


AGO = _now() - timedelta(days=100)


def _age(engine, table, *where, column: str = "created_at") -> None:
    """Date rows back 100 days, as if they had been made then."""
    with engine.database.session() as s, s.begin():
        assert s.execute(update(table).where(*where).values({column: AGO})).rowcount


def _count(engine, table) -> int:
    with engine.database.session() as s:
        return int(s.scalar(select(func.count()).select_from(table)))


def _upload(engine, name: str, scope: str) -> tuple[str, Path]:
    result = engine.ingest_upload(name, io.BytesIO((SAMPLES / name).read_bytes()), scope=scope)
    assert result.error is None, result.error
    stored = Path(engine.document(result.doc_id).extra["stored_path"])
    assert stored.is_file()
    return result.doc_id, stored


def _transcript(engine, doc_id: str) -> None:
    version = engine.document(doc_id).version
    TranscriptStore(engine.database).save(doc_id, version, Transcript(
        duration=4.0, language="en", model="test", segments=[SpeechSegment(0.0, 4.0, "We ship on Friday.", "S1")]))
    assert engine.transcript(doc_id).segments


def _rate(engine, answer_id: str, user: str, channel: str, rating: int = 1) -> None:
    assert engine.record_feedback(Feedback(answer_id, user, channel, rating, _now()))


@pytest.fixture
def world(engine, settings):
    """Old and new things in an ordinary scope, old things in a held one, and work still queued."""
    retention = build_retention(settings, engine.database)
    chat = ChatState(engine.database)
    w: dict = {"retention": retention}

    # Uploads: an old one (its original goes), a held one, a new one, and an old one a queued job reads.
    w["handbook"], w["handbook_file"] = _upload(engine, "handbook.md", OLD)
    w["policy"], w["policy_file"] = _upload(engine, "security-policy.html", HELD)
    w["prices"], w["prices_file"] = _upload(engine, "price-list.csv", OLD)
    w["review"], w["review_file"] = _upload(engine, "design-review.vtt", OLD)
    for doc in (w["handbook"], w["policy"], w["review"]):
        _age(engine, DocumentRow, DocumentRow.doc_id == doc, column="updated_at")
    queued = JobStore(engine.database).create("minutes", OLD, w["review"], params={"doc_id": w["review"]})
    assert queued.status == JobStatus.QUEUED

    # Transcripts: an old one, a held one, and an old one of the document the queued job reads.
    for doc in (w["handbook"], w["policy"], w["review"]):
        _transcript(engine, doc)
        _age(engine, TranscriptRow, TranscriptRow.doc_id == doc)

    # Answers with their chat messages and ratings.
    w["old"] = engine.ask(LEAVE, scopes=[OLD]).answer_id
    w["held"] = engine.ask(SECRETS, scopes=[HELD]).answer_id
    w["rated_in_held"] = engine.ask(LEAVE, scopes=[OLD]).answer_id  # rated in the held channel: kept
    w["new"] = engine.ask(LEAVE, scopes=[OLD]).answer_id
    for ts, aid, channel in (("1.1", w["old"], OLD), ("1.2", w["held"], HELD), ("1.3", w["new"], OLD)):
        chat.link_answer(channel, ts, aid)
    _rate(engine, w["old"], "U0ALICE", OLD)
    _rate(engine, w["old"], "U0BOB", OLD, -1)
    _rate(engine, w["held"], "U0ALICE", HELD)
    _rate(engine, w["rated_in_held"], "U0BOB", HELD)
    _rate(engine, w["new"], "U0ALICE", OLD)
    for aid in (w["old"], w["held"], w["rated_in_held"]):
        _age(engine, AnswerRow, AnswerRow.answer_id == aid)
        _age(engine, FeedbackRow, FeedbackRow.answer_id == aid)
    _age(engine, ChatPostRow, ChatPostRow.answer_id.in_([w["old"], w["held"]]))

    # Jobs: a finished ingest (its upload was placed: no file of its own), and a failed minutes job
    # whose input a crash left behind.
    job = engine.submit_upload("q3-planning.eml", io.BytesIO((SAMPLES / "q3-planning.eml").read_bytes()), scope=OLD)
    w["ingest_job"] = _wait(engine, job.job_id).job_id
    leftover = settings.data_dir / "files" / "minutes" / uuid.uuid4().hex / "standup.vtt"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes((SAMPLES / "design-review.vtt").read_bytes())
    jobs = JobStore(engine.database)
    w["minutes_job"] = jobs.create("minutes", OLD, "upload:standup.vtt", params={"path": str(leftover)}).job_id
    jobs.finish(w["minutes_job"], result=None, error="the service stopped while writing these minutes")
    w["leftover"] = leftover
    for job_id in (w["ingest_job"], w["minutes_job"]):
        _age(engine, JobRow, JobRow.job_id == job_id, column="updated_at")

    retention.hold(HELD, "matter 2024-117")
    return w


def _wait(engine, job_id: str):
    import time

    deadline = time.monotonic() + 120
    while (job := engine.job(job_id)).status in (JobStatus.QUEUED, JobStatus.RUNNING):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job.status == JobStatus.DONE, job.error
    return job


EXPECTED = {"answers": 1, "chat_posts": 1, "feedback": 2, "transcripts": 1, "uploads": 1, "jobs": 2, "files": 2}


def test_purge_removes_only_what_is_old_and_unheld_and_documents_stay_searchable(engine, world):
    w, retention = world, world["retention"]
    tables = (AnswerRow, FeedbackRow, ChatPostRow, TranscriptRow, JobRow)
    before = {t.__tablename__: _count(engine, t) for t in tables}

    dry = retention.purge(90, dry_run=True)
    assert dry.dry_run and dry.purged == EXPECTED and dry.held == (HELD,)
    assert {t.__tablename__: _count(engine, t) for t in tables} == before  # a dry run deletes nothing
    assert w["handbook_file"].is_file() and w["leftover"].is_file()
    assert engine.document(w["handbook"]).extra["stored_path"] == str(w["handbook_file"])
    assert retention.runs() == []  # and is not a purge on record

    report = retention.purge(90)
    assert report.purged == dry.purged == EXPECTED
    assert report.cutoff == report.ran_at - timedelta(days=90)

    # The old answer went with its chat message and its ratings; the held and the new stayed.
    with pytest.raises(NotFound):
        engine.answer(w["old"])
    assert engine.feedback(w["old"]) == []
    chat = ChatState(engine.database)
    assert chat.answer_at(OLD, "1.1") is None
    assert chat.answer_at(HELD, "1.2") == w["held"] and chat.answer_at(OLD, "1.3") == w["new"]
    for aid in (w["held"], w["rated_in_held"], w["new"]):
        assert engine.answer(aid).answer_id == aid and len(engine.feedback(aid)) == 1

    # The old original left the disk and the row no longer points at it; the document is still found.
    handbook = engine.document(w["handbook"])
    assert not w["handbook_file"].exists() and not w["handbook_file"].parent.exists()
    assert handbook.extra["stored_path"] is None and handbook.chunks > 0
    hits = engine.search("weeks of parental leave", scopes=[OLD])
    assert hits and hits[0].chunk.doc_id == w["handbook"]
    with pytest.raises(NotFound, match="no longer available"):
        engine.meeting(w["handbook"], scopes=[OLD])  # minutes of it now say so, instead of failing oddly

    # Held, new, and needed by queued work: kept, files included.
    for doc, path in ((w["policy"], w["policy_file"]), (w["prices"], w["prices_file"]),
                      (w["review"], w["review_file"])):
        assert path.is_file() and engine.document(doc).extra["stored_path"] == str(path)
    with pytest.raises(NotFound):
        engine.transcript(w["handbook"])
    assert engine.transcript(w["policy"]).segments and engine.transcript(w["review"]).segments

    # Finished jobs went, with the input a crash left behind; the queued one stays.
    for job_id in (w["ingest_job"], w["minutes_job"]):
        with pytest.raises(NotFound):
            engine.job(job_id)
    assert not w["leftover"].parent.exists()
    assert JobStore(engine.database).unfinished()

    [run] = retention.runs()
    assert run.purged == EXPECTED and run.cutoff == report.cutoff

    again = retention.purge(90)
    assert again.total == 0 and set(again.purged) == set(KINDS)
    assert [r.total for r in retention.runs()] == [0, sum(EXPECTED.values())]

    # Lifting the hold lets the held scope's old items go at the next purge.
    retention.release(HELD)
    released = retention.purge(90)
    assert released.purged["answers"] == 2 and released.purged["uploads"] == 1 and released.purged["transcripts"] == 1
    assert not w["policy_file"].exists() and engine.search("credentials rotate", scopes=[HELD])
    assert engine.answer(w["new"]).answer_id == w["new"] and w["prices_file"].is_file()


def test_the_scheduled_purge_counts_what_went_and_never_raises(engine, settings, world, tmp_path):
    # One row per transaction walks every batch boundary, held rows included: the same verdicts.
    tiny = Retention(engine.database, settings.data_dir / "files", batch=1, participants=[ChatState(engine.database)])
    assert tiny.purge(90, dry_run=True).purged == EXPECTED

    counted: list[dict] = []
    result = build_purge(settings, engine, on_purged=counted.append)()
    assert result["ok"] and result["purged"] == EXPECTED and counted == [EXPECTED]

    def broken_hook(counts: dict) -> None:
        raise RuntimeError("metrics are down")

    assert run_purge(world["retention"], days=90, on_purged=broken_hook)["ok"]  # the purge still counts as done

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be")
    failed = run_purge(Retention(Database(f"sqlite:///{blocked}/imp.sqlite3"), tmp_path / "files"), days=90,
                       on_purged=counted.append)
    assert not failed["ok"] and failed["error"].startswith("internal error (ref ") and len(counted) == 1
    assert run_purge(world["retention"], days=0)["code"] == "invalid_request"


def test_holds_validate_their_scope_and_reason(engine, settings):
    retention = build_retention(settings, engine.database)
    for bad in ("", "a b", "x" * 201, "C1\n", "../etc"):
        with pytest.raises(InvalidRequest):
            retention.hold(bad)
    with pytest.raises(InvalidRequest):
        retention.hold("C1", "r" * 501)
    first = retention.hold("C1", "matter\x1b[31m 1")
    assert first.reason == "matter [31m 1"
    assert retention.hold("C1", "matter 2").since == first.since  # held again: the reason changes, not the date
    assert [h.reason for h in retention.holds()] == ["matter 2"]
    with pytest.raises(NotFound):
        retention.release("C2")


def test_cli_holds_and_purges_and_refuses_bad_input(tmp_path):
    runner = CliRunner()
    env = {"IMP_DATA_DIR": str(tmp_path / "data")}

    def imp(*args: str):  # noqa: ANN202
        return runner.invoke(cli, ["retention", *args], env=env)

    assert imp("hold", "C0LEGAL", "--reason", "matter 7").exit_code == 0
    holds = json.loads(imp("holds", "--json").output)["holds"]
    assert [(h["scope"], h["reason"]) for h in holds] == [("C0LEGAL", "matter 7")]
    bad = imp("hold", "not a scope")
    assert bad.exit_code == 2 and "invalid scope" in bad.output
    missing = imp("release", "C0OTHER")
    assert missing.exit_code == 2 and "not under legal hold" in missing.output
    assert imp("purge", "--days", "0").exit_code == 2

    dry = json.loads(imp("purge", "--dry-run", "--json").output)
    assert dry["dry_run"] and dry["days"] == 90 and dry["held"] == ["C0LEGAL"]
    assert set(dry["purged"]) == set(KINDS) and not any(dry["purged"].values())
    assert json.loads(imp("runs", "--json").output)["runs"] == []
    done = imp("purge", "--days", "30")
    assert done.exit_code == 0 and "30 days" in done.output
    assert [r["days"] for r in json.loads(imp("runs", "--json").output)["runs"]] == [30]
    assert imp("release", "C0LEGAL").exit_code == 0
    assert json.loads(imp("holds", "--json").output)["holds"] == []
