"""Speech recognition speed and memory on a long recording, through the production Transcriber.

What it measures: ``Transcriber.transcribe(path)`` end to end (ffmpeg decode, cut at
silences, a pool of recogniser processes, merge, speaker diarization) on one long
recording, cold: worker start-up and model loading are inside the wall time, as a user
sees them. Reported: audio seconds, wall seconds, real-time factor (audio s / wall s;
above 1 is faster than real time), segments, and the peak memory of the whole process
tree (this process plus the pool workers and ffmpeg).

The recording: the three real speech files in ``shared/data/audio`` (decoded to 16 kHz
mono) repeated in turn, with 0.3-1.5 s of silence between them (fixed seed), until
``--minutes`` is reached, streamed into ffmpeg and written as a 16 kHz mono FLAC in a
temp folder. It is built before the measurement and never held whole in memory.
``--dense``: the same files back to back with no pause, in whole rounds (``--minutes``
rounded up), so the transcript is scored against the references (WER, jiwer, the same
normalisation as bench/asr_wer.py); ``--standup`` adds samples/rotterdam-pilot-standup.m4a
to each round (it has no reference, so no WER then). The share of silence printed is
1 - speech/length by Silero VAD (faster-whisper's), counting every pause of 0.1 s or more.

``--meeting DIR``: the "meeting-dense" recording instead (bench/asr_meeting.py): real AMI meeting
excerpts, each cut to its labelled speech, interleaved with LibriSpeech read clips back to back, no pause
added, cut at ``--minutes``. Only its sample.wav part has a reference (sample.stm): the WER printed for it
is over the words whose middle falls in that 30 s span, about 90 words, a sanity check, not a figure to
compare; for the rest only speed and words per minute are reported.

``--batch-size 1`` is the sequential recogniser (the default before batching);
``--plain`` times plain faster-whisper instead of IMP on the same recording:
``WhisperModel(bundled tiny.en).transcribe(path, word_timestamps=True)`` with
faster-whisper's defaults (beam 5, no VAD, its own decoding and thread count), cold.
``--suite`` runs, each in a fresh process, the meeting-dense (with ``--meeting DIR``), the dense and
the paused recording through
the sequential and the batched recogniser with and without diarization, and plain
faster-whisper, and prints them in one table.

Memory: a background thread samples /proc every 0.2 s and sums, over this process and
all its descendants, RSS (psutil; pages shared between processes count once per process,
so it is an upper bound) and PSS (from /proc/<pid>/smaps_rollup; shared pages split
between the processes that map them). ``--memory-check`` runs ``--minutes`` and 4x that,
each in a fresh process, to show that peak memory does not grow with length.

Run:  .venv/bin/python bench/asr_speed.py --suite --minutes 10 --meeting DIR   (everything, 15 runs)
      .venv/bin/python bench/asr_speed.py [--minutes 30] [--workers 0] [--no-diarize] [--dense] [--batch-size 8]
      .venv/bin/python bench/asr_speed.py --memory-check --minutes 30      (30 and 120 min)
Results are appended to bench/results/asr_speed.json, keyed by the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import jiwer
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_meeting import build_meeting, decode, sample_reference
from asr_wer import NORMALISE, references
from common import (
    RESULTS,
    ROOT,
    Stopwatch,
    _busy_seconds,
    header,
    load_average,
    quiet,
    table,
)

from core.ingest.media import Media
from core.speech.base import SAMPLE_RATE, SpeechConfig
from core.speech.transcriber import Transcriber

AUDIO = ROOT.parent / "shared" / "data" / "audio"
FILES = ["librispeech_dev-clean_2412-153948-0000.flac", "jfk.flac", "OSR_us_000_0034_8k.wav"]
STANDUP = ROOT / "samples" / "rotterdam-pilot-standup.m4a"
MIB = 2**20


def build_recording(out: Path, minutes: float, seed: int, *, dense: bool = False,
                    standup: bool = False) -> tuple[float, str | None]:
    """Write the long recording to ``out`` (FLAC), streaming; returns its length in seconds and,
    when it is made of whole reference files, its reference transcript."""
    names = FILES + ([str(STANDUP)] if standup else [])
    voices = [decode(AUDIO / f) for f in names]
    rng = np.random.default_rng(seed)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE),
           "-i", "pipe:0", "-c:a", "flac", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    target, written, k = int(minutes * 60 * SAMPLE_RATE), 0, 0
    if dense:  # whole rounds, no pauses
        rounds = -(-target // sum(len(v) for v in voices))
        for _ in range(rounds):
            for v in voices:
                proc.stdin.write(v.tobytes())
                written += len(v)
        k = rounds * len(voices)
    while written < target:
        gap = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), dtype=np.int16)
        for part in (voices[k % len(voices)], gap):
            part = part[: target - written]
            proc.stdin.write(part.tobytes())
            written += len(part)
        k += 1
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg could not write {out}")
    reference = None
    if dense and not standup:
        refs = dict(references(AUDIO))
        reference = " ".join([" ".join(refs[f] for f in FILES)] * (k // len(FILES)))
    return written / SAMPLE_RATE, reference


def silence_share(path: Path, seconds: float) -> float:
    """1 - speech / length, speech by faster-whisper's Silero VAD counting every pause of 0.1 s or more."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = Media().read_all(path)
    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=100, speech_pad_ms=0))
    return 1.0 - sum(s["end"] - s["start"] for s in spans) / SAMPLE_RATE / seconds


