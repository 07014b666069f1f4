"""Retrieval quality of hybrid, dense and keyword search on QMSum meeting transcripts.

What it measures: for every QMSum *specific* query that has gold turn ranges
(``relevant_text_span``), whether the engine's top hits contain the gold turns.

How: the 35 meetings of ``shared/data/qmsum/val.jsonl`` are written as one .txt
file each (``<meeting_id>.txt``, one line per turn, ``Speaker: text``) under
the data folder and ingested with ``Engine.ingest`` into scope "default": one
pooled index, real loaders, chunker, MiniLM embedder, Chroma and BM25. Each
query is searched with ``engine.search(query, k=10, mode=m)`` over the whole
pool (no per-meeting filter) for m in hybrid, dense, keyword.

A gold turn is *found* in a chunk when the chunk comes from the query's meeting
and contains the turn's line verbatim; a turn longer than a chunk (the chunker
cuts it into windows) also counts when one of its windows of at least 20 words
is a line of the chunk. Turns with fewer than 4 words ("Yeah .") are ignored
unless a query has only such turns.

Metrics, pooled over queries: hit@5 (a top-5 chunk holds a gold turn),
recall@5 (share of gold turns found in the top 5), MRR@10 (1/rank of the first
chunk holding a gold turn within the top 10, else 0), and meeting@5 (a top-5
chunk comes from the right meeting at all). Goal: hybrid hit@5 >= 0.80.

``--per-meeting`` is a diagnostic, not the headline figure: each meeting goes
into its own scope and each query searches only its meeting's scope, which
separates "wrong meeting" errors from ranking errors inside a meeting.

The index is cached in --data-dir; ingest is idempotent, so a rerun that only
changes search options (--candidates, --rrf-k) re-embeds nothing. A different
--chunk-max-tokens gets its own default folder so that switching back and
forth never re-embeds either.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, Contention, Stopwatch, goal, header, quiet, table, write_result  # noqa: E402

from app import build_engine  # noqa: E402  (sets the offline environment first)
from core.config import ChunkSettings, SearchSettings, Settings  # noqa: E402

MODES = ("hybrid", "dense", "keyword")
GOAL_HIT5 = 0.80
MIN_WORDS = 4
MIN_WINDOW_WORDS = 20
_SPACE = re.compile(r"\s+")


def turn_line(turn: dict) -> str | None:
    content = _SPACE.sub(" ", turn.get("content") or "").strip()
    if not content:
        return None
    return f"{_SPACE.sub(' ', turn.get('speaker') or 'Unknown').strip()}: {content}"


def words(line: str) -> int:
    return sum(any(ch.isalnum() for ch in w) for w in line.split(":", 1)[-1].split())


def load_meetings(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_transcripts(meetings: list[dict], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in meetings:
        lines = [t for t in (turn_line(t) for t in m["meeting_transcripts"]) if t]
        p = folder / f"{m['meeting_id']}.txt"
        text = "\n".join(lines) + "\n"
        if not p.exists() or p.read_text() != text:  # unchanged bytes keep the cached index valid
            p.write_text(text)
        paths.append(p)
    return paths


def gold_cases(meetings: list[dict]) -> list[dict]:
    """One case per specific query with a span: its meeting, domain and gold turn lines."""
    cases = []
    for m in meetings:
        lines = [turn_line(t) for t in m["meeting_transcripts"]]
        for q in m.get("specific_query_list") or []:
            idx: list[int] = []
            for span in q.get("relevant_text_span") or []:
                lo, hi = int(span[0]), int(span[1])
                idx.extend(i for i in range(lo, hi + 1) if 0 <= i < len(lines))
            gold = list(dict.fromkeys(lines[i] for i in idx if lines[i]))
            if not gold:
                continue
            long_enough = [g for g in gold if words(g) >= MIN_WORDS]
            cases.append({"meeting": m["meeting_id"], "domain": m.get("domain") or "?", "query": q["query"],
                          "gold": long_enough or gold, "gold_turns": len(idx)})
    return cases


def holds(chunk_text: str, line: str) -> bool:
    if line in chunk_text:
        return True
    # A turn longer than a chunk is split into windows; a substantial window of it counts.
    return any(len(piece.split()) >= MIN_WINDOW_WORDS and piece in line for piece in chunk_text.split("\n"))


def score(case: dict, hits: list) -> dict:
    own = [h for h in hits if Path(h.chunk.source).stem == case["meeting"]]
    top5 = [h for h in own if h.rank <= 5]
    found = {g for g in case["gold"] if any(holds(h.chunk.text, g) for h in top5)}
    first = next((h.rank for h in own if any(holds(h.chunk.text, g) for g in case["gold"])), None)
    return {
        "hit5": 1.0 if found else 0.0,
        "recall5": len(found) / len(case["gold"]),
        "mrr10": 1.0 / first if first else 0.0,
        "meeting5": 1.0 if top5 else 0.0,
    }


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA / "qmsum" / "val.jsonl")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="index cache (default bench/results/qmsum-index, -ctN suffix with --chunk-max-tokens)")
    ap.add_argument("--candidates", type=int, default=SearchSettings().candidates)
    ap.add_argument("--rrf-k", type=int, default=SearchSettings().rrf_k)
    ap.add_argument("--chunk-max-tokens", type=int, default=None, help="cap chunk size (default: embedder window)")
    ap.add_argument("--per-meeting", action="store_true",
                    help="diagnostic: one scope per meeting, each query searches only its meeting")
    ap.add_argument("--limit-queries", type=int, default=None, help="first N queries only (smoke runs)")
    return ap.parse_args()


def main() -> None:
    args = parse()
    quiet()
    info = header("retrieval quality on QMSum (val)")
    suffix = (f"-ct{args.chunk_max_tokens}" if args.chunk_max_tokens else "") + (
        "-permeeting" if args.per_meeting else "")
    data_dir = args.data_dir or RESULTS / f"qmsum-index{suffix}"
    settings = Settings(
        data_dir=data_dir,
        search=SearchSettings(candidates=args.candidates, rrf_k=args.rrf_k),
        chunking=ChunkSettings(max_tokens=args.chunk_max_tokens),
    )
    engine = build_engine(settings)
    meetings = load_meetings(args.data)
    files = write_transcripts(meetings, data_dir / "transcripts")

    def scope_of(meeting: str) -> str:
        return f"meeting:{meeting}" if args.per_meeting else "default"

    with Stopwatch() as t_ingest:
        if args.per_meeting:
            results = [r for f in files for r in engine.ingest([f], scope_of(f.stem))]
        else:
            results = engine.ingest(files, "default")
    failed = [r for r in results if r.status.value == "failed"]
    if failed:
        sys.exit(f"ingest failed: {[(r.source, r.error) for r in failed]}")
    fresh = sum(r.status.value == "indexed" for r in results)
    chunks = sum(r.chunks for r in results)
    print(f"index    {len(files)} meetings, {chunks} chunks in {data_dir} "
          f"({fresh} (re)indexed, {len(files) - fresh} cached; ingest {t_ingest.seconds:.1f} s)")
    print(f"search   candidates={args.candidates} rrf_k={args.rrf_k} "
          f"chunk_max_tokens={args.chunk_max_tokens or 'window'}"
          + (" | PER-MEETING scopes (diagnostic)" if args.per_meeting else " | pooled, no meeting filter"))

    cases = gold_cases(meetings)[: args.limit_queries]
    engine.search("warm up", 1)
    per_mode: dict[str, list[dict]] = {m: [] for m in MODES}
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    with Contention() as busy:
        for case in cases:
            for mode in MODES:
                with Stopwatch() as t:
                    hits = engine.search(case["query"], 10, [scope_of(case["meeting"])], mode=mode)
                latency[mode].append(t.seconds)
                per_mode[mode].append(score(case, hits))
    print(f"queries  {len(cases)} specific queries with gold spans "
          f"(mean {statistics.mean(len(c['gold']) for c in cases):.1f} matchable gold turns each); "
          f"other processes used {busy.cores} cores meanwhile\n")

    def mean(rows: list[dict], key: str) -> float:
        return round(sum(r[key] for r in rows) / len(rows), 3) if rows else float("nan")

    summary = {m: {k: mean(per_mode[m], k) for k in ("hit5", "recall5", "mrr10", "meeting5")}
               | {"mean_search_ms": round(1000 * statistics.mean(latency[m]), 1)} for m in MODES}
    table("all queries (MRR over the top 10; ms/query = mean engine.search time, k=10)",
          ["mode", "hit@5", "recall@5", "MRR@10", "meeting@5", "ms/query", "goal hit@5 >= 0.80"],
          [[m, s["hit5"], s["recall5"], s["mrr10"], s["meeting5"], s["mean_search_ms"],
            goal(s["hit5"] >= GOAL_HIT5) if m == "hybrid" else ""] for m, s in summary.items()])

    domains: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        domains[c["domain"]].append(i)
    by_domain = {d: {"queries": len(ix)} | {m: mean([per_mode[m][i] for i in ix], "hit5") for m in MODES}
                 for d, ix in sorted(domains.items())}
    table("hit@5 per domain", ["domain", "queries", *MODES],
          [[d, v["queries"], *(v[m] for m in MODES)] for d, v in by_domain.items()])

    payload = info | {
        "settings": {"candidates": args.candidates, "rrf_k": args.rrf_k, "per_meeting": args.per_meeting,
                     "chunk_max_tokens": args.chunk_max_tokens, "data_dir": str(data_dir)},
        "corpus": {"meetings": len(files), "chunks": chunks, "ingest_s": round(t_ingest.seconds, 1),
                   "reindexed": fresh},
        "queries": len(cases),
        "other_processes_cores_during_search": busy.cores,
        "goal": {"hybrid_hit5": GOAL_HIT5, "met": summary["hybrid"]["hit5"] >= GOAL_HIT5},
        "summary": summary,
        "by_domain": by_domain,
        "per_query": [{"meeting": c["meeting"], "query": c["query"]} | {m: per_mode[m][i] for m in MODES}
                      for i, c in enumerate(cases)],
    }
    default = (args.candidates, args.rrf_k, args.chunk_max_tokens, args.per_meeting) == (
        SearchSettings().candidates, SearchSettings().rrf_k, None, False)
    name = "retrieval_qmsum" if default else (
        f"retrieval_qmsum-c{args.candidates}-k{args.rrf_k}-t{args.chunk_max_tokens or 'w'}"
        + ("-permeeting" if args.per_meeting else ""))
    write_result(name, payload)


if __name__ == "__main__":
    main()
