"""Ingestion attacks before and after the hardening: racing uploads, decompression bombs, sandbox cost.

Each scenario runs in a fresh child process against one code tree: "before"
is ``git archive <rev> core bot app.py cli.py`` unpacked into a temp folder, "after" is
the working tree. The parent measures the child's wall time and peak RSS
(``wait4``; a killed or finished loader worker reaped by the child counts
too), and kills it at ``--cap`` seconds. Before-runs of loader attacks also
get an address-space limit (``--before-mem-gb``) so a bomb cannot take the
machine down; both caps are printed with the figures.

Scenarios (``--parts``):
  race        4 threads upload ``race.md`` with different contents at once, ``--rounds`` times:
              per round, what each answered, whether the committed version has its chunks,
              whether search finds its unique word, orphan chunk rows, what a re-upload says
  cli         two ``imp ingest`` processes on the same 6 files at once (3 rounds at most): what each
              answered (errors with SQL?), and whether every document ends with all its chunks
  docx, xlsx, pptx   a valid document whose main XML part inflates to ``--bomb-mb`` MB (ratio ~340)
  lying       a DOCX whose ZIP headers declare the bomb part as 1 KiB
  pdf         a PDF page whose FlateDecode content stream inflates to ``--bomb-mb`` MB
  pdfpages    1000 pages sharing one 70 MB FlateDecode content stream
  throughput  ingest of 60 small Markdown, 20 DOCX and 20 PDF files (embedder warm, not counted)
  overhead    (working tree only) the same 100 files read by ``load_file`` in the process and through
              the loader sandbox: ms per file each way, and the first worker's start-up

    .venv/bin/python bench/attacks_ingest.py --before c16c23d
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, header, table, write_result  # noqa: E402

MB = 2**20
PARTS = ("race", "cli", "docx", "xlsx", "pptx", "lying", "pdf", "pdfpages", "throughput", "overhead")
AFTER_ONLY = {"overhead"}
LOADER_PARTS = {"docx", "xlsx", "pptx", "lying", "pdf", "pdfpages"}
WORDS = ("amber", "cobalt", "saffron", "viridian")


# -- attack files (built once by the parent, with the test suite's builders) -------------------


def build_files(folder: Path, bomb_mb: int) -> dict[str, Path]:
    from tests.integration.test_ingest_bombs import lying_zip, office_bomb, pdf_flate_bomb

    files = {kind: office_bomb(folder / f"bomb.{kind}", kind, bomb_mb * MB) for kind in ("docx", "xlsx", "pptx")}
    files["lying"] = lying_zip(folder / "lying.docx", "docx", bomb_mb * MB)
    files["pdf"] = pdf_flate_bomb(folder / "bomb.pdf", bomb_mb * MB)
    files["pdfpages"] = pdf_flate_bomb(folder / "pages.pdf", 70 * MB, pages=1000)
    return files


def build_corpus(folder: Path) -> Path:
    from tests.integration.test_ingest_bombs import office_bytes, pdf_bytes, pdf_text

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(60):
        (folder / f"note{i:02}.md").write_text(f"# Note {i}\n\nThe meeting {i} agreed on budget line {i * 7}.\n")
    for i in range(20):
        (folder / f"memo{i:02}.docx").write_bytes(office_bytes("docx", f"Memo {i}: the supplier number is {i * 13}."))
    for i in range(20):
        (folder / f"sheet{i:02}.pdf").write_bytes(pdf_bytes([pdf_text(f"Invoice {i} totals {i * 101} euros")]))
    return folder


# -- children ------------------------------------------------------------------------------------


def _engine(data: Path):
    from app import build_engine
    from core.config import Settings

    return build_engine(Settings(data_dir=data))


def _close(engine) -> None:
    engine.close()
    close = getattr(engine._pipeline, "close", None)  # the sandbox, where this tree has one
    if close is not None:
        close()


def child_load(file: Path, data: Path) -> dict:
    engine = _engine(data)
    t0 = time.perf_counter()
    [r] = engine.ingest([file])
    seconds = time.perf_counter() - t0
    _close(engine)
    return {"status": r.status.value, "code": r.error_code, "error": r.error, "seconds": round(seconds, 2)}


def child_race(data: Path, rounds: int) -> dict:
    from sqlalchemy import func, select

    from core.store.schema import ChunkRow

    engine = _engine(data)
    engine.warm_up()
    out = []
    for n in range(rounds):
        name = f"race{n}.md"
        texts = [f"# Race\n\nThe code word of upload {i} is {w}{n}.\n" for i, w in enumerate(WORDS)]
        barrier = threading.Barrier(len(texts))
        results: list = [None] * len(texts)

        def upload(i: int) -> None:
            barrier.wait()
            results[i] = engine.ingest_upload(name, io.BytesIO(texts[i].encode()))

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        doc_id = results[0].doc_id
        record = engine.document(doc_id)
        visible = engine.registry.chunks_of(doc_id)
        words = [f"{w}{n}" for w in WORDS]
        found = [w for w in words if any(w in h.chunk.text for h in engine.search(w, k=3, mode="keyword"))]
        dense = [w for w in words if any(w in h.chunk.text for h in engine.search(f"code word {w}", k=3, mode="dense"))]
        with engine.database.session() as s:
            rows = s.scalar(select(func.count()).select_from(ChunkRow).where(ChunkRow.doc_id == doc_id))
        committed = next((i for i, w in enumerate(words) if any(w in c.text for c in visible)), None)
        # Re-sending the committed content (or, with nothing visible, the first one): what does IMP say?
        again = engine.ingest_upload(name, io.BytesIO(texts[committed or 0].encode())).status.value
        again_visible = len(engine.registry.chunks_of(doc_id))
        out.append({
            "answers": sorted(r.status.value + (f"/{r.error_code}" if r.error_code else "") for r in results),
            "record_status": record.status.value, "record_chunks": record.chunks, "visible_chunks": len(visible),
            "chunk_rows": rows, "keyword_found": found, "dense_found": dense, "reupload": again,
            "visible_after_reupload": again_visible,
        })
    _close(engine)
    broken = [r for r in out if not r["visible_chunks"] or not r["keyword_found"]]
    return {"rounds": out, "broken_rounds": len(broken), "total_rounds": len(out)}


def child_cli(tree: Path, data: Path, rounds: int) -> dict:
    from core.store.database import Database
    from core.store.registry import DocumentRegistry

    out = []
    for n in range(rounds):
        base = data / f"round{n}"
        folder = base / "docs"
        folder.mkdir(parents=True)
        for i in range(6):
            (folder / f"note{i}.md").write_text(f"# Note {i}\n\nThe shared budget line {i} is {i * 111} euros.\n")
        env = {**os.environ, "IMP_DATA_DIR": str(base / "imp"), "PYTHONPATH": str(tree)}
        procs = [subprocess.Popen([sys.executable, "-m", "app", "ingest", "--json", str(folder)], cwd=tree, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=900) for p in procs]
        statuses, leaks = [], 0
        for stdout, stderr in outputs:
            leaks += sum(stdout.count(w) for w in ("IntegrityError", "[SQL", "INSERT INTO"))
            try:
                statuses += [d["status"] + (f": {d['error'][:160]}" if d.get("error") else "")
                             for d in json.loads(stdout)["documents"]]
            except (ValueError, KeyError):
                statuses.append("crashed: " + (stderr.strip().splitlines() or [""])[-1][:200])
        database = Database(f"sqlite:///{base / 'imp' / 'imp.sqlite3'}")
        registry = DocumentRegistry(database)
        records = registry.list()
        complete = sum(1 for r in records if r.status.value == "indexed" and r.chunks
                       and len(registry.chunks_of(r.doc_id)) == r.chunks)
        database.close()
        out.append({"answers": sorted(statuses), "sql_in_answers": leaks, "documents": len(records),
                    "complete": complete})
    bad = [r for r in out if r["sql_in_answers"] or r["complete"] < 6 or any(a.startswith(("failed", "crashed"))
                                                                              for a in r["answers"])]
    return {"rounds": out, "broken_rounds": len(bad), "total_rounds": len(out)}


def child_throughput(corpus: Path, data: Path) -> dict:
    engine = _engine(data)
    engine.warm_up()
    t0 = time.perf_counter()
    results = engine.ingest([corpus])
    seconds = time.perf_counter() - t0
    _close(engine)
    failed = [(Path(r.source).name, r.error) for r in results if r.status.value == "failed"]
    return {"docs": len(results), "failed": failed, "seconds": round(seconds, 2),
            "docs_per_s": round(len(results) / seconds, 1)}


def child_overhead(corpus: Path) -> dict:
    from core.ingest.loaders import detect_kind, load_file
    from core.ingest.sandbox import LoaderSandbox

    files = sorted(corpus.iterdir())
    kinds = {f: detect_kind(f) for f in files}
    for f in files:  # the libraries imported and the files cached, as in a running service
        load_file(f, kind=kinds[f])
    t0 = time.perf_counter()
    for f in files:
        load_file(f, kind=kinds[f])
    inline = time.perf_counter() - t0
    sandbox = LoaderSandbox(workers=1)
    try:
        t0 = time.perf_counter()
        sandbox.load(files[0], kinds[files[0]], 5_000_000)
        first = time.perf_counter() - t0
        for f in files:  # this worker's first file of each kind imports its library
            sandbox.load(f, kinds[f], 5_000_000)
        t0 = time.perf_counter()
        for f in files:
            sandbox.load(f, kinds[f], 5_000_000)
        isolated = time.perf_counter() - t0
    finally:
        sandbox.close()
    n = len(files)
    return {"files": n, "in_process_ms": round(1000 * inline / n, 2), "sandbox_ms": round(1000 * isolated / n, 2),
            "overhead_ms": round(1000 * (isolated - inline) / n, 2), "first_worker_start_s": round(first, 2)}


def child_main(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(args.tree))
    import logging

    logging.basicConfig(level=logging.ERROR)
    if args.child == "race":
        result = child_race(args.data, args.rounds)
    elif args.child == "cli":
        result = child_cli(args.tree, args.data, min(args.rounds, 3))
    elif args.child == "throughput":
        result = child_throughput(args.file, args.data)
    elif args.child == "overhead":
        result = child_overhead(args.file)
    else:
        result = child_load(args.file, args.data)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peaks = {"service_peak_mb": round(self_peak), "workers_peak_mb": round(workers_peak)}
    print("RESULT " + json.dumps(result | peaks))


# -- parent --------------------------------------------------------------------------------------


def run_child(tree: Path, part: str, *, file: Path | None, cap: float, mem_gb: float | None,
              rounds: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="imp-attack-"))
    cmd = [sys.executable, __file__, "--child", part, "--tree", str(tree), "--data", str(data),
           "--rounds", str(rounds)]
    if file is not None:
        cmd += ["--file", str(file)]

    def limit() -> None:
        if mem_gb:
            resource.setrlimit(resource.RLIMIT_AS, (int(mem_gb * 2**30),) * 2)

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limit,
                            env={**os.environ, "PYTHONPATH": f"{tree}:{ROOT}"})
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > cap:
            proc.kill()
            killed = True
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    reader.join(timeout=5)
    text = b"".join(output).decode(errors="replace")
    result = next((json.loads(line[7:]) for line in text.splitlines() if line.startswith("RESULT ")), None)
    subprocess.run(["rm", "-rf", str(data)], check=False)
    row = {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "killed_at_cap": killed,
           "exit": proc.returncode}
    if result is None:
        row["output_tail"] = text[-600:]
    return row | {"result": result}


def head_tree(rev: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"imp-{rev[:8]}-"))
    archive = subprocess.run(["git", "archive", rev, "core", "bot", "app.py", "cli.py"], cwd=ROOT, check=True,
                             capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def summarize(part: str, row: dict) -> list:
    r = row.get("result") or {}
    if part == "race":
        what = f"{r.get('broken_rounds')}/{r.get('total_rounds')} rounds broken" if r else row.get("output_tail", "")
    elif part == "cli":
        what = (f"{r['broken_rounds']}/{r['total_rounds']} rounds with a failed document, SQL in an answer "
                "or a document without its chunks" if r else row.get("output_tail", "")[-200:])
    elif part == "throughput":
        what = f"{r.get('docs')} docs in {r.get('seconds')} s = {r.get('docs_per_s')} docs/s" if r else "-"
    elif part == "overhead":
        what = (f"{r['in_process_ms']} ms/file in process, {r['sandbox_ms']} ms/file in the sandbox "
                f"(+{r['overhead_ms']} ms); first worker up in {r['first_worker_start_s']} s" if r else "-")
    elif r:
        what = f"{r['status']} {r['code'] or ''}: {(r['error'] or '')[:90]}"
    else:
        what = "killed at the cap" if row["killed_at_cap"] else row.get("output_tail", "")[-120:]
    return [part, row["wall_s"], row["peak_rss_mb"], what]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", metavar="REV", help="also run the scenarios against this git revision")
    ap.add_argument("--no-after", action="store_true", help="skip the working tree")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--cap", type=float, default=60.0,
                    help="seconds before a loader-attack child is killed (default 60)")
    ap.add_argument("--cap-long", type=float, default=900.0,
                    help="the same for race, cli and throughput, which load the model (default 900)")
    ap.add_argument("--before-mem-gb", type=float, default=6.0,
                    help="address-space limit of before-runs of loader attacks (default 6 GB)")
    ap.add_argument("--bomb-mb", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--child"), ap.add_argument("--tree", type=Path), ap.add_argument("--data", type=Path)
    ap.add_argument("--file", type=Path)
    args = ap.parse_args()
    if args.child:
        return child_main(args)
    info = header("ingestion attacks")
    parts = [p for p in args.parts.split(",") if p]
    work = Path(tempfile.mkdtemp(prefix="imp-attack-files-"))
    files = build_files(work, args.bomb_mb) if LOADER_PARTS & set(parts) else {}
    if {"throughput", "overhead"} & set(parts):
        files["throughput"] = files["overhead"] = build_corpus(work / "corpus")
    for name, f in files.items():
        if f.is_file():
            print(f"file {name}: {f.stat().st_size / MB:.2f} MB")
    trees = ([("before " + args.before, head_tree(args.before))] if args.before else []) + (
        [] if args.no_after else [("after (working tree)", ROOT)])
    rows, record = [], {}
    for label, tree in trees:
        for part in parts:
            if part in AFTER_ONLY and label.startswith("before"):
                continue
            mem = args.before_mem_gb if label.startswith("before") and part in LOADER_PARTS else None
            cap = args.cap if part in LOADER_PARTS else args.cap_long  # the model loads in the others
            row = run_child(tree, part, file=files.get(part), cap=cap, mem_gb=mem, rounds=args.rounds)
            record[f"{label}: {part}"] = row
            rows.append([label, *summarize(part, row)])
            print(f"{label:>22} {part:>10}: {row['wall_s']} s, peak {row['peak_rss_mb']} MB", flush=True)
    print()
    table("ingestion attacks", ["code", "attack", "wall s", "peak RSS MB", "outcome"], rows)
    print(f"caps: {args.cap:.0f} s wall for loader attacks, {args.cap_long:.0f} s for race/cli/throughput; "
          f"before-runs of loader attacks limited to {args.before_mem_gb:.0f} GB of address space")
    write_result("attacks_ingest", info | {"settings": vars(args) | {"tree": None, "data": None, "file": None},
                                           "runs": record})
    subprocess.run(["rm", "-rf", str(work), *(str(tree) for label, tree in trees if label.startswith("before"))],
                   check=False)


if __name__ == "__main__":
    main()
