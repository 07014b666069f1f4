"""Recordings through ffmpeg: every promised container becomes 16 kHz mono, bad input fails fast with a reason.

Every fixture is made here by ffmpeg's own generators (sine tones, noise,
silence, test pictures), once per module, in a temporary folder; nothing is
read from ../shared.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from core.errors import CorruptDocument, DocumentTooLarge, EmptyDocument, UnsupportedFormat
from core.ingest.loaders import MEDIA, detect_kind
from core.ingest.media import SAMPLE_RATE, Media, MediaInfo

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(
    FFMPEG is None or shutil.which("ffprobe") is None, reason="ffmpeg and ffprobe are not installed"
)

SECONDS = 3.0
TONE_HZ = 440
TOLERANCE_S = 0.1
LONG_SECONDS = 30.0
# A hang guard, not a speed test: a stuck ffmpeg would sit here for ever.
HANG_LIMIT_S = 30.0


def _ffmpeg(*args: str) -> None:
    done = subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        Path(args[-1]).unlink(missing_ok=True)  # never reuse a half-written fixture
        pytest.fail(f"ffmpeg could not make {Path(args[-1]).name}: {done.stderr.decode(errors='replace')}")


def _encoders() -> set[str]:
    if FFMPEG is None:
        return set()
    listing = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60)
    return {line.split()[1] for line in listing.stdout.splitlines() if len(line.split()) > 1}


ENCODERS = _encoders()
OPUS = ("-c:a", "libopus") if "libopus" in ENCODERS else ("-c:a", "opus", "-strict", "-2")
H264_OR_MPEG4 = ("-c:v", "libx264", "-preset", "ultrafast") if "libx264" in ENCODERS else ("-c:v", "mpeg4")
WEBM_VIDEO = (("-c:v", "libvpx", "-b:v", "200k") if "libvpx" in ENCODERS
              else ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8") if "libvpx-vp9" in ENCODERS
              else None)


@dataclass(frozen=True)
class Recording:
    """A fixture recording: a 3 s 440 Hz tone in one container, as a person would send it."""

    name: str
    kind: str  # what the product should call it: "audio" or "video"
    channels: int
    codecs: tuple[str, ...]
    video: bool = False
    cover: bool = False  # an attached picture (album art), which is not a video
    marks: tuple = field(default=(), compare=False)

    def param(self):
        return pytest.param(self, id=self.name, marks=self.marks)


def _needs(encoder: str):
    return pytest.mark.skipif(encoder not in ENCODERS, reason=f"this ffmpeg has no {encoder} encoder")


RECORDINGS = [
    Recording("call.wav", "audio", 1, ("-c:a", "pcm_s16le")),
    # RF64 is the WAV that field recorders and ffmpeg write once a take outgrows 4 GB.
    Recording("long-take.wav", "audio", 1, ("-c:a", "pcm_s16le", "-rf64", "always")),
    Recording("call.mp3", "audio", 2, ("-c:a", "libmp3lame", "-b:a", "96k"), marks=(_needs("libmp3lame"),)),
    # No ID3 tag: the file starts straight with an MPEG frame.
    Recording("bare.mp3", "audio", 1, ("-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0"),
              marks=(_needs("libmp3lame"),)),
    Recording("cover.mp3", "audio", 2, ("-c:a", "libmp3lame", "-c:v", "mjpeg", "-id3v2_version", "3"),
              cover=True, marks=(_needs("libmp3lame"),)),
    Recording("memo.m4a", "audio", 1, ("-c:a", "aac", "-b:a", "64k")),
    Recording("cover.m4a", "audio", 1, ("-c:a", "aac", "-c:v", "png"), cover=True),
    Recording("memo.aac", "audio", 2, ("-c:a", "aac", "-b:a", "96k")),  # raw ADTS stream
    Recording("voice.opus", "audio", 2, OPUS),
    Recording("voice.ogg", "audio", 2, ("-c:a", "libvorbis"), marks=(_needs("libvorbis"),)),
    Recording("call.flac", "audio", 1, ("-c:a", "flac")),
    Recording("voice.webm", "audio", 1, OPUS),
    Recording("screen.webm", "video" if WEBM_VIDEO else "audio", 2, (*(WEBM_VIDEO or ()), *OPUS),
              video=WEBM_VIDEO is not None),
    Recording("screen-vp9.webm", "video", 1, ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", *OPUS),
              video=True, marks=(_needs("libvpx-vp9"),)),
    Recording("meeting.mp4", "video", 2, (*H264_OR_MPEG4, "-c:a", "aac"), video=True),
    Recording("meeting.mov", "video", 1, ("-c:v", "mpeg4", "-c:a", "aac"), video=True),
    Recording("meeting.mkv", "video", 2, (*H264_OR_MPEG4, "-c:a", "aac"), video=True),
    Recording("call.aiff", "audio", 1, ("-c:a", "pcm_s16be")),
    Recording("memo.caf", "audio", 2, ("-c:a", "alac")),
    Recording("call.wma", "audio", 2, ("-c:a", "wmav2")),  # ASF
    Recording("clip.avi", "audio", 1, ("-c:a", "pcm_s16le")),
    Recording("long-take.w64", "audio", 1, ("-c:a", "pcm_s16le")),  # Sony Wave64
]


class Studio:
    """Makes each fixture file once, on first use, in one temporary folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._cover: Path | None = None

    def recording(self, rec: Recording) -> Path:
        path = self.folder / rec.name
        if path.exists():
            return path
        tone = ["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate=48000:duration={SECONDS}"]
        if rec.video:
            pictures = ["-f", "lavfi", "-i", f"testsrc=size=96x64:rate=10:duration={SECONDS}"]
            _ffmpeg(*tone, *pictures, "-map", "0:a", "-map", "1:v", "-ac", str(rec.channels), *rec.codecs,
                    "-t", str(SECONDS), str(path))
        elif rec.cover:
            _ffmpeg(*tone, "-i", str(self.cover()), "-map", "0:a", "-map", "1:v", "-disposition:v", "attached_pic",
                    "-ac", str(rec.channels), *rec.codecs, str(path))
        else:
            _ffmpeg(*tone, "-ac", str(rec.channels), *rec.codecs, str(path))
        return path

    def cover(self) -> Path:
        if self._cover is None:
            self._cover = self.folder / "cover.png"
            _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(self._cover))
        return self._cover

    def make(self, name: str, *args: str) -> Path:
        """Any other file: ``args`` are ffmpeg's inputs and options, the file name its output."""
        path = self.folder / name
        if not path.exists():
            _ffmpeg(*args, str(path))
        return path


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(tmp_path_factory.mktemp("recordings"))


