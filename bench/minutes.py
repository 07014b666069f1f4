"""Meeting minutes quality and speed on QMSum, AMI and ELITR, per drafter backend.

Each meeting's transcript becomes a Meeting (one Turn per speaker turn, untimed) and
one drafter writes its minutes (default: the extractive drafter on the bundled
all-MiniLM-L6-v2; ``--backend transformers|openai`` runs the LLM drafter with the
extractive one as its fallback). Measured, per dataset:

- ROUGE-1/2/L F1 (rouge-score, stemmed) of ``minutes.summary`` against the reference:
  QMSum val, the meeting's general ("Summarize the whole meeting") query answer; AMI,
  the human abstract; ELITR dev, each human minutes of the meeting (max and mean over
  them). ELITR also: ROUGE of the whole minutes as Markdown against the human minutes.
  Baselines, each exactly as many words as the meeting's summary and cleaned of fillers and
  markup the same way (``textutil.clean``): "lead", the transcript's first words; "longest
  turns", the longest turns in meeting order; "random", random sentences of at least 6 words
  in meeting order (mean of 5 seeded draws).
- Answerable from minutes (ELITR QA): an answer counts when at least 60% of its content
  words (lower-case, stopwords removed, Porter-stemmed) occur in the minutes' Markdown;
  the same measure against the full transcript is the ceiling, and against the transcript's
  first words (as many as the Markdown has) the length-matched baseline.
- Evidence validity: the share of decisions, action items and open questions whose
  evidence passes ``check_evidence`` (must be 100%), and items per meeting.
- Time per meeting (the embedder and generator are loaded first and not counted), words
  per meeting, and one draft of a ~1-hour meeting (whole turns from the start of the longest
  QMSum val meeting up to 9,000 words, ~150 words/min) and of that whole meeting. Contention
  (cores kept busy by other processes meanwhile) is recorded next to each timing.

Run: ``.venv/bin/python bench/minutes.py [--dataset qmsum|ami|elitr|all] [--limit N]
[--backend extractive|transformers|openai --base-url URL --model NAME] [--skip-long]``.
The bundled SmolLM2-135M (``--backend transformers``) is slow on CPU: use a small --limit.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, Contention, Stopwatch, header, percentile, quiet, table, write_result  # noqa: E402

from core.formats.minutes import to_markdown  # noqa: E402
from core.minutes.base import check_evidence  # noqa: E402
from core.minutes.inputs import meeting_from_text  # noqa: E402
from core.models import Meeting, Minutes, Turn  # noqa: E402
from core.textutil import clean, split_sentences  # noqa: E402

ROUGE = ("rouge1", "rouge2", "rougeL")
OUTPUTS = {"summary": "IMP summary", "longest_turns": "longest turns", "lead": "lead (first words)",
           "random": "random sentences"}
ANSWER_COVERAGE = 0.6  # share of an answer's content words that must occur in the text
HOUR_WORDS = 9_000  # ~1 hour of speech at ~150 words per minute
# Published anchors: QMSum test set, all queries (Zhong et al., NAACL 2021, Table 4).
ANCHORS = [("BART, truncated input (QMSum test, published)", 29.2, 6.4, 25.5),
           ("HMNet on retrieved spans (QMSum test, published)", 32.3, 8.7, 28.2)]
_STOP = frozenset("""a an the and or but nor of to in on at for from by with about as into onto than then that
this these those it its is are was were be been being am have has had do does did will would shall should can could
may might must not no yes so if there here what which who whom whose when where why how all any some each also just
very more most such only own same too i we you he she they me us him her them my our your his their
""".split())


def _turns(rows: list[dict]) -> list[Turn]:
    kept = [r for r in rows if " ".join(r["content"].split())]
    return [Turn(i, r.get("speaker"), " ".join(r["content"].split())) for i, r in enumerate(kept, 1)]


def _jsonl(path: Path, limit: int | None) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:limit]


def qmsum(limit: int | None) -> list[dict]:
    # Every val meeting has exactly one general query, and it asks for the whole meeting's summary.
    return [{"id": d["meeting_id"], "meeting": Meeting(_turns(d["meeting_transcripts"]), title=d["meeting_id"]),
             "refs": [d["general_query_list"][0]["answer"]]} for d in _jsonl(DATA / "qmsum" / "val.jsonl", limit)]


def ami(limit: int | None) -> list[dict]:
    return [{"id": d["meeting_id"], "meeting": Meeting(_turns(d["transcript_turns"]), title=d["meeting_id"]),
             "refs": [d["reference_abstract"]]}
            for d in _jsonl(DATA / "minutes" / "ami_abstractive_val.jsonl", limit)]


def elitr(limit: int | None) -> list[dict]:
    return [{"id": d["meeting_id"], "meeting": meeting_from_text(d["transcript_text"], title=d["meeting_id"]),
             "refs": [r["text"] for r in d["reference_minutes"]],
             "qa": [(q["question"], q["groundtruth-answer"]) for q in d["qa"]]}
            for d in _jsonl(DATA / "minutes" / "elitr_minutes_dev.jsonl", limit)]


def content_words(text: str) -> set[str]:
    from nltk.stem import porter
    from rouge_score import tokenize

    stem = porter.PorterStemmer().stem
    return {stem(w) if len(w) > 3 else w for w in tokenize.tokenize(text, None) if w not in _STOP}


def answerable(answer: set[str], text: set[str]) -> bool:
    return len(answer & text) / len(answer) >= ANSWER_COVERAGE


def rouge(scorer, refs: list[str], text: str) -> dict:
    """F1 per ROUGE type against each reference: the max and the mean over references (×100)."""
    per = [scorer.score(ref, text) for ref in refs]
    out = {}
    for k in ROUGE:
        f = [p[k].fmeasure * 100 for p in per]
        out[k] = round(max(f), 2)
        out[k + "_mean"] = round(sum(f) / len(f), 2)
    return out


def evidence_check(meeting: Meeting, m: Minutes) -> tuple[int, int]:
    """(items, items whose evidence passes check_evidence), each item checked on its own."""
    empty = replace(m, decisions=[], action_items=[], open_questions=[])
    singles = ([replace(empty, decisions=[d]) for d in m.decisions]
               + [replace(empty, action_items=[a]) for a in m.action_items]
               + [replace(empty, open_questions=[q]) for q in m.open_questions])
    return len(singles), sum(not check_evidence(meeting, s) for s in singles)


def words(meeting: Meeting) -> int:
    return sum(len(t.text.split()) for t in meeting.turns)


def lead(meeting: Meeting, n: int) -> str:
    """The transcript's first ``n`` words: the length-matched baseline."""
    return " ".join(" ".join(t.text for t in meeting.turns).split()[:n])


