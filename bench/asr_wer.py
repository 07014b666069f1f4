"""Speech recognition accuracy: word error rate per backend on the real speech in shared/data/audio.

What it measures: each file listed in ``shared/data/audio/refs.tsv`` (a LibriSpeech
dev-clean reader, JFK's 1961 inaugural broadcast, an 8 kHz telephone-band reading of
Harvard sentences) goes through the production ``Transcriber.transcribe`` (ffmpeg
decode, cut at silences, recognise, merge) with diarization off; the segment texts are
joined and scored against the reference with jiwer. Reported per file and pooled
(total errors / total reference words over all files, so longer files weigh more).

Backends: the embedded default (bundled Whisper tiny.en) at the default settings
(beam_size=1, VAD-packed windows decoded in batches), the same with the sequential
recogniser used before batching (batch_size=1), with beam_size=5, and plain
faster-whisper on each file (``WhisperModel.transcribe(path, word_timestamps=True)``,
its defaults: beam 5, no VAD, no IMP decoding or cutting); Vosk only when ``--vosk-model PATH`` names an
English Vosk model folder (none ships: the Korean test model would say nothing about
English WER, so it is not run).

Normalisation, identical on both sides: lower-case; hyphens and dashes become spaces;
other punctuation is removed (so "neighbor's" -> "neighbors" on both sides); whitespace
collapsed. Numbers are not rewritten: the references spell every number out, and a
hypothesis that contains digits is flagged in the output, since it would count as an
error here.

Run:  .venv/bin/python bench/asr_wer.py [--vosk-model PATH]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import jiwer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Stopwatch, header, quiet, table, write_result

from core.ingest.media import Media
from core.speech.base import SpeechConfig
from core.speech.transcriber import Transcriber

AUDIO = ROOT.parent / "shared" / "data" / "audio"

NORMALISE = jiwer.Compose([
    jiwer.ToLowerCase(),
    jiwer.SubstituteRegexes({r"[-\u2010-\u2015]": " "}),
    jiwer.RemovePunctuation(),
    jiwer.RemoveMultipleSpaces(),
    jiwer.Strip(),
    jiwer.ReduceToListOfListOfWords(),
])


def references(folder: Path) -> list[tuple[str, str]]:
    with (folder / "refs.tsv").open(newline="", encoding="utf-8") as f:
        return [(row["file"], row["transcript"]) for row in csv.DictReader(f, delimiter="\t")]


def score(ref: str, hyp: str) -> dict:
    """Word-level error counts of one hypothesis against its reference, after NORMALISE."""
    out = jiwer.process_words(ref, hyp, reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
    words = out.hits + out.substitutions + out.deletions
    return {"ref_words": words, "sub": out.substitutions, "del": out.deletions, "ins": out.insertions,
            "errors": out.substitutions + out.deletions + out.insertions, "wer": out.wer}


def run_config(name: str, config: SpeechConfig, refs: list[tuple[str, str]], folder: Path) -> dict:
    transcriber = Transcriber(Media(), config, workers=0, diarize=False)
    with Stopwatch() as t_load:
        transcriber.warm_up()
    files = {}
    for fname, ref in refs:
        with Stopwatch() as t:
            transcript = transcriber.transcribe(folder / fname)
        hyp = " ".join(s.text for s in transcript.segments)
        row = score(ref, hyp) | {"seconds": round(t.seconds, 2), "audio_s": transcript.duration,
                                 "hypothesis": hyp, "reference": ref}
        row["has_digits"] = any(ch.isdigit() for ch in hyp)
        files[fname] = row
        print(f"   {name}: {fname}  WER {row['wer']:.3f}  ({t.seconds:.1f} s)", flush=True)
    errors = sum(r["errors"] for r in files.values())
    words = sum(r["ref_words"] for r in files.values())
    # Cross-check the pooled figure with jiwer's own corpus-level WER over all files at once.
    corpus = jiwer.wer([r["reference"] for r in files.values()], [r["hypothesis"] for r in files.values()],
                       reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
    assert abs(corpus - errors / words) < 1e-9, (corpus, errors, words)
    return {"name": name, "model": transcriber.model_id, "load_s": round(t_load.seconds, 2), "files": files,
            "pooled": {"errors": errors, "ref_words": words, "wer": errors / words}}


def run_plain(refs: list[tuple[str, str]], folder: Path) -> dict:
    """Plain faster-whisper with its defaults on each file: the alternative to IMP's pipeline."""
    from faster_whisper import WhisperModel

    from core.speech.whisper_backend import bundled_whisper

    with Stopwatch() as t_load:
        model = WhisperModel(str(bundled_whisper()), device="cpu", compute_type="int8", local_files_only=True)
    files = {}
    for fname, ref in refs:
        with Stopwatch() as t:
            segments, _ = model.transcribe(str(folder / fname), word_timestamps=True)
            hyp = " ".join(s.text.strip() for s in segments)
        files[fname] = score(ref, hyp) | {"seconds": round(t.seconds, 2), "hypothesis": hyp, "reference": ref,
                                          "has_digits": any(ch.isdigit() for ch in hyp)}
        print(f"   plain faster-whisper: {fname}  WER {files[fname]['wer']:.3f}  ({t.seconds:.1f} s)", flush=True)
    errors = sum(r["errors"] for r in files.values())
    words = sum(r["ref_words"] for r in files.values())
    return {"name": "plain f-w", "model": "faster-whisper defaults (beam 5, no VAD)", "load_s": round(t_load.seconds, 2),
            "files": files, "pooled": {"errors": errors, "ref_words": words, "wer": errors / words}}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", type=Path, default=AUDIO, help="folder with refs.tsv and the audio files")
    ap.add_argument("--vosk-model", type=Path, default=None, help="an English Vosk model folder (optional)")
    return ap.parse_args()


