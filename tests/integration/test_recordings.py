"""Recordings end to end: real speech through ffmpeg and the bundled Whisper into search, answers and exports."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import build_engine
from bot.api import create_app
from core.config import Settings
from core.models import IngestStatus
from tests.conftest import SHARED_DATA

AUDIO = SHARED_DATA / "audio"
JFK = AUDIO / "jfk.flac"
LIBRI = AUDIO / "librispeech_dev-clean_2412-153948-0000.flac"
OSR = AUDIO / "OSR_us_000_0034_8k.wav"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not OSR.exists(), reason="real speech from ../shared/data/audio is not here"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


def _said(text: str) -> str:
    """The words only, lower case: what was recognised, whatever punctuation and casing the recogniser
    wrote (they differ between x86 CPUs: "Decision, we" on one, "Decision. We" on another)."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    files = {
        # A video: colour bars with JFK's inaugural sentence as its soundtrack.
        "video": d / "inaugural.mp4",
        # A call recorded one side per channel: LibriSpeech on the left, then the OSR speaker on the right.
        "call": d / "call.wav",
        # The same two voices mixed into one channel, one after the other.
        "mono": d / "interview.mp3",
        "silent": d / "silent.wav",
        "noaudio": d / "slides.mkv",
    }
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-i", str(JFK), "-shortest",
            "-c:v", "mpeg4", "-c:a", "aac", str(files["video"]))
    _ffmpeg("-i", str(LIBRI), "-i", str(OSR), "-filter_complex",
            "[0:a]aresample=16000,apad=pad_dur=37[l];[1:a]aresample=16000,adelay=12500,apad[r];"
            "[l][r]join=inputs=2:channel_layout=stereo[a]", "-map", "[a]", "-t", "48", str(files["call"]))
    _ffmpeg("-i", str(LIBRI), "-i", str(OSR), "-filter_complex",
            "[0:a]aresample=16000[a0];[1:a]aresample=16000[a1];[a0][a1]concat=n=2:v=0:a=1[a]", "-map", "[a]",
            "-ac", "1", str(files["mono"]))
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "4", str(files["silent"]))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-t", "2", "-c:v", "mpeg4", str(files["noaudio"]))
    return files


def test_video_is_searchable_with_time_coded_citations(engine, media):
    [result] = engine.ingest([media["video"]], scope="C1")
    assert result.status == IngestStatus.INDEXED, result.error
    record = engine.document(result.doc_id)
    assert record.kind == "video" and 10.5 <= record.duration <= 11.5

    [hit] = engine.search("ask not what your country can do for you", k=1, scopes=["C1"])
    assert "fellow americans" in _said(hit.chunk.text)
    assert hit.chunk.start is not None and 0 <= hit.chunk.start < hit.chunk.end <= 11.5

    answer = engine.ask("What should you ask, rather than what your country can do for you?", scopes=["C1"])
    assert not answer.abstained
    cited = answer.citations[0].chunk
    assert cited.doc_id == result.doc_id and cited.start is not None


def test_split_channel_call_gets_a_speaker_per_channel(engine, media, embedder):
    [result] = engine.ingest([media["call"]], scope="C2")
    assert result.status == IngestStatus.INDEXED, result.error
    transcript = engine.transcript(result.doc_id)
    assert transcript.speakers == "channels"
    first = next(s for s in transcript.segments if "reader" in _said(s.text))
    harvard = next(s for s in transcript.segments if "pink shell" in _said(s.text))
    assert first.speaker == "Speaker 1" and harvard.speaker == "Speaker 2"
    assert harvard.start > 12.0  # the right channel starts speaking at 12.5 s
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)

    app = create_app(engine)
    client = TestClient(app)
    hits = client.post("/v1/search", json={"query": "a pink shell was found on the sandy beach", "k": 1,
                                            "scopes": ["C2"]}).json()["hits"]
    assert hits[0]["speaker"] and "Speaker 2" in hits[0]["speaker"]
    assert hits[0]["location"].startswith("call.wav [00:")
    vtt = client.get(f"/v1/documents/{result.doc_id}/transcript", params={"format": "vtt"})
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT") and "<v Speaker 2>" in vtt.text
    srt = client.get(f"/v1/documents/{result.doc_id}/transcript", params={"format": "srt"}).text
    assert srt.startswith("1\n00:00:") and "Speaker 1: " in srt


def test_mono_recording_is_diarized_into_two_voices(engine, media):
    transcript = engine.transcribe(media["mono"])
    assert transcript.speakers == "diarization"
    reader = [s.speaker for s in transcript.segments if s.end <= 11.0]
    harvard = [s.speaker for s in transcript.segments if s.start >= 13.0]
    assert reader and harvard
    assert len(set(reader)) == 1 and len(set(harvard)) == 1 and set(reader) != set(harvard)


def test_long_recording_is_cut_and_transcribed_in_parallel_in_order(tmp_path, embedder, media):
    settings = Settings(data_dir=tmp_path / "data", speech={"piece_seconds": 10, "workers": 2, "diarize": False})
    engine = build_engine(settings, embedder=embedder)
    seen: list[tuple[float, float]] = []
    transcript = engine.transcribe(media["call"], progress=lambda done, total: seen.append((done, total)))
    # Two channels of 48 s each, in pieces of about 10 s: progress climbs to the total.
    assert len(seen) >= 8 and seen[-1][0] == pytest.approx(seen[-1][1])
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    text = _said(" ".join(s.text for s in transcript.segments))
    for phrase in ("excuse me", "native country", "pink shell", "come quickly"):
        assert phrase in text
    for s in transcript.segments:
        assert 0 <= s.start <= s.end <= 48.5
        assert all(s.start - 0.5 <= w.start <= w.end <= s.end + 0.5 for w in s.words)