@pytest.fixture(scope="module")
def media() -> Media:
    return Media()


@pytest.fixture(scope="module")
def long_recording(studio) -> Path:
    """A 30 s tone, long enough to stream in many blocks."""
    return studio.make("long.flac", "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration={LONG_SECONDS}",
                       "-ac", "1", "-c:a", "flac")


def _stereo(studio: Studio, name: str, left: str, right: str, seconds: float = 6.0) -> Path:
    """A stereo WAV whose channels are the two aevalsrc expressions (functions of t)."""
    source = f"aevalsrc=exprs='{left}|{right}':c=stereo:s=16000:d={seconds}"
    return studio.make(name, "-f", "lavfi", "-i", source, "-c:a", "pcm_s16le")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _peak_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def _media_children() -> set[int]:
    """ffmpeg/ffprobe processes whose parent is this test process (zombies included)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while we looked
        name = text[text.find("(") + 1 : text.rfind(")")]
        ppid = int(text[text.rfind(")") + 2 :].split()[1])
        if ppid == os.getpid() and name in ("ffmpeg", "ffprobe"):
            found.add(int(stat.parent.name))
    return found


def _says_where_not(message: str, path: Path) -> None:
    """The reason names the file the user sent and never the server's folder."""
    assert path.name in message
    assert str(path.parent) not in message


# --- every promised container ---------------------------------------------------------


