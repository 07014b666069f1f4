"""Drift detection: power and false alarms of the query-embedding test on dev data, and the cost of a check.

What it measures, with the check's own code (ops/monitor) and the bundled MiniLM:

- False alarms: the newest window and the one before are random disjoint draws from one
  domain (QMSum meeting queries, train + val: 1,529 questions, so that two windows of 200
  fit). The share of runs flagged should be near the test's level (IMP_MONITOR__MMD_P_VALUE).
- Power: the window before holds QMSum queries; the newest holds FinanceBench analyst
  questions, all of them (a full change of topic) or a share of them mixed into QMSum
  queries (10 %, 25 %: a new team starting to ask). FinanceBench has 78 dev questions: a
  window of 100 or 200 with only finance questions draws them with replacement (said in the
  results).
- The 👎-rate test (two-proportion z-test and a minimum rise of 0.10) on simulated ratings,
  every answer rated: false alarms at a steady 10 % and power when it rises to 20 % and 30 %.
- The cost of one whole check (`DriftCheck.run`, what `imp drift check` and the scheduler
  run) at the default window of 200 over a real engine's SQLite database: 400 answers with
  ratings, embedding 400 questions, six signals, recorded, no alert destination.

Each cell is ``--runs`` seeds (default 100). Questions are embedded once; each run draws
its windows and runs the permutation test with ``--permutations`` (default 200).

    .venv/bin/python bench/drift.py [--runs 100] [--permutations 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, Contention, Stopwatch, header, quiet, table, write_result  # noqa: E402

sys.path.insert(0, str(ROOT))
from app import build_engine  # noqa: E402  (sets the offline environment first)
from core.config import Settings  # noqa: E402
from core.index.embedders import make_embedder  # noqa: E402
from ops.monitor.check import DriftCheck  # noqa: E402
from ops.monitor.drift import DriftConfig, embedding_signal, rate_signal  # noqa: E402

WINDOWS = (50, 100, 200)
SHARES = (1.0, 0.25, 0.10)


def qmsum_queries() -> list[str]:
    out = []
    for name in ("train.jsonl", "val.jsonl"):
        for line in (DATA / "qmsum" / name).read_text().splitlines():
            m = json.loads(line)
            out += [q["query"] for q in m["specific_query_list"] + m["general_query_list"]]
    return out


def finance_questions() -> list[str]:
    path = DATA / "docqa" / "financebench" / "questions_dev.jsonl"
    return [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]


def flagged_share(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 3)


def mmd_runs(qmsum: np.ndarray, finance: np.ndarray, n: int, share: float | None, runs: int,
             config: DriftConfig) -> tuple[float, float, bool]:
    """Share of runs flagged, median p-value, whether finance questions were drawn with replacement.
    ``share`` None: same domain (disjoint halves of QMSum)."""
    flags, ps, replaced = [], [], False
    for seed in range(runs):
        rng = np.random.default_rng(1000 + seed)
        if share is None:
            idx = rng.choice(len(qmsum), 2 * n, replace=False)
            recent, previous = qmsum[idx[:n]], qmsum[idx[n:]]
        else:
            k = int(round(share * n))
            replace = k > len(finance)
            replaced |= replace
            idx = rng.choice(len(qmsum), 2 * n - k, replace=False)
            mixed = np.concatenate([finance[rng.choice(len(finance), k, replace=replace)], qmsum[idx[:n - k]]])
            recent, previous = mixed, qmsum[idx[n - k:]]
        s = embedding_signal(recent, previous, _seeded(config, seed))
        flags.append(s.drifted)
        ps.append(s.p_value)
    return flagged_share(flags), round(statistics.median(ps), 4), replaced


def _seeded(config: DriftConfig, seed: int) -> DriftConfig:
    return DriftConfig(mmd_p_value=config.mmd_p_value, permutations=config.permutations, seed=seed)


def down_rate_runs(n: int, base: float, rise: float, runs: int) -> float:
    flags = []
    for seed in range(runs):
        rng = np.random.default_rng(5000 + seed)
        before, after = int(rng.binomial(n, base)), int(rng.binomial(n, base + rise))
        flags.append(rate_signal("down_rate", after, n, before, n, min_rise=0.10, alpha=0.01, what="ratings").drifted)
    return flagged_share(flags)


def check_cost(queries: list[str], embedder, window: int, repeats: int = 5) -> dict:
    """Seconds of a whole DriftCheck.run over a real engine with 2 × ``window`` answers, some rated."""
    from tests.support.drift_data import AnswerStream, rate  # rows as the answer log writes them

    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(Settings(data_dir=Path(tmp) / "data"), embedder=embedder)
        try:
            rng = random.Random(0)
            ids = AnswerStream(engine.database).add(rng.sample(queries, 2 * window))
            rate(engine, ids[::3], 1)
            rate(engine, ids[1::7], -1)
            check = DriftCheck(engine.database, engine.embed_questions, DriftConfig(), window=window)
            walls, inner, others = [], [], []
            for _ in range(repeats):
                with Contention() as busy, Stopwatch() as t:
                    report = check.run()
                walls.append(t.seconds)
                inner.append(report.seconds)
                others.append(busy.cores)
            with Stopwatch() as t:
                engine.embed_questions(rng.sample(queries, 2 * window))
        finally:
            engine.close()
    return {"window": window, "answers": 2 * window, "runs": repeats,
            "seconds_median": round(statistics.median(walls), 3), "seconds_min": round(min(walls), 3),
            "seconds_all": [round(w, 3) for w in walls], "signals_seconds_median": round(statistics.median(inner), 3),
            "other_processes_cores": others, "embedding_seconds": round(t.seconds, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100, help="seeds per cell")
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--p-value", type=float, default=0.01, help="IMP_MONITOR__MMD_P_VALUE")
    args = ap.parse_args()
    quiet()
    info = header("drift detection")
    config = DriftConfig(mmd_p_value=args.p_value, permutations=args.permutations)

    qmsum_text, finance_text = qmsum_queries(), finance_questions()
    embedder = make_embedder("sentence-transformers", None)
    embedder.warm_up()
    with Stopwatch() as t:
        qmsum, finance = embedder.embed(qmsum_text), embedder.embed(finance_text)
    print(f"embedded {len(qmsum_text)} QMSum queries and {len(finance_text)} FinanceBench questions "
          f"in {t.seconds:.1f}s\n")

    rows, cells = [], []
    started = time.perf_counter()
    for n in WINDOWS:
        flagged, p50, _ = mmd_runs(qmsum, finance, n, None, args.runs, config)
        cells.append({"window": n, "case": "same domain (QMSum vs QMSum)", "finance_share": 0.0,
                      "flagged": flagged, "median_p": p50})
        for share in SHARES:
            flagged, p50, replaced = mmd_runs(qmsum, finance, n, share, args.runs, config)
            cells.append({"window": n, "case": "other domain (FinanceBench into QMSum)", "finance_share": share,
                          "flagged": flagged, "median_p": p50, "finance_drawn_with_replacement": replaced})
    for c in cells:
        rows.append([c["window"], c["case"], f"{int(100 * c['finance_share'])}%", f"{100 * c['flagged']:.0f}%",
                     c["median_p"], "yes" if c.get("finance_drawn_with_replacement") else ""])
    table(f"query-embedding MMD: share of {args.runs} runs flagged (p < {args.p_value}, "
          f"{args.permutations} permutations)",
          ["window", "newest window", "finance share", "flagged", "median p", "with replacement"], rows)
    mmd_seconds = time.perf_counter() - started

    down = []
    for n in WINDOWS:
        for rise in (0.0, 0.10, 0.20):
            down.append({"window": n, "base": 0.10, "rise": rise, "flagged": down_rate_runs(n, 0.10, rise, args.runs)})
    table(f"👎 rate (10 % before, every answer rated): share of {args.runs} runs flagged",
          ["window", "rise", "flagged"], [[d["window"], f"+{int(100 * d['rise'])} pts", f"{100 * d['flagged']:.0f}%"]
                                          for d in down])

    cost = check_cost(qmsum_text, embedder, 200)
    table("cost of one drift check (DriftCheck.run, window 200, SQLite, bundled MiniLM on CPU)",
          ["answers", "median s", "min s", "other processes (cores)", "embedding 400 questions s"],
          [[cost["answers"], cost["seconds_median"], cost["seconds_min"], str(cost["other_processes_cores"]),
            cost["embedding_seconds"]]])
    write_result("drift", info | {"runs": args.runs, "permutations": args.permutations, "p_value": args.p_value,
                                  "qmsum_queries": len(qmsum_text), "finance_questions": len(finance_text),
                                  "mmd": cells, "mmd_seconds_all_cells": round(mmd_seconds, 1),
                                  "down_rate": down, "check_cost": cost})


if __name__ == "__main__":
    main()