def test_bad_recordings_fail_clearly_and_lose_nothing(engine, media, tmp_path):
    [good] = engine.ingest([media["video"]])
    assert good.status == IngestStatus.INDEXED
    zero = tmp_path / "empty.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", str(zero))
    corrupt = tmp_path / "meeting.mp4"
    corrupt.write_bytes(media["video"].read_bytes()[:20_000])
    results = {Path(r.source).name: r for r in engine.ingest([media["silent"], media["noaudio"], zero, corrupt])}
    assert all(r.status == IngestStatus.FAILED for r in results.values())
    assert results["silent.wav"].error_code == "empty_document" and "no speech" in results["silent.wav"].error
    assert results["slides.mkv"].error_code == "empty_document" and "without an audio track" in results["slides.mkv"].error
    assert results["empty.wav"].error_code == "empty_document" and "0 seconds" in results["empty.wav"].error
    assert results["meeting.mp4"].error_code == "corrupt_document"
    assert str(tmp_path) not in results["meeting.mp4"].error

    # The same recording replaced by a damaged copy keeps its last good version searchable.
    replaced = tmp_path / "inaugural.mp4"
    shutil.copy(media["video"], replaced)
    [first] = engine.ingest([replaced])
    replaced.write_bytes(media["video"].read_bytes()[:20_000])
    [second] = engine.ingest([replaced])
    assert first.status == IngestStatus.INDEXED and second.status == IngestStatus.FAILED
    hits = engine.search("ask not what your country can do for you", k=5)
    assert {first.doc_id, good.doc_id} <= {h.chunk.doc_id for h in hits}


def test_recording_longer_than_the_limit_is_refused(tmp_path, embedder, media):
    settings = Settings(data_dir=tmp_path / "data", speech={"max_hours": 5 / 3600})
    engine = build_engine(settings, embedder=embedder)
    [r] = engine.ingest([media["video"]])
    assert r.status == IngestStatus.FAILED and r.error_code == "too_large" and "IMP_SPEECH__MAX_HOURS" in r.error


def test_background_upload_reports_progress_and_the_transcript(engine, media):
    with TestClient(create_app(engine)) as client:
        with media["video"].open("rb") as f:
            r = client.post("/v1/documents", params={"background": "true"}, data={"scope": "C9"},
                            files=[("files", ("town-hall.mp4", f, "video/mp4")),
                                   ("files", ("broken.mp4", io.BytesIO(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64),
                                              "video/mp4"))])
        assert r.status_code == 202
        jobs = r.json()["jobs"]
        assert [j["status"] for j in jobs] == ["queued", "queued"]
        final = {}
        deadline = time.monotonic() + 120
        while len(final) < 2 and time.monotonic() < deadline:
            for j in jobs:
                got = client.get(f"/v1/jobs/{j['job_id']}").json()
                if got["status"] in ("done", "failed"):
                    final[j["source"]] = got
            time.sleep(0.3)
        good, bad = final["upload:town-hall.mp4"], final["upload:broken.mp4"]
        assert good["status"] == "done" and good["result"]["chunks"] >= 1
        assert bad["status"] == "failed" and bad["result"]["error"]
        doc = client.get(f"/v1/documents/{good['doc_id']}/transcript").json()
        assert doc["duration"] == pytest.approx(11.0, abs=0.5) and doc["language"] == "en"
        seg = doc["segments"][0]
        assert set(seg) == {"start", "end", "speaker", "text", "words"}
        assert {"word", "start", "end", "confidence"} == set(seg["words"][0])
        assert client.get("/v1/jobs/nope").status_code == 404
        assert client.get(f"/v1/documents/{good['doc_id']}/transcript", params={"format": "doc"}).status_code == 422


def test_cli_transcribe_prints_json_vtt_and_srt(tmp_path, media):
    env = {"IMP_DATA_DIR": str(tmp_path / "data"), "IMP_SPEECH__DIARIZE": "false", "PATH": "/usr/bin:/bin"}
    imp = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "imp")
    if not Path(imp).exists():
        pytest.skip("the imp console script is not installed in .venv")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([imp, "transcribe", *args], capture_output=True, text=True, env=env, timeout=300)

    data = json.loads(run(str(media["video"]), "--json").stdout)
    assert set(data) >= {"duration", "language", "segments"}
    assert "fellow americans" in _said(" ".join(s["text"] for s in data["segments"]))
    assert data["segments"][0]["speaker"] is None  # diarization off: unknown, not guessed
    assert run(str(media["video"]), "--vtt").stdout.startswith("WEBVTT")
    out = tmp_path / "inaugural.srt"
    assert run(str(media["video"]), "--srt", "-o", str(out)).returncode == 0
    assert out.read_text().startswith("1\n00:00:00")
    bad = run(str(media["noaudio"]))
    assert bad.returncode == 2 and "without an audio track" in bad.stderr