def plain_faster_whisper(path: Path) -> tuple[list[str], list[tuple[float, float, str]]]:
    """Plain faster-whisper on ``path``, its defaults, word timestamps on: (segment texts, timed words)."""
    from faster_whisper import WhisperModel

    from core.speech.whisper_backend import bundled_whisper

    model = WhisperModel(str(bundled_whisper()), device="cpu", compute_type="int8", local_files_only=True)
    segments, _ = model.transcribe(str(path), word_timestamps=True)
    texts, words = [], []
    for s in segments:
        texts.append(s.text)
        words.extend((w.start, w.end, w.word) for w in s.words or ())
    return texts, words


def words_in(span: tuple[float, float], words: list[tuple[float, float, str]]) -> list[str]:
    """The words whose middle falls inside ``span`` (seconds)."""
    return [w for start, end, w in words if span[0] <= (start + end) / 2 < span[1]]


def wer(reference: str | None, texts: list[str]) -> float | None:
    if reference is None:
        return None
    return jiwer.wer(reference, " ".join(texts), reference_transform=NORMALISE, hypothesis_transform=NORMALISE)


class TreeMemory:
    """Peak summed RSS and PSS of this process and all its descendants, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak_rss = self.peak_pss = self.peak_parent_rss = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def sample() -> tuple[int, int, int, int]:
        me = psutil.Process()
        rss = pss = n = 0
        parent = me.memory_info().rss
        for p in [me, *me.children(recursive=True)]:
            try:
                rss += p.memory_info().rss
                pss += _pss(p.pid)
                n += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                pass  # a process that ended between listing and reading
        return rss, pss, n, parent

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, n, parent = self.sample()
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_parent_rss = max(self.peak_parent_rss, parent)
            self.peak_processes = max(self.peak_processes, n)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def settings_key(a: argparse.Namespace) -> str:
    model = Path(a.model_path).name if a.model_path else "bundled"
    audio = audio_name(a)
    if a.plain:
        return f"plain-faster-whisper:{model}:{audio}:m{a.minutes:g}"
    return (f"{a.backend}:{model}:b{a.beam_size}:batch{a.batch_size}:{audio}:m{a.minutes:g}:w{a.workers}:"
            f"p{a.piece_seconds:g}:{'diarize' if a.diarize else 'nodiarize'}")


def audio_name(a: argparse.Namespace) -> str:
    if a.meeting:
        return "meeting"
    return ("dense+standup" if a.standup else "dense") if a.dense else "pauses"


def measure(a: argparse.Namespace) -> dict:
    """Build the recording, transcribe it once, return the figures."""
    with tempfile.TemporaryDirectory(prefix="imp-bench-asr-") as tmp:
        path = Path(tmp) / f"long_{a.minutes:g}min.flac"
        span = None  # with --meeting: where sample.wav lies, scored alone against sample.stm
        with Stopwatch() as t_build:
            if a.meeting:
                seconds, comp = build_meeting(path, a.minutes, a.meeting)
                span, reference = comp.sample_span_s, sample_reference(a.meeting)
                what = comp.describe()
            else:
                seconds, reference = build_recording(path, a.minutes, a.seed, dense=a.dense, standup=a.standup)
                how = "back to back, no pauses" if a.dense else f"0.3-1.5 s gaps, seed {a.seed}"
                what = f"{', '.join(FILES + ([STANDUP.name] if a.standup else []))} in turn, {how}"
        silence = silence_share(path, seconds)
        print(f"input    {seconds / 60:.1f} min ({what}), silence {silence:.1%} by Silero VAD, "
              f"{path.stat().st_size / MIB:.1f} MB FLAC, built in {t_build.seconds:.1f} s", flush=True)
        config = SpeechConfig(backend=a.backend, model_path=a.model_path, beam_size=a.beam_size,
                              batch_size=a.batch_size)
        t = Transcriber(Media(), config, workers=a.workers, piece_seconds=a.piece_seconds, diarize=a.diarize)
        baseline_rss, baseline_pss, _, _ = TreeMemory.sample()
        step = [0.0]

        def progress(done: float, total: float) -> None:
            if done >= step[0] or done >= total:
                print(f"   {done / 60:6.1f} / {total / 60:.1f} min", flush=True)
                step[0] = done + total / 10

        busy0, own0 = _busy_seconds(), sum(os.times()[:4])
        with TreeMemory() as mem, Stopwatch() as wall:
            if a.plain:
                texts, timed = plain_faster_whisper(path)
                model, segments, speakers, notes = "faster-whisper defaults (beam 5, no VAD)", len(texts), None, []
            else:
                transcript = t.transcribe(path, progress=progress)
                texts = [s.text for s in transcript.segments]
                timed = [(w.start, w.end, w.text) for s in transcript.segments for w in s.words]
                model, segments = transcript.model, len(transcript.segments)
                speakers, notes = transcript.speakers, transcript.notes
        busy1, own1 = _busy_seconds(), sum(os.times()[:4])  # own = this process + reaped workers
    n_words = sum(len(x.split()) for x in texts)
    if span is not None:
        texts = words_in(span, timed)  # only sample.wav's span has a reference
    elif a.meeting:
        reference = None
    other = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / wall.seconds
    return {
        "key": settings_key(a), "load_average_after_run": load_average(),
        "audio": audio_name(a), "silence_share": round(silence, 3),
        "wer": None if reference is None else round(wer(reference, texts), 4),
        "wer_scope": None if reference is None else ("sample.wav span only" if span else "whole recording"),
        "words_per_min": round(n_words / (seconds / 60), 1),
        "settings": {"backend": a.backend, "model_path": str(a.model_path) if a.model_path else None,
                     "beam_size": a.beam_size, "batch_size": a.batch_size, "dense": a.dense, "standup": a.standup,
                     "meeting": str(a.meeting) if a.meeting else None,
                     "plain": a.plain, "minutes": a.minutes, "workers": a.workers,
                     "workers_effective": a.workers or os.cpu_count(), "piece_seconds": a.piece_seconds,
                     "diarize": a.diarize, "seed": a.seed},
        "model": model, "audio_s": round(seconds, 1), "wall_s": round(wall.seconds, 1),
        "rtf": round(seconds / wall.seconds, 2), "segments": segments, "timed_words": len(timed),
        "words": n_words, "speakers": speakers,
        "notes": notes, "cpu_s_tree": round(own1 - own0, 1),
        # What the CPU time alone would allow on this many idle cores, if every core were kept busy.
        "rtf_cpu_bound": round(seconds / ((own1 - own0) / (os.cpu_count() or 1)), 2),
        "other_cores_busy": None if other is None else round(other, 2),
        "baseline_rss_mib": round(baseline_rss / MIB), "baseline_pss_mib": round(baseline_pss / MIB),
        "peak_rss_mib": round(mem.peak_rss / MIB), "peak_pss_mib": round(mem.peak_pss / MIB),
        "peak_parent_rss_mib": round(mem.peak_parent_rss / MIB),
        "pool": (a.workers or os.cpu_count() or 1) > 1 and seconds > 2 * a.piece_seconds,  # else in-process
        "peak_processes": mem.peak_processes, "memory_samples": mem.samples,
    }


def save(info: dict, record: dict) -> None:
    """Append the record under its settings key in bench/results/asr_speed.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "asr_speed.json"
    data = json.loads(path.read_text()) if path.exists() else {"benchmark": info["benchmark"], "records": {}}
    data["records"].setdefault(record["key"], []).append(info | record | {"load_average_at_end": load_average()})
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"result appended to {path.relative_to(ROOT)} under {record['key']!r}")


