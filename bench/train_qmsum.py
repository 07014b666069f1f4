"""The learning loop on QMSum: train the embedder on train.jsonl, gate it on val.jsonl, switch, roll back.

What it measures, in one run of the real code path (`imp train embedder`'s EmbedderLoop):
- pooled retrieval quality on the 35 unseen QMSum val meetings (all in one pool, hybrid
  search as served) for the bundled MiniLM (champion) and the fine-tuned candidate:
  hit@5, recall@5, MRR@10 (training/gate.py);
- training time and the training worker's peak memory on this CPU (Ray Train, 1 worker);
- time to re-index the serving index for the promoted model, to roll back to the kept
  index of the previous champion, and to switch forward again.

The serving index holds the val meetings too (ingested before training), so the switch
re-embeds a real index. Train and val are different meetings (QMSum's own split); nothing
here was tuned on val. Writes bench/results/train_qmsum.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, header, quiet, table, write_result  # noqa: E402

from app import build_embedder_loop, build_engine, build_model_registry  # noqa: E402
from core.config import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, default=DATA / "qmsum" / "train.jsonl")
    ap.add_argument("--val", type=Path, default=DATA / "qmsum" / "val.jsonl")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--hard-negatives", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=RESULTS / "train-qmsum")
    args = ap.parse_args()
    quiet()
    info = header("learning loop: fine-tune the embedder on QMSum train, gate on QMSum val")
    import shutil

    shutil.rmtree(args.data_dir, ignore_errors=True)
    settings = Settings(data_dir=args.data_dir)
    settings = settings.model_copy(update={"train": settings.train.model_copy(
        update={"hard_negatives": args.hard_negatives, "epochs": args.epochs})})
    engine = build_engine(settings)

    from training.data import read_eval_set
    from training.gate import write_documents

    val = read_eval_set(args.val)
    files = write_documents(val, args.data_dir / "served-docs")
    t0 = time.perf_counter()
    results = engine.ingest(files, "default")
    chunks = sum(r.chunks for r in results)
    print(f"serving index: {len(files)} val meetings, {chunks} chunks, ingested in {time.perf_counter() - t0:.0f} s")

    loop = build_embedder_loop(settings, engine, feedback=False)
    t0 = time.perf_counter()
    outcome = loop.run(args.train, args.val, say=lambda text: print(f"  {text}", flush=True))
    total = time.perf_counter() - t0

    from training.promotion import promote, rollback
    from training.registry import EMBEDDER

    registry = build_model_registry(settings)
    switch = {}
    if outcome.promoted:
        t0 = time.perf_counter()
        back = rollback(engine, registry, EMBEDDER)
        switch["rollback_s"] = round(time.perf_counter() - t0, 2)
        switch["rollback_embedded"] = back.embedded
        t0 = time.perf_counter()
        again = promote(engine, registry, EMBEDDER, outcome.version)
        switch["forward_again_s"] = round(time.perf_counter() - t0, 2)
        switch["forward_again_embedded"] = again.embedded
    engine.close()

    m = outcome.metrics
    table("pooled retrieval on QMSum val (35 unseen meetings, one pool, hybrid search as served)",
          ["model", "hit@5", "recall@5", "MRR@10", "queries"],
          [[name, m[name]["hit@5"], m[name]["recall@5"], m[name]["mrr@10"], m[name]["queries"]]
           for name in ("champion", "candidate")])
    print(f"gate: {'promoted' if outcome.promoted else 'refused'}: {outcome.reason}")
    print(f"times (s): {outcome.seconds} | switch {switch} | whole run {total:.0f} s")
    write_result("train_qmsum", info | {"outcome": outcome.to_json(), "switch": switch, "serving_chunks": chunks,
                                        "total_s": round(total, 1), "epochs": args.epochs,
                                        "hard_negatives": args.hard_negatives})


if __name__ == "__main__":
    main()
