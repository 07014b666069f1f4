"""Ingestion throughput on real PDFs (FinanceBench SEC filings): pypdf against PDFium, per stage, with text quality.

What it measures, in one run over the same files:
- pass 1, for each PDF text engine (``IMP_INGEST__PDF_TEXT``: pypdf, the old
  default, and pdfium): ``load_file`` (extraction, in this process) and chunking
  (the pipeline's own ``Chunker`` settings), timed per file; the extracted text
  scored against FinanceBench's page texts and gold evidence (bench/pdf_quality.py).
- pass 2, for each configuration: ``engine.ingest`` end to end into a fresh data
  folder (sandboxed loader process, chunker, MiniLM embedder, SQLite registry,
  Chroma, BM25 rebuild), as MB/s, pages/s and chunks/s; then hit@5 of the gold
  page for the FinanceBench questions about the ingested files. The configurations
  are pypdf, pdfium, and pdfium with the int8-quantized embedder
  (``IMP_EMBEDDER__QUANTIZE=int8``) when this checkout has that setting.

How the stages are split: embedding is timed inside the real ingest (the real
embedder wrapped in a stopwatch; it delegates every call). Extraction and chunking
come from pass 1. "write + rest" = end-to-end minus those three: SQLite and Chroma
writes, hashing, the loader process round trip, the BM25 rebuild (within the noise of
two passes). Every timed section also reports how many cores *other* processes kept
busy (0.0 = a clean measurement).

The folder holds 22 PDFs (14.7 MB, 1.8k pages). The default is the 12 smallest
(4.5 MB, 560 pages, about 8 minutes on 2 idle cores); ``--limit 0`` runs all 22
(about 30 minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, Contention, Stopwatch, header, quiet, table, write_result
from pdf_quality import gold_pages, hit_at_5, questions, text_quality

from app import build_embedder, build_engine  # sets the offline environment first
from core.config import EmbedderSettings, Settings
from core.errors import ImpError
from core.ingest.chunking import Chunker
from core.ingest.loaders import load_file

PDFS = DATA / "docqa" / "financebench" / "pdfs"
MB = 2**20
DEFAULT_LIMIT = 12
ENGINES = ("pypdf", "pdfium")


class TimedEmbedder:
    """The real embedder, with the wall time of its ``embed`` calls added up."""

    def __init__(self, inner):
        self._inner = inner
        self.seconds = 0.0
        self.texts = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):  # model_id, max_tokens, warm_up, ...: the real embedder's
        return getattr(self._inner, name)

    def tokenizer(self):
        return self._inner.tokenizer()

    def embed(self, texts: list[str]):
        t0 = time.perf_counter()
        out = self._inner.embed(texts)
        with self._lock:
            self.seconds += time.perf_counter() - t0
            self.texts += len(texts)
        return out


def stage_pass(files: list[Path], chunker: Chunker, max_chars: int, engine: str) -> tuple[dict, dict]:
    """load_file and chunking of each file, timed separately; failures keep their reason. Also each page's text."""
    out, texts = {}, {}
    for f in files:
        row: dict = {"mb": f.stat().st_size / MB}
        try:
            with Stopwatch() as t:
                doc = load_file(f, max_chars=max_chars, kind="pdf", pdf_text=engine)
            row["load_s"] = t.seconds
            row["pages"] = max((s.page for s in doc.segments if s.page), default=0)
            row["chars"] = sum(len(s.text) for s in doc.segments)
            with Stopwatch() as t:
                chunks = chunker.chunk(doc.segments, doc_id="bench", version="0" * 32, source=str(f), scope="bench")
            row["chunk_s"] = t.seconds
            row["chunks"] = len(chunks)
            pages: dict[int, str] = {}
            for s in doc.segments:
                pages[s.page] = pages.get(s.page, "") + "\n" + s.text
            texts[f.stem] = pages
        except ImpError as e:
            row["error"] = f"{e.code}: {e.detail}"
        out[f.name] = row
        print(f"   {engine:>6} {f.name}: {row.get('pages', 0)} pages, {row.get('load_s', 0):.2f} s", flush=True)
    return out, texts


