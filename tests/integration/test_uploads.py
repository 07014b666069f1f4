"""Uploaded files on disk: refused at their limit while they stream, kept only while needed.

What a user (or an operator watching the disk) notices: refused and failed uploads leave
nothing behind, a failed re-upload never breaks the version still shown, minutes inputs
go when their job ends, and the file a visible version rests on stays.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import build_engine
from bot.api import create_app
from core.config import IngestSettings, Settings, SpeechSettings
from core.models import IngestStatus, JobStatus
from core.store.jobs import JobStore

VTT = (Path(__file__).resolve().parents[2] / "samples" / "design-review.vtt").read_bytes()


def _files(settings: Settings) -> list[Path]:
    folder = settings.data_dir / "files"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _wait(engine, job_id: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while (job := engine.job(job_id)).status in (JobStatus.QUEUED, JobStatus.RUNNING):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


@pytest.fixture
def small(tmp_path, embedder):
    """An engine taking documents up to 16 KiB and recordings up to 1 MiB."""
    settings = Settings(data_dir=tmp_path / "data", ingest=IngestSettings(max_file_mb=1 / 64),
                        speech=SpeechSettings(max_file_mb=1))
    engine = build_engine(settings, embedder=embedder)
    yield engine, settings
    engine.close()


class Endless(io.RawIOBase):
    """An upload that never ends, counting what was read of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = b"x" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def test_four_uploads_over_the_document_limit_leave_nothing_on_disk(small):
    engine, settings = small
    big = b"A line of a long text file.\n" * 1000  # 28 KB, above the 16 KiB document limit
    with TestClient(create_app(engine)) as http:
        r = http.post("/v1/documents", files=[("files", (f"big{i}.txt", big)) for i in range(4)])
        assert [d["status"] for d in r.json()["documents"]] == ["failed"] * 4
        assert all("IMP_INGEST__MAX_FILE_MB" in d["error"] for d in r.json()["documents"])
        jobs = http.post("/v1/documents", params={"background": "true"},
                         files=[("files", ("big.txt", big)), ("files", ("ok.txt", b"A small note.\n"))]).json()["jobs"]
        assert jobs[0]["status"] == "failed" and "IMP_INGEST__MAX_FILE_MB" in jobs[0]["error"]
        assert jobs[0]["result"]["error_code"] == "too_large"
        assert _wait(engine, jobs[1]["job_id"]).status == JobStatus.DONE  # one refused file fails alone
    assert [p.name for p in _files(settings)] == ["ok.txt"]


def test_an_endless_upload_is_cut_at_the_upload_limit(small):
    engine, settings = small
    stream = Endless()
    result = engine.ingest_upload("endless.wav", io.BufferedReader(stream), "default")
    assert result.status == IngestStatus.FAILED and result.error_code == "too_large"
    assert stream.read_bytes <= (1 << 20) + (1 << 20)  # the 1 MiB limit plus at most one read ahead
    assert _files(settings) == []


def test_a_recording_may_be_larger_than_the_document_limit(small, sample_corpus, tmp_path):
    engine, settings = small
    clip = tmp_path / "clip.m4a"  # 6 s of real speech, 24 KB: above the document limit, below the recording one
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(sample_corpus / "rotterdam-pilot-standup.m4a"),
                    "-t", "6", "-c", "copy", str(clip)], check=True)
    assert clip.stat().st_size > settings.ingest.max_file_mb * 2**20
    result = engine.ingest_upload("clip.m4a", clip.open("rb"), "default")
    assert result.status == IngestStatus.INDEXED, result.error
    assert [p.name for p in _files(settings)] == ["clip.m4a"]


def test_a_failed_upload_leaves_nothing(engine, settings, samples):
    broken = (samples / "annual-report-2025.pdf").read_bytes()[:700]
    for name, data in (("broken.pdf", broken), ("empty.txt", b""), ("junk.bin", bytes(range(256)) * 64)):
        assert engine.ingest_upload(name, io.BytesIO(data)).status == IngestStatus.FAILED
    assert _files(settings) == []


