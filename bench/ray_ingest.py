"""`imp ingest` plain against `imp ingest --ray` with 1 and 2 workers: files/s and audio hours per hour.

Each configuration runs the real command in a fresh process and a fresh data folder over the
same staged files, one after the other in the same run, so all pay what a user pays: the
process start, model loading (once in a plain ingest; once per Ray worker), Ray's own start
(a local cluster, as when IMP_RAY__ADDRESS is unset), transcription, parsing, embedding and
the commit. ``--rounds 2`` repeats the three, the second time in reverse order.

The data was not tuned on: the speech recordings in ../shared/data/audio (read-only; their
silence measured with ffmpeg's silencedetect) and the smallest FinanceBench SEC filings
(PDF). Reported per run: wall time, files/s, audio hours per hour (seconds of audio
transcribed per second of wall time), how many cores the whole machine kept busy meanwhile
(ours and anyone else's: 2.0 = both cores), how many of them other processes (outside the
command's process tree, Ray's included) kept busy, and Ray's start time from the command's log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, _busy_seconds, header, load_average, table, write_result

AUDIO = DATA / "audio"
PDFS = DATA / "docqa" / "financebench" / "pdfs"
IMP = Path(sys.executable).with_name("imp")
RECORDINGS = ("*.wav", "*.flac", "*.mp3", "*.m4a")


def _duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _silence(path: Path, noise_db: int = -30, min_s: float = 0.5) -> float:
    """Seconds of silence (below ``noise_db`` for at least ``min_s``), by ffmpeg silencedetect."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af",
                          f"silencedetect=noise={noise_db}dB:d={min_s}", "-f", "null", "-"],
                         capture_output=True, text=True)
    return sum(float(x) for x in re.findall(r"silence_duration: ([0-9.]+)", out.stderr))


def stage(folder: Path, pdfs: int) -> tuple[list[dict], float]:
    """Copy the recordings and the ``pdfs`` smallest filings into ``folder``; describe each."""
    folder.mkdir(parents=True)
    files = sorted(p for pattern in RECORDINGS for p in AUDIO.glob(pattern))
    files += sorted(PDFS.glob("*.pdf"), key=lambda p: p.stat().st_size)[:pdfs]
    rows, audio_s = [], 0.0
    for src in files:
        dest = folder / src.name
        shutil.copyfile(src, dest)
        row = {"file": src.name, "bytes": src.stat().st_size}
        if src.suffix != ".pdf":
            row["seconds"] = _duration(src)
            row["silence_s"] = round(_silence(src), 2)
            audio_s += row["seconds"]
        rows.append(row)
    return rows, audio_s


class OtherLoad:
    """Cores kept busy by processes outside the command's own tree (sampled every second by psutil)."""

    def __init__(self, root_pid: int):
        self._root = root_pid
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._ours: set[int] = {os.getpid(), root_pid}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.perf_counter()
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                self._ours |= {c.pid for c in psutil.Process(self._root).children(recursive=True)}
            except psutil.Error:
                pass
            for p in psutil.process_iter(["pid", "cpu_times"]):
                t = p.info["cpu_times"]
                if t is not None:
                    self._first.setdefault(p.info["pid"], t.user + t.system)
                    self._last[p.info["pid"]] = t.user + t.system
            self._stop.wait(1.0)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._t0
        other = sum(self._last[pid] - self._first[pid] for pid in self._last if pid not in self._ours)
        return round(other / wall, 2)


def run(name: str, folder: Path, data: Path, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMP_")}
    env.update(IMP_DATA_DIR=str(data), IMP_LOG_LEVEL="INFO")
    load = load_average()
    busy0, t0 = _busy_seconds(), time.perf_counter()
    child = subprocess.Popen([str(IMP), "ingest", str(folder), "--json", *extra], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    others = OtherLoad(child.pid)
    lines: list[tuple[float, str]] = []  # (seconds since the start, stderr line): when each file was indexed
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter() - t0, line) for line in child.stderr),
                              daemon=True)
    reader.start()
    out = child.stdout.read()
    child.wait(timeout=3600)
    reader.join()
    wall = time.perf_counter() - t0
    busy1 = _busy_seconds()
    other_cores = others.stop()
    err = "".join(line for _, line in lines)
    proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    indexed = [at for at, line in lines if " core.ingest.pipeline: indexed " in line]
    if proc.returncode not in (0, 1):
        sys.exit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    docs = json.loads(proc.stdout)["documents"]
    started = re.search(r"ray started \S+ in ([0-9.]+) s", proc.stderr)
    return {
        "config": name, "wall_s": round(wall, 1), "files": len(docs),
        "indexed": sum(d["status"] == "indexed" for d in docs),
        "failed": [(Path(d["source"]).name, d["error"]) for d in docs if d["status"] == "failed"],
        "chunks": sum(d["chunks"] for d in docs),
        "ray_start_s": float(started.group(1)) if started else None,
        "busy_cores": round((busy1 - busy0) / wall, 2) if busy0 is not None and busy1 is not None else None,
        "other_cores": other_cores,
        # Start-up (process, models, Ray) until the first document was committed, and the pace after it.
        "first_indexed_s": round(indexed[0], 1) if indexed else None,
        "after_first_files_per_s": (round((len(indexed) - 1) / (indexed[-1] - indexed[0]), 3)
                                    if len(indexed) > 1 and indexed[-1] > indexed[0] else None),
        "load_before": load,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--pdfs", type=int, default=4, help="how many of the smallest FinanceBench filings")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the three (the second round in reverse)")
    args = ap.parse_args()
    info = header("imp ingest: plain against --ray with 1 and 2 workers")
    configs = [("plain", []), ("ray, 1 worker", ["--ray", "--workers", "1"]),
               ("ray, 2 workers", ["--ray", "--workers", "2"])]
    with tempfile.TemporaryDirectory(prefix="imp-bench-ray-") as tmp:
        folder = Path(tmp) / "files"
        files, audio_s = stage(folder, args.pdfs)
        table("data (copied from ../shared/data, read-only there)", ["file", "KB", "audio s", "silence s"],
              [(f["file"], round(f["bytes"] / 1024), f.get("seconds", ""), f.get("silence_s", "")) for f in files])
        runs = []
        for r in range(args.rounds):
            for name, extra in (configs if r % 2 == 0 else configs[::-1]):
                result = run(name, folder, Path(tmp) / f"data-{r}-{len(runs)}", extra) | {"round": r + 1}
                result["files_per_s"] = round(result["files"] / result["wall_s"], 3)
                result["audio_h_per_h"] = round(audio_s / result["wall_s"], 2)
                runs.append(result)
                print(f"  {name}: {result['wall_s']} s, {result['indexed']}/{result['files']} indexed", flush=True)
    print()
    table(f"{len(files)} files, {audio_s:.1f} s of audio", ["round", "config", "wall s", "files/s",
                                                             "audio h/h", "ray start s", "1st indexed s",
                                                             "files/s after", "busy cores", "others' cores"],
          [(x["round"], x["config"], x["wall_s"], x["files_per_s"], x["audio_h_per_h"], x["ray_start_s"] or "",
            x["first_indexed_s"], x["after_first_files_per_s"], x["busy_cores"], x["other_cores"]) for x in runs])
    for x in runs:
        for name, error in x["failed"]:
            print(f"  {x['config']}: {name} failed: {error}")
    write_result("ray_ingest", info | {"files": files, "audio_s": audio_s, "runs": runs})


if __name__ == "__main__":
    main()
