"""Crafted files that try to make ffmpeg read another file: each is refused, or reads only itself.

A "secret" recording (a 1 kHz tone, as MP3, M4A and WAV) sits in its own
folder. Each attack names it, by absolute path, ``../``-relative path or as a
sibling, inside a file that detection would take for a recording or that
someone asks to transcribe directly. Where the attack worked on the plain
ffmpeg command IMP used to run, the test first shows that it still does
(``_plain_ffmpeg_hears_the_secret``), so each case keeps testing a live attack
when ffmpeg changes. The last test is the whole story through the engine: a
recording in scope A, the attack uploaded into scope B.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.errors import CorruptDocument, UnsupportedFormat
from core.ingest.loaders import MEDIA, detect_kind
from core.ingest.media import SAMPLE_RATE, Media
from core.models import IngestStatus
from tests.conftest import SAMPLES

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg and ffprobe are not installed")

SECRET_HZ = 1000
ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"  # an empty ID3v2.4 tag: what made detection say "MP3"


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True, timeout=120)


def _hls(target: str) -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:60\n#EXTINF:60,\n{target}\n#EXT-X-ENDLIST\n".encode()


def _dash(target: Path) -> bytes:
    """A DASH manifest behind an ID3 tag and an XML comment holding U+0085: not text, so detection says media."""
    return ID3 + "<!--\u0085-->".encode() + (
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S" '
        'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" minBufferTime="PT1S"><Period>'
        '<AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000">'
        f"<BaseURL>{target}</BaseURL></Representation></AdaptationSet></Period></MPD>"
    ).encode()


@pytest.fixture(scope="module")
def vault(tmp_path_factory) -> Path:
    """secret/ holds the recordings to steal; attacker/ is a folder next to it."""
    root = tmp_path_factory.mktemp("vault")
    (root / "secret").mkdir()
    (root / "attacker").mkdir()
    tone = ["-f", "lavfi", "-i", f"sine=frequency={SECRET_HZ}:sample_rate=16000:duration=4"]
    _ffmpeg(*tone, "-c:a", "libmp3lame", str(root / "secret" / "secret.mp3"))
    # Index first (faststart): the HLS and DASH demuxers read segments without seeking back.
    _ffmpeg(*tone, "-c:a", "aac", "-movflags", "+faststart", str(root / "secret" / "secret.m4a"))
    _ffmpeg(*tone, "-c:a", "pcm_s16le", str(root / "secret" / "secret.wav"))
    return root


def _sounds_like_secret(samples: np.ndarray) -> bool:
    if len(samples) < SAMPLE_RATE // 2 or np.sqrt(np.mean(np.square(samples, dtype=np.float64))) < 0.01:
        return False
    peak = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[int(np.argmax(np.abs(np.fft.rfft(samples))))]
    return abs(peak - SECRET_HZ) < 20


def _plain_ffmpeg_hears_the_secret(path: Path, *options: str) -> bool:
    """What IMP ran before: ffmpeg left to probe the file, no allow-lists."""
    done = subprocess.run([FFMPEG, "-nostdin", "-v", "quiet", *options, "-i", f"file:{path}", "-f", "s16le",
                           "-ac", "1", "-ar", str(SAMPLE_RATE), "-"], capture_output=True, timeout=120)
    return _sounds_like_secret(np.frombuffer(done.stdout, dtype="<i2").astype(np.float32) / 32768)


# (id, folder, name, content given the vault, what detection says, a live attack on plain ffmpeg)
ATTACKS = [
    ("hls-absolute-behind-id3", "attacker", "call.mp3",
     lambda v: ID3 + _hls(str(v / "secret" / "secret.mp3")), "refused", True),
    ("hls-relative-behind-id3", "attacker", "call.mp3",
     lambda v: ID3 + _hls("../secret/secret.mp3"), "refused", True),
    # The concat demuxer's safe mode still allows a plain sibling name.
    ("ffconcat-behind-id3", "secret", "notes.mp3",
     lambda v: ID3 + b"ffconcat version 1.0\nfile 'secret.mp3'\n", "refused", True),
    ("ffconcat-behind-frame-sync", "secret", "notes.mp3",
     lambda v: b"\xff\xfb" + b"ffconcat version 1.0\nfile 'secret.mp3'\n", "refused", False),
    ("bare-m3u-named-mp3", "attacker", "call.mp3", lambda v: _hls(str(v / "secret" / "secret.mp3")), "text", True),
    ("bare-m3u-named-wav", "attacker", "call.wav", lambda v: _hls("../secret/secret.mp3"), "text", True),
    ("pls-named-mp3", "attacker", "call.mp3",
     lambda v: f"[playlist]\nFile1={v / 'secret' / 'secret.mp3'}\nNumberOfEntries=1\n".encode(), "text", False),
    ("xspf-named-wav", "attacker", "call.wav",
     lambda v: ('<?xml version="1.0"?><playlist version="1" xmlns="http://xspf.org/ns/0/"><trackList>'
                f"<track><location>file://{v / 'secret' / 'secret.wav'}</location></track>"
                "</trackList></playlist>").encode(), "text", False),
    # Detection takes this for a recording: only the demuxer allow-list stops it.
    ("dash-behind-id3", "attacker", "call.mp3", lambda v: _dash(v / "secret" / "secret.m4a"), MEDIA, True),
]


@pytest.mark.parametrize(("folder", "name", "content", "detected", "live"),
                         [pytest.param(*a[1:], id=a[0]) for a in ATTACKS])
def test_a_file_naming_another_recording_is_refused(vault, folder, name, content, detected, live):
    path = vault / folder / name
    path.write_bytes(content(vault))
    try:
        if live:
            assert _plain_ffmpeg_hears_the_secret(path), "the fixture no longer attacks plain ffmpeg"
        if detected == "refused":
            with pytest.raises(UnsupportedFormat, match="holds text"):
                detect_kind(path)
        else:
            assert detect_kind(path) == detected
        # `imp transcribe FILE` probes without detection first: Media judges the content itself.
        with pytest.raises((UnsupportedFormat, CorruptDocument)) as err:
            Media().probe(path)
        assert name in err.value.detail
        assert str(vault) not in err.value.detail
    finally:
        path.unlink()


def test_an_image_sequence_name_is_read_as_the_file_itself(vault, tmp_path):
    # "%03d" in a .jpg name makes ffmpeg's probe pick image2, which reads take-001.jpg, take-002.jpg...
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(tmp_path / "take-001.jpg"))
    own = tmp_path / "take-%03d.jpg"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "pcm_s16le", "-f", "wav", str(own))
    plain = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name", "-of", "csv=p=0",
                            f"file:{own}"], capture_output=True, text=True, timeout=60)
    assert plain.stdout.strip() == "image2", "the fixture no longer makes plain ffprobe read a sequence"

    media = Media()
    info = media.probe(own)
    assert info.container == "wav" and info.duration == pytest.approx(2.0, abs=0.1)
    assert len(media.read_all(own, info)) == pytest.approx(2 * SAMPLE_RATE, abs=0.1 * SAMPLE_RATE)


# --- a QuickTime reference movie ------------------------------------------------------------

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl"}


def _boxes(data: bytes):
    at = 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        yield kind, data[at + 8:at + size]
        at += size


def _alias(name: bytes) -> bytes:
    """A Mac alias record (the layout ffmpeg's mov demuxer reads) for ``name`` next to the movie."""
    record = (bytes(10) + bytes(28) + bytes(12) + bytes([len(name)]) + name.ljust(63, b"\0") + bytes(16)
              + struct.pack(">hh", 1, 1) + bytes(16))  # one level up from the alias, one down: a sibling
    path = b"/x/" + name
    record += struct.pack(">hH", 2, len(path)) + path + b"\0" * (len(path) % 2) + struct.pack(">hH", -1, 0)
    return struct.pack(">I4sI", 12 + len(record), b"alis", 0) + record  # flags 0: the data is elsewhere


def _reference(movie: bytes, target: str, shift: int) -> bytes:
    """``movie`` with its track's data reference pointing at ``target`` and its chunk offsets moved by ``shift``."""
    out = b""
    for kind, body in _boxes(movie):
        if kind in _CONTAINERS:
            body = _reference(body, target, shift)
        elif kind == b"dref":
            body = struct.pack(">II", 0, 1) + _alias(target.encode())
        elif kind == b"stco":
            flags, n = struct.unpack(">II", body[:8])
            offsets = struct.unpack(f">{n}I", body[8:8 + 4 * n])
            body = struct.pack(">II", flags, n) + struct.pack(f">{n}I", *(o + shift for o in offsets))
        out += struct.pack(">I4s", 8 + len(body), kind) + body
    return out


def _first_chunk(movie: bytes) -> int | None:
    for kind, body in _boxes(movie):
        if kind == b"stco":
            return struct.unpack(">I", body[8:12])[0]
        if kind in _CONTAINERS and (found := _first_chunk(body)) is not None:
            return found
    return None


def test_a_reference_movie_never_reads_the_file_it_references(vault, tmp_path):
    """A MOV whose track's samples live in secret.wav (a dref alias), sitting next to it."""
    own = tmp_path / "own.mov"  # silence, PCM, index at the end: rewriting it moves no sample
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "4", "-c:a", "pcm_s16le", "-f", "mov", str(own))
    secret = (vault / "secret" / "secret.wav").read_bytes()
    data_at = secret.index(b"data") + 8
    movie = own.read_bytes()
    attack = vault / "secret" / "reference.mov"
    attack.write_bytes(_reference(movie, "secret.wav", data_at - _first_chunk(movie)))
    try:
        assert _plain_ffmpeg_hears_the_secret(attack, "-enable_drefs", "1"), "the reference does not resolve"
        assert detect_kind(attack) == MEDIA
        media = Media()
        try:
            info = media.probe(attack)
            samples = media.read_all(attack, info)
        except (UnsupportedFormat, CorruptDocument):
            return  # refused outright: nothing read
        assert not _sounds_like_secret(samples)
    finally:
        attack.unlink()