def end_to_end(files: list[Path], engine_name: str, quantize: str, emb: TimedEmbedder, qs: list[dict],
               keep: bool) -> dict:
    base = Path(tempfile.mkdtemp(prefix=f"imp-bench-ingest-{engine_name}-{quantize}-"))
    settings = Settings(data_dir=base, ingest={"pdf_text": engine_name})
    engine = build_engine(settings, embedder=emb)
    emb.seconds, emb.texts = 0.0, 0
    try:
        with Contention() as busy, Stopwatch() as t_all:
            results = engine.ingest(files, "default")
        ok = [r for r in results if r.status.value == "indexed"]
        with Contention() as busy_q:
            quality = hit_at_5(engine, qs, {Path(r.source).stem: Path(r.source).name for r in ok})
    finally:
        engine.close()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return {"total_s": t_all.seconds, "embed_s": emb.seconds, "embedded": emb.texts, "indexed": len(ok),
            "chunks": sum(r.chunks for r in ok), "other_processes_cores": busy.cores,
            "failures": [{"file": Path(r.source).name, "code": r.error_code, "reason": r.error}
                         for r in results if r.status.value == "failed"],
            "indexed_files": [Path(r.source).name for r in ok], **quality, "search_other_cores": busy_q.cores}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdfs", type=Path, default=PDFS)
    ap.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                    help=f"only the N smallest PDFs (default {DEFAULT_LIMIT}; 0 = all)")
    ap.add_argument("--keep", action="store_true", help="keep the data folders (printed)")
    return ap.parse_args()


def main() -> None:
    args = parse()
    quiet()
    info = header("ingest throughput (FinanceBench PDFs): pypdf vs PDFium")
    files = sorted(args.pdfs.glob("*.pdf"), key=lambda p: (p.stat().st_size, p.name))
    available = len(files)
    files = files[: args.limit] if args.limit else files
    total_mb = sum(f.stat().st_size for f in files) / MB
    quantizes = ["none", "int8"] if "quantize" in EmbedderSettings.model_fields else ["none"]
    embedders = {}
    for q in quantizes:
        s = Settings(data_dir=Path(tempfile.gettempdir()), embedder={"quantize": q} if q != "none" else {})
        embedders[q] = TimedEmbedder(build_embedder(s))
        with Stopwatch() as t_model:
            embedders[q].warm_up()
            embedders[q].embed(["first calls set up the kernels: not counted below"] * 8)
        print(f"model    MiniLM (quantize={q}) loaded in {t_model.seconds:.1f} s (not counted below)")
    if len(quantizes) == 1:
        print("         (this checkout has no IMP_EMBEDDER__QUANTIZE setting: float32 embedder only)")
    settings = Settings(data_dir=Path(tempfile.gettempdir()))
    emb = embedders["none"]
    size = min(emb.max_tokens, settings.chunking.max_tokens or emb.max_tokens)
    chunker = Chunker(emb.tokenizer(), size, settings.chunking.overlap)
    print(f"input    {len(files)} of {available} PDFs in {args.pdfs} ({total_mb:.1f} MB)"
          f"{' - the smallest ones (--limit; 0 = all)' if len(files) < available else ''}; "
          f"chunks of at most {size} tokens\n", flush=True)
    stems = {f.stem for f in files}
    gold, qs = gold_pages(stems), questions(stems)

    stages, quality, busy1 = {}, {}, {}
    for name in ENGINES:
        print(f"-- pass 1 ({name}): load_file + chunking only", flush=True)
        with Contention() as busy:
            stages[name], texts = stage_pass(files, chunker, settings.ingest.max_chars, name)
        busy1[name] = busy.cores
        quality[name] = text_quality(texts, gold, qs)

    runs = {}
    for name, q in [("pypdf", "none"), ("pdfium", "none")] + [("pdfium", q) for q in quantizes if q != "none"]:
        label = name if q == "none" else f"{name} + {q} embedder"
        print(f"-- pass 2 ({label}): engine.ingest end to end", flush=True)
        runs[label] = end_to_end(files, name, q, embedders[q], qs, args.keep) | {"engine": name, "quantize": q}
        print(f"   {runs[label]['total_s']:.1f} s, {runs[label]['chunks']} chunks", flush=True)
    report(files, total_mb, stages, quality, busy1, runs, qs)
    write_result("ingest_throughput", info | {
        "settings": {"pdfs": str(args.pdfs), "limit": args.limit, "available": available},
        "runs": runs, "text_quality": quality, "pass1_other_processes_cores": busy1,
        "per_file": {name: stages[name] for name in ENGINES},
    })


