"""Retrieval variants on QMSum, exact search: does any chunking or fusion idea beat plain fusion?

Everything here is exact numpy cosine and bm25s in memory (no Chroma, no registry), so
variants are cheap to compare on the same queries, pooled 12 meetings at a time as in
``bench/retrieval_qmsum.py`` (whose relevance rules, ``Gold`` and ``score``, are reused).

Chunkings of each meeting (one line per turn, ``Speaker: text``):
- ``imp``: the production ``Chunker`` (whole turns packed into ≤ 254 MiniLM tokens, 15% overlap);
- ``words``: the plain ~150-word windows, stride 128, of the baselines;
- ``tokens254`` / ``tokens200``: uniform token windows over the whole transcript, 15% overlap.

Retrievers over each: our BM25 tokenisation (stemmed, English stop words), bm25s defaults, dense,
and their reciprocal-rank fusion (k=60) over the top 40 or over the full rankings. Fusion ideas on
the ``imp`` chunking: query meta-words removed (for dense, or both), a third ranking by the best
single turn (lines of ≥ 5 words embedded alone), neighbour smoothing of fused scores.

Use ``--data .../train.jsonl --meetings 48`` to choose, then val once to score.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, header, quiet, table, write_result  # noqa: E402
from retrieval_qmsum import Gold, score, windows  # noqa: E402

from app import build_embedder  # noqa: E402  (sets the offline environment first)
from core.config import Settings  # noqa: E402
from core.ingest.chunking import Chunker  # noqa: E402
from core.models import Segment  # noqa: E402
from training.qmsum import read_meetings  # noqa: E402

POOL, RRF_K, CANDIDATES = 12, 60, 40
# Words of the question's frame rather than its topic ("What did the group discuss about ...").
META = set("""discuss discussed discussing discussion discussions talk talked talking summarize summarise summary
group team meeting meetings say said says think thought thinks opinion opinions mention mentioned why what how
who whom which when where did does do was were is are the a an about of on in for to and regarding concerning
give gave view views""".split())


def strip_frame(query: str) -> str:
    kept = [w for w in re.findall(r"[\w'-]+", query) if w.lower() not in META]
    return " ".join(kept) if len(kept) >= 2 else query


def token_windows(tok, lines: list[str], size: int, overlap: float = 0.15) -> list[str]:  # noqa: ANN001
    text = "\n".join(lines)
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    step, out = max(1, size - int(size * overlap)), []
    for lo in range(0, len(offsets), step):
        hi = min(lo + size, len(offsets))
        out.append(text[offsets[lo][0]: offsets[hi - 1][1]])
        if hi == len(offsets):
            break
    return out


def chunk(kind: str, tok, lines: list[str]) -> list[str]:  # noqa: ANN001
    if kind == "imp":
        segments = [Segment(text=line) for line in lines]
        return [c.text for c in Chunker(tok, 254, 0.15).chunk(segments, doc_id="d", version="v", source="s",
                                                                scope="x")]
    if kind == "words":
        return windows(lines)
    return token_windows(tok, lines, int(kind.removeprefix("tokens")))


def rrf(rankings: list[list[int]]) -> dict[int, float]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking, start=1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
    return fused


def top(fused: dict[int, float]) -> list[int]:
    return sorted(fused, key=fused.get, reverse=True)[:10]


class Pool:
    """One pool's chunks: two BM25 indexes and the dense vectors."""

    def __init__(self, texts: list[str], vectors: np.ndarray, stemmer):  # noqa: ANN001
        import bm25s

        self.bm25s, self.stemmer, self.vectors = bm25s, stemmer, vectors
        self.ours = bm25s.BM25()
        self.ours.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                        show_progress=False)
        self.plain = bm25s.BM25()
        self.plain.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)

    def keyword(self, query: str, ours: bool = True) -> list[int]:
        index = self.ours if ours else self.plain
        extra = {"stopwords": "en", "stemmer": self.stemmer} if ours else {}
        tokens = self.bm25s.tokenize([query], return_ids=False, show_progress=False, **extra)[0]
        tokens = [t for t in tokens if t in index.vocab_dict]
        s = index.get_scores(tokens) if tokens else np.zeros(len(self.vectors))
        return [int(i) for i in np.argsort(-s, kind="stable") if s[i] > 0]

    def dense(self, qv: np.ndarray) -> list[int]:
        return [int(i) for i in np.argsort(-(self.vectors @ qv), kind="stable")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA / "qmsum" / "val.jsonl")
    ap.add_argument("--meetings", type=int, default=None)
    ap.add_argument("--chunkings", default="imp,words,tokens254,tokens200")
    ap.add_argument("--cache", type=Path, default=RESULTS / "retrieval-variants-cache")
    args = ap.parse_args()
    quiet()
    import Stemmer

    info = header(f"retrieval variants on QMSum ({args.data.stem}), exact search")
    meetings = read_meetings(args.data)[: args.meetings]
    pools = [meetings[i: i + POOL] for i in range(0, len(meetings), POOL)]
    emb = build_embedder(Settings())
    tok, stemmer = emb.tokenizer(), Stemmer.Stemmer("english")
    args.cache.mkdir(parents=True, exist_ok=True)

    def vectors(texts: list[str]) -> np.ndarray:
        path = args.cache / (hashlib.sha256("\x00".join([emb.model_id, *texts]).encode()).hexdigest()[:20] + ".npy")
        if not path.exists():
            np.save(path, emb.embed(texts))
        return np.load(path)

    golds = [(p, Gold(m, i)) for p, pool in enumerate(pools) for m in pool for i in range(len(m.queries))]
    qv = emb.embed([g.query for _, g in golds])
    qv_strip = emb.embed([strip_frame(g.query) for _, g in golds])
    results: dict[str, list[dict]] = {}
    for kind in args.chunkings.split(","):
        per_pool = []
        for pool in pools:
            rows = [(m.meeting_id, t) for m in pool for t in chunk(kind, tok, list(m.lines))]
            per_pool.append((rows, Pool([t for _, t in rows], vectors([t for _, t in rows]), stemmer)))
        lines_of: list[tuple[np.ndarray, np.ndarray]] = []
        if kind == "imp":  # the best single turn of each chunk, for the third ranking
            for rows, _ in per_pool:
                owner, texts = zip(*[(i, ln) for i, (_, t) in enumerate(rows) for ln in t.split("\n")
                                     if len(ln.split(": ", 1)[-1].split()) >= 5], strict=True)
                lines_of.append((np.array(owner), vectors(list(texts))))
        for (p, gold), q, qs in zip(golds, qv, qv_strip, strict=True):
            rows, pool = per_pool[p]
            kw, dense = pool.keyword(gold.query), pool.dense(q)
            systems = {"BM25 (ours)": kw[:10], "BM25 (bm25s defaults)": pool.keyword(gold.query, False)[:10],
                       "dense": dense[:10], "RRF top 40": top(rrf([kw[:CANDIDATES], dense[:CANDIDATES]])),
                       "plain RRF (bm25s defaults, full lists)": top(rrf([pool.keyword(gold.query, False), dense]))}
            if kind == "imp":
                systems["RRF, dense on the stripped query"] = top(rrf([kw, pool.dense(qs)]))
                systems["RRF, both on the stripped query"] = top(rrf([pool.keyword(strip_frame(gold.query)),
                                                                      pool.dense(qs)]))
                owner, lv = lines_of[p]
                best = np.full(len(rows), -1.0)
                np.maximum.at(best, owner, lv @ q)
                systems["RRF + best-turn ranking"] = top(rrf([kw, dense, list(np.argsort(-best, kind="stable"))]))
                fused = rrf([kw, dense])
                smooth = {i: s + 0.3 * max([fused.get(j, 0.0) for j in (i - 1, i + 1)
                                            if 0 <= j < len(rows) and rows[j][0] == rows[i][0]], default=0.0)
                          for i, s in fused.items()}
                systems["RRF + neighbour smoothing 0.3"] = top(smooth)
            for name, ranking in systems.items():
                results.setdefault(f"{kind} | {name}", []).append(score(gold, [rows[i] for i in ranking]))
        print(f"{kind}: {sum(len(r) for r, _ in per_pool)} chunks", flush=True)
    summary = {k: {m: round(statistics.mean(r[m] for r in rs), 3) for m in ("shingle_hit5", "shingle_mrr10")}
               for k, rs in results.items()}
    table(f"{len(golds)} queries, pooled {POOL}: shingle hit@5 and MRR@10", ["chunking | system", "hit@5", "MRR@10"],
          [[k, v["shingle_hit5"], v["shingle_mrr10"]] for k, v in summary.items()])
    write_result(f"retrieval_variants-{args.data.stem}{'-' + str(args.meetings) if args.meetings else ''}",
                 info | {"data": str(args.data), "meetings": len(meetings), "queries": len(golds), "summary": summary})


if __name__ == "__main__":
    main()