def _first_words(texts: list[str], n: int) -> str:
    return " ".join(" ".join(texts).split()[:n])


def lead_clean(meeting: Meeting, n: int) -> str:
    """The first ``n`` words of the transcript, cleaned as the summary is."""
    return _first_words([clean(t.text, lead=False) for t in meeting.turns], n)


def longest_turns(meeting: Meeting, n: int) -> str:
    """The longest turns (cleaned), in meeting order, cut at ``n`` words."""
    texts = [clean(t.text, lead=False) for t in meeting.turns]
    picked, total = [], 0
    for i in sorted(range(len(texts)), key=lambda i: -len(texts[i].split())):
        if total >= n:
            break
        picked.append(i)
        total += len(texts[i].split())
    return _first_words([texts[i] for i in sorted(picked)], n)


def random_sentences(meeting: Meeting, n: int, seed: int) -> str:
    """Random cleaned sentences of at least 6 words, in meeting order, cut at ``n`` words."""
    pool = [c for t in meeting.turns for s in split_sentences(t.text) if len((c := clean(s)).split()) >= 6]
    order = random.Random(seed).sample(range(len(pool)), len(pool))
    picked, total = [], 0
    for i in order:
        if total >= n:
            break
        picked.append(i)
        total += len(pool[i].split())
    return _first_words([pool[i] for i in sorted(picked)], n)