def report(files, total_mb, stages, quality, busy1, runs, qs) -> None:
    print()
    table("per file: extraction seconds (pass 1)", ["file", "MB", "pages", "pypdf s", "pdfium s", "speed-up"],
          [[f.name, round(stages["pdfium"][f.name]["mb"], 2), stages["pdfium"][f.name].get("pages", "-"),
            round(stages["pypdf"][f.name].get("load_s", 0), 2), round(stages["pdfium"][f.name].get("load_s", 0), 2),
            f"{stages['pypdf'][f.name].get('load_s', 0) / max(stages['pdfium'][f.name].get('load_s', 1e-9), 1e-9):.0f}x"]
           for f in files])
    rows, split = [], []
    for label, r in runs.items():
        st = stages[r["engine"]]
        ok = r["indexed_files"]
        pages = sum(st[n].get("pages", 0) for n in ok)
        mb = sum(st[n]["mb"] for n in ok)
        load_s = sum(st[n].get("load_s", 0.0) for n in ok)
        chunk_s = sum(st[n].get("chunk_s", 0.0) for n in ok)
        total = r["total_s"]
        rest = total - load_s - chunk_s - r["embed_s"]
        r.update(pages=pages, mb=round(mb, 2), mb_per_s=round(mb / total, 3), pages_per_s=round(pages / total, 2),
                 chunks_per_s=round(r["chunks"] / total, 2), extract_s=round(load_s, 1), chunk_s=round(chunk_s, 1),
                 write_rest_s=round(rest, 1),
                 embed_chunks_per_s=round(r["embedded"] / r["embed_s"], 1) if r["embed_s"] else None)
        rows.append([label, f"{len(ok)}/{len(files)}", round(mb, 1), pages, r["chunks"], round(total, 1),
                     r["mb_per_s"], r["pages_per_s"], r["chunks_per_s"], r["other_processes_cores"]])
        split.append([label] + [f"{s:.1f} ({100 * s / total:.0f}%)" for s in (load_s, chunk_s, r["embed_s"], rest)]
                     + [round(pages / load_s, 1) if load_s else "-", r["embed_chunks_per_s"]])
    table("end to end (engine.ingest)", ["configuration", "files", "MB", "pages", "chunks", "total s", "MB/s",
                                         "pages/s", "chunks/s", "other procs (cores)"], rows)
    table("time split (seconds, share of end to end)", ["configuration", "extraction", "chunking", "embedding",
                                                        "write + rest", "extraction pages/s", "embed chunks/s"], split)
    table("extracted text against FinanceBench (pass 1; quality does not depend on load)",
          ["engine", "pages", "page token F1", "evidence sentences", "on the gold page", "in the document",
           "pass-1 other procs (cores)"],
          [[n, quality[n]["pages"], quality[n]["page_token_f1"], quality[n]["evidence_sentences"],
            quality[n]["evidence_on_gold_page"], quality[n]["evidence_in_document"], busy1[n]] for n in ENGINES])
    table(f"retrieval: hit@5 of a gold evidence page ({len(qs)} questions, hybrid search over the ingested files)",
          ["configuration", "questions", "hit@5"], [[label, r["questions"], r["hit_at_5"]] for label, r in runs.items()])
    failures = [[label, f["file"], f["code"], f["reason"]] for label, r in runs.items() for f in r["failures"]]
    if failures:
        table("failures", ["configuration", "file", "code", "reason"], failures)
    else:
        print("failures: none\n")


if __name__ == "__main__":
    main()
