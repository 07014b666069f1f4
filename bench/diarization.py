"""Speaker diarization: DER and speaker-count accuracy on synthetic conversations, plus embedding cost.

What it measures: ``core.speech.diarize`` on conversations built from the three real
speakers in ``shared/data/audio`` (JFK 1961 broadcast, a LibriSpeech reader, an 8 kHz
telephone-band Harvard-sentences reader). Each conversation is a sequence of turns
(pieces cut at random offsets of a speaker's file, no speaker twice in a row, 0.2-0.6 s
of silence between turns); half use 2 speakers, half 3. One set of conversations per
range of turn lengths (default: 1.5-6 s, and short turns of 1-2.5 s).

Oracle segmentation: every reference turn is one segment, embedded with
``SpeakerEmbedder.embed`` on the conversation audio between its start and end, then
``label_segments`` clusters them. There is no overlapped speech, so the diarization
error rate (DER) here is speaker confusion plus the speech of turns that got no label
(missed) plus labelled non-speech (false alarm), scored on 10 ms frames over the
reference speech, with the optimal one-to-one speaker mapping (Hungarian assignment,
``scipy.optimize.linear_sum_assignment``). Embeddings are computed once; the clustering
threshold is swept over them, and the script names the threshold it would pick (the middle
of those within 0.5 points of the lowest pooled DER); ``DEFAULT_THRESHOLD`` in
core/speech/diarize.py is set from that by hand. ``--torch-threads 1`` measures the cost
with one intra-op thread.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, Contention, header, quiet, summarize_ms, table, write_result  # noqa: E402

from core.models import SpeechSegment  # noqa: E402
from core.speech.base import SAMPLE_RATE  # noqa: E402
from core.speech.diarize import DEFAULT_THRESHOLD, SpeakerEmbedder, label_segments  # noqa: E402

AUDIO = DATA / "audio"
SPEAKERS = {  # short name -> file
    "jfk": "jfk.flac",
    "libri": "librispeech_dev-clean_2412-153948-0000.flac",
    "osr": "OSR_us_000_0034_8k.wav",
}
FRAME = 0.01  # scoring resolution, seconds


def decode(path: Path) -> np.ndarray:
    """16 kHz mono float32 via ffmpeg (list arguments, no shell)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
           "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    pcm = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


@dataclass
class Conversation:
    name: str
    audio: np.ndarray
    turns: list[tuple[float, float, str]]  # start, end, reference speaker

    @property
    def speakers(self) -> set[str]:
        return {s for _, _, s in self.turns}


def build_conversation(name: str, voices: dict[str, np.ndarray], speakers: list[str], n_turns: int,
                       rng: np.random.Generator, min_turn: float, max_turn: float) -> Conversation:
    pieces: list[np.ndarray] = []
    turns: list[tuple[float, float, str]] = []
    t = 0.0
    previous = None
    for k in range(n_turns):
        # Every speaker speaks in the first turns, then any speaker but the previous one.
        who = speakers[k] if k < len(speakers) else str(rng.choice([s for s in speakers if s != previous]))
        voice = voices[who]
        n = int(rng.uniform(min_turn, max_turn) * SAMPLE_RATE)
        n = min(n, len(voice))
        at = int(rng.integers(0, len(voice) - n + 1))
        gap = np.zeros(int(rng.uniform(0.2, 0.6) * SAMPLE_RATE), dtype=np.float32)
        pieces += [gap, voice[at : at + n]]
        t += len(gap) / SAMPLE_RATE
        turns.append((t, t + n / SAMPLE_RATE, who))
        t += n / SAMPLE_RATE
        previous = who
    return Conversation(name, np.concatenate(pieces), turns)


def frames(n_seconds: float) -> int:
    return int(np.ceil(n_seconds / FRAME)) + 1


def rasterise(spans: list[tuple[float, float, str | None]], n: int, ids: dict[str, int]) -> np.ndarray:
    """Per 10 ms frame: the index of the speaker talking (-1 none). Later spans win (no overlap here)."""
    out = np.full(n, -1, dtype=np.int64)
    for start, end, who in spans:
        if who is not None:
            out[int(round(start / FRAME)) : int(round(end / FRAME))] = ids.setdefault(who, len(ids))
    return out