# --- through the engine: scope B never hears scope A's recording ----------------------------------


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{5,}", text.lower()))


def test_an_upload_in_one_scope_cannot_transcribe_another_scopes_recording(engine, settings, tmp_path):
    secret = tmp_path / "standup.m4a"
    _ffmpeg("-i", str(SAMPLES / "rotterdam-pilot-standup.m4a"), "-t", "7", "-c", "copy",
            "-movflags", "+faststart", str(secret))
    with secret.open("rb") as f:
        kept = engine.ingest_upload("standup.m4a", f, scope="A")
    assert kept.status == IngestStatus.INDEXED, kept.error
    words = _words(" ".join(s.text for s in engine.transcript(kept.doc_id).segments))
    assert len(words) >= 5
    query = " ".join(sorted(words))
    assert engine.search(query, k=3, scopes=["A"]), "the secret is not searchable even in its own scope"

    stored = next(settings.data_dir.rglob("standup.m4a"))
    attacks = {
        "hls-absolute.mp3": ID3 + _hls(str(stored)),
        "hls-relative.mp3": ID3 + _hls(f"../{stored.parent.name}/{stored.name}"),
        "dash.mp3": _dash(stored),
    }
    for name, data in attacks.items():
        result = engine.ingest_upload(name, io.BytesIO(data), scope="B")
        assert result.status == IngestStatus.FAILED, f"{name} was {result.status.value}"
        assert result.error_code in ("unsupported_format", "corrupt_document")
        assert name in result.error and str(settings.data_dir) not in result.error
    assert engine.search(query, k=10, scopes=["B"]) == []