@pytest.mark.parametrize("rec", [r.param() for r in RECORDINGS])
def test_each_container_decodes_to_16k_mono(studio, media, rec):
    path = studio.recording(rec)
    assert detect_kind(path) == MEDIA

    info = media.probe(path)
    assert info.duration == pytest.approx(SECONDS, abs=TOLERANCE_S)
    assert info.kind == rec.kind
    assert info.channels == rec.channels

    samples = media.read_all(path, info)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(SECONDS * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)
    assert samples.min() >= -1.0 and samples.max() <= 1.0
    assert _rms(samples) > 0.02, "the tone came out as silence"
    # At the right sample rate the tone keeps its pitch.
    assert _peak_hz(samples) == pytest.approx(TONE_HZ, abs=5)


@pytest.mark.parametrize("rec", [r.param() for r in RECORDINGS])
def test_a_recording_with_a_wrong_extension_is_still_a_recording(studio, media, rec, tmp_path):
    renamed = tmp_path / "notes.txt"
    shutil.copyfile(studio.recording(rec), renamed)
    assert detect_kind(renamed) == MEDIA
    assert media.probe(renamed).duration == pytest.approx(SECONDS, abs=TOLERANCE_S)


def _id3_tagged(source: Path, target: Path) -> Path:
    """``source`` with an ID3v2.4 tag in front, as taggers add to any audio file."""
    frame = b"TIT2" + (12).to_bytes(4, "big") + b"\x00\x00\x03Weekly sync"
    target.write_bytes(b"ID3\x04\x00\x00" + bytes([0, 0, 0, len(frame)]) + frame + source.read_bytes())
    return target


@pytest.mark.parametrize("name", ["memo.aac", "call.flac"])
def test_a_tagged_recording_is_read_past_its_tag(studio, media, name, tmp_path):
    rec = next(r for r in RECORDINGS if r.name == name)
    tagged = _id3_tagged(studio.recording(rec), tmp_path / f"tagged-{name}")
    assert detect_kind(tagged) == MEDIA
    info = media.probe(tagged)
    assert info.duration == pytest.approx(SECONDS, abs=TOLERANCE_S)
    assert _peak_hz(media.read_all(tagged, info)) == pytest.approx(TONE_HZ, abs=5)


@_needs("libmp3lame")
def test_an_mp3_whose_cover_art_outgrows_the_detection_window_is_read(studio, media):
    # 300 KB of noise as cover art: the audio after the ID3 tag starts far beyond the first 64 KiB.
    noise = studio.make("noise.png", "-f", "lavfi", "-i", "nullsrc=s=320x320,geq=random(1)*255:128:128",
                        "-frames:v", "1")
    song = studio.make("big-cover.mp3", "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration={SECONDS}",
                       "-i", str(noise), "-map", "0:a", "-map", "1:v", "-disposition:v", "attached_pic",
                       "-c:a", "libmp3lame", "-c:v", "png", "-id3v2_version", "3")
    size = song.read_bytes()[6:10]  # the tag's syncsafe size: 7 bits a byte
    assert (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3]) > 64 * 1024
    assert detect_kind(song) == MEDIA
    info = media.probe(song)
    assert info.kind == "audio" and info.duration == pytest.approx(SECONDS, abs=TOLERANCE_S)
    assert _peak_hz(media.read_all(song, info)) == pytest.approx(TONE_HZ, abs=5)


def test_an_amr_voice_memo_is_read(tmp_path, media):
    # No AMR encoder ships with Debian's ffmpeg: 12.2 kb/s frames (header 0x3c, 31 bytes of payload) by hand.
    rng = np.random.default_rng(5)
    memo = tmp_path / "memo.amr"
    memo.write_bytes(b"#!AMR\n" + b"".join(b"\x3c" + rng.bytes(31) for _ in range(150)))  # 150 x 20 ms
    assert detect_kind(memo) == MEDIA
    info = media.probe(memo)
    assert info.codec == "amr_nb"
    assert len(media.read_all(memo, info)) == pytest.approx(3 * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)


# --- streaming ----------------------------------------------------------------------


