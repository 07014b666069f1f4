"""Retrieval quality on QMSum meetings: IMP's search beside plain BM25 and plain fusion, same queries.

What it measures: for every QMSum *specific* query with gold turn ranges
(``relevant_text_span``), whether the top hits hold its gold turns, for

- **IMP**: the meetings written as ``<meeting_id>.txt`` (one line per turn,
  ``Speaker: text``) and ingested with ``Engine.ingest``; searched with
  ``engine.search`` in modes hybrid, dense and keyword (the production path:
  loaders, chunker, MiniLM, Chroma, BM25 index, fusion, registry);
- **plain BM25**: bm25s with its default tokenisation over ~150-word windows,
  stride 128, of the same transcript text;
- **plain dense** and **plain RRF** (k=60) of plain BM25 and exact cosine search
  with the same MiniLM over the same windows.

Pooling: meetings are taken 12 at a time in file order (35 val meetings: pools
of 12, 12, 11) and each query searches its meeting's pool, as in
../shared/FINDINGS.md; the *whole pool* protocol searches all meetings at once.
IMP ingests pool i into scope ``pool-i`` and searches one scope, or all of them.

Two relevance protocols, both requiring a chunk of the query's own meeting:
- **turn**: the chunk holds a gold turn's line verbatim (a turn longer than a
  chunk counts through a line of at least 20 of its words);
- **shingle** (FINDINGS): the chunk shares an 8-word shingle (lowercased words)
  with a gold turn; a gold turn of 4-7 words must appear whole.
Gold turns of fewer than 4 words are ignored unless a query has only such turns.
Metrics: hit@5 and MRR@10, pooled over queries.

The IMP index is cached in --data-dir (ingest is idempotent); ingest time is
printed only when something was (re)indexed. Tuning was done on train.jsonl;
report figures on val.jsonl (the default).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, Contention, Stopwatch, header, quiet, table, write_result  # noqa: E402

from app import build_embedder, build_engine  # noqa: E402  (sets the offline environment first)
from core.config import ChunkSettings, SearchSettings, Settings  # noqa: E402
from core.index.embedders import Embedder  # noqa: E402
from training.qmsum import QMeeting, read_meetings  # noqa: E402

MODES = ("hybrid", "dense", "keyword")
POOL = 12
WINDOW, STRIDE = 150, 128
SHINGLE = 8
MIN_WINDOW_WORDS = 20
RRF_K = 60
DEPTH = 10
_WORDS = re.compile(r"\S+")


# ---------------------------------------------------------------- relevance


def _holds(chunk_text: str, line: str) -> bool:
    if line in chunk_text:
        return True
    return any(len(piece.split()) >= MIN_WINDOW_WORDS and piece in line for piece in chunk_text.split("\n"))


def _shingles(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class Gold:
    """One query's gold: its meeting, turn lines, and shingles."""

    def __init__(self, meeting: QMeeting, index: int):
        q = meeting.queries[index]
        self.meeting = meeting.meeting_id
        self.query = q.query
        self.lines = [meeting.lines[p] for p in q.core]
        self.shingles: dict[int, set] = {}
        for line in self.lines:
            words = line.split(": ", 1)[-1].lower().split()
            n = min(SHINGLE, len(words))
            if n:
                self.shingles.setdefault(n, set()).update(_shingles(words, n))

    def relevant(self, meeting: str, text: str) -> tuple[bool, bool]:
        """(turn protocol, shingle protocol)."""
        if meeting != self.meeting:
            return False, False
        turn = any(_holds(text, g) for g in self.lines)
        lines = [ln.lower().split() for ln in text.split("\n")]
        shingle = any(_shingles(w, n) & s for n, s in self.shingles.items() for w in lines)
        return turn, shingle


def score(gold: Gold, ranked: Sequence[tuple[str, str]]) -> dict[str, float]:
    """hit@5 and MRR@10 under both protocols for one ranked list of (meeting, chunk text)."""
    rel = [gold.relevant(m, t) for m, t in ranked[:DEPTH]]
    out = {}
    for j, name in enumerate(("turn", "shingle")):
        first = next((r + 1 for r, x in enumerate(rel) if x[j]), None)
        out[f"{name}_hit5"] = 1.0 if first and first <= 5 else 0.0
        out[f"{name}_mrr10"] = 1.0 / first if first else 0.0
    return out


# ---------------------------------------------------------------- plain baselines