def show(records: list[dict]) -> None:
    table("speed and memory (whole process tree)",
          ["settings", "silence", "audio s", "wall s", "RTF", "CPU s", "RTF if CPU-bound", "WER", "words/min", "segments",
           "timed words", "peak RSS MiB", "peak PSS MiB", "parent RSS MiB", "procs", "other cores"],
          [[r["key"], f"{r['silence_share']:.0%}", r["audio_s"], r["wall_s"], r["rtf"], r["cpu_s_tree"],
            r["rtf_cpu_bound"], r["wer"], r["words_per_min"], r["segments"], r["timed_words"], r["peak_rss_mib"], r["peak_pss_mib"],
            r["peak_parent_rss_mib"], r["peak_processes"], r["other_cores_busy"]]
           for r in records])
    print("RTF = audio s / wall s; CPU s = user+sys of the whole tree; RTF if CPU-bound = audio s / (CPU s / cores), "
          "the speed on idle cores if all were kept busy (an upper bound); peak = whole tree during transcribe; "
          "parent = this process alone; other cores = CPU other programs used meanwhile (0-2): above ~0.2 the wall "
          "times are inflated and only CPU s compares; WER of the meeting recording = its sample.wav span only (about 90 "
          "words, a sanity check), the rest of it has no reference")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the recording (default 30)")
    ap.add_argument("--workers", type=int, default=0, help="recogniser processes (0 = one per core)")
    ap.add_argument("--diarize", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--backend", choices=["whisper", "vosk"], default="whisper")
    ap.add_argument("--model-path", type=Path, default=None, help="model folder (whisper: default bundled tiny.en)")
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--piece-seconds", type=float, default=60.0)
    ap.add_argument("--batch-size", type=int, default=SpeechConfig().batch_size,
                    help="whisper windows decoded together (1 = sequential, as before batching)")
    ap.add_argument("--dense", action="store_true", help="the files back to back without pauses, whole rounds")
    ap.add_argument("--standup", action="store_true", help="with --dense: add the sample stand-up to each round")
    ap.add_argument("--meeting", type=Path, default=None, metavar="DIR",
                    help="the meeting-dense recording from DIR (AMI excerpts + LibriSpeech, bench/asr_meeting.py)")
    ap.add_argument("--plain", action="store_true", help="time plain faster-whisper (its defaults) instead of IMP")
    ap.add_argument("--suite", action="store_true",
                    help="dense and paused recordings x sequential/batched x diarize on/off, plus plain faster-whisper")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--memory-check", action="store_true",
                    help="run --minutes and 4x --minutes, each in a fresh process")
    ap.add_argument("--record-to", type=Path, default=None, help=argparse.SUPPRESS)  # used by --memory-check
    return ap.parse_args(argv)