def test_decode_streams_blocks_that_add_up_to_the_whole_recording(media, long_recording):
    info = media.probe(long_recording)
    blocks = list(media.decode(long_recording, info, block_seconds=2))
    assert len(blocks) >= 10
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert sum(len(b) for b in blocks) == pytest.approx(LONG_SECONDS * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)


def test_no_block_is_longer_than_block_seconds(media, long_recording):
    info = media.probe(long_recording)
    blocks = list(media.decode(long_recording, info, block_seconds=2))
    assert max(len(b) for b in blocks) <= 2 * SAMPLE_RATE


def test_limit_seconds_stops_early(media, long_recording):
    info = media.probe(long_recording)
    blocks = list(media.decode(long_recording, info, block_seconds=2, limit_seconds=5))
    assert sum(len(b) for b in blocks) == pytest.approx(5 * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)


@pytest.fixture(scope="module")
def right_only(studio) -> Path:
    """A stereo file with the tone on the right channel and silence on the left."""
    return _stereo(studio, "right-only.wav", "0", f"0.5*sin(2*PI*{TONE_HZ}*t)", seconds=4.0)


def test_channels_2_keeps_both_channels(media, right_only):
    info = media.probe(right_only)
    assert info.channels == 2
    blocks = list(media.decode(right_only, info, channels=2, block_seconds=1))
    assert all(b.ndim == 2 and b.shape[1] == 2 for b in blocks)
    both = np.concatenate(blocks)
    assert len(both) == pytest.approx(4 * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)
    assert _rms(both[:, 0]) < 0.001 < 0.2 < _rms(both[:, 1])


def test_channel_picks_one_side_of_a_stereo_file(media, right_only):
    info = media.probe(right_only)
    left = np.concatenate(list(media.decode(right_only, info, channel=0)))
    right = np.concatenate(list(media.decode(right_only, info, channel=1)))
    assert left.ndim == right.ndim == 1
    assert len(right) == pytest.approx(4 * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)
    assert _rms(left) < 0.001
    assert _rms(right) > 0.2
    assert _peak_hz(right) == pytest.approx(TONE_HZ, abs=5)


def test_closing_a_decode_early_leaves_no_ffmpeg_running(media, long_recording):
    info = media.probe(long_recording)
    before = _media_children()
    blocks = media.decode(long_recording, info, block_seconds=1)
    first = next(blocks)
    assert len(first) > 0
    # 30 s of audio does not fit a pipe, so ffmpeg is still there, blocked on it.
    assert _media_children() - before
    blocks.close()
    assert not _media_children() - before


def test_a_surround_recording_is_read_in_whole_frames(studio, media):
    surround = studio.make("surround.flac", "-f", "lavfi", "-i", "anoisesrc=duration=30:amplitude=0.3:seed=7",
                           "-ac", "6", "-c:a", "flac")
    info = media.probe(surround)
    assert info.channels == 6
    # The transcriber asks this of every recording; identical channels are not a split call.
    assert media.separate_channels(surround, info) is False
    blocks = list(media.decode(surround, info, channels=6))
    assert all(b.shape[1] == 6 for b in blocks)
    assert sum(len(b) for b in blocks) == pytest.approx(30 * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)


def test_a_relative_file_name_with_a_colon_is_read(studio, media, tmp_path, monkeypatch):
    shutil.copyfile(studio.recording(RECORDINGS[0]), tmp_path / "2024-05-02T10:30.wav")
    monkeypatch.chdir(tmp_path)
    relative = Path("2024-05-02T10:30.wav")
    info = media.probe(relative)
    assert len(media.read_all(relative, info)) == pytest.approx(SECONDS * SAMPLE_RATE, abs=TOLERANCE_S * SAMPLE_RATE)


# --- split-channel calls ------------------------------------------------------------------


def test_a_split_call_has_separate_channels(studio, media):
    call = _stereo(studio, "split-call.wav", "if(lt(t,3),0.4*sin(2*PI*330*t),0)", "if(gte(t,3),0.4*sin(2*PI*550*t),0)")
    info = media.probe(call)
    assert media.separate_channels(call, info) is True