def baselines(scorer, refs: list[str], meeting: Meeting, n: int) -> dict:
    """ROUGE of the length-matched baselines; random is the mean of 5 draws."""
    draws = [rouge(scorer, refs, random_sentences(meeting, n, seed)) for seed in range(5)]
    return {"lead": rouge(scorer, refs, lead_clean(meeting, n)),
            "longest_turns": rouge(scorer, refs, longest_turns(meeting, n)),
            "random": {k: round(sum(d[k] for d in draws) / len(draws), 2) for k in draws[0]}}


def build_drafter(args):
    from core.minutes.extractive import ExtractiveMinutes
    from core.index.embedders import make_embedder

    embedder = make_embedder("sentence-transformers", None)
    embedder.warm_up()
    extractive = ExtractiveMinutes(embedder)
    if args.backend == "extractive":
        return extractive
    from core.llm.base import make_generator
    from core.minutes.llm import LLMMinutes

    # A .gguf model is converted once into a cache folder; bench/results is git-ignored.
    generator = make_generator(args.backend, base_url=args.base_url, model=args.model, cache_dir=RESULTS / "models")
    if hasattr(generator, "warm_up"):
        generator.warm_up()
    return LLMMinutes(generator, extractive)


def draft(drafter, meeting: Meeting) -> tuple[Minutes, float]:
    with Stopwatch() as t:
        m = drafter.draft(meeting, progress=None)
    return m, t.seconds


def run_dataset(name: str, cases: list[dict], drafter, scorer) -> dict:
    rows = []
    with Contention() as busy:
        for i, c in enumerate(cases, 1):
            meeting = c["meeting"]
            m, seconds = draft(drafter, meeting)
            items, valid = evidence_check(meeting, m)
            row = {"id": c["id"], "turns": len(meeting.turns), "words": words(meeting), "seconds": round(seconds, 4),
                   "summary_words": len(m.summary.split()), "decisions": len(m.decisions),
                   "action_items": len(m.action_items), "open_questions": len(m.open_questions),
                   "items": items, "items_valid": valid, "summary": rouge(scorer, c["refs"], m.summary),
                   **baselines(scorer, c["refs"], meeting, len(m.summary.split()))}
            if "qa" in c:
                md = to_markdown(m)
                row["markdown"] = rouge(scorer, c["refs"], md)
                row["markdown_words"] = len(md.split())
                in_md, in_tr = content_words(md), content_words(" ".join(t.text for t in meeting.turns))
                in_lead = content_words(lead(meeting, row["markdown_words"]))
                qa = [(q, content_words(a)) for q, a in c["qa"]]
                qa = [(q, a) for q, a in qa if a]  # an answer of stopwords only cannot be scored
                row["qa"] = {"questions": len(qa), "unscorable": len(c["qa"]) - len(qa),
                             "in_minutes": sum(answerable(a, in_md) for _, a in qa),
                             "in_lead": sum(answerable(a, in_lead) for _, a in qa),
                             "in_transcript": sum(answerable(a, in_tr) for _, a in qa)}
            rows.append(row)
            print(f"  {name} {i}/{len(cases)} {c['id']}: {row['words']:,} words, {seconds:.2f} s, "
                  f"R-L {row['summary']['rougeL']:.1f}, {items} items ({valid} valid)")
    return aggregate(rows) | {"other_cores_busy": busy.cores, "meetings": rows}