def windows(lines: Sequence[str]) -> list[str]:
    """~150-word windows, stride 128, over the transcript's words; turn lines keep their newlines."""
    words: list[tuple[str, bool]] = [(w, i == 0) for line in lines for i, w in enumerate(line.split())]
    out = []
    for lo in range(0, len(words), STRIDE):
        part = words[lo : lo + WINDOW]
        out.append("".join(("\n" if first and j else " " if j else "") + w for j, (w, first) in enumerate(part)))
        if lo + WINDOW >= len(words):
            break
    return out


class Plain:
    """Plain BM25 (bm25s defaults), exact MiniLM cosine and their RRF over one pool's windows."""

    def __init__(self, rows: list[tuple[str, str]], vectors: np.ndarray):
        import bm25s

        self.rows = rows
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize([t for _, t in rows], show_progress=False), show_progress=False)
        self._vectors = vectors

    def rankings(self, query: str, query_vector: np.ndarray) -> dict[str, list[int]]:
        import bm25s

        tokens = bm25s.tokenize([query], return_ids=False, show_progress=False)[0]
        tokens = [t for t in tokens if t in self._bm25.vocab_dict]
        sparse = self._bm25.get_scores(tokens) if tokens else np.zeros(len(self.rows))
        keyword = [int(i) for i in np.argsort(-sparse, kind="stable") if sparse[i] > 0]
        dense = [int(i) for i in np.argsort(-(self._vectors @ query_vector), kind="stable")]
        fused: dict[int, float] = {}
        for ranking in (keyword, dense):
            for rank, i in enumerate(ranking, start=1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
        return {"bm25": keyword[:DEPTH], "dense": dense[:DEPTH],
                "rrf": sorted(fused, key=fused.get, reverse=True)[:DEPTH]}


def cached_vectors(path: Path, embedder: Embedder, texts: list[str]) -> np.ndarray:
    """The windows' vectors, kept beside the IMP index so a rerun embeds nothing twice."""
    key = hashlib.sha256("\x00".join([embedder.model_id, *texts]).encode()).hexdigest()
    if path.exists():
        with np.load(path) as saved:
            if str(saved["key"]) == key:
                return saved["vectors"]
    vectors = embedder.embed(texts)
    np.savez(path, key=np.array(key), vectors=vectors)
    return vectors


# ---------------------------------------------------------------- run


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA / "qmsum" / "val.jsonl")
    ap.add_argument("--data-dir", type=Path, default=None, help="IMP index cache (default bench/results/qmsum-<split>)")
    ap.add_argument("--meetings", type=int, default=None, help="first N meetings only (tuning on part of train)")
    ap.add_argument("--candidates", type=int, default=None, help="override the search setting")
    ap.add_argument("--rrf-k", type=int, default=None, help="override the search setting")
    ap.add_argument("--keyword-weight", type=float, default=None, help="override the search setting")
    ap.add_argument("--doc-weight", type=float, default=None, help="override the search setting")
    ap.add_argument("--chunk-max-tokens", type=int, default=None, help="override the chunk setting")
    ap.add_argument("--name", default=None, help="result file name (default retrieval_qmsum[-<split>])")
    return ap.parse_args()


