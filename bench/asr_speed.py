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

Memory: a background thread samples /proc every 0.2 s and sums, over this process and
all its descendants, RSS (psutil; pages shared between processes count once per process,
so it is an upper bound) and PSS (from /proc/<pid>/smaps_rollup; shared pages split
between the processes that map them). ``--memory-check`` runs ``--minutes`` and 4x that,
each in a fresh process, to show that peak memory does not grow with length.

Run:  .venv/bin/python bench/asr_speed.py [--minutes 30] [--workers 0] [--no-diarize]
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

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, Stopwatch, _busy_seconds, header, load_average, quiet, table  # noqa: E402

from core.ingest.media import Media  # noqa: E402
from core.speech.base import SAMPLE_RATE, SpeechConfig  # noqa: E402
from core.speech.transcriber import Transcriber  # noqa: E402

AUDIO = ROOT.parent / "shared" / "data" / "audio"
FILES = ["librispeech_dev-clean_2412-153948-0000.flac", "jfk.flac", "OSR_us_000_0034_8k.wav"]
MIB = 2**20


def decode(path: Path) -> np.ndarray:
    """16 kHz mono int16 via ffmpeg (list arguments, no shell)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-"]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, dtype=np.int16)


def build_recording(out: Path, minutes: float, seed: int) -> float:
    """Write the long recording to ``out`` (FLAC), streaming; returns its length in seconds."""
    voices = [decode(AUDIO / f) for f in FILES]
    rng = np.random.default_rng(seed)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE),
           "-i", "pipe:0", "-c:a", "flac", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    target, written, k = int(minutes * 60 * SAMPLE_RATE), 0, 0
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
    return written / SAMPLE_RATE


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
    return (f"{a.backend}:{model}:b{a.beam_size}:m{a.minutes:g}:w{a.workers}:p{a.piece_seconds:g}:"
            f"{'diarize' if a.diarize else 'nodiarize'}")


def measure(a: argparse.Namespace) -> dict:
    """Build the recording, transcribe it once, return the figures."""
    with tempfile.TemporaryDirectory(prefix="imp-bench-asr-") as tmp:
        path = Path(tmp) / f"long_{a.minutes:g}min.flac"
        with Stopwatch() as t_build:
            seconds = build_recording(path, a.minutes, a.seed)
        print(f"input    {seconds / 60:.1f} min of speech ({', '.join(FILES)} in turn, 0.3-1.5 s gaps, "
              f"seed {a.seed}), {path.stat().st_size / MIB:.1f} MB FLAC, built in {t_build.seconds:.1f} s", flush=True)
        config = SpeechConfig(backend=a.backend, model_path=a.model_path, beam_size=a.beam_size)
        t = Transcriber(Media(), config, workers=a.workers, piece_seconds=a.piece_seconds, diarize=a.diarize)
        baseline_rss, baseline_pss, _, _ = TreeMemory.sample()
        step = [0.0]

        def progress(done: float, total: float) -> None:
            if done >= step[0] or done >= total:
                print(f"   {done / 60:6.1f} / {total / 60:.1f} min", flush=True)
                step[0] = done + total / 10

        busy0, own0 = _busy_seconds(), sum(os.times()[:4])
        with TreeMemory() as mem, Stopwatch() as wall:
            transcript = t.transcribe(path, progress=progress)
        busy1, own1 = _busy_seconds(), sum(os.times()[:4])  # own = this process + reaped workers
    other = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / wall.seconds
    return {
        "key": settings_key(a), "load_average_after_run": load_average(),
        "settings": {"backend": a.backend, "model_path": str(a.model_path) if a.model_path else None,
                     "beam_size": a.beam_size, "minutes": a.minutes, "workers": a.workers,
                     "workers_effective": a.workers or os.cpu_count(), "piece_seconds": a.piece_seconds,
                     "diarize": a.diarize, "seed": a.seed},
        "model": transcript.model, "audio_s": round(seconds, 1), "wall_s": round(wall.seconds, 1),
        "rtf": round(seconds / wall.seconds, 2), "segments": len(transcript.segments),
        "words": sum(len(s.text.split()) for s in transcript.segments), "speakers": transcript.speakers,
        "notes": transcript.notes, "cpu_s_tree": round(own1 - own0, 1),
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
          ["settings", "audio s", "wall s", "RTF", "segments", "base RSS MiB", "peak RSS MiB", "peak PSS MiB",
           "parent RSS MiB", "procs", "other cores"],
          [[r["key"], r["audio_s"], r["wall_s"], r["rtf"], r["segments"], r["baseline_rss_mib"], r["peak_rss_mib"],
            r["peak_pss_mib"], r["peak_parent_rss_mib"], r["peak_processes"], r["other_cores_busy"]]
           for r in records])
    print("base = before transcribe (this process, libraries imported); peak = whole tree during transcribe; "
          "parent = this process alone; other cores = CPU other programs used meanwhile (0-2)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the recording (default 30)")
    ap.add_argument("--workers", type=int, default=0, help="recogniser processes (0 = one per core)")
    ap.add_argument("--diarize", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--backend", choices=["whisper", "vosk"], default="whisper")
    ap.add_argument("--model-path", type=Path, default=None, help="model folder (whisper: default bundled tiny.en)")
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--piece-seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--memory-check", action="store_true",
                    help="run --minutes and 4x --minutes, each in a fresh process")
    ap.add_argument("--record-to", type=Path, default=None, help=argparse.SUPPRESS)  # used by --memory-check
    return ap.parse_args(argv)


def memory_check(a: argparse.Namespace) -> None:
    inline_max = 2 * a.piece_seconds / 60  # Transcriber runs recordings up to this long in-process, without a pool
    if a.minutes <= inline_max:
        sys.exit(f"--memory-check needs --minutes above {inline_max:g} (2 x --piece-seconds): shorter recordings "
                 "skip the worker pool, so their memory is not comparable with a long one's")
    records = []
    argv, skip = [], False
    for x in sys.argv[1:]:  # the same options, less --memory-check and --minutes
        if skip or x == "--memory-check" or x.startswith("--minutes"):
            skip = x == "--minutes"
            continue
        argv.append(x)
    with tempfile.TemporaryDirectory(prefix="imp-bench-asr-check-") as tmp:
        for minutes in (a.minutes, 4 * a.minutes):
            out = Path(tmp) / f"{minutes:g}.json"
            print(f"-- fresh process: {minutes:g} min", flush=True)
            subprocess.run([sys.executable, __file__, *argv, "--minutes", f"{minutes:g}", "--record-to", str(out)],
                           check=True)
            records.append(json.loads(out.read_text()))
            print()
    show(records)
    short, long_ = records
    growth = long_["peak_rss_mib"] / short["peak_rss_mib"]
    print(f"peak RSS at {long_['settings']['minutes']:g} min is {growth:.2f}x that at "
          f"{short['settings']['minutes']:g} min (peak PSS {long_['peak_pss_mib'] / short['peak_pss_mib']:.2f}x); "
          f"flat means close to 1.00")


def main() -> None:
    a = parse()
    quiet()
    info = header("speech recognition speed and memory (Transcriber, long recording)")
    if a.memory_check:
        memory_check(a)
        return
    record = measure(a)
    print()
    show([record])
    save(info, record)
    if a.record_to:
        a.record_to.write_text(json.dumps(record, default=str))


if __name__ == "__main__":
    main()
