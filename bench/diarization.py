"""Speaker diarization on real voices: DER tuned on one set of speakers, scored on others.

What it measures: ``core.speech.diarize`` (Resemblyzer embeddings + agglomerative clustering)
on real speech of many people (see bench/diarization_data.py for where voices come from and
how speakers are split). Two ways in:

1. Oracle turns: synthetic conversations (turns cut from each voice's real speech, 0.2-0.6 s
   of silence between them, no one twice in a row) of five kinds: a meeting voice with a
   read one (the reported failure), meeting voices only, read voices only, any voices, one
   voice alone. Every reference turn is one segment, embedded by ``SpeakerEmbedder.embed``
   and clustered by ``label_segments``. The clustering threshold and the embedded length are
   swept on the TUNING speakers; the pick (middle of the plateau within 0.5 points of the
   lowest DER) is then scored, beside the old default (middle 2 s, cut 0.45) and the current
   code default, on the SCORING speakers, never heard while tuning.
2. Production path: ``Transcriber.transcribe`` (ffmpeg decode, Whisper segments, embeddings,
   clustering, exactly as the product runs) on recordings of the scoring speakers: a few of
   the synthetic conversations written to FLAC, and the real recorded conversations with
   their RTTM references (overlap included). The old default is applied to the very same
   recogniser segments in the same run, so the two columns differ only by diarization.

DER on 10 ms frames: (missed + false alarm + confusion) / reference speech, optimal
one-to-one speaker mapping, no collar, pooled over recordings. "count ok": share of
recordings whose number of speakers found is the true one.

Run:  .venv/bin/python bench/diarization.py --speakers DIR --recordings DIR
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DATA,
    Contention,
    Stopwatch,
    header,
    quiet,
    summarize_ms,
    table,
    write_result,
)
from diarization_data import (
    KINDS,
    Conversation,
    build_set,
    decode,
    load_recordings,
    load_voices,
    pooled,
    score,
)

from core.errors import EmptyDocument
from core.models import SpeechSegment
from core.speech.base import SAMPLE_RATE
from core.speech.diarize import (
    DEFAULT_THRESHOLD,
    MAX_EMBED_SECONDS,
    SpeakerEmbedder,
    label_segments,
)

OLD = (2.0, 0.45)  # (seconds embedded, threshold) before this change


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speakers", type=Path, help="folder of CORPUS/SPEAKER/*.flac|wav")
    ap.add_argument("--recordings", type=Path, help="folder of NAME.wav + NAME.rttm (+ NAME.uem)")
    ap.add_argument("--per-kind", type=int, default=6, help="synthetic conversations per kind and split")
    ap.add_argument("--turns", type=int, default=14)
    ap.add_argument("--turn-range", default="1.5-6", help="shortest-longest turn, seconds")
    ap.add_argument("--thresholds", default=",".join(f"{0.20 + 0.025 * i:.3f}" for i in range(13)))
    ap.add_argument("--windows", default="2,4,8", help="seconds embedded from a segment's middle, to sweep")
    ap.add_argument("--asr-per-kind", type=int, default=2, help="scoring conversations per kind run through ASR")
    ap.add_argument("--no-asr", action="store_true", help="skip the production path")
    ap.add_argument("--asr-only", action="store_true", help="only the production path (no oracle sweep)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--torch-threads", type=int, default=1)
    return ap.parse_args()


def embed_turns(embedder: SpeakerEmbedder, convs: list[Conversation]) -> tuple[list, list[float], list[float]]:
    out, call_s, audio_s = [], [], []
    for conv in convs:
        embs = []
        for start, end, _ in conv.turns:
            piece = conv.audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
            t0 = time.perf_counter()
            embs.append(embedder.embed(piece))
            call_s.append(time.perf_counter() - t0)
            audio_s.append(len(piece) / SAMPLE_RATE)
        out.append(embs)
    return out, call_s, audio_s


def evaluate(convs: list[Conversation], embeddings: list, threshold: float) -> dict:
    parts, ok = [], 0
    for conv, embs in zip(convs, embeddings, strict=True):
        segs = [SpeechSegment(start=s, end=e, text="") for s, e, _ in conv.turns]
        labelled, found = label_segments(segs, embs, threshold=threshold)
        ok += found == len(conv.speakers)
        parts.append(score(conv.turns, [(s.start, s.end, s.speaker) for s in labelled], (0.0, conv.seconds)))
    return pooled(parts) | {"count_ok": ok / max(len(convs), 1), "n": len(convs)}


def pick(sweep: dict[tuple[float, float], dict], tolerance: float = 0.005) -> tuple[float, float]:
    """Among the best window, the middle threshold of those within ``tolerance`` of its lowest DER."""
    best_w = min({w for w, _ in sweep}, key=lambda w: min(r["der"] for (ww, _), r in sweep.items() if ww == w))
    rows = {t: r for (w, t), r in sweep.items() if w == best_w}
    lowest = min(r["der"] for r in rows.values())
    near = sorted(t for t, r in rows.items() if r["der"] <= lowest + tolerance)
    return best_w, near[len(near) // 2]


def fmt(r: dict) -> list:
    return [f"{r['der']:.1%}", f"{r['confusion']:.1f}", f"{r['missed']:.1f}", f"{r['false_alarm']:.1f}",
            f"{r['count_ok']:.0%}"]


def production(items: list[tuple[str, Path, list, tuple[float, float]]], old: SpeakerEmbedder) -> tuple[list, dict]:
    """Transcriber with diarization on each recording, three ways on the same recogniser segments.

    "old": whole segments relabelled at 2 s / 0.45; "whole": the code default labelling each
    recogniser segment whole (``split_turns=False``, as before segments were cut at changes of
    speaker); "split": the product path, segments cut where the speaker changes.
    Also times, on the "whole" run's segments, what the worker's embedding costs either way.
    """
    from core.ingest.media import Media
    from core.speech.base import SpeechConfig
    from core.speech.transcriber import Transcriber
    from core.speech.turns import MIN_SPLIT_SECONDS

    transcribers = {k: Transcriber(Media(), SpeechConfig(), workers=1, split_turns=k == "split")
                    for k in ("whole", "split")}
    for t in transcribers.values():
        t.warm_up()
    keys = ("old", "whole", "split")
    rows, parts, wall, audio_s = [], {k: [] for k in keys}, {k: 0.0 for k in transcribers}, 0.0
    oks = {k: 0 for k in keys}
    cost = {"whole": 0.0, "split": 0.0, "speech": 0.0}
    for name, path, ref, span in items:
        true_n = len({s for _, _, s in ref})
        try:
            out = {}
            for k, t in transcribers.items():
                with Stopwatch() as sw:
                    out[k] = t.transcribe(path)
                wall[k] += sw.seconds
        except EmptyDocument:  # e.g. a recording with under a second of speech: scored as all missed
            p = score(ref, [], span)
            for k in keys:
                parts[k].append(p)
            rows.append([name, true_n, 0, 0, "no speech recognised", 0, "", 0, "", 0])
            continue
        audio_s += out["whole"].duration
        audio = decode(path)
        whole = out["whole"].segments
        embs = []
        for s in whole:
            clip = audio[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)]
            t0 = time.perf_counter()
            embs.append(old.embed(clip))
            cost["whole"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            if s.words and len(clip) >= MIN_SPLIT_SECONDS * SAMPLE_RATE:
                old.embed_windows(clip)
            else:
                old.embed(clip)
            cost["split"] += time.perf_counter() - t0
            cost["speech"] += s.end - s.start
        relabelled, _ = label_segments(whole, embs, threshold=OLD[1])
        row = [name, true_n, len(whole)]
        for key, segs in (("old", relabelled), ("whole", whole), ("split", out["split"].segments)):
            p = score(ref, [(s.start, s.end, s.speaker) for s in segs], span)
            found = len({s.speaker for s in segs if s.speaker})
            oks[key] += found == true_n
            parts[key].append(p)
            row += [found, f"{pooled([p])['der']:.1%}"]
        row.insert(len(row) - 2, len(out["split"].segments))
        rows.append(row)
    summary = {k: pooled(v) | {"count_ok": oks[k] / max(len(items), 1)} for k, v in parts.items()}
    summary["wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    summary["audio_s"] = round(audio_s, 1)
    summary["embed_ms_per_s"] = {k: round(1000 * cost[k] / max(cost["speech"], 1e-9), 1) for k in ("whole", "split")}
    return rows, summary


def main() -> None:
    a = parse()
    quiet()
    import torch

    torch.set_num_threads(a.torch_threads)
    info = header("Speaker diarization on real voices (tuned on some speakers, scored on others)")
    recordings = load_recordings(a.recordings)
    voices = load_voices(DATA / "audio", a.speakers, recordings)
    rows = []
    for split in ("tune", "score"):
        for corpus in sorted({v.corpus for v in voices.values()}):
            vs = [v for v in voices.values() if v.split == split and v.corpus == corpus]
            if vs:
                rows.append([split, corpus, len(vs), round(sum(v.seconds for v in vs) / 60, 1)])
        recs = [r for r in recordings if r.split == split]
        rows.append([split, "recorded conversations", len(recs), f"{sum(len(r.speakers) for r in recs)} speaker slots"])
    table("voices (speakers) per split", ["split", "corpus", "speakers", "minutes"], rows)
    if len({v.split for v in voices.values()}) < 2:
        sys.exit("need voices in both splits: pass --speakers and/or --recordings (see the module docstring)")

    rng = np.random.default_rng(a.seed)
    lo, hi = (float(x) for x in a.turn_range.split("-"))
    sets = {s: build_set(voices, s, a.per_kind, a.turns, rng, (lo, hi)) for s in ("tune", "score")}
    table("synthetic conversations (oracle turns)", ["split", "conversations", "turns", "minutes", "speakers"],
          [[s, len(c), sum(len(x.turns) for x in c), round(sum(x.seconds for x in c) / 60, 1),
            "/".join(str(sum(len(x.speakers) == k for x in c)) for k in (1, 2, 3, 4)) + " with 1/2/3/4"]
           for s, c in sets.items()])

    cost, w_best, t_best, sweep, results = [], None, None, {}, {}
    if not a.asr_only:
        windows = sorted({float(w) for w in a.windows.split(",")} | {OLD[0], MAX_EMBED_SECONDS})
        thresholds = sorted({float(t) for t in a.thresholds.split(",")} | {OLD[1], DEFAULT_THRESHOLD})
        emb, cost = {}, []
        for w in windows:
            embedder = SpeakerEmbedder("cpu", max_embed_seconds=w)
            with Stopwatch() as load:
                embedder.warm_up()
            with Contention() as busy:
                for s, convs in sets.items():
                    emb[(s, w)], calls, secs = embed_turns(embedder, convs)
            c = summarize_ms(calls)
            cost.append([w, round(load.seconds, 2), round(1000 * sum(calls) / sum(secs), 1), c["p50_ms"], c["p95_ms"],
                         busy.cores])
        table(f"embedding cost (CPU, {a.torch_threads} torch thread(s), turns of {a.turn_range} s)",
              ["seconds embedded", "warm_up s", "ms per s of turn", "call p50 ms", "call p95 ms", "other procs (cores)"],
              cost)

        sweep = {s: {(w, t): evaluate(sets[s], emb[(s, w)], t) for w in windows for t in thresholds} for s in sets}
        w_best, t_best = pick(sweep["tune"])
        table("sweep on the TUNING speakers: DER (count ok)", ["threshold"] + [f"{w:g} s embedded" for w in windows],
              [[f"{t:.3f}"] + [f"{sweep['tune'][(w, t)]['der']:.1%} ({sweep['tune'][(w, t)]['count_ok']:.0%})"
                               for w in windows] for t in thresholds])
        print(f"picked on the tuning split: {w_best:g} s embedded, threshold {t_best:.3f}; "
              f"code default: {MAX_EMBED_SECONDS:g} s, {DEFAULT_THRESHOLD}; old: {OLD[0]:g} s, {OLD[1]}\n")
        configs = {"old (2 s, 0.45)": OLD, "picked on tune": (w_best, t_best),
                   "code default": (MAX_EMBED_SECONDS, DEFAULT_THRESHOLD)}
        rows, results = [], {}
        for s in ("tune", "score"):
            for label, (w, t) in configs.items():
                results[f"{s}/{label}"] = r = sweep[s][(w, t)]
                rows.append([s, label, w, t] + fmt(r))
        table("oracle turns, pooled", ["split", "settings", "s embedded", "threshold", "DER", "confusion s", "missed s",
                                       "false alarm s", "count ok"], rows)
        rows = []
        for kind in KINDS:
            idx = [i for i, c in enumerate(sets["score"]) if c.kind == kind]
            row = [kind, len(idx)]
            for w, t in configs.values():
                r = evaluate([sets["score"][i] for i in idx], [emb[("score", w)][i] for i in idx], t)
                row += [f"{r['der']:.1%}", f"{r['count_ok']:.0%}"]
            rows.append(row)
        table("SCORING speakers by kind of conversation: DER / count ok",
              ["kind", "conversations"] + [x for k in configs for x in (f"DER {k}", "count ok")], rows)

    prod = {}
    if not a.no_asr:
        old = SpeakerEmbedder("cpu", max_embed_seconds=OLD[0])
        with tempfile.TemporaryDirectory(prefix="imp-bench-diar-") as tmp:
            import soundfile as sf

            chosen = [c for kind in KINDS for c in [x for x in sets["score"] if x.kind == kind][: a.asr_per_kind]]
            items = []
            for i, c in enumerate(chosen):
                path = Path(tmp) / f"conv{i:02d}.flac"
                sf.write(path, c.audio, SAMPLE_RATE)
                items.append((c.name, path, c.turns, (0.0, c.seconds)))
            for split in ("score", "tune"):
                recs = [(r.name, r.path, r.turns, r.uem or (0.0, max(e for _, e, _ in r.turns)))
                        for r in recordings if r.split == split]
                groups = [("assembled", items)] if split == "score" else []
                groups.append(("recorded", recs))
                for label, its in groups:
                    if not its:
                        continue
                    with Contention() as busy:
                        rows, summary = production(its, old)
                    summary["other_procs_cores"] = busy.cores
                    prod[f"{split}/{label}"] = summary
                    table(f"production path, {split.upper()} speakers, {label} recordings (Transcriber, Whisper "
                          "segments; old = same segments whole, 2 s / 0.45; whole = same segments whole, code "
                          "default; split = cut at changes of speaker)",
                          ["recording", "speakers", "segments", "found old", "DER old", "found whole", "DER whole",
                           "segments split", "found split", "DER split"], rows)
            rows = [[k] + [f"{s[x]['der']:.1%}" for x in ("old", "whole", "split")]
                    + [f"{s[x]['count_ok']:.0%}" for x in ("old", "whole", "split")]
                    + [round(s["split"]["missed"] + s["split"]["false_alarm"], 1), round(s["split"]["speech"], 1),
                       round(s["audio_s"] / max(s["wall_s"]["whole"], 1e-9), 1),
                       round(s["audio_s"] / max(s["wall_s"]["split"], 1e-9), 1),
                       s["embed_ms_per_s"]["whole"], s["embed_ms_per_s"]["split"], s["other_procs_cores"]]
                    for k, s in prod.items()]
            table("production path, pooled", ["set", "DER old", "DER whole", "DER split", "count ok old",
                                              "count ok whole", "count ok split", "missed+FA s (split)",
                                              "speech s", "× real time whole", "× real time split",
                                              "embed ms/s whole", "embed ms/s split", "other procs (cores)"], rows)

    write_result("diarization", info | {
        "args": {k: str(v) for k, v in vars(a).items()},
        "voices": {v.id: {"split": v.split, "seconds": round(v.seconds, 1)} for v in voices.values()},
        "recordings": {r.name: r.split for r in recordings},
        "cost": cost, "picked": {"window": w_best, "threshold": t_best},
        "sweep": {s: {f"{w:g}/{t:.3f}": r for (w, t), r in sw.items()} for s, sw in sweep.items()},
        "oracle": results, "production": prod,
    })


if __name__ == "__main__":
    main()