def aggregate(rows: list[dict]) -> dict:
    n = len(rows)
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else float("nan")  # noqa: E731
    secs = [r["seconds"] for r in rows]
    items = sum(r["items"] for r in rows)
    out = {"n": n, **{t: {k: mean([r[t][k] for r in rows]) for k in rows[0][t]} for t in OUTPUTS},
           "items": items, "evidence_valid": round(sum(r["items_valid"] for r in rows) / items, 4) if items else None,
           "per_meeting": {k: mean([r[k] for r in rows]) for k in
                           ("decisions", "action_items", "open_questions", "summary_words", "words", "turns")},
           "seconds": {"mean": mean(secs), "p50": round(percentile(secs, 50), 3), "max": round(max(secs), 3),
                       "total": round(sum(secs), 1)},
           "words_per_second": round(sum(r["words"] for r in rows) / max(sum(secs), 1e-9), 1)}
    if "markdown" in rows[0]:
        out["markdown"] = {k: mean([r["markdown"][k] for r in rows]) for k in rows[0]["markdown"]}
        out["per_meeting"]["markdown_words"] = mean([r["markdown_words"] for r in rows])
        qs = sum(r["qa"]["questions"] for r in rows)
        out["qa"] = {"questions": qs, "unscorable": sum(r["qa"]["unscorable"] for r in rows),
                     "in_minutes": round(sum(r["qa"]["in_minutes"] for r in rows) / qs, 3),
                     "in_lead": round(sum(r["qa"]["in_lead"] for r in rows) / qs, 3),
                     "in_transcript": round(sum(r["qa"]["in_transcript"] for r in rows) / qs, 3)}
    return out


def long_meetings(drafter) -> dict:
    """One draft of ~1 hour of speech and one of the longest QMSum val meeting."""
    longest = max(qmsum(None), key=lambda c: words(c["meeting"]))
    turns, total = [], 0
    for t in longest["meeting"].turns:
        if total >= HOUR_WORDS:
            break
        turns.append(t)
        total += len(t.text.split())
    out = {}
    for label, meeting in (("1 hour", Meeting(turns, title=f"{longest['id']} (first {total:,} words)")),
                           ("longest", longest["meeting"])):
        with Contention() as busy:
            m, seconds = draft(drafter, meeting)
        items, valid = evidence_check(meeting, m)
        out[label] = {"meeting": meeting.title, "turns": len(meeting.turns), "words": words(meeting),
                      "speech_minutes_at_150wpm": round(words(meeting) / 150), "seconds": round(seconds, 2),
                      "items": items, "items_valid": valid, "other_cores_busy": busy.cores}
    return out


def report(results: dict, long: dict | None) -> None:
    f = lambda d: [f"{d[k]:.1f}" for k in ROUGE]  # noqa: E731
    rows = []
    for name, r in results.items():
        split = "dev, max over refs" if name == "elitr" else "val"
        rows += [[f"{name} ({split}): {label}", r["n"], *f(r[key])] for key, label in OUTPUTS.items()]
        if name == "qmsum":
            rows += [[a, "", f"{r1:.1f}", f"{r2:.1f}", f"{rl:.1f}"] for a, r1, r2, rl in ANCHORS]
    table("summary ROUGE F1 ×100 (stemmed); every baseline has as many words as the meeting's summary",
          ["dataset", "meetings", "R-1", "R-2", "R-L"], rows)
    if "elitr" in results:
        e = results["elitr"]
        table("ELITR dev: against the human minutes (ROUGE F1 ×100; max / mean over each meeting's references)",
              ["text", "R-1 max", "R-2 max", "R-L max", "R-1 mean", "R-2 mean", "R-L mean"],
              [[label, *[f"{d[k]:.1f}" for k in (*ROUGE, *(k + "_mean" for k in ROUGE))]]
               for label, d in (("summary", e["summary"]), ("whole minutes (Markdown)", e["markdown"]))])
        q = e["qa"]
        table(f"ELITR dev QA: answer found (≥{ANSWER_COVERAGE:.0%} of its content words present)",
              ["questions", "unscorable", "minutes words/mtg", "in minutes", "in lead baseline (same length)",
               "in transcript (ceiling)"],
              [[q["questions"], q["unscorable"], round(e["per_meeting"]["markdown_words"]), q["in_minutes"],
                q["in_lead"], q["in_transcript"]]])
    table("items and evidence", ["dataset", "items", "evidence valid", "decisions/mtg", "actions/mtg",
                                 "open q/mtg", "summary words"],
          [[n, r["items"], "n/a" if r["evidence_valid"] is None else f"{r['evidence_valid']:.1%}",
            r["per_meeting"]["decisions"], r["per_meeting"]["action_items"], r["per_meeting"]["open_questions"],
            r["per_meeting"]["summary_words"]] for n, r in results.items()])
    table("speed (drafting only; models loaded beforehand)",
          ["dataset", "meetings", "words/mtg", "s/mtg mean", "s p50", "s max", "words/s", "other cores busy"],
          [[n, r["n"], round(r["per_meeting"]["words"]), r["seconds"]["mean"], r["seconds"]["p50"],
            r["seconds"]["max"], r["words_per_second"], r["other_cores_busy"]] for n, r in results.items()])
    if long:
        table("long meetings (one draft each)", ["meeting", "words", "≈ minutes of speech", "seconds", "items valid",
                                                 "other cores busy"],
              [[v["meeting"], v["words"], v["speech_minutes_at_150wpm"], v["seconds"],
                f"{v['items_valid']}/{v['items']}", v["other_cores_busy"]] for v in long.values()])


