"""Data for bench/diarization.py: real voices, the tuning/scoring split by speaker, conversations, DER.

Voices come from three kinds of place, all real speech:
- ``shared/data/audio``: the three speakers the old default was tuned on (always in the tuning split);
- a folder of speakers, ``DIR/<corpus>/<speaker>/*.{flac,wav,mp3}`` (one subfolder per speaker);
- a folder of real recorded conversations, ``NAME.wav`` beside ``NAME.rttm`` (and optionally
  ``NAME.uem``): each is scored whole through the transcriber, and the stretches of at least
  1.5 s in which exactly one person speaks become that person's voice for the synthetic
  conversations.

The split is by speaker, never by conversation: within each corpus the speakers are sorted by
a hash of their id and dealt alternately to "tune" and "score". Recordings that share a
speaker form one group and are dealt together, so no voice of a scoring recording is heard
while tuning.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.speech.base import SAMPLE_RATE

FRAME = 0.01  # scoring resolution, seconds
AUDIO_EXT = {".flac", ".wav", ".mp3", ".ogg", ".m4a"}
MIN_SOLO = 1.5  # seconds of one speaker alone in a recording to count as that speaker's voice
SHARED_VOICES = {"jfk": "jfk.flac", "libri-2412": "librispeech_dev-clean_2412-153948-0000.flac",
                 "osr": "OSR_us_000_0034_8k.wav"}


def decode(path: Path) -> np.ndarray:
    """16 kHz mono float32 via ffmpeg (list arguments, no shell)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
           "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    pcm = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


@dataclass
class Voice:
    id: str  # "corpus:speaker"
    corpus: str
    sources: list[np.ndarray] = field(default_factory=list)
    split: str = ""

    @property
    def seconds(self) -> float:
        return sum(len(s) for s in self.sources) / SAMPLE_RATE


@dataclass
class Recording:
    name: str
    path: Path
    turns: list[tuple[float, float, str]]  # start, end, speaker (may overlap)
    uem: tuple[float, float] | None
    split: str = ""

    @property
    def speakers(self) -> set[str]:
        return {s for _, _, s in self.turns}


