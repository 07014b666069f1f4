"""Search latency (p50/p95/p99) and throughput of Engine.search at 1.3k, 10k and 100k chunks, before and after.

What it measures: warm, end-to-end ``engine.search(query, k=5, scopes)`` in
hybrid mode, the real path a chat question takes: MiniLM query embedding,
Chroma vector query, BM25 query, reciprocal-rank fusion, registry hydration.

How the corpus is built: embedding 100k real chunks on a 2-core CPU takes
hours, so chunks are written straight through the engine's own storage
components instead of the ingest pipeline: ``DocumentRegistry.begin /
put_chunks / commit`` and ``ChromaVectorStore.upsert``, in the data folder of an
engine made by ``app.build_engine``. Chunk texts are real: random ~150-word
windows (about 200 MiniLM tokens) of QMSum transcript lines and FinanceBench
10-K page text. Vectors are random unit vectors (float32, 384-d), so dense
*quality* means nothing here; only its cost does (random vectors are close to
a worst case for HNSW). Documents: --docs (1000) spread over --scopes (50,
one of them "default"); ids from core.ingest.chunking.document_id/chunk_id.
The BM25 index is built by the first search; that build is timed on its own
("keyword index build").

Before and after, in one run, on the same chunks and vectors: "before" is the
layout and embedder IMP had (one Chroma collection with the scope as a filtered
field; the bundled MiniLM in float32 on torch's default threads, no query
cache), searched through a ``HybridRetriever`` built by hand over those
components; "after" is ``engine.search`` of an engine built from the current
settings (one collection per scope; the embedder as IMP_EMBEDDER__* configure
it). The vectors are written to both layouts.

Queries: real questions (QMSum specific queries + FinanceBench questions),
each searched in 3 random scopes plus "default". After a warm-up (with other
texts, so the query cache never answers a timed query), every query runs once
single-threaded through before and after in turn, alternating which goes first
(latency, both under the same load), then the whole list is replayed by each
of --threads client threads (queries/s). The breakdown calls the same
components directly for every query: query embedding, Chroma query, BM25
query, registry hydration of the fused candidates. ``--http`` then starts a
real ``imp serve`` on the data folder (after settings, bearer token) and sends
the same queries one at a time over HTTP. Goals: p95 <= 50 ms at 100k chunks
and >= 50 queries/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, Contention, Stopwatch, goal, header, quiet, summarize_ms, table, write_result  # noqa: E402

from app import build_embedder, build_engine  # noqa: E402  (sets the offline environment first)
from core.config import Settings  # noqa: E402
from core.index.embedders import make_embedder  # noqa: E402
from core.index.hybrid import HybridRetriever, rrf  # noqa: E402
from core.index.keyword import KeywordIndex  # noqa: E402
from core.index.serving import collection_name  # noqa: E402
from core.index.vectors import ChromaVectorStore  # noqa: E402
from core.store.served import BASE  # noqa: E402
from core.ingest.chunking import chunk_id, document_id  # noqa: E402
from core.models import DEFAULT_SCOPE, Chunk  # noqa: E402
from core.store.registry import CommitInfo  # noqa: E402

DIM = 384
GOAL_P95_MS = 50.0
GOAL_QPS = 50.0
IMP = str(ROOT / ".venv" / "bin" / "imp")
QMSUM = DATA / "qmsum" / "val.jsonl"
FB = DATA / "docqa" / "financebench"


def word_pool() -> list[str]:
    words: list[str] = []
    for line in QMSUM.read_text().splitlines():
        for t in json.loads(line)["meeting_transcripts"]:
            words.extend(f"{t.get('speaker', '')}: {t.get('content', '')}".split())
    for line in (FB / "corpus_pages_dev.jsonl").read_text().splitlines():
        words.extend((json.loads(line).get("text") or "").split())
    return words


def questions() -> list[str]:
    qs = [q["query"] for line in QMSUM.read_text().splitlines()
          for q in json.loads(line).get("specific_query_list") or []]
    qs += [json.loads(line)["question"] for line in (FB / "questions_dev.jsonl").read_text().splitlines() if line]
    return qs


def build_corpus(engine, stores: list[ChromaVectorStore], model_id: str, pool: list[str], n_chunks: int,
                 n_docs: int, scopes: list[str], words_per_chunk: int, rng: np.random.Generator) -> dict:
    """Write n_chunks chunks over n_docs committed documents; returns timings."""
    registry = engine.registry
    per_doc = [n_chunks // n_docs + (1 if d < n_chunks % n_docs else 0) for d in range(n_docs)]
    t_reg = t_vec = 0.0
    group: list[tuple[str, str, str, str, list[Chunk]]] = []

    def flush() -> None:
        nonlocal t_reg, t_vec
        chunks = [c for g in group for c in g[4]]
        vecs = rng.standard_normal((len(chunks), DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        leases = []
        with Stopwatch() as t:
            for doc_id, source, scope, version, cs in group:
                attempt = registry.start(doc_id, source, scope)
                lease = registry.lock(doc_id, source, scope, attempt)
                registry.begin(lease, attempt, version, sum(len(c.text) for c in cs))
                registry.put_chunks(doc_id, version, cs)
                leases.append((lease, attempt))
        t_reg += t.seconds
        with Stopwatch() as t:
            for store in stores:
                store.upsert(chunks, vecs)
        t_vec += t.seconds
        with Stopwatch() as t:
            for (_doc_id, _source, _scope, version, cs), (lease, attempt) in zip(group, leases, strict=True):
                registry.commit(lease, attempt, version, CommitInfo(
                    kind="text", title=None, chunks=len(cs), segments=len(cs), pages=None, duration=None,
                    embedding_model=model_id, index_signature="bench:synthetic"))
                lease.release()
        t_reg += t.seconds
        group.clear()

    for d, n in enumerate(per_doc):
        scope = scopes[d % len(scopes)]
        source = f"bench://latency/{scope}/doc-{d:04d}.txt"
        doc_id = document_id(scope, source)
        version = hashlib.sha256(f"{source}:{n}".encode()).hexdigest()[:32]
        starts = rng.integers(0, len(pool) - words_per_chunk, size=n)
        cs = [Chunk(chunk_id=chunk_id(doc_id, version, i), doc_id=doc_id, version=version, ordinal=i,
                    source=source, scope=scope, text=" ".join(pool[s : s + words_per_chunk]))
              for i, s in enumerate(starts)]
        group.append((doc_id, source, scope, version, cs))
        if sum(len(g[4]) for g in group) >= 5000:
            flush()
    if group:
        flush()
    return {"registry_write_s": round(t_reg, 1), "chroma_upsert_s": round(t_vec, 1)}


def throughput(search, workload: list[tuple[str, list[str]]], threads: int) -> float:
    def one(item: tuple[str, list[str]]) -> None:
        search(item[0], 5, item[1])

    with ThreadPoolExecutor(threads) as pool, Stopwatch() as t:
        list(pool.map(one, workload))
    return len(workload) / t.seconds


def breakdown(emb, vectors, keywords, registry, workload, candidates: int, rrf_k: int) -> dict:
    times: dict[str, list[float]] = {"query embedding": [], "dense (Chroma) query": [],
                                     "BM25 query": [], "RRF fusion": [], "registry hydration": []}
    for q, scopes in workload:
        t0 = time.perf_counter()
        vec = emb.embed([q])[0]
        t1 = time.perf_counter()
        dense = vectors.query(vec, candidates, scopes)
        t2 = time.perf_counter()
        sparse = keywords.query(q, candidates, scopes)
        t3 = time.perf_counter()
        fused = rrf([[c for c, _ in dense], [c for c, _ in sparse]], rrf_k)
        ordered = sorted(fused, key=fused.get, reverse=True)
        t4 = time.perf_counter()
        registry.visible_chunks(ordered)
        t5 = time.perf_counter()
        for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            times[name].append(dt)
    return {name: summarize_ms(v) for name, v in times.items()}


def over_http(data: Path, workload, warmup: list[str]) -> dict:
    """The same queries one at a time through a real `imp serve` on ``data`` (current settings, a bearer token)."""
    import httpx

    from tests.fakes.net import free_port, wait_until_up

    token, port = secrets.token_urlsafe(24), free_port()
    env = os.environ | {"IMP_DATA_DIR": str(data), "IMP_API__TOKEN": token}
    proc = subprocess.Popen([IMP, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/healthz", proc, timeout=600)  # a loaded 2-core host starts slowly
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60) as http:
            for q in warmup:
                http.post("/v1/search", json={"query": q, "k": 5, "scopes": workload[0][1]}).raise_for_status()
            lat = []
            with Contention() as c:
                for q, scopes in workload:
                    with Stopwatch() as t:
                        http.post("/v1/search", json={"query": q, "k": 5, "scopes": scopes}).raise_for_status()
                    lat.append(t.seconds)
        return {"latency": summarize_ms(lat), "other_cores": c.cores}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run_size(n: int, args, base: Path, embs: dict, pool, workload, scopes) -> dict:
    # The after embedder (and its query cache) serves every size: tag the texts with the size so
    # that no timed query of this size was embedded at an earlier one.
    workload = [(f"{q} ({n} chunks)", s) for q, s in workload]
    data = base / f"n{n}"
    shutil.rmtree(data, ignore_errors=True)
    settings = Settings(data_dir=data)
    engine = build_engine(settings, embedder=embs["after"])
    after_store = ChromaVectorStore(collection_name(settings.chroma.collection, embs["after"].model_id, BASE),
                                    path=data / "chroma")
    before_store = ChromaVectorStore(f"{settings.chroma.collection}_before", path=data / "chroma", layout="single")
    rng = np.random.default_rng(args.seed + n)
    print(f"-- {n:,} chunks: writing corpus ({args.docs} documents, {len(scopes)} scopes, both layouts) ...", flush=True)
    with Stopwatch() as t_build:
        build = build_corpus(engine, [after_store, before_store], embs["after"].model_id, pool, n, args.docs, scopes,
                             args.words, rng)
    build["corpus_write_s"] = round(t_build.seconds, 1)
    build["chunks_in_registry"] = engine.registry.count_chunks()
    build["vectors_in_chroma"] = {"after": after_store.count(), "before": before_store.count()}
    with Stopwatch() as t_kw:  # the first search builds (and saves) the BM25 index
        engine.search("keyword index build", 5, [DEFAULT_SCOPE], mode="keyword")
    build["keyword_index_build_s"] = round(t_kw.seconds, 1)
    keywords = KeywordIndex(engine.registry, data / "bm25")
    with Stopwatch() as t_load:  # a second process would load the saved copy instead
        keywords.refresh()
    build["keyword_index_load_s"] = round(t_load.seconds, 2)
    print(f"   corpus written in {build['corpus_write_s']} s, keyword index built in "
          f"{build['keyword_index_build_s']} s; measuring ...", flush=True)
    before = HybridRetriever(engine.registry, before_store, keywords, embs["before"],
                             candidates=settings.search.candidates, rrf_k=settings.search.rrf_k)
    search = {"before": before.search, "after": engine.search}
    stores = {"before": before_store, "after": after_store}

    for i, (q, s) in enumerate(workload[: args.warmup]):
        for fn in search.values():
            fn(f"{q} (warm-up {i})", 5, s)
    lat: dict[str, list[float]] = {"before": [], "after": []}
    other: dict[str, float | None] = {}
    with Contention() as c:
        for i, (q, s) in enumerate(workload):
            for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
                with Stopwatch() as t:
                    search[name](q, 5, s)
                lat[name].append(t.seconds)
    other["latency"] = c.cores
    qps: dict[str, dict[int, float]] = {"before": {}, "after": {}}
    for threads in args.threads:
        for name, fn in search.items():
            # Distinct texts per pass, so the after side's query cache answers none of them.
            replay = [(f"{q} (pass {name} {threads})", s) for q, s in workload]
            with Contention() as c:
                qps[name][threads] = round(throughput(fn, replay, threads), 1)
            other[f"qps_{name}_{threads}"] = c.cores
    parts = {}
    for name in ("before", "after"):
        replay = [(f"{q} (breakdown)", s) for q, s in workload]
        with Contention() as c:
            parts[name] = breakdown(embs[name], stores[name], keywords, engine.registry, replay,
                                    settings.search.candidates, settings.search.rrf_k)
        other[f"breakdown_{name}"] = c.cores
    engine.close()
    before_store.close()
    after_store.close()
    http = over_http(data, workload, [f"warm up {i}" for i in range(args.warmup)]) if args.http else None
    return {"chunks": n, "build": build, "latency": {k: summarize_ms(v) for k, v in lat.items()}, "qps": qps,
            "breakdown": parts, "http": http, "other_processes_cores": other}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1300,10000,100000", help="comma-separated chunk counts")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--scopes", type=int, default=50)
    ap.add_argument("--words", type=int, default=150, help="words per chunk (~200 MiniLM tokens)")
    ap.add_argument("--threads", default="1,2", help="client thread counts for the throughput runs")
    ap.add_argument("--queries", type=int, default=None, help="use only the first N questions (smoke runs)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-http", dest="http", action="store_false", help="skip the runs over HTTP")
    ap.add_argument("--data-dir", type=Path, default=None, help="where to build (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the built corpora")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.threads = [int(x) for x in args.threads.split(",")]
    return args


def main() -> None:
    args = parse()
    quiet()
    info = header("search latency and throughput, before and after")
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="imp-bench-latency-"))
    settings = Settings(data_dir=base)
    # Before: the bundled model as IMP used it (float32, torch's default threads, no cache).
    embs = {"before": make_embedder("sentence-transformers", settings.embedder.path), "after": build_embedder(settings)}
    for e in embs.values():
        e.warm_up()
    emb = embs["after"]
    pool = word_pool()
    tokens = [len(emb.tokenizer()(" ".join(pool[i : i + args.words]), add_special_tokens=False)["input_ids"])
              for i in random.Random(args.seed).sample(range(len(pool) - args.words), 200)]
    scopes = [DEFAULT_SCOPE] + [f"team-{i:02d}" for i in range(1, args.scopes)]
    rnd = random.Random(args.seed)
    qs = questions()
    rnd.shuffle(qs)
    workload = [(q, [*rnd.sample(scopes[1:], 3), DEFAULT_SCOPE]) for q in qs][: args.queries]
    print(f"corpus   text pool {len(pool):,} words; chunks of {args.words} words = "
          f"{np.mean(tokens):.0f} MiniLM tokens on average; random unit vectors, {DIM}-d")
    print(f"queries  {len(workload)} real questions, scopes = 3 random + 'default' "
          f"(of {len(scopes)}), k=5, hybrid")
    print(f"before   one collection, scope filter; embedder {embs['before'].model_id}, torch threads "
          f"{_threads()}, no query cache")
    print(f"after    one collection per scope; embedder {emb.model_id}, query threads "
          f"{settings.embedder.query_threads or _threads()}, query cache {settings.embedder.query_cache}\n", flush=True)

    runs = []
    try:
        for n in args.sizes:
            runs.append(run_size(n, args, base, embs, pool, workload, scopes))
    finally:
        if not args.keep and args.data_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    table("build (corpus written directly through registry + Chroma, both layouts)",
          ["chunks", "registry write s", "Chroma upsert s (both)", "keyword index build s", "keyword index load s"],
          [[f"{r['chunks']:,}", r["build"]["registry_write_s"], r["build"]["chroma_upsert_s"],
            r["build"]["keyword_index_build_s"], r["build"]["keyword_index_load_s"]] for r in runs])
    rows = []
    for r in runs:
        for name in ("before", "after"):
            lat = r["latency"][name]
            rows.append([f"{r['chunks']:,}", name, lat["p50_ms"], lat["p95_ms"], lat["p99_ms"], lat["mean_ms"],
                         *(r["qps"][name][t] for t in args.threads), goal(lat["p95_ms"] <= GOAL_P95_MS),
                         goal(max(r["qps"][name].values()) >= GOAL_QPS),
                         f"{r['other_processes_cores']['latency']} / "
                         + "/".join(str(r["other_processes_cores"][f"qps_{name}_{t}"]) for t in args.threads)])
    table(f"warm end-to-end search in-process, one client ({len(workload)} queries, before and after in turn); "
          "other procs = cores used by other processes during the latency run / each q/s run",
          ["chunks", "config", "p50 ms", "p95 ms", "p99 ms", "mean ms", *(f"q/s {t} thr" for t in args.threads),
           "goal p95<=50ms", f"goal >={GOAL_QPS:.0f} q/s", "other procs (cores)"], rows)
    if args.http:
        table("over HTTP (imp serve, after settings, bearer token), one client, same queries",
              ["chunks", "p50 ms", "p95 ms", "p99 ms", "mean ms", "goal p95<=50ms", "other procs (cores)"],
              [[f"{r['chunks']:,}", r["http"]["latency"]["p50_ms"], r["http"]["latency"]["p95_ms"],
                r["http"]["latency"]["p99_ms"], r["http"]["latency"]["mean_ms"],
                goal(r["http"]["latency"]["p95_ms"] <= GOAL_P95_MS), r["http"]["other_cores"]] for r in runs])
    for r in runs:
        oc = r["other_processes_cores"]
        table(f"breakdown at {r['chunks']:,} chunks (components called directly, same queries; other processes "
              f"used {oc['breakdown_before']} / {oc['breakdown_after']} cores meanwhile)",
              ["stage", "before p50 ms", "before p95 ms", "after p50 ms", "after p95 ms"],
              [[name, s["p50_ms"], s["p95_ms"], r["breakdown"]["after"][name]["p50_ms"],
                r["breakdown"]["after"][name]["p95_ms"]] for name, s in r["breakdown"]["before"].items()])
    write_result("search_latency", info | {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "embedders": {k: e.model_id for k, e in embs.items()},
        "mean_chunk_tokens": round(float(np.mean(tokens)), 1),
        "queries": len(workload),
        "goals": {"p95_ms": GOAL_P95_MS, "qps": GOAL_QPS},
        "runs": runs,
    })


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