def score(ref_spans, hyp_spans, duration: float) -> dict:
    """Frame-level DER parts (seconds) with the optimal one-to-one speaker mapping."""
    from scipy.optimize import linear_sum_assignment

    n = frames(duration)
    ref = rasterise(ref_spans, n, {})
    hyp = rasterise(hyp_spans, n, {})
    r_speech, h_speech = ref >= 0, hyp >= 0
    both = r_speech & h_speech
    overlap = np.zeros((max(ref.max() + 1, 1), max(hyp.max() + 1, 1)))
    np.add.at(overlap, (ref[both], hyp[both]), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    correct = overlap[rows, cols].sum()
    return {
        "speech": r_speech.sum() * FRAME,
        "missed": (r_speech & ~h_speech).sum() * FRAME,
        "false_alarm": (h_speech & ~r_speech).sum() * FRAME,
        "confusion": (both.sum() - correct) * FRAME,
    }


def der(parts: list[dict]) -> dict:
    total = {k: sum(p[k] for p in parts) for k in ("speech", "missed", "false_alarm", "confusion")}
    errors = total["missed"] + total["false_alarm"] + total["confusion"]
    return total | {"der": errors / total["speech"]}


def evaluate(convs, embeddings, threshold: float, oracle_count: bool = False) -> dict:
    parts, count_ok = [], 0
    for conv, embs in zip(convs, embeddings, strict=True):
        segs = [SpeechSegment(start=s, end=e, text="") for s, e, _ in conv.turns]
        cap = len(conv.speakers) if oracle_count else None
        labelled, found = label_segments(segs, embs, threshold=threshold, max_speakers=cap)
        count_ok += found == len(conv.speakers)
        hyp = [(s.start, s.end, s.speaker) for s in labelled]
        parts.append(score(conv.turns, hyp, len(conv.audio) / SAMPLE_RATE))
    return der(parts) | {"count_accuracy": count_ok / len(convs),
                         "per_conversation_der": [round(der([p])["der"], 4) for p in parts]}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=12, help="per turn range; half with 2 speakers, half with 3")
    ap.add_argument("--turns", type=int, default=14, help="turns per conversation")
    ap.add_argument("--turn-ranges", default="1.5-6,1-2.5",
                    help="comma-separated shortest-longest turn lengths in seconds, one set of conversations each")
    ap.add_argument("--thresholds", default=",".join(f"{0.15 + 0.025 * i:.3f}" for i in range(19)),
                    help="comma-separated cosine-distance cuts to sweep (default 0.15 to 0.60)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch intra-op threads for this run (default: torch's own choice)")
    return ap.parse_args()