def main() -> None:
    args = parse()
    quiet()
    split = args.data.stem
    info = header(f"retrieval quality on QMSum ({split}): IMP beside plain BM25 and plain RRF")
    meetings = read_meetings(args.data)[: args.meetings]
    pools = [meetings[i : i + POOL] for i in range(0, len(meetings), POOL)]
    search = SearchSettings()
    overrides = {k: v for k, v in (("candidates", args.candidates), ("rrf_k", args.rrf_k),
                                                   ("keyword_weight", args.keyword_weight),
                                                   ("doc_weight", args.doc_weight)) if v is not None}
    search = search.model_copy(update=overrides)
    chunking = ChunkSettings() if args.chunk_max_tokens is None else ChunkSettings(max_tokens=args.chunk_max_tokens)
    data_dir = args.data_dir or RESULTS / f"qmsum-{split}{'-' + str(args.meetings) if args.meetings else ''}"
    settings = Settings(data_dir=data_dir, search=search, chunking=chunking)
    embedder = build_embedder(settings)  # one model for IMP and the plain baselines
    engine = build_engine(settings, embedder=embedder)

    with Stopwatch() as t_ingest:
        results = []
        for p, pool in enumerate(pools):
            folder = data_dir / "transcripts" / f"pool-{p}"
            folder.mkdir(parents=True, exist_ok=True)
            files = []
            for m in pool:
                f = folder / m.name
                if not f.exists() or f.read_text() != m.text:  # unchanged bytes keep the cached index valid
                    f.write_text(m.text)
                files.append(f)
            results += engine.ingest(files, f"pool-{p}")
    failed = [r for r in results if r.status.value == "failed"]
    if failed:
        sys.exit(f"ingest failed: {[(r.source, r.error) for r in failed]}")
    fresh = sum(r.status.value == "indexed" for r in results)
    chunks = sum(r.chunks for r in results)
    print(f"IMP      {len(meetings)} meetings in {len(pools)} pools, {chunks} chunks; {fresh} (re)indexed "
          f"in {t_ingest.seconds:.1f} s ({t_ingest.seconds / max(fresh, 1):.2f} s per meeting), "
          f"{len(results) - fresh} cached; candidates={search.candidates} rrf_k={search.rrf_k} "
          f"keyword_weight={search.keyword_weight} doc_weight={search.doc_weight}")

    golds = [(p, Gold(m, i)) for p, pool in enumerate(pools) for m in pool for i in range(len(m.queries))]
    query_vectors = embedder.embed([g.query for _, g in golds])
    with Stopwatch() as t_plain:
        rows = [(m.meeting_id, w) for m in meetings for w in windows(m.lines)]
        vectors = cached_vectors(data_dir / "plain-windows.npz", embedder, [t for _, t in rows])
    pool_of = {m.meeting_id: p for p, pool in enumerate(pools) for m in pool}
    plains = []
    for p in range(len(pools)):
        ix = [i for i, (m, _) in enumerate(rows) if pool_of[m] == p]
        plains.append(Plain([rows[i] for i in ix], vectors[ix]))
    whole = Plain(rows, vectors)
    print(f"plain    {len(rows)} windows of {WINDOW} words, stride {STRIDE} (embedded in {t_plain.seconds:.1f} s)")

    scopes_all = [f"pool-{p}" for p in range(len(pools))]
    rows: dict[str, dict[str, list[dict]]] = {}
    with Contention() as busy:
        for (p, gold), qv in zip(golds, query_vectors, strict=True):
            for protocol, scopes, plain in (("pooled 12", [f"pool-{p}"], plains[p]), ("whole pool", scopes_all, whole)):
                runs = rows.setdefault(protocol, {})
                for mode in MODES:
                    hits = engine.search(gold.query, DEPTH, scopes, mode=mode)
                    ranked = [(Path(h.chunk.source).stem, h.chunk.text) for h in hits]
                    runs.setdefault(f"IMP {mode}", []).append(score(gold, ranked))
                for name, ranking in plain.rankings(gold.query, qv).items():
                    runs.setdefault(f"plain {name}", []).append(score(gold, [plain.rows[i] for i in ranking]))
    print(f"queries  {len(golds)} specific queries with gold spans; other processes used {busy.cores} cores\n")

    keys = ("turn_hit5", "turn_mrr10", "shingle_hit5", "shingle_mrr10")
    summary = {protocol: {system: {k: round(statistics.mean(r[k] for r in rs), 3) for k in keys}
                          for system, rs in runs.items()} for protocol, runs in rows.items()}
    for protocol, systems in summary.items():
        table(f"{protocol}: hit@5 and MRR@10 under the turn and the 8-word-shingle protocols",
              ["system", "turn hit@5", "turn MRR@10", "shingle hit@5", "shingle MRR@10"],
              [[s, *(v[k] for k in keys)] for s, v in systems.items()])
    name = args.name or ("retrieval_qmsum" if split == "val" else f"retrieval_qmsum-{split}")
    write_result(name, info | {
        "data": str(args.data), "meetings": len(meetings), "pools": [len(p) for p in pools], "queries": len(golds),
        "imp": {"chunks": chunks, "reindexed": fresh, "ingest_s": round(t_ingest.seconds, 1),
                "search": search.model_dump(), "chunking": chunking.model_dump()},
        "plain": {"windows": len(rows), "embed_s": round(t_plain.seconds, 1), "window_words": WINDOW, "stride": STRIDE,
                  "rrf_k": RRF_K},
        "other_processes_cores": busy.cores, "summary": summary,
    })


if __name__ == "__main__":
    main()