def test_a_split_call_with_crosstalk_still_has_separate_channels(studio, media):
    # Each side hears the other 30 dB down, as a phone line leaks.
    a, b = "sin(2*PI*330*t)", "sin(2*PI*550*t)"
    call = _stereo(studio, "crosstalk-call.wav", f"if(lt(t,3),0.4*{a},0.013*{b})", f"if(gte(t,3),0.4*{b},0.013*{a})")
    assert media.separate_channels(call, media.probe(call)) is True


@pytest.mark.parametrize(("name", "left", "right"), [
    pytest.param("same-on-both.wav", "0.4*sin(2*PI*330*t)*(0.6+0.4*sin(2*PI*t))",
                 "0.4*sin(2*PI*330*t)*(0.6+0.4*sin(2*PI*t))", id="same-on-both"),
    # Two microphones in one room, 3 dB apart.
    pytest.param("room-stereo.wav", "0.4*sin(2*PI*330*t)", "0.28*sin(2*PI*330*t)", id="room-stereo"),
    # A mono recording on one side only: nobody speaks on the other.
    pytest.param("left-only.wav", "0.4*sin(2*PI*330*t)", "0", id="left-only"),
])
def test_stereo_that_is_not_a_split_call(studio, media, name, left, right):
    path = _stereo(studio, name, left, right)
    assert media.separate_channels(path, media.probe(path)) is False


def test_a_mono_recording_has_no_separate_channels(studio, media):
    path = studio.recording(RECORDINGS[0])
    info = media.probe(path)
    assert info.channels == 1
    assert media.separate_channels(path, info) is False


# --- bad input -------------------------------------------------------------------------


def test_a_zero_second_wav_is_empty(tmp_path, media):
    path = tmp_path / "nothing.wav"
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", 0))
    assert detect_kind(path) == MEDIA
    with pytest.raises(EmptyDocument) as err:
        media.probe(path)
    assert "0 seconds" in err.value.detail
    _says_where_not(err.value.detail, path)


@pytest.fixture(scope="module")
def video(studio) -> Path:
    """A 10 s video with sound, large enough that its first 30 KB miss the index at its end."""
    return studio.make("video.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15:duration=10",
                       "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration=10", *H264_OR_MPEG4,
                       "-c:a", "aac", "-shortest")


def test_a_truncated_video_is_corrupt(tmp_path, media, video):
    assert video.stat().st_size > 60_000
    cut = tmp_path / "upload" / "meeting.mp4"
    cut.parent.mkdir()
    cut.write_bytes(video.read_bytes()[:30_000])
    assert detect_kind(cut) == MEDIA
    with pytest.raises(CorruptDocument) as err:
        media.probe(cut)
    message = err.value.detail
    _says_where_not(message, cut)
    assert str(tmp_path) not in message
    assert "not a readable audio or video file" in message


def test_random_bytes_after_an_mp4_header_are_corrupt(tmp_path, media):
    path = tmp_path / "recording.mp4"
    rng = np.random.default_rng(1)
    path.write_bytes(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + rng.bytes(50_000))
    assert detect_kind(path) == MEDIA
    with pytest.raises(CorruptDocument) as err:
        media.probe(path)
    _says_where_not(err.value.detail, path)


def test_a_video_without_sound_has_nothing_to_transcribe(studio, media):
    mute = studio.make("mute.mp4", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=2", *H264_OR_MPEG4)
    assert detect_kind(mute) == MEDIA
    with pytest.raises(EmptyDocument) as err:
        media.probe(mute)
    assert "audio track" in err.value.detail
    _says_where_not(err.value.detail, mute)


def test_an_unknown_audio_codec_is_unsupported(tmp_path, media):
    path = tmp_path / "dictaphone.wav"
    data = bytes(32_000)
    fmt = struct.pack("<IHHIIHH", 16, 0x1234, 1, 16000, 32000, 2, 16)  # format tag 0x1234: no such codec
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + fmt
                     + b"data" + struct.pack("<I", len(data)) + data)
    assert detect_kind(path) == MEDIA
    with pytest.raises(UnsupportedFormat) as err:
        media.probe(path)
    assert "codec" in err.value.detail
    _says_where_not(err.value.detail, path)


