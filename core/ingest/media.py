"""Audio and video decoding with ffmpeg: probing, and streamed 16 kHz PCM.

ffmpeg and ffprobe run as subprocesses with argument lists (never a shell),
under timeouts: a probe has a fixed budget, and a decode is killed when it
produces nothing for ``stall_timeout`` seconds or runs past a deadline scaled
to the recording's length. Decoding streams fixed-size blocks, so an hour-long
recording never sits whole in memory.

Every ffmpeg and ffprobe run reads one file and nothing else. The demuxer is
chosen here from the file's content (``media_demuxer``) and forced, with that
demuxer as the only one allowed and ``file`` as the only protocol allowed:
left to probe, ffmpeg takes a playlist behind an MP3's ID3 tag for HLS, or a
script for concat, and reads the files they name (another scope's recording)
whatever the upload is called. External references inside a QuickTime movie
(drefs) stay off.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import BackendError, CorruptDocument, DocumentTooLarge, EmptyDocument, UnsupportedFormat
from core.ingest.loaders.detect import MOV_DEMUXER, media_demuxer

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
_BYTES_PER_SAMPLE = 2  # s16le
# Decoding runs hundreds of times faster than real time; this is a ceiling for broken files only.
_DEADLINE_FLOOR_S = 120.0
_DEADLINE_PER_AUDIO_S = 0.1
# Demuxer options that keep a container to the one file (both are ffmpeg's defaults, stated so
# that a build or version with other defaults cannot open a movie's external tracks).
_CONFINED = {MOV_DEMUXER: ("-enable_drefs", "0", "-use_absolute_path", "0")}


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ffprobe says about a recording's first audio stream."""

    duration: float
    container: str
    codec: str
    channels: int
    sample_rate: int
    has_video: bool
    created: str | None = None  # the container's creation date (YYYY-MM-DD) when it records one

    @property
    def kind(self) -> str:
        return "video" if self.has_video else "audio"