def main() -> None:
    args = parse()
    quiet()
    info = header("speech recognition WER (shared/data/audio)")
    refs = references(args.audio)
    print(f"input    {len(refs)} files in {args.audio}: {', '.join(f for f, _ in refs)}")
    print("scoring  jiwer, lower-case, punctuation removed (hyphens -> spaces), whitespace collapsed; "
          "pooled = total errors / total reference words\n", flush=True)
    configs = [
        ("whisper b1", SpeechConfig(backend="whisper", beam_size=1)),
        ("b1 sequential", SpeechConfig(backend="whisper", beam_size=1, batch_size=1)),
        ("whisper b5", SpeechConfig(backend="whisper", beam_size=5)),
    ]
    if args.vosk_model:
        configs.append(("vosk", SpeechConfig(backend="vosk", model_path=args.vosk_model)))
    runs = [run_config(name, config, refs, args.audio) for name, config in configs]
    runs.append(run_plain(refs, args.audio))
    print()

    names = [f for f, _ in refs]
    rows = []
    for f in names:
        words = runs[0]["files"][f]["ref_words"]
        rows.append([f, words, *[r["files"][f]["wer"] for r in runs]])
    rows.append(["pooled", runs[0]["pooled"]["ref_words"], *[r["pooled"]["wer"] for r in runs]])
    table("WER (lower is better)", ["file", "ref words", *[r["name"] for r in runs]], rows)
    table("error counts (sub / del / ins)", ["file", *[r["name"] for r in runs]],
          [[f, *[f"{r['files'][f]['sub']}/{r['files'][f]['del']}/{r['files'][f]['ins']}" for r in runs]]
           for f in names])
    table("models", ["run", "model id", "load s", "transcribe s (all files)"],
          [[r["name"], r["model"], r["load_s"], round(sum(x["seconds"] for x in r["files"].values()), 1)]
           for r in runs])
    for r in runs:
        for f, row in r["files"].items():
            if row["has_digits"]:
                print(f"NOTE {r['name']} {f}: the hypothesis contains digits, scored as errors "
                      f"against spelled-out numbers: {row['hypothesis']!r}")
    print("hypotheses (first run):")
    for f, row in runs[0]["files"].items():
        print(f"  {f}: {row['hypothesis']}")
    print()
    write_result("asr_wer", info | {"args": {k: str(v) for k, v in vars(args).items()},
                                    "normalisation": "lower-case; hyphens/dashes -> space; punctuation removed; "
                                                     "whitespace collapsed; numbers not rewritten",
                                    "runs": runs})


if __name__ == "__main__":
    main()
