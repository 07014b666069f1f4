"""Answer quality and speed of `Engine.ask` on QMSum and FinanceBench, per backend.

QMSum (``--dataset qmsum``): the 35 val meetings in one pooled index (as in
retrieval_qmsum.py); every specific query is asked. Reported: ROUGE-L F1 of the
answer against the reference answer (rouge-score, stemmed), abstention rate,
citation validity (every [n] names a returned citation, numbered 1..m, and
every cited chunk is a visible chunk of the index in an allowed scope: must be
100%), and ask latency p50/p95.

FinanceBench (``--dataset financebench``): the dev PDFs present locally, one
pooled index; the dev questions whose PDF is local are asked. Accuracy as
FinanceBench scores it for numbers: the gold answer's number (within 1%, or an
equal rounded value) appears in the answer; non-numeric gold answers need an
exact (normalised) match inside the answer. Also: a citation points to the gold
evidence page.

Abstention calibration (``--calibrate``): the best dense similarity of each
question's hits is recorded for answerable questions (each dataset against its
own index) and unanswerable ones (each dataset's questions against the other
index); the threshold that keeps 95% of answerable questions is reported with
the share of unanswerable ones it rejects.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, Stopwatch, citations_valid, qmsum_transcripts, header, percentile, quiet, summarize_ms, table, write_result  # noqa: E402

from app import build_engine  # noqa: E402
from core.config import AnswerSettings, LLMSettings, Settings  # noqa: E402

FB = DATA / "docqa" / "financebench"
_NUM = re.compile(r"-?\d[\d,]*\.?\d*")


def qmsum_cases(limit: int | None) -> tuple[list[Path], list[dict]]:
    meetings = [json.loads(line) for line in (DATA / "qmsum" / "val.jsonl").read_text().splitlines() if line.strip()]
    files = qmsum_transcripts(meetings, RESULTS / "qmsum-index" / "transcripts")
    cases = [{"question": q["query"], "gold": q["answer"]} for m in meetings
             for q in m.get("specific_query_list") or [] if q.get("relevant_text_span")]
    return files, cases[:limit]


def financebench_cases(limit: int | None, max_pages: int | None = None) -> tuple[list[Path], list[dict]]:
    pdfs = {p.stem: p for p in (FB / "pdfs").glob("*.pdf")}
    if max_pages:
        from pypdf import PdfReader

        pdfs = {k: p for k, p in pdfs.items() if len(PdfReader(p).pages) <= max_pages}
    cases = []
    for line in (FB / "questions_dev.jsonl").read_text().splitlines():
        q = json.loads(line)
        if q["doc_name"] in pdfs:
            pages = {e["evidence_page_num"] + 1 for e in q.get("evidence") or []}
            cases.append({"question": q["question"], "gold": q["answer"], "doc": q["doc_name"], "pages": pages})
    return sorted(pdfs.values()), cases[:limit]


def numbers(text: str) -> list[float]:
    out = []
    for m in _NUM.findall(text.replace("$", " ")):
        try:
            out.append(float(m.replace(",", "").rstrip(".")))
        except ValueError:
            pass
    return out


def fb_correct(gold: str, answer: str) -> bool:
    gold_nums = numbers(gold)
    if gold_nums:
        g = gold_nums[0]
        return any(abs(a - g) <= 0.01 * abs(g) or round(a) == round(g) != 0 for a in numbers(answer))
    norm = lambda s: " ".join(re.findall(r"\w+", s.lower()))  # noqa: E731
    return bool(norm(gold)) and norm(gold) in norm(answer)


def build(name: str, backend: str, base_url: str | None, model: str | None, min_sim: float | None):
    llm = LLMSettings(backend=backend, base_url=base_url, model=model)
    answer = AnswerSettings() if min_sim is None else AnswerSettings(min_similarity=min_sim)
    return build_engine(Settings(data_dir=RESULTS / f"{name}-index", llm=llm, answer=answer))


def run(args) -> dict:
    if args.dataset == "qmsum":
        files, cases = qmsum_cases(args.limit)
    else:
        files, cases = financebench_cases(args.limit, args.max_pages)
    name = args.dataset + (f"-max{args.max_pages}p" if args.max_pages else "")
    engine = build(name, args.backend, args.base_url, args.model, args.min_similarity)
    with Stopwatch() as t:
        results = engine.ingest(files)
    print(f"index    {len(files)} files, {sum(r.chunks for r in results)} chunks "
          f"({sum(r.status.value == 'indexed' for r in results)} (re)indexed, {t.seconds:.0f} s)")
    engine.warm_up()
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows, times = [], []
    for i, case in enumerate(cases, 1):
        with Stopwatch() as t:
            a = engine.ask(case["question"])
        times.append(t.seconds)
        row = {"abstained": a.abstained, "valid": citations_valid(engine, a),
               "rougeL": scorer.score(case["gold"], a.text)["rougeL"].fmeasure if not a.abstained else 0.0}
        if args.dataset == "financebench":
            row["correct"] = fb_correct(case["gold"], a.text) and not a.abstained
            row["gold_page"] = any(Path(c.chunk.source).stem == case["doc"] and c.chunk.page_start in case["pages"]
                                   for c in a.citations)
        rows.append(row)
        if i % 25 == 0:
            print(f"  {i}/{len(cases)} asked")
    mean = lambda k: round(sum(float(r[k]) for r in rows) / len(rows), 3)  # noqa: E731
    summary = {"backend": engine.model_id, "questions": len(rows), "rougeL": mean("rougeL"),
               "abstention": mean("abstained"), "citation_validity": mean("valid"),
               "latency": summarize_ms(times)}
    answered = [r for r in rows if not r["abstained"]]
    summary["rougeL_answered"] = round(sum(r["rougeL"] for r in answered) / max(1, len(answered)), 3)
    if args.dataset == "financebench":
        summary |= {"accuracy": mean("correct"), "cites_gold_page": mean("gold_page")}
    return summary


def calibrate(max_pages: int | None) -> dict:
    """Best-hit similarity of answerable vs unanswerable questions, and the threshold at 95% recall."""
    q_files, q_cases = qmsum_cases(None)
    f_files, f_cases = financebench_cases(None, max_pages)
    qm = build("qmsum", "extractive", None, None, None)
    fb = build("financebench" + (f"-max{max_pages}p" if max_pages else ""), "extractive", None, None, None)
    qm.ingest(q_files)
    fb.ingest(f_files)

    def best(engine, question):
        return max((h.similarity or 0.0 for h in engine.search(question, 6)), default=0.0)

    pos = [best(qm, c["question"]) for c in q_cases] + [best(fb, c["question"]) for c in f_cases]
    neg = [best(fb, c["question"]) for c in q_cases] + [best(qm, c["question"]) for c in f_cases]
    threshold = percentile(pos, 5)
    rejected = sum(s < threshold for s in neg) / len(neg)
    table("best-hit cosine similarity", ["questions", "n", "p5", "p50", "p95"],
          [["answerable", len(pos), percentile(pos, 5), percentile(pos, 50), percentile(pos, 95)],
           ["unanswerable", len(neg), percentile(neg, 5), percentile(neg, 50), percentile(neg, 95)]])
    print(f"threshold keeping 95% of answerable questions: {threshold:.3f}; "
          f"it rejects {rejected:.1%} of unanswerable ones")
    return {"answerable": len(pos), "unanswerable": len(neg), "threshold_95": round(threshold, 3),
            "unanswerable_rejected": round(rejected, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=["qmsum", "financebench"], default="qmsum")
    ap.add_argument("--backend", choices=["extractive", "transformers", "openai"], default="extractive")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--limit", type=int, help="first N questions only")
    ap.add_argument("--max-pages", type=int, help="financebench: only PDFs of at most N pages")
    ap.add_argument("--min-similarity", type=float, help="override the abstention threshold")
    ap.add_argument("--calibrate", action="store_true", help="calibrate the abstention threshold instead")
    args = ap.parse_args()
    quiet()
    info = header("answers" + (" (abstention calibration)" if args.calibrate else f" on {args.dataset}"))
    if args.calibrate:
        write_result("answers_calibration", info | calibrate(args.max_pages))
        return
    s = run(args)
    cols = ["backend", "questions", "ROUGE-L", "ROUGE-L answered", "abstained", "citation validity",
            "p50 ms", "p95 ms"]
    vals = [s["backend"], s["questions"], s["rougeL"], s["rougeL_answered"], s["abstention"],
            s["citation_validity"], s["latency"]["p50_ms"], s["latency"]["p95_ms"]]
    if args.dataset == "financebench":
        cols += ["accuracy", "cites gold page"]
        vals += [s["accuracy"], s["cites_gold_page"]]
    table(f"answers on {args.dataset}", cols, [vals])
    suffix = (f"_{args.limit}" if args.limit else "") + (f"_max{args.max_pages}p" if args.max_pages else "")
    write_result(f"answers_{args.dataset}_{args.backend}{suffix}", info | s)


if __name__ == "__main__":
    main()
