"""How good extracted PDF text is, against FinanceBench's own page texts and evidence.

Used by bench/ingest_throughput.py, which extracts the same PDFs with each text
engine; nothing here was tuned on these files (the paragraph rule in
core/ingest/loaders/pdfium_text.py was set from PDF layout conventions, not from
these scores).

- page token F1: the words (lower-cased ``\\w+`` runs, as a multiset) of each page
  we extracted against the dataset's text of the same page
  (``corpus_pages_dev.jsonl``, 0-based ``page_num``); the mean over pages. A page
  shifted by one (wrong page numbers) scores low.
- evidence on the right page: every sentence or line of at least 6 words in a
  question's gold ``evidence_text`` (``questions_dev.jsonl``), found word for word
  (case and punctuation ignored) in our text of its gold page, and anywhere in the
  document (so a page-number error shows as the gap between the two).
- hit@5: a top-5 search hit is a chunk of the question's document whose pages
  cover a gold evidence page (searched over every ingested document).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from common import DATA

FINANCEBENCH = DATA / "docqa" / "financebench"
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"\n|(?<=[.;:])\s+")
MIN_WORDS = 6


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def gold_pages(docs: set[str]) -> dict[tuple[str, int], str]:
    """(document, 1-based page) -> the dataset's text of that page, for the given documents."""
    out = {}
    with (FINANCEBENCH / "corpus_pages_dev.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            if row["doc_name"] in docs:
                out[(row["doc_name"], int(row["page_num"]) + 1)] = row["text"]
    return out


def questions(docs: set[str]) -> list[dict]:
    """Questions whose gold evidence lies in one of ``docs``: text, document, gold pages (1-based), evidence."""
    out = []
    with (FINANCEBENCH / "questions_dev.jsonl").open() as f:
        for line in f:
            q = json.loads(line)
            evidence = [e for e in q["evidence"] if e["doc_name"] in docs]
            if q["doc_name"] in docs and evidence:
                out.append({"question": q["question"], "doc": q["doc_name"],
                            "pages": {int(e["evidence_page_num"]) + 1 for e in evidence},
                            "evidence": [(int(e["evidence_page_num"]) + 1, e["evidence_text"]) for e in evidence]})
    return out


def _f1(ours: list[str], gold: list[str]) -> float:
    if not ours and not gold:
        return 1.0
    common = sum((Counter(ours) & Counter(gold)).values())
    if common == 0:
        return 0.0
    p, r = common / len(ours), common / len(gold)
    return 2 * p * r / (p + r)


def text_quality(pages: dict[str, dict[int, str]], gold: dict[tuple[str, int], str], qs: list[dict]) -> dict:
    """``pages``: document -> 1-based page -> our text of it (documents that failed are absent)."""
    f1s = [_f1(words(pages.get(doc, {}).get(page, "")), words(text)) for (doc, page), text in gold.items()
           if doc in pages]
    on_page = anywhere = total = 0
    for q in qs:
        if q["doc"] not in pages:
            continue
        doc_text = " " + " ".join(" ".join(words(t)) for t in pages[q["doc"]].values()) + " "
        for page, evidence in q["evidence"]:
            page_text = " " + " ".join(words(pages[q["doc"]].get(page, ""))) + " "
            for sentence in _SENTENCE.split(evidence):
                w = words(sentence)
                if len(w) < MIN_WORDS:
                    continue
                needle = " " + " ".join(w) + " "
                total += 1
                on_page += needle in page_text
                anywhere += needle in doc_text
    return {"pages": len(f1s), "page_token_f1": round(sum(f1s) / len(f1s), 4) if f1s else None,
            "evidence_sentences": total,
            "evidence_on_gold_page": round(on_page / total, 4) if total else None,
            "evidence_in_document": round(anywhere / total, 4) if total else None}


def hit_at_5(engine, qs: list[dict], source_of: dict[str, str]) -> dict:
    """Search each question over everything ingested; a hit is a chunk of its document covering a gold page."""
    hits = 0
    asked = [q for q in qs if q["doc"] in source_of]
    for q in asked:
        found = engine.search(q["question"], k=5)
        hits += any(Path(h.chunk.source).name == source_of[q["doc"]] and h.chunk.page_start is not None
                    and any(h.chunk.page_start <= p <= (h.chunk.page_end or h.chunk.page_start) for p in q["pages"])
                    for h in found)
    return {"questions": len(asked), "hit_at_5": round(hits / len(asked), 4) if asked else None}