def test_a_failed_reupload_keeps_the_visible_version_and_its_file(engine, settings):
    first = engine.ingest_upload("review.vtt", io.BytesIO(VTT), "C1")
    assert first.status == IngestStatus.INDEXED
    kept = Path(engine.document(first.doc_id).extra["stored_path"])

    again = engine.ingest_upload("review.vtt", io.BytesIO(bytes(range(256)) * 64), "C1")
    assert again.status == IngestStatus.FAILED and again.doc_id == first.doc_id
    assert kept.read_bytes() == VTT and _files(settings) == [kept]
    hits = engine.search("battery runtime", k=3, scopes=["C1"])
    assert hits and hits[0].chunk.doc_id == first.doc_id
    job = _wait(engine, engine.submit_minutes(doc_id=first.doc_id, scope="C1").job_id)  # minutes rest on that file
    assert job.status == JobStatus.DONE and job.result["summary"]


def test_a_new_version_keeps_only_its_own_file(engine, settings):
    engine.ingest_upload("notes.txt", io.BytesIO(b"The launch is on Monday.\n"))
    unchanged = engine.ingest_upload("notes.txt", io.BytesIO(b"The launch is on Monday.\n"))
    assert unchanged.status == IngestStatus.UNCHANGED and len(_files(settings)) == 1
    changed = engine.ingest_upload("notes.txt", io.BytesIO(b"The launch moved to Thursday.\n"))
    assert changed.status == IngestStatus.INDEXED
    [stored] = _files(settings)
    assert stored.read_bytes() == b"The launch moved to Thursday.\n"
    assert str(stored) == engine.document(changed.doc_id).extra["stored_path"]
    engine.delete(changed.doc_id)
    assert _files(settings) == []


def test_chat_file_drops_are_stored_under_their_source(engine, settings):
    job = engine.submit_upload("plan.md", io.BytesIO(b"# Plan\nShip the pilot in May.\n"), "C0GENERAL",
                               source="slack:F0PLAN/plan.md")
    done = _wait(engine, job.job_id)
    assert done.status == JobStatus.DONE and done.result["status"] == "indexed"
    assert engine.documents_from("slack:F0PLAN")[0].doc_id == done.doc_id
    assert [p.name for p in _files(settings)] == ["plan.md"]


def test_minutes_inputs_are_deleted_when_their_job_ends(engine, settings):
    with TestClient(create_app(engine)) as http:
        for data, outcome in ((VTT, "done"), (b"\x00\x01 not a transcript" * 100, "failed")):
            r = http.post("/v1/minutes", files={"file": ("review.vtt", data)})
            assert r.status_code == 202
            job = _wait(engine, r.json()["job_id"])
            assert job.status.value == outcome, job.error
            assert _files(settings) == []


def test_an_interrupted_minutes_job_resumes_after_a_restart_and_then_deletes_its_input(settings, embedder):
    # A previous run received the upload and recorded its job, then stopped before running it.
    staged = settings.data_dir / "files" / "minutes" / ".staging-5e7f" / "review.vtt"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(VTT)
    first = build_engine(settings, embedder=embedder)
    job = JobStore(first.database).create("minutes", "default", "upload:review.vtt", params={"path": str(staged)})
    first.close()
    os.utime(staged.parent, (time.time() - 7200, time.time() - 7200))  # old, yet its job still needs it
    abandoned = settings.data_dir / "files" / "d0c" / ".staging-0ld"  # a crash while receiving, long ago
    abandoned.mkdir(parents=True)
    (abandoned / "half.pdf").write_bytes(b"%PDF-1.7 half")
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))

    restarted = build_engine(settings, embedder=embedder)
    try:
        assert restarted.recover_jobs() == 1
        done = _wait(restarted, job.job_id)
        assert done.status == JobStatus.DONE and done.result["summary"]
        assert _files(settings) == []
    finally:
        restarted.close()


def test_concurrent_uploads_of_one_name_leave_only_the_visible_versions_file(engine, settings):
    from concurrent.futures import ThreadPoolExecutor

    bodies = [f"# Race\nThe winning colour is {colour}.\n".encode() for colour in ("red", "green", "blue", "amber")]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: engine.ingest_upload("race.md", io.BytesIO(b), "C1"), bodies))
    assert {r.status for r in results} == {IngestStatus.INDEXED}
    [stored] = _files(settings)
    record = engine.document(results[0].doc_id)
    assert str(stored) == record.extra["stored_path"] and stored.read_bytes() in bodies
    colour = stored.read_bytes().decode().split("is ")[1].rstrip(".\n")
    assert colour in engine.search("winning colour", k=1, scopes=["C1"])[0].chunk.text