def code_version() -> str:
    """A hash of the minutes package's source: the drafters change, and these figures belong to one version."""
    import hashlib

    folder = Path(__file__).resolve().parent.parent / "core" / "generate" / "minutes"
    return hashlib.sha1(b"".join(p.read_bytes() for p in sorted(folder.glob("*.py")))).hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=["qmsum", "ami", "elitr", "all"], default="all")
    ap.add_argument("--backend", choices=["extractive", "transformers", "openai"], default="extractive")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--limit", type=int, help="first N meetings of each dataset only")
    ap.add_argument("--skip-long", action="store_true", help="skip the 1-hour and longest-meeting drafts")
    args = ap.parse_args()
    quiet()
    info = header(f"meeting minutes ({args.backend}) on {args.dataset}")
    started = time.perf_counter()
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE), use_stemmer=True)
    with Stopwatch() as load:
        drafter = build_drafter(args)
    code = code_version()
    print(f"drafter  {drafter.model_id} (loaded in {load.seconds:.1f} s; minutes code {code})")
    with Stopwatch() as first:  # one-time costs of a first call stay out of the per-meeting times
        drafter.draft(Meeting([Turn(1, "A", "We agreed that the new release ships to customers on Friday."),
                               Turn(2, "B", "I will write the release notes and send them round tomorrow."),
                               Turn(3, "A", "Who is going to tell the support team about the change?")],
                              title="warm-up"), progress=None)
    print(f"warm-up  first draft of a 3-turn meeting {first.seconds:.2f} s\n")
    loaders = {"qmsum": qmsum, "ami": ami, "elitr": elitr}
    names = list(loaders) if args.dataset == "all" else [args.dataset]
    results = {n: run_dataset(n, loaders[n](args.limit), drafter, scorer) for n in names}
    long = None if args.skip_long or args.dataset not in ("qmsum", "all") else long_meetings(drafter)
    print()
    report(results, long)
    elapsed = time.perf_counter() - started
    print(f"run time {elapsed:.0f} s")
    name = ("minutes" + ("" if args.backend == "extractive" else f"_{args.backend}")
            + ("" if args.dataset == "all" else f"_{args.dataset}") + (f"_{args.limit}" if args.limit else ""))
    write_result(name, info | {"drafter": drafter.model_id, "minutes_code": code, "load_seconds": round(load.seconds, 2),
                               "anchors": ANCHORS, "answer_coverage": ANSWER_COVERAGE, "datasets": results,
                               "long_meetings": long, "run_seconds": round(elapsed, 1)})


if __name__ == "__main__":
    main()