def _fresh(argv: list[str], out: Path) -> dict:
    """One measurement in a fresh process (cold, as a user meets it)."""
    subprocess.run([sys.executable, __file__, *argv, "--record-to", str(out)], check=True)
    print(flush=True)
    return json.loads(out.read_text())


def _own_options(drop: set[str]) -> list[str]:
    """This run's options, less those in ``drop`` (and their values)."""
    argv, skip = [], False
    for x in sys.argv[1:]:
        if skip:
            skip = False
            continue
        name = x.split("=")[0]
        if name in drop:
            skip = "=" not in x and name in {"--minutes", "--batch-size", "--meeting"}
            continue
        argv.append(x)
    return argv


def memory_check(a: argparse.Namespace) -> None:
    inline_max = 2 * a.piece_seconds / 60  # Transcriber runs recordings up to this long in-process, without a pool
    if a.minutes <= inline_max:
        sys.exit(f"--memory-check needs --minutes above {inline_max:g} (2 x --piece-seconds): shorter recordings "
                 "skip the worker pool, so their memory is not comparable with a long one's")
    argv = _own_options({"--memory-check", "--minutes"})
    records = []
    with tempfile.TemporaryDirectory(prefix="imp-bench-asr-check-") as tmp:
        for minutes in (a.minutes, 4 * a.minutes):
            print(f"-- fresh process: {minutes:g} min", flush=True)
            records.append(_fresh([*argv, "--minutes", f"{minutes:g}"], Path(tmp) / f"{minutes:g}.json"))
    show(records)
    short, long_ = records
    growth = long_["peak_rss_mib"] / short["peak_rss_mib"]
    print(f"peak RSS at {long_['settings']['minutes']:g} min is {growth:.2f}x that at "
          f"{short['settings']['minutes']:g} min (peak PSS {long_['peak_pss_mib'] / short['peak_pss_mib']:.2f}x); "
          f"flat means close to 1.00")


