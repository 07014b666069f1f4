"""Learn the extractive minutes' sentence scorer from QMSum train; write core/minutes/summary_weights.py.

Data: ``qmsum/train.jsonl`` only (162 meetings), each with its general query's human answer
("Summarize the whole meeting") as the reference. A train meeting is left out when it also
appears in AMI val, ELITR dev or QMSum val (same first 30 turns, or more than 20% of its long
turns found verbatim there): those are where the drafter is scored.

Steps, all on the real code path (``ExtractiveMinutes.summary_table``: the candidates,
embeddings, topics and features the drafter itself computes):
1. target per sentence: the share of its words ("all") or of its content words ("content";
   stopwords removed), stemmed as rouge-score tokenises, that occur in the human summary;
2. ridge regression of the target on the standardised FEATURES (closed form, numpy);
3. 5-fold cross-validation by meeting (each fold held apart while the other four fit) picks
   the target, the ridge strength, the summary length in words, the redundancy penalty and
   the coverage bonus with the best mean ROUGE-1 F of the summaries ``pick_summary`` builds on held-apart meetings;
4. the chosen setting is refit on all the train meetings.
The figures of each step are printed and written with the weights. Tables are cached in
bench/results/minutes_scorer_tables.pkl, so a rerun only refits.

Run: ``.venv/bin/python bench/train_minutes_scorer.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pickle
import pprint
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, quiet  # noqa: E402

from core.minutes.scorer import FEATURES, SentenceScorer, features, pick_summary  # noqa: E402
from core.models import Meeting, Turn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "core" / "generate" / "minutes" / "summary_weights.py"
CACHE = RESULTS / "minutes_scorer_tables.pkl"
FOLDS = 5
TARGETS = ("all", "content")
RIDGE = (1.0, 100.0)
LENGTHS = tuple(range(120, 241, 20))
REDUNDANCY = (0.0, 1.0, 2.0)
COVERAGE = (0.0, 0.5, 1.0)
_STOP = frozenset("""a an the and or but of to in on at for from by with about as into than then that this these
those it its is are was were be been being am have has had do does did will would shall should can could may might
must not no yes so if there here what which who when where why how all any some each also just very more most such
only own same too i we you he she they me us him her them my our your his their""".split())


def _turns(rows: list[dict]) -> list[Turn]:
    kept = [r for r in rows if " ".join(r["content"].split())]
    return [Turn(i, r.get("speaker"), " ".join(r["content"].split())) for i, r in enumerate(kept, 1)]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fingerprint(turns: list[Turn]) -> str:
    return hashlib.sha1(" ".join(t.text for t in turns[:30]).lower().encode()).hexdigest()


def train_meetings() -> tuple[list[tuple[str, Meeting, list[str]]], list[str]]:
    """QMSum train meetings with their general summaries, minus any that the benchmarks score on."""
    from core.minutes.inputs import meeting_from_text

    scored = ([_turns(d["transcript_turns"]) for d in _jsonl(DATA / "minutes" / "ami_abstractive_val.jsonl")]
              + [meeting_from_text(d["transcript_text"]).turns
                 for d in _jsonl(DATA / "minutes" / "elitr_minutes_dev.jsonl")]
              + [_turns(d["meeting_transcripts"]) for d in _jsonl(DATA / "qmsum" / "val.jsonl")])
    prints = {_fingerprint(t) for t in scored}
    long_turns = {t.text for turns in scored for t in turns if len(t.text.split()) > 12}
    kept, left_out = [], []
    for i, d in enumerate(_jsonl(DATA / "qmsum" / "train.jsonl")):
        turns = _turns(d["meeting_transcripts"])
        mine = [t.text for t in turns if len(t.text.split()) > 12]
        if _fingerprint(turns) in prints or sum(t in long_turns for t in mine) > 0.2 * max(1, len(mine)):
            left_out.append(f"train#{i}")
            continue
        kept.append((f"train#{i}", Meeting(turns), [q["answer"] for q in d["general_query_list"]]))
    return kept, left_out


class Rouge:
    def __init__(self):
        from nltk.stem import porter
        from rouge_score import rouge_scorer, tokenize

        self._scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
        self._tokenize = tokenize.tokenize
        self._stem = porter.PorterStemmer().stem
        self._memo: dict[str, str] = {}

    def content(self, text: str) -> list[str]:
        out = []
        for w in self._tokenize(text, None):
            if w not in _STOP:
                if w not in self._memo:
                    self._memo[w] = self._stem(w) if len(w) > 3 else w
                out.append(self._memo[w])
        return out

    def words(self, text: str) -> list[str]:
        out = []
        for w in self._tokenize(text, None):
            if w not in self._memo:
                self._memo[w] = self._stem(w) if len(w) > 3 else w
            out.append(self._memo[w])
        return out

    def f1(self, refs: list[str], text: str) -> float:
        return max(self._scorer.score(r, text)["rouge1"].fmeasure for r in refs)


def tables(meetings, drafter) -> dict:
    cache = pickle.loads(CACHE.read_bytes()) if CACHE.exists() else {}
    # Candidates, embeddings and topics come from the drafter's code; features are recomputed below.
    import inspect

    from core.minutes import extractive as ex

    made_by = [ex._tokens, ex._candidates, ex._statements, ex._segment, ex._gap_similarity, ex._depth]
    code = hashlib.sha1("".join(map(inspect.getsource, made_by)).encode() + drafter.model_id.encode()).hexdigest()[:12]
    if cache.get("code") != code:
        cache = {"code": code, "tables": {}}
    started = time.perf_counter()
    for n, (mid, meeting, _) in enumerate(meetings, 1):
        if mid not in cache["tables"]:
            cache["tables"][mid] = drafter.summary_table(meeting)
            if n % 5 == 0 or n == len(meetings):
                CACHE.parent.mkdir(parents=True, exist_ok=True)
                CACHE.write_bytes(pickle.dumps(cache))
                print(f"  tables {n}/{len(meetings)} ({time.perf_counter() - started:.0f} s)", flush=True)
    CACHE.write_bytes(pickle.dumps(cache))
    out = cache["tables"]
    for mid, meeting, _ in meetings:
        t = out[mid]
        t.features = features(meeting, t.sentences, t.vecs, t.span_of, t.stem_counts)
    return out


def targets(table, refs: list[str], rouge: Rouge, kind: str) -> np.ndarray:
    """Per sentence, the share of its words ("all") or content words ("content") the human summary uses."""
    words = rouge.words if kind == "all" else rouge.content
    ref_words = [set(words(r)) for r in refs]
    out = []
    for s in table.sentences:
        mine = words(s.text)
        out.append(max(sum(w in r for w in mine) / max(1, len(mine)) for r in ref_words))
    return np.array(out, dtype=np.float32)


def fit(x: np.ndarray, y: np.ndarray, alpha: float) -> dict:
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return {"features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
            "intercept": float(y.mean())}


def cross_validate(rows: list, ys: dict, rouge: Rouge) -> dict:
    """Mean ROUGE-1 F of the summaries of each meeting, scored by weights fit on the other folds."""
    fold = [n % FOLDS for n in range(len(rows))]
    out = {}
    for kind, alpha in itertools.product(TARGETS, RIDGE):
        scores = [None] * len(rows)
        for f in range(FOLDS):
            train = [n for n in range(len(rows)) if fold[n] != f]
            w = fit(np.concatenate([rows[n][0].features for n in train]),
                    np.concatenate([ys[kind][n] for n in train]), alpha)
            scorer = SentenceScorer(w)
            for n in range(len(rows)):
                if fold[n] == f:
                    scores[n] = scorer.score(rows[n][0].features)
        for words, redundancy, coverage in itertools.product(LENGTHS, REDUNDANCY, COVERAGE):
            f1 = [rouge.f1(refs, " ".join(table.sentences[i].text
                                          for i in pick_summary(table, sc, words, redundancy, coverage)))
                  for (table, refs), sc in zip(rows, scores)]
            out[(kind, alpha, words, redundancy, coverage)] = float(np.mean(f1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print the weights, do not write them")
    ap.add_argument("--limit", type=int, help="N of the kept train meetings only, a fixed random sample (default: all)")
    args = ap.parse_args()
    quiet()
    from core.minutes.extractive import ExtractiveMinutes
    from core.index.embedders import make_embedder

    meetings, left_out = train_meetings()
    print(f"QMSum train: {len(meetings)} meetings kept, left out as also scored elsewhere: {left_out or 'none'}")
    # A fixed shuffle, so that --limit takes a sample of every kind of meeting (the file is sorted by corpus).
    random.Random(0).shuffle(meetings)
    meetings = meetings[:args.limit]
    embedder = make_embedder("sentence-transformers", None)
    embedder.warm_up()
    drafter = ExtractiveMinutes(embedder)
    by_id = tables(meetings, drafter)
    rouge = Rouge()
    rows = [(by_id[mid], refs) for mid, _, refs in meetings]
    ys = {kind: [targets(t, r, rouge, kind) for t, r in rows] for kind in TARGETS}
    print(f"{len(rows)} meetings, {sum(len(y) for y in ys['all']):,} sentences; {FOLDS}-fold cross-validation "
          "by meeting (every fold's meetings held apart while the others fit)")
    grid = cross_validate(rows, ys, rouge)
    (kind, alpha, words, redundancy, coverage), best = max(grid.items(), key=lambda kv: kv[1])
    for k, a in itertools.product(TARGETS, RIDGE):
        line = "  ".join(f"{n}w={max(grid[(k, a, n, r, c)] for r in REDUNDANCY for c in COVERAGE):.4f}"
                         for n in LENGTHS)
        print(f"  target {k:<7} ridge {a:<6} best over redundancy and coverage: {line}")
    print("  at the chosen target, ridge and length, (redundancy, coverage): "
          + "  ".join(f"({r}, {c})={grid[(kind, alpha, words, r, c)]:.4f}" for r in REDUNDANCY for c in COVERAGE))
    print(f"chosen: target {kind}, ridge {alpha}, {words} words, redundancy {redundancy}, coverage {coverage}: "
          f"held-apart ROUGE-1 F {best:.4f}")
    weights = fit(np.concatenate([t.features for t, _ in rows]), np.concatenate(ys[kind]), alpha)
    weights |= {"summary_words": words, "redundancy": redundancy, "coverage": coverage}
    print("coefficients (standardised features):")
    for f, c in sorted(zip(FEATURES, weights["coef"]), key=lambda fc: -abs(fc[1])):
        print(f"  {f:<18} {c:+.4f}")
    made = {"by": "bench/train_minutes_scorer.py" + (f" --limit {args.limit}" if args.limit else ""),
            "data": "qmsum/train.jsonl general summaries", "meetings": len(rows),
            "sentences": sum(len(y) for y in ys[kind]), "left_out": left_out, "target": kind, "ridge": alpha,
            "cross_validated_rouge1_f": round(best, 4)}
    rounded = {k: ([round(v, 6) for v in val] if isinstance(val, list) and k != "features" else val)
               for k, val in weights.items()}
    text = ('"""Weights of the extractive minutes\' sentence scorer (core/minutes/scorer.py).\n\n'
            "Written by bench/train_minutes_scorer.py from QMSum train meetings and their human general\n"
            "summaries (5-fold cross-validation by meeting chose the target, ridge strength, summary length,\n"
            "redundancy penalty and coverage bonus); rerun the command in MADE to reproduce. Do not edit.\n"
            '"""\n\n'
            f"MADE = {pprint.pformat(made, width=100, sort_dicts=False)}\n\n"
            f"WEIGHTS = {pprint.pformat(rounded, width=100, sort_dicts=False, compact=True)}\n")
    if args.dry_run:
        print(text)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