def test_a_recording_over_the_length_limit_is_refused(studio):
    five = studio.make("five.wav", "-f", "lavfi", "-i", "sine=duration=5")
    with pytest.raises(DocumentTooLarge) as err:
        Media(max_duration_s=2).probe(five)
    assert "longer than the limit" in err.value.detail
    _says_where_not(err.value.detail, five)
    assert Media(max_duration_s=6).probe(five).duration == pytest.approx(5, abs=TOLERANCE_S)


@pytest.fixture
def stuck_pipe(tmp_path) -> Path:
    """A named pipe nobody writes to: opening or reading it blocks for ever."""
    path = tmp_path / "stuck.m4a"
    os.mkfifo(path)
    return path


def test_probing_a_pipe_is_refused_at_once(stuck_pipe):
    # What ffmpeg may read is decided from the file's first bytes, so only a regular file can be a recording.
    start = time.monotonic()
    with pytest.raises(UnsupportedFormat) as err:
        Media(probe_timeout=2).probe(stuck_pipe)
    assert time.monotonic() - start < HANG_LIMIT_S
    assert "not a regular file" in err.value.detail
    _says_where_not(err.value.detail, stuck_pipe)
    assert not _media_children()


def test_decoding_a_pipe_is_refused_at_once(stuck_pipe):
    info = MediaInfo(duration=3.0, container="mov,mp4,m4a,3gp,3g2,mj2", codec="aac", channels=1,
                     sample_rate=44100, has_video=False)
    start = time.monotonic()
    with pytest.raises(UnsupportedFormat) as err:
        list(Media(stall_timeout=1).decode(stuck_pipe, info))
    assert time.monotonic() - start < HANG_LIMIT_S
    _says_where_not(err.value.detail, stuck_pipe)
    assert not _media_children()


def _hanging(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A stand-in for ffmpeg or ffprobe that hangs without a word (as on a stalled disk), and its pid file."""
    pid_file = tmp_path / f"{name}.pid"
    binary = tmp_path / name
    binary.write_text(f"#!/bin/sh\necho $$ > '{pid_file}'\nexec sleep 120\n")
    binary.chmod(0o755)
    return binary, pid_file


def _gone(pid_file: Path) -> bool:
    return not Path(f"/proc/{int(pid_file.read_text())}").exists()


def test_probing_gives_up_when_ffprobe_hangs(studio, tmp_path):
    ffprobe, pid_file = _hanging(tmp_path, "ffprobe")
    path = studio.recording(RECORDINGS[0])
    start = time.monotonic()
    with pytest.raises(CorruptDocument) as err:
        Media(ffprobe=str(ffprobe), probe_timeout=2).probe(path)
    assert time.monotonic() - start < HANG_LIMIT_S
    assert "damaged" in err.value.detail
    _says_where_not(err.value.detail, path)
    assert _gone(pid_file), "the hung ffprobe was left running"


def test_decoding_gives_up_when_ffmpeg_stalls(studio, tmp_path):
    ffmpeg, pid_file = _hanging(tmp_path, "ffmpeg")
    path = studio.recording(RECORDINGS[0])
    info = Media().probe(path)
    start = time.monotonic()
    with pytest.raises(CorruptDocument) as err:
        list(Media(ffmpeg=str(ffmpeg), stall_timeout=1).decode(path, info))
    assert time.monotonic() - start < HANG_LIMIT_S
    assert "produced no audio" in err.value.detail
    _says_where_not(err.value.detail, path)
    assert _gone(pid_file), "the stalled ffmpeg was left running"


def test_decoding_works_with_more_than_1024_descriptors_open(tmp_path):
    """A busy service holds many descriptors; waiting on ffmpeg must not depend on their numbers."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the descriptor limit of this machine is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        audio = Media().read_all(Path(__file__).resolve().parents[2] / "samples" / "rotterdam-pilot-standup.m4a")
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert audio.shape[0] > 40 * 16000  # the whole 49 s stand-up