def suite(a: argparse.Namespace) -> None:
    """Meeting-dense, dense and paused speech, sequential and batched, diarization on and off, and plain
    faster-whisper."""
    base = _own_options({"--suite", "--dense", "--meeting", "--plain", "--batch-size", "--diarize", "--no-diarize"})
    audios = [["--dense"], []]
    if a.meeting:
        audios.insert(0, ["--meeting", str(a.meeting)])
    else:
        print("-- no --meeting DIR: the meeting-dense recording is left out of this suite", flush=True)
    runs = []
    for audio in audios:
        runs.append([*audio, "--plain"])
        for batch in ("1", "8"):  # sequential (the default) and batched (IMP_SPEECH__BATCH_SIZE=8)
            for diarize in ("--no-diarize", "--diarize"):
                runs.append([*audio, "--batch-size", batch, diarize])
    records = []
    with tempfile.TemporaryDirectory(prefix="imp-bench-asr-suite-") as tmp:
        for i, run in enumerate(runs):
            print(f"-- fresh process {i + 1}/{len(runs)}: {' '.join(run)}", flush=True)
            records.append(_fresh([*base, *run], Path(tmp) / f"{i}.json"))
    show(records)


def main() -> None:
    a = parse()
    if a.meeting and (a.dense or a.standup):
        sys.exit("--meeting is its own recording: leave out --dense and --standup")
    quiet()
    info = header("speech recognition speed and memory (Transcriber, long recording)")
    if a.memory_check:
        memory_check(a)
        return
    if a.suite:
        suite(a)
        return
    record = measure(a)
    print()
    show([record])
    save(info, record)
    if a.record_to:
        a.record_to.write_text(json.dumps(record, default=str))


if __name__ == "__main__":
    main()
