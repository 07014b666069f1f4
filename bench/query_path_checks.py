"""Two checks behind the search-latency figures: the query embedder, and Chroma's scope filter.

1. Query embedding (the bundled MiniLM, one short question per call, as
   ``HybridRetriever`` does), float32 and int8 (IMP_EMBEDDER__QUANTIZE), with
   torch using 1 and 2 intra-op threads, on an otherwise idle machine and while
   one competing process (started here, a busy loop) holds one core, as a
   second service or a test run on the same 2-core host would. No query cache.
2. Chroma query time at --chunks vectors (random unit vectors, 384-d, written
   with ``ChromaVectorStore.upsert`` over 50 scopes): the single layout with no
   filter and with the scope filter it needs (1 and 4 scopes), and the
   per-scope layout (one collection per scope, no filter; 1 and 4 scopes).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Contention, header, percentile, quiet, table, write_result  # noqa: E402

import app  # noqa: E402, F401  (sets the offline environment first)
from core.index.embedders import make_embedder  # noqa: E402
from core.index.vectors import ChromaVectorStore  # noqa: E402
from core.models import Chunk  # noqa: E402

QUESTIONS = [
    "What did the group decide about the remote control's buttons?",
    "What is the FY2018 capital expenditure amount for 3M?",
    "Why did the professor disagree with the transcription plan?",
    "How much did revenue grow year over year in the cloud segment?",
]


def _spin() -> None:
    while True:
        pass


def timed(fn, n: int) -> dict:
    ts = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        ts.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(percentile(ts, 50), 1), "p95_ms": round(percentile(ts, 95), 1),
            "mean_ms": round(sum(ts) / len(ts), 1)}


def embed_check(n: int) -> list[dict]:
    import torch

    embs = {q: make_embedder("sentence-transformers", None, quantize=q) for q in ("none", "int8")}
    for emb in embs.values():
        emb.warm_up()
    rows = []
    for load in ("idle", "1 busy core"):
        rival = None
        if load != "idle":
            rival = multiprocessing.Process(target=_spin, daemon=True)
            rival.start()
            time.sleep(1)
        try:
            for quantize, emb in embs.items():
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    emb.embed(["warm up"])
                    with Contention() as c:
                        r = timed(lambda i, emb=emb: emb.embed([f"{QUESTIONS[i % len(QUESTIONS)]} ({i})"]), n)
                    rows.append({"machine": load, "quantize": quantize, "torch_threads": threads,
                                 "other_cores": c.cores} | r)
        finally:
            if rival is not None:
                rival.terminate()
                rival.join()
    return rows


def chroma_check(n_chunks: int, n_queries: int) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix="imp-bench-chroma-"))
    try:
        store = ChromaVectorStore("bench_filter", path=folder, layout="single")
        scoped = ChromaVectorStore("bench_scoped", path=folder)
        rng = np.random.default_rng(3)
        scopes = ["default"] + [f"team-{i:02d}" for i in range(1, 50)]
        vecs = rng.standard_normal((n_chunks, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        chunks = [Chunk(chunk_id=f"c{i:07d}", doc_id=f"d{i // 100:05d}", version="v", ordinal=i % 100,
                        source="bench", scope=scopes[(i // 100) % 50], text="") for i in range(n_chunks)]
        t0 = time.perf_counter()
        store.upsert(chunks, vecs)
        t1 = time.perf_counter()
        scoped.upsert(chunks, vecs)
        print(f"   wrote {n_chunks:,} vectors in {t1 - t0:.1f} s (one collection), "
              f"{time.perf_counter() - t1:.1f} s (one per scope)", flush=True)
        qs = rng.standard_normal((n_queries, 384)).astype(np.float32)
        coll = store._coll()  # the raw collection, only to time a query without any filter
        cases = {
            "no filter (raw Chroma)": lambda i: coll.query(query_embeddings=[qs[i]], n_results=40,
                                                           include=["distances"]),
            "single layout, 1 scope (where filter)": lambda i: store.query(qs[i], 40, scopes[1:2]),
            "single layout, 4 scopes ($in filter)": lambda i: store.query(qs[i], 40, scopes[1:4] + ["default"]),
            "per-scope layout, 1 scope": lambda i: scoped.query(qs[i], 40, scopes[1:2]),
            "per-scope layout, 4 scopes": lambda i: scoped.query(qs[i], 40, scopes[1:4] + ["default"]),
        }
        rows = []
        for name, fn in cases.items():
            fn(0)
            with Contention() as c:
                r = timed(fn, n_queries)
            rows.append({"query": name, "other_cores": c.cores} | r)
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--chunks", type=int, default=100_000)
    args = ap.parse_args()
    quiet()
    info = header("query path checks: query embedder (float32/int8, threads), Chroma layout and scope filter")
    print("-- query embedding, float32 and int8, 1 vs 2 torch threads", flush=True)
    emb_rows = embed_check(args.queries)
    table("query embedding (one question per call)", ["machine", "quantize", "torch threads", "p50 ms", "p95 ms",
                                                      "mean ms", "other procs (cores)"],
          [[r["machine"], r["quantize"], r["torch_threads"], r["p50_ms"], r["p95_ms"], r["mean_ms"],
            r["other_cores"]] for r in emb_rows])
    print(f"-- Chroma query at {args.chunks:,} vectors", flush=True)
    chroma_rows = chroma_check(args.chunks, args.queries)
    table(f"Chroma query, k=40, {args.chunks:,} random vectors over 50 scopes",
          ["query", "p50 ms", "p95 ms", "mean ms", "other procs (cores)"],
          [[r["query"], r["p50_ms"], r["p95_ms"], r["mean_ms"], r["other_cores"]] for r in chroma_rows])
    write_result("query_path_checks", info | {"settings": vars(args), "embedding": emb_rows, "chroma": chroma_rows})


if __name__ == "__main__":
    main()
