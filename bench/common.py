"""Helpers shared by the benchmarks: machine facts, percentiles, tables, result files.

Every benchmark prints the machine it ran on and the exact command, then its
figures as tables, and writes the same figures to ``bench/results/<name>.json``
(git-ignored) so runs can be compared later.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"

if str(ROOT) not in sys.path:  # run as `python bench/x.py` from the repository root
    sys.path.insert(0, str(ROOT))


def quiet() -> None:
    """Warnings only; no model-loading chatter between the tables."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        import bm25s  # noqa: F401 - it sets its own logger to DEBUG on import

        logging.getLogger("bm25s").setLevel(logging.WARNING)
    except ImportError:  # pragma: no cover
        pass


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info() -> dict:
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_gib": _mem_gib(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "chromadb": _version("chromadb"),
        "bm25s": _version("bm25s"),
        "sentence_transformers": _version("sentence-transformers"),
        "pypdf": _version("pypdf"),
        "platform": platform.platform(),
    }


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])


def header(title: str) -> dict:
    """Print and return the run's context: what, when, where, how it was started."""
    info = {
        "benchmark": title,
        "load_average_at_start": load_average(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": machine_info(),
    }
    m = info["machine"]
    print(f"== {title} ==")
    print(f"date     {info['date']}")
    print(f"command  {info['command']}")
    print(f"machine  {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['memory_gib']} GiB RAM")
    print(f"load     {info['load_average_at_start']} (1/5/15-min load average at start; "
          "other processes on these 2 cores inflate the timings)")
    print(f"software Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
          f"chromadb {m['chromadb']}, bm25s {m['bm25s']}, sentence-transformers {m['sentence_transformers']}")
    print()
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0–100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize_ms(seconds: Sequence[float]) -> dict:
    """p50/p95/p99/mean/max of durations given in seconds, reported in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else float("nan"),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
    }


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print a plain, aligned table (readable in a terminal and when piped to a file)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
    print(title)
    print("  " + "  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in cells:
        print("  " + "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _numeric(s: str) -> bool:
    try:
        float(s.rstrip("%"))
        return True
    except ValueError:
        return False


def goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = payload | {"load_average_at_end": load_average()}
    print(f"load average at end {payload['load_average_at_end']}")
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"result written to {path.relative_to(ROOT)}")
    return path


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all processes)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    busy = sum(f[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


class Contention:
    """How many cores *other* processes kept busy while a measurement ran.

    Machine busy time from /proc/stat minus this process's own CPU time, divided
    by wall time. Near 0 means the timing is clean; near 1 on a 2-core machine
    means another process held a whole core meanwhile.
    """

    def __enter__(self) -> Contention:
        self._t0 = time.perf_counter()
        self._busy0 = _busy_seconds()
        t = os.times()
        self._self0 = t.user + t.system
        self.cores: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        busy1 = _busy_seconds()
        t = os.times()
        if self._busy0 is None or busy1 is None or wall <= 0:
            return
        other = (busy1 - self._busy0) - (t.user + t.system - self._self0)
        self.cores = round(max(0.0, other) / wall, 2)


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def qmsum_transcripts(meetings: list[dict], folder: Path) -> list[Path]:
    """One ``<meeting_id>.txt`` per QMSum meeting, a ``Speaker: text`` line per turn; unchanged bytes are
    not rewritten, so a cached index over the folder stays valid."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in meetings:
        lines = [f"{' '.join((t.get('speaker') or 'Unknown').split())}: {' '.join(t['content'].split())}"
                 for t in m["meeting_transcripts"] if (t.get("content") or "").split()]
        p = folder / f"{m['meeting_id']}.txt"
        text = "\n".join(lines) + "\n"
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
        paths.append(p)
    return paths


def citations_valid(engine, answer) -> bool:
    """Every [n] names a returned citation, numbered 1..m, each a visible chunk in an allowed scope."""
    import re

    marks = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    ns = [c.n for c in answer.citations]
    if marks != set(ns) or ns != list(range(1, len(ns) + 1)):
        return False
    visible = engine.registry.visible_chunks([c.chunk.chunk_id for c in answer.citations])
    return all(c.chunk.chunk_id in visible and c.chunk.scope in answer.scopes for c in answer.citations)