def build_set(voices: dict[str, np.ndarray], n: int, turns: int, lo: float, hi: float,
              rng: np.random.Generator) -> list[Conversation]:
    """n conversations: even ones between a pair of speakers (pairs in turn), odd ones all three."""
    names = list(voices)
    pairs = [[a, b] for i, a in enumerate(names) for b in names[i + 1 :]]
    convs = []
    for c in range(n):
        who = list(pairs[(c // 2) % len(pairs)]) if c % 2 == 0 else list(names)
        rng.shuffle(who)
        convs.append(build_conversation(f"{lo:g}-{hi:g}s/conv{c:02d}-{len(who)}spk", voices, who, turns, rng, lo, hi))
    return convs


def embed_all(embedder: SpeakerEmbedder, convs: list[Conversation]) -> tuple[list, list[float], list[float]]:
    """Oracle segmentation: one embedding per reference turn, cut from the conversation audio."""
    embeddings, call_s, audio_s = [], [], []
    for conv in convs:
        embs = []
        for start, end, _ in conv.turns:
            piece = conv.audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
            t0 = time.perf_counter()
            embs.append(embedder.embed(piece))
            call_s.append(time.perf_counter() - t0)
            audio_s.append(len(piece) / SAMPLE_RATE)
        embeddings.append(embs)
    return embeddings, call_s, audio_s


def pick(sweep: dict[float, dict], tolerance: float = 0.005) -> float:
    """The middle of the thresholds whose pooled DER is within ``tolerance`` of the lowest.

    The middle rather than the minimum: the lowest DER often sits next to a cliff (one
    step further and two speakers merge), and real recordings will not match these.
    """
    lowest = min(r["der"] for r in sweep.values())
    near = sorted(t for t, r in sweep.items() if r["der"] <= lowest + tolerance)
    return near[len(near) // 2]


def main() -> None:
    args = parse()
    quiet()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    info = header("Speaker diarization (Resemblyzer embeddings + agglomerative clustering)")
    missing = [f for f in SPEAKERS.values() if not (AUDIO / f).exists()]
    if missing:
        sys.exit(f"missing evaluation audio in {AUDIO}: {', '.join(missing)}")
    voices = {name: decode(AUDIO / f) for name, f in SPEAKERS.items()}
    rng = np.random.default_rng(args.seed)
    ranges = [tuple(float(x) for x in r.split("-")) for r in args.turn_ranges.split(",")]
    sets = {f"{lo:g}-{hi:g} s": build_set(voices, args.conversations, args.turns, lo, hi, rng) for lo, hi in ranges}

    embedder = SpeakerEmbedder("cpu")
    t0 = time.perf_counter()
    embedder.warm_up()
    load_s = time.perf_counter() - t0
    embedded, call_s, audio_s = {}, [], []
    with Contention() as busy:
        for name, convs in sets.items():
            embs, calls, secs = embed_all(embedder, convs)
            embedded[name] = embs
            call_s += calls
            audio_s += secs
    rows = []
    for name, convs in sets.items():
        for k in (2, 3):
            group = [(c, e) for c, e in zip(convs, embedded[name], strict=True) if len(c.speakers) == k]
            rows.append([name, len(group), k, sum(len(c.turns) for c, _ in group),
                         round(sum(len(c.audio) for c, _ in group) / SAMPLE_RATE / 60, 1),
                         sum(x is None for _, e in group for x in e)])
    table("data: synthetic conversations (oracle turns, 0.2-0.6 s silence between turns)",
          ["turn lengths", "conversations", "speakers", "turns", "minutes", "turns without an embedding"], rows)
    ms_per_s = 1000 * sum(call_s) / sum(audio_s)
    calls = summarize_ms(call_s)
    table(f"embedding cost ({embedder.model_id}, CPU, {info['machine']['torch_threads']} torch threads, "
          f"{len(call_s)} calls on {sum(audio_s) / 60:.1f} min of audio)",
          ["warm_up s", "ms per s of audio", "call p50 ms", "call p95 ms", "call max ms", "other procs (cores)"],
          [[round(load_s, 2), round(ms_per_s, 1), calls["p50_ms"], calls["p95_ms"], calls["max_ms"], busy.cores]])

    thresholds = [float(x) for x in args.thresholds.split(",")]
    all_convs = [c for convs in sets.values() for c in convs]
    all_embs = [e for name in sets for e in embedded[name]]
    sweeps = {name: {t: evaluate(sets[name], embedded[name], t) for t in thresholds} for name in sets}
    pooled = {t: evaluate(all_convs, all_embs, t) for t in thresholds}
    best = pick(pooled)
    cols = ["threshold"]
    for name in sets:
        cols += [f"DER {name}", f"count ok {name}"]
    cols += ["DER all", "count ok all"]
    rows = []
    for t in thresholds:
        mark = " (default)" if abs(t - DEFAULT_THRESHOLD) < 1e-9 else ""
        row = [f"{t:.3f}{mark}"]
        for name in sets:
            row += [f"{sweeps[name][t]['der']:.1%}", f"{sweeps[name][t]['count_accuracy']:.0%}"]
        rows.append(row + [f"{pooled[t]['der']:.1%}", f"{pooled[t]['count_accuracy']:.0%}"])
    table("threshold sweep: DER (oracle segmentation, no overlap, pooled over conversations) "
          "and share of conversations with the right speaker count", cols, rows)
    print(f"threshold picked by this sweep: {best:.3f} (middle of those within 0.5 points of the lowest "
          "pooled DER); "
          f"default in core/speech/diarize.py: {DEFAULT_THRESHOLD}\n")

    rows, at_default = [], {}
    for name, convs in sets.items():
        for k in (2, 3):
            idx = [i for i, c in enumerate(convs) if len(c.speakers) == k]
            r = evaluate([convs[i] for i in idx], [embedded[name][i] for i in idx], DEFAULT_THRESHOLD)
            at_default[f"{name}, {k} speakers"] = r
            rows.append([name, k, f"{r['der']:.1%}", f"{r['confusion']:.1f}", f"{r['missed']:.1f}",
                         f"{r['count_accuracy']:.0%}", f"{max(r['per_conversation_der']):.1%}"])
    at_default["all"] = pooled_default = evaluate(all_convs, all_embs, DEFAULT_THRESHOLD)
    at_default["all, max_speakers = true count"] = oracle = evaluate(all_convs, all_embs, DEFAULT_THRESHOLD, True)
    for label, r in (("all", pooled_default), ("all, max_speakers = true count", oracle)):
        rows.append([label, "", f"{r['der']:.1%}", f"{r['confusion']:.1f}", f"{r['missed']:.1f}",
                     f"{r['count_accuracy']:.0%}", f"{max(r['per_conversation_der']):.1%}"])
    table(f"at the default threshold {DEFAULT_THRESHOLD}",
          ["turn lengths", "speakers", "DER", "confusion s", "missed s", "count ok", "worst conversation DER"], rows)

    write_result("diarization", info | {
        "args": vars(args),
        "model": embedder.model_id,
        "conversations": [{"name": c.name, "speakers": sorted(c.speakers), "turns": len(c.turns),
                           "seconds": round(len(c.audio) / SAMPLE_RATE, 2)} for c in all_convs],
        "turns_without_embedding": sum(e is None for embs in all_embs for e in embs),
        "embedding": {"warm_up_s": round(load_s, 3), "ms_per_audio_second": round(ms_per_s, 2),
                      "calls": calls, "other_procs_cores": busy.cores},
        "sweep": {name: {f"{t:.3f}": r for t, r in sw.items()} for name, sw in sweeps.items()},
        "sweep_pooled": {f"{t:.3f}": r for t, r in pooled.items()},
        "best_threshold": best,
        "default_threshold": DEFAULT_THRESHOLD,
        "at_default": at_default,
    })


if __name__ == "__main__":
    main()