@dataclass
class Conversation:
    name: str
    kind: str
    audio: np.ndarray
    turns: list[tuple[float, float, str]]

    @property
    def speakers(self) -> set[str]:
        return {s for _, _, s in self.turns}

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def _h(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()


def _deal(keys: list[str], first: str = "tune") -> dict[str, str]:
    """Keys sorted by hash, dealt alternately to tune and score."""
    other = "score" if first == "tune" else "tune"
    return {k: (first if i % 2 == 0 else other) for i, k in enumerate(sorted(keys, key=_h))}


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            turns.append((start, start + dur, f[7]))
    return turns


def load_recordings(folder: Path | None) -> list[Recording]:
    if folder is None:
        return []
    out = []
    for rttm in sorted(folder.glob("*.rttm")):
        audio = next((rttm.with_suffix(e) for e in sorted(AUDIO_EXT) if rttm.with_suffix(e).exists()), None)
        if audio is None:
            continue
        uem = None
        if rttm.with_suffix(".uem").exists():
            f = rttm.with_suffix(".uem").read_text().split()
            uem = (float(f[2]), float(f[3]))
        out.append(Recording(rttm.stem, audio, read_rttm(rttm), uem))
    # Recordings sharing a speaker are one group (union-find), dealt to one split together.
    parent = {r.name: r.name for r in out}

    def root(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    by_speaker: dict[str, str] = {}
    for r in out:
        for s in r.speakers:
            if s in by_speaker:
                parent[root(r.name)] = root(by_speaker[s])
            by_speaker[s] = r.name
    groups = _deal(sorted({root(r.name) for r in out}), first="score")
    for r in out:
        r.split = groups[root(r.name)]
    return out


def solo_stretches(rec: Recording, audio: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Each speaker's stretches of at least MIN_SOLO seconds in which nobody else speaks."""
    n = len(audio) * 100 // SAMPLE_RATE
    talking = {s: np.zeros(n, dtype=bool) for s in sorted(rec.speakers)}  # sorted: same voices every run
    for start, end, s in rec.turns:
        talking[s][int(start * 100) : int(end * 100)] = True
    count = sum(talking.values())
    out: dict[str, list[np.ndarray]] = {}
    for s, frames in talking.items():
        edges = np.diff(np.r_[0, (frames & (count == 1)).astype(np.int8), 0])
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if b - a >= MIN_SOLO * 100:
                out.setdefault(s, []).append(audio[a * SAMPLE_RATE // 100 : b * SAMPLE_RATE // 100])
    return out


def load_voices(shared_audio: Path, speakers_dir: Path | None, recordings: list[Recording],
                min_seconds: float = 4.0) -> dict[str, Voice]:
    """Every voice with at least ``min_seconds`` of speech, each assigned to a split."""
    voices: dict[str, Voice] = {}
    for name, file in SHARED_VOICES.items():
        if (shared_audio / file).exists():
            voices[f"shared:{name}"] = Voice(f"shared:{name}", "shared", [decode(shared_audio / file)], "tune")
    if speakers_dir is not None:
        for corpus in sorted(p for p in speakers_dir.iterdir() if p.is_dir()):
            found = {}
            for spk in sorted(p for p in corpus.iterdir() if p.is_dir()):
                files = sorted(f for f in spk.iterdir() if f.suffix.lower() in AUDIO_EXT)
                if files:
                    found[f"{corpus.name}:{spk.name}"] = Voice(f"{corpus.name}:{spk.name}", corpus.name,
                                                               [decode(f) for f in files])
            for vid, split in _deal(list(found)).items():
                found[vid].split = split
            voices.update(found)
    for rec in recordings:
        for spk, stretches in solo_stretches(rec, decode(rec.path)).items():
            vid = f"meeting:{spk}"
            voices.setdefault(vid, Voice(vid, "meeting", [], rec.split)).sources.extend(stretches)
    return {k: v for k, v in voices.items() if v.seconds >= min_seconds}


def _turn(voice: Voice, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A piece of about ``seconds`` cut at a random offset of one of the voice's sources."""
    weights = np.array([len(s) for s in voice.sources], dtype=float)
    src = voice.sources[int(rng.choice(len(voice.sources), p=weights / weights.sum()))]
    n = min(int(seconds * SAMPLE_RATE), len(src))
    at = int(rng.integers(0, len(src) - n + 1))
    return src[at : at + n]


def build_conversation(name: str, kind: str, voices: list[Voice], n_turns: int, rng: np.random.Generator,
                       turn_range: tuple[float, float], gap_range: tuple[float, float] = (0.2, 0.6)) -> Conversation:
    """Turns of the given voices, none twice in a row (every one speaks in the first turns)."""
    pieces, turns, t, previous = [], [], 0.0, None
    for k in range(n_turns):
        choices = [v for v in voices if v is not previous] or voices
        who = voices[k] if k < len(voices) else choices[int(rng.integers(len(choices)))]
        gap = np.zeros(int(rng.uniform(*gap_range) * SAMPLE_RATE), dtype=np.float32)
        piece = _turn(who, rng.uniform(*turn_range), rng)
        pieces += [gap, piece]
        t += len(gap) / SAMPLE_RATE
        turns.append((t, t + len(piece) / SAMPLE_RATE, who.id))
        t += len(piece) / SAMPLE_RATE
        previous = who
    pieces.append(np.zeros(int(0.5 * SAMPLE_RATE), dtype=np.float32))
    return Conversation(name, kind, np.concatenate(pieces), turns)


KINDS = {  # kind -> which corpora may speak (None: any); the first listed must be present
    "meeting+read": ("meeting", "read"),
    "meeting": ("meeting",),
    "read": ("read",),
    "mixed": None,
    "one voice": None,
}


def _family(v: Voice) -> str:
    return "meeting" if v.corpus == "meeting" else "read" if v.corpus.startswith("libri") else v.corpus


def build_set(voices: dict[str, Voice], split: str, per_kind: int, n_turns: int, rng: np.random.Generator,
              turn_range: tuple[float, float]) -> list[Conversation]:
    """``per_kind`` conversations of each kind from the voices of one split (2-4 speakers; 1 for "one voice")."""
    pool = [v for v in voices.values() if v.split == split]
    convs = []
    for kind, families in KINDS.items():
        allowed = [v for v in pool if families is None or _family(v) in families]
        for c in range(per_kind):
            k = 1 if kind == "one voice" else int(rng.integers(2, 5))
            if families and len(families) > 1:  # one of each family first, then any allowed
                chosen = [allowed_f[int(rng.integers(len(allowed_f)))] for f in families
                          for allowed_f in [[v for v in allowed if _family(v) == f]] if allowed_f]
                rest = [v for v in allowed if v not in chosen]
                idx = rng.permutation(len(rest))[: max(0, k - len(chosen))]
                chosen += [rest[i] for i in idx]
            else:
                idx = rng.permutation(len(allowed))[:k]
                chosen = [allowed[i] for i in idx]
            if len(chosen) < min(k, 2 if kind != "one voice" else 1):
                continue
            chosen = [chosen[i] for i in rng.permutation(len(chosen))]
            convs.append(build_conversation(f"{split}/{kind}/{c:02d}", kind, chosen, n_turns, rng, turn_range))
    return convs


def score(ref: list[tuple[float, float, str]], hyp: list[tuple[float, float, str | None]],
          span: tuple[float, float]) -> dict:
    """Frame-level DER parts (seconds) inside ``span``, overlapping reference speech counted per speaker.

    Per 10 ms frame: missed = max(0, n_ref - n_hyp), false alarm = max(0, n_hyp - n_ref),
    confusion = min(n_ref, n_hyp) - correct, with the optimal one-to-one speaker mapping
    (Hungarian assignment on co-occurring frames).
    """
    from scipy.optimize import linear_sum_assignment

    lo, n = round(span[0] / FRAME), round((span[1] - span[0]) / FRAME)

    def raster(spans):
        ids: dict[str, int] = {}
        rows: list[np.ndarray] = []
        for start, end, who in spans:
            if who is None:
                continue
            if who not in ids:
                ids[who] = len(ids)
                rows.append(np.zeros(n, dtype=bool))
            a, b = max(0, round(start / FRAME) - lo), min(n, round(end / FRAME) - lo)
            if b > a:
                rows[ids[who]][a:b] = True
        return np.array(rows).reshape(len(rows), n)

    r, h = raster(ref), raster(hyp)
    n_ref, n_hyp = r.sum(0), h.sum(0)
    co = r.astype(np.float64) @ h.T.astype(np.float64) if len(r) and len(h) else np.zeros((len(r), len(h)))
    correct = 0.0
    if co.size:
        rows, cols = linear_sum_assignment(co, maximize=True)
        correct = co[rows, cols].sum()
    return {"speech": n_ref.sum() * FRAME,
            "missed": np.maximum(0, n_ref - n_hyp).sum() * FRAME,
            "false_alarm": np.maximum(0, n_hyp - n_ref).sum() * FRAME,
            "confusion": (np.minimum(n_ref, n_hyp).sum() - correct) * FRAME}


def pooled(parts: list[dict]) -> dict:
    total = {k: sum(p[k] for p in parts) for k in ("speech", "missed", "false_alarm", "confusion")}
    return total | {"der": (total["missed"] + total["false_alarm"] + total["confusion"]) / max(total["speech"], 1e-9)}