class Media:
    """Probes and decodes recordings with the ffmpeg binaries on PATH (or given paths)."""

    def __init__(self, *, ffmpeg: str = "ffmpeg", ffprobe: str = "ffprobe", probe_timeout: float = 30.0,
                 stall_timeout: float = 60.0, max_duration_s: float = 8 * 3600.0):
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe
        self._probe_timeout = probe_timeout
        self._stall_timeout = stall_timeout
        self.max_duration_s = max_duration_s

    def _binary(self, name: str) -> str:
        found = shutil.which(name)
        if not found:
            raise BackendError(f"{name} is not installed; it is needed to read audio and video (apt-get install ffmpeg)")
        return found

    # -- probing -----------------------------------------------------------------

    def probe(self, path: Path) -> MediaInfo:
        """Duration, codec and channels of ``path``'s first audio stream, refusing what cannot be transcribed."""
        path = Path(path)
        args = [self._binary(self._ffprobe), "-v", "error", "-print_format", "json",
                "-show_format", "-show_streams", *_input(path)]
        try:
            done = subprocess.run(args, capture_output=True, timeout=self._probe_timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise CorruptDocument(f"{path.name}: reading the recording's header took over "
                                  f"{self._probe_timeout:.0f} s; the file is likely damaged") from e
        if done.returncode != 0:
            reason = _last_line(done.stderr, path) or "ffprobe could not read it"
            raise CorruptDocument(f"{path.name} is not a readable audio or video file ({reason})")
        try:
            meta = json.loads(done.stdout or b"{}")
        except json.JSONDecodeError as e:
            raise CorruptDocument(f"{path.name}: ffprobe returned unreadable metadata") from e
        return self._info(path, meta)

    def _info(self, path: Path, meta: dict) -> MediaInfo:
        streams = meta.get("streams") or []
        fmt = meta.get("format") or {}
        audio = [s for s in streams if s.get("codec_type") == "audio"]
        # Cover art in an MP3 or M4A shows up as a one-frame video stream; it is not a video.
        video = [s for s in streams if s.get("codec_type") == "video"
                 and not (s.get("disposition") or {}).get("attached_pic")]
        if not audio:
            if video:
                raise EmptyDocument(f"{path.name} is a video without an audio track: there is nothing to transcribe")
            raise UnsupportedFormat(f"{path.name} has no audio stream that ffmpeg recognises")
        first = audio[0]
        codec = first.get("codec_name") or "unknown"
        if codec in {"unknown", "none"} or not first.get("sample_rate"):
            tag = first.get("codec_tag") or first.get("codec_tag_string") or "?"
            raise UnsupportedFormat(f"{path.name}: its audio codec (tag {tag}) is not one ffmpeg can decode")
        info = MediaInfo(duration=0.0, container=fmt.get("format_name") or "unknown", codec=codec,
                         channels=int(first.get("channels") or 1), sample_rate=int(first["sample_rate"]),
                         has_video=bool(video), created=_created(fmt, first))
        duration = _float(first.get("duration")) or _float(fmt.get("duration"))
        if duration is None:
            # Some containers (a WAV whose header was never finished) carry no length: measure it.
            duration = self._measure(path, info)
        if duration <= 0.05:
            raise EmptyDocument(f"{path.name} is 0 seconds long: there is nothing to transcribe")
        if duration > self.max_duration_s:
            raise DocumentTooLarge(
                f"{path.name} lasts {_hours(duration)}, longer than the limit of "
                f"{_hours(self.max_duration_s)} (IMP_SPEECH__MAX_HOURS)"
            )
        return replace(info, duration=duration)

    def _measure(self, path: Path, info: MediaInfo) -> float:
        probe = replace(info, duration=self.max_duration_s)
        samples = 0
        for block in self.decode(path, probe, sample_rate=8000, limit_seconds=self.max_duration_s + 1):
            samples += len(block)
        return samples / 8000

    # -- decoding ----------------------------------------------------------------

    def decode(self, path: Path, info: MediaInfo, *, channel: int | None = None, channels: int = 1,
               sample_rate: int = SAMPLE_RATE, block_seconds: float = 10.0,
               limit_seconds: float | None = None) -> Iterator[np.ndarray]:
        """Yield float32 blocks of ``path``'s first audio stream at ``sample_rate``.

        By default the channels are mixed to mono; ``channel`` picks one channel
        instead, and ``channels`` > 1 keeps that many interleaved (blocks of shape
        (n, channels)). ``limit_seconds`` stops after that much audio.
        """
        path = Path(path)
        args = [self._binary(self._ffmpeg), "-nostdin", "-hide_banner", "-v", "error", *_input(path),
                "-map", "0:a:0", "-vn", "-sn", "-dn"]
        if limit_seconds is not None:
            args += ["-t", f"{limit_seconds:.3f}"]
        if channel is not None:
            args += ["-af", f"pan=mono|c0=c{channel}"]
        else:
            args += ["-ac", str(channels)]
        args += ["-ar", str(sample_rate), "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]
        frame = _BYTES_PER_SAMPLE * (1 if channel is not None else channels)
        block_bytes = int(block_seconds * sample_rate) * frame
        expected = min(info.duration, limit_seconds or info.duration)
        deadline = time.monotonic() + _DEADLINE_FLOOR_S + _DEADLINE_PER_AUDIO_S * expected
        width = 1 if channel is not None else channels
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            produced = 0
            try:
                pending = bytearray()
                while True:
                    data = self._read(fd, block_bytes - len(pending), deadline, path)
                    if not data:
                        break
                    pending += data
                    if len(pending) >= block_bytes:
                        produced += len(pending)
                        yield _samples(bytes(pending), width)
                        pending.clear()
                whole = len(pending) - len(pending) % frame
                if whole:
                    produced += whole
                    yield _samples(bytes(pending[:whole]), width)
                code = proc.wait(timeout=self._stall_timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            if code != 0:
                errors.seek(0)
                raise self._decode_error(path, errors.read(), produced)
        log.debug("decoded %s: %.1f s of audio", path.name, produced / frame / sample_rate)

    def _read(self, fd: int, want: int, deadline: float, path: Path) -> bytes:
        """Read up to ``want`` bytes, failing when ffmpeg stalls or overruns its deadline."""
        wait = min(self._stall_timeout, deadline - time.monotonic())
        if wait <= 0:
            raise CorruptDocument(f"{path.name}: decoding took far longer than the recording's length; stopped")
        # poll(), not select(): select() fails outright on descriptors above 1023, which a busy
        # service (many connections, open indexes) reaches.
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(wait * 1000):
            raise CorruptDocument(f"{path.name}: ffmpeg produced no audio for {wait:.0f} s; stopped")
        # Never more than asked: a block must end on a whole frame of every channel.
        return os.read(fd, want)

    @staticmethod
    def _decode_error(path: Path, stderr: bytes, produced: int) -> Exception:
        reason = _last_line(stderr, path) or "ffmpeg failed"
        lowered = reason.lower()
        if "decoder" in lowered and "not found" in lowered or "unsupported codec" in lowered:
            return UnsupportedFormat(f"{path.name}: its audio codec is not supported ({reason})")
        return CorruptDocument(f"{path.name}: the recording is damaged and could not be decoded ({reason})")

    def read_all(self, path: Path, info: MediaInfo | None = None) -> np.ndarray:
        """The whole recording as one mono 16 kHz array: for short clips and tests only."""
        info = info or self.probe(path)
        blocks = list(self.decode(path, info))
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)

    # -- channels ----------------------------------------------------------------

    def separate_channels(self, path: Path, info: MediaInfo, *, seconds: float = 300.0,
                          dominance_db: float = 10.0, share: float = 0.6) -> bool:
        """Whether each channel carries a different voice (a call recorded one side per channel).

        A stereo room recording or a mono mix copied to both channels has
        channels that are loud at the same moments. A split-channel call has one
        channel far louder than the others whenever someone speaks. Judged on the
        first ``seconds``: True when, in at least ``share`` of the active 100 ms
        frames, one channel is ``dominance_db`` louder than every other.
        """
        if info.channels < 2 or info.channels > 8:
            return False
        rate = 8000
        frames = []
        for block in self.decode(path, info, channels=info.channels, sample_rate=rate, limit_seconds=seconds):
            n = len(block) - len(block) % (rate // 10)
            if n:
                frames.append(block[:n].reshape(-1, rate // 10, info.channels))
        if not frames:
            return False
        energy = np.concatenate(frames).astype(np.float64)
        db = 10 * np.log10(np.mean(energy**2, axis=1) + 1e-10)  # (frames, channels)
        loudest = db.max(axis=1)
        active = loudest > max(-50.0, float(np.percentile(loudest, 90)) - 30.0)
        if active.sum() < 10:
            return False
        ordered = np.sort(db[active], axis=1)
        dominant = (ordered[:, -1] - ordered[:, -2]) >= dominance_db
        # Each channel must lead somewhere, or it is a silent or bleed-only channel.
        leaders = set(np.argmax(db[active][dominant], axis=1).tolist())
        return bool(dominant.mean() >= share and len(leaders) == info.channels)


def _input(path: Path) -> list[str]:
    """ffmpeg's input options for ``path``: its own demuxer forced and the only one allowed, files only."""
    demuxer = media_demuxer(path)
    if demuxer is None:
        raise UnsupportedFormat(f"{path.name} is not an audio or video file IMP can read")
    forced = demuxer.split(",")[0]
    return ["-f", forced, "-format_whitelist", demuxer, "-protocol_whitelist", "file",
            *_CONFINED.get(demuxer, ()), "-i", _url(path)]


def _url(path: Path) -> str:
    """ffmpeg reads "name:rest" as a protocol; a file: URL of the absolute path never is."""
    return f"file:{path.resolve()}"


def _hours(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{seconds / 60:.1f} min"


def _samples(data: bytes, width: int) -> np.ndarray:
    pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return pcm if width == 1 else pcm.reshape(-1, width)


def _created(fmt: dict, stream: dict) -> str | None:
    """The recording date from container tags (creation_time, date), as YYYY-MM-DD."""
    for tags in (fmt.get("tags") or {}, stream.get("tags") or {}):
        for key, value in tags.items():
            if key.lower() in ("creation_time", "date", "date_recorded") and isinstance(value, str):
                day = value.strip()[:10]
                if len(day) == 10 and day[4] == "-" and day[7] == "-" and day[:4].isdigit() and day[:4] != "1970":
                    return day
    return None


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "N/A") else None
    except (TypeError, ValueError):
        return None


def _last_line(stderr: bytes, path: Path) -> str:
    """ffmpeg's last complaint, without the server-side path it names (the user knows the file by name)."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for shown in (_url(path), str(path.resolve()), str(path)):
        line = line.replace(f"{shown}: ", "").replace(shown, path.name)
    return line[:300]
