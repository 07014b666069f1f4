"""Ingestion throughput on real PDFs (FinanceBench SEC filings), end to end and per stage.

What it measures: ``engine.ingest`` of the PDFs in
``shared/data/docqa/financebench/pdfs`` into a fresh data folder (real pypdf
loader, chunker, MiniLM embedder, SQLite registry, Chroma, BM25 rebuild), as
MB/s, pages/s and chunks/s, plus every failure with its reason.

How the stages are split: the end-to-end run uses the real embedder wrapped in
a stopwatch (it delegates every call, nothing is replaced), so embedding time
is measured inside the real ingest. Loading (``load_file``) and chunking (the
same ``Chunker`` settings the pipeline uses) are timed in a separate pass over
the same files before the end-to-end run. "write + rest" = end-to-end minus
load, chunk and embed: SQLite and Chroma writes, hashing, the BM25 rebuild
(pass 1 and pass 2 load the same files, so it is within their noise).

The folder holds 22 PDFs (14.7 MB, 1.8k pages). Both passes over all of them
take about 15 minutes on 2 CPU cores, so the default is the 18 smallest
(11 MB, 1.2k pages, about 8 minutes); ``--limit 0`` runs all 22.
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
from common import DATA, Contention, Stopwatch, header, quiet, table, write_result  # noqa: E402

from app import build_embedder, build_engine  # noqa: E402  (sets the offline environment first)
from core.config import Settings  # noqa: E402
from core.errors import ImpError  # noqa: E402
from core.ingest.chunking import Chunker  # noqa: E402
from core.ingest.loaders import load_file  # noqa: E402

PDFS = DATA / "docqa" / "financebench" / "pdfs"
MB = 2**20
DEFAULT_LIMIT = 18


class TimedEmbedder:
    """The real embedder, with the wall time of its ``embed`` calls added up."""

    def __init__(self, inner):
        self._inner = inner
        self.seconds = 0.0
        self.texts = 0
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def max_tokens(self) -> int:
        return self._inner.max_tokens

    def tokenizer(self):
        return self._inner.tokenizer()

    def embed(self, texts: list[str]):
        t0 = time.perf_counter()
        out = self._inner.embed(texts)
        with self._lock:
            self.seconds += time.perf_counter() - t0
            self.texts += len(texts)
        return out


def stage_pass(files: list[Path], chunker: Chunker, max_chars: int) -> dict[str, dict]:
    """load_file and chunking of each file, timed separately; failures keep their reason."""
    out = {}
    for f in files:
        row: dict = {"mb": f.stat().st_size / MB}
        try:
            with Stopwatch() as t:
                doc = load_file(f, max_chars=max_chars)
            row["load_s"] = t.seconds
            row["pages"] = max((s.page for s in doc.segments if s.page), default=0)
            row["chars"] = sum(len(s.text) for s in doc.segments)
            with Stopwatch() as t:
                chunks = chunker.chunk(doc.segments, doc_id="bench", version="0" * 32, source=str(f), scope="bench")
            row["chunk_s"] = t.seconds
            row["chunks"] = len(chunks)
        except ImpError as e:
            row["error"] = f"{e.code}: {e.detail}"
        out[f.name] = row
        print(f"   loaded {f.name}: {row.get('pages', 0)} pages, {row.get('load_s', 0):.1f} s", flush=True)
    return out


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdfs", type=Path, default=PDFS)
    ap.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                    help=f"only the N smallest PDFs (default {DEFAULT_LIMIT}; 0 = all)")
    ap.add_argument("--data-dir", type=Path, default=None, help="fresh data folder (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    return ap.parse_args()


def main() -> None:
    args = parse()
    quiet()
    info = header("ingest throughput (FinanceBench PDFs)")
    files = sorted(args.pdfs.glob("*.pdf"), key=lambda p: (p.stat().st_size, p.name))
    available = len(files)
    files = files[: args.limit] if args.limit else files
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="imp-bench-ingest-"))
    if args.data_dir and any(args.data_dir.iterdir() if args.data_dir.exists() else []):
        sys.exit(f"{args.data_dir} is not empty: ingest would find the files unchanged; give a fresh folder")
    settings = Settings(data_dir=base)
    emb = TimedEmbedder(build_embedder(settings))
    engine = build_engine(settings, embedder=emb)
    with Stopwatch() as t_model:
        emb._inner.warm_up()
    total_mb = sum(f.stat().st_size for f in files) / MB
    print(f"input    {len(files)} of {available} PDFs in {args.pdfs} ({total_mb:.1f} MB)"
          f"{' - the smallest ones (--limit; 0 = all)' if len(files) < available else ''}")
    print(f"model    MiniLM loaded in {t_model.seconds:.1f} s (not counted below); "
          f"chunks of at most {settings.chunking.max_tokens or emb.max_tokens} tokens\n", flush=True)

    print("-- pass 1: load_file + chunking only", flush=True)
    chunker = Chunker(emb.tokenizer(), min(emb.max_tokens, settings.chunking.max_tokens or emb.max_tokens),
                      settings.chunking.overlap)
    with Contention() as busy1:
        stages = stage_pass(files, chunker, settings.ingest.max_chars)

    print("-- pass 2: engine.ingest end to end", flush=True)
    per_file: dict[str, float] = {}
    last = [time.perf_counter()]

    def done(r) -> None:
        now = time.perf_counter()
        per_file[Path(r.source).name] = now - last[0]
        last[0] = now
        print(f"   {r.status.value:>9} {Path(r.source).name}: {r.chunks} chunks, {per_file[Path(r.source).name]:.1f} s",
              flush=True)

    try:
        with Contention() as busy2, Stopwatch() as t_all:
            results = engine.ingest(files, "default", on_result=done)
    finally:
        engine.registry.close()
        if not args.keep and args.data_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    total = t_all.seconds
    ok = [r for r in results if r.status.value == "indexed"]
    failures = [{"file": Path(r.source).name, "code": r.error_code, "reason": r.error}
                for r in results if r.status.value == "failed"]
    pages = sum(stages[Path(r.source).name].get("pages", 0) for r in ok)
    chunks = sum(r.chunks for r in ok)
    mb_ok = sum(stages[Path(r.source).name]["mb"] for r in ok)
    load_s = sum(v.get("load_s", 0.0) for v in stages.values())
    chunk_s = sum(v.get("chunk_s", 0.0) for v in stages.values())
    rest = total - load_s - chunk_s - emb.seconds
    print()
    table("per file", ["file", "MB", "pages", "chunks", "load s", "ingest s", "status"],
          [[name, round(v["mb"], 2), v.get("pages", "-"), v.get("chunks", "-"), round(v.get("load_s", 0), 1),
            round(per_file.get(name, 0), 1), "failed" if "error" in v else "ok"] for name, v in stages.items()])
    summary = {
        "files": len(files), "indexed": len(ok), "failed": len(failures), "mb": round(total_mb, 2),
        "pages": pages, "chunks": chunks, "total_s": round(total, 1),
        "mb_per_s": round(mb_ok / total, 3), "pages_per_s": round(pages / total, 2),
        "chunks_per_s": round(chunks / total, 2),
        "stages_s": {"load (pypdf)": round(load_s, 1), "chunk": round(chunk_s, 1),
                     "embed (MiniLM)": round(emb.seconds, 1), "write + rest": round(rest, 1)},
        "non_embed_s": round(total - emb.seconds, 1),
        "embed_chunks_per_s": round(emb.texts / emb.seconds, 2) if emb.seconds else None,
        "load_pages_per_s": round(pages / load_s, 1) if load_s else None,
        "other_processes_cores": {"pass1_load_chunk": busy1.cores, "pass2_ingest": busy2.cores},
    }
    table("end to end (engine.ingest)", ["files", "MB", "pages", "chunks", "total s", "MB/s", "pages/s", "chunks/s"],
          [[f"{len(ok)}/{len(files)}", summary["mb"], pages, chunks, summary["total_s"], summary["mb_per_s"],
            summary["pages_per_s"], summary["chunks_per_s"]]])
    st = summary["stages_s"]
    table("time split of the end-to-end ingest", ["stage", "seconds", "share", "how it was measured"], [
        ["embed (MiniLM)", st["embed (MiniLM)"], f"{100 * emb.seconds / total:.0f}%", "inside the ingest"],
        ["everything else", round(total - emb.seconds, 1), f"{100 * (total - emb.seconds) / total:.0f}%",
         "inside the ingest: total - embed"],
        ["  of which load (pypdf)", st["load (pypdf)"], f"{100 * load_s / total:.0f}%", "separate pass 1"],
        ["  of which chunk", st["chunk"], f"{100 * chunk_s / total:.0f}%", "separate pass 1"],
        ["  of which write + rest", st["write + rest"], f"{100 * rest / total:.0f}%",
         "difference (pass-1/pass-2 noise)"],
    ])
    print(f"embedding alone: {summary['embed_chunks_per_s']} chunks/s; "
          f"pypdf alone: {summary['load_pages_per_s']} pages/s")
    print(f"other processes used {busy1.cores} cores during pass 1 and {busy2.cores} during pass 2\n")
    if failures:
        table("failures", ["file", "code", "reason"], [[f["file"], f["code"], f["reason"]] for f in failures])
    else:
        print("failures: none\n")
    write_result("ingest_throughput", info | {
        "settings": {"pdfs": str(args.pdfs), "limit": args.limit, "available": available},
        "summary": summary, "failures": failures,
        "per_file": {k: v | {"ingest_s": per_file.get(k)} for k, v in stages.items()},
    })


if __name__ == "__main__":
    main()
