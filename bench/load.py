"""Load: many concurrent clients on /v1/search and /v1/ask, with and without admission control.

What runs: a real `imp serve` subprocess (uvicorn, embedded defaults: MiniLM, extractive
answers) on a fresh data folder holding the sample documents plus ``--meetings`` QMSum val
meeting transcripts (one text file each, "Speaker: text" lines; data nobody here tuned the
gates on). A bearer token is set, so every request pays for authentication as in production.

For each route (search, ask) and each configuration, ``--clients`` asyncio clients (httpx, in
this process, one connection each) send requests back to back for ``--seconds``: a client
that gets a 503 waits the Retry-After it was given (capped at 2 s), as a polite client does.
The configurations, in one run, side by side:
  off   IMP_ADMISSION__ENABLED=false: every request is taken at once (the behaviour before)
  on    the defaults of core.config.AdmissionSettings
Figures: requests served (200), shed (503), other errors (any other status, timeouts,
connection errors), served per second, and latency percentiles of the served requests.
Queries: the QMSum val specific queries of those meetings, cycled.

The client shares the 2 cores with the server; its CPU use is reported ("client cpu s").

Run:  .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--meetings 8] [--routes search,ask]
Results go to bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, header, percentile, quiet, table, write_result  # noqa: E402

from tests.fakes.net import free_port, wait_until_up  # noqa: E402

QMSUM_VAL = DATA / "qmsum" / "val.jsonl"
IMP = str(ROOT / ".venv" / "bin" / "imp")


def corpus(folder: Path, meetings: int) -> list[str]:
    """Write the sample documents and ``meetings`` QMSum transcripts; return the questions."""
    shutil.copytree(ROOT / "samples", folder, ignore=shutil.ignore_patterns(".*", "*.m4a", "*.mp3", "*.wav"))
    questions: list[str] = []
    if QMSUM_VAL.is_file():
        with QMSUM_VAL.open() as f:
            for line, _ in zip(f, range(meetings)):
                m = json.loads(line)
                text = "\n".join(f"{t['speaker']}: {t['content']}" for t in m["meeting_transcripts"])
                (folder / f"{m['meeting_id']}.txt").write_text(text)
                questions += [q["query"] for q in m["specific_query_list"]]
    return questions or ["How much is the hotel allowance per night in Europe?", "When is the rover firmware freeze?"]


def serve(data: Path, port: int, token: str, admission: bool) -> subprocess.Popen:
    env = os.environ | {"IMP_DATA_DIR": str(data), "IMP_API__TOKEN": token,
                        "IMP_ADMISSION__ENABLED": "true" if admission else "false"}
    proc = subprocess.Popen([IMP, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


async def hammer(url: str, token: str, route: str, questions: list[str], clients: int, seconds: float) -> dict:
    served: list[float] = []
    shed = errors = 0
    statuses: dict[str, int] = {}
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal shed, errors
        n = i
        while time.monotonic() < stop:
            q = questions[n % len(questions)]
            n += clients
            body = {"query": q, "k": 5} if route == "search" else {"question": q}
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/{route}", json=body)
            except httpx.HTTPError as e:
                errors += 1
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
                continue
            took = time.perf_counter() - t0
            statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
            if r.status_code == 200:
                served.append(took)
            elif r.status_code == 503:
                shed += 1
                await asyncio.sleep(min(2.0, float(r.headers.get("retry-after", "1"))))
            else:
                errors += 1

    started = time.monotonic()
    cpu0 = time.process_time()
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    wall = time.monotonic() - started
    ms = [s * 1000 for s in served]
    return {"served": len(served), "shed": shed, "errors": errors, "statuses": statuses,
            "served_per_s": round(len(served) / wall, 2), "wall_s": round(wall, 1),
            "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1), "max_ms": round(max(ms), 1) if ms else None,
            "client_cpu_s": round(time.process_time() - cpu0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--meetings", type=int, default=8)
    ap.add_argument("--routes", default="search,ask")
    args = ap.parse_args()
    quiet()
    info = header("Load: concurrent clients on search and ask, admission control off and on")
    token = secrets.token_urlsafe(24)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="imp-load-") as tmp:
        tmp_path = Path(tmp)
        docs, data = tmp_path / "docs", tmp_path / "data"
        questions = corpus(docs, args.meetings)
        t0 = time.perf_counter()
        subprocess.run([IMP, "ingest", str(docs)], env=os.environ | {"IMP_DATA_DIR": str(data)}, check=True,
                       stdout=subprocess.DEVNULL)
        chunks = json.loads(subprocess.run([IMP, "docs", "--json"], env=os.environ | {"IMP_DATA_DIR": str(data)},
                                           check=True, capture_output=True).stdout)
        n_chunks = sum(d.get("chunks", 0) for d in chunks.get("documents", []))
        print(f"corpus: {len(list(docs.iterdir()))} files, {n_chunks} chunks, indexed in "
              f"{time.perf_counter() - t0:.0f} s; {len(questions)} questions\n")
        for route in args.routes.split(","):
            for mode in ("off", "on"):
                port = free_port()
                proc = serve(data, port, token, admission=mode == "on")
                try:
                    url = f"http://127.0.0.1:{port}"
                    # Warm: the first request builds the keyword index and loads the models' caches.
                    httpx.post(f"{url}/v1/search", json={"query": "warm up"}, timeout=120,
                               headers={"authorization": f"Bearer {token}"})
                    r = asyncio.run(hammer(url, token, route, questions, args.clients, args.seconds))
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                results[f"{route}/{mode}"] = r
                print(f"{route:6s} admission {mode:3s}: {r}")
    print()
    table(f"{args.clients} clients x {args.seconds:.0f} s per row",
          ["route", "admission", "served", "shed (503)", "errors", "served/s", "p50 ms", "p95 ms", "p99 ms",
           "max ms", "client cpu s"],
          [[k.split("/")[0], k.split("/")[1], r["served"], r["shed"], r["errors"], r["served_per_s"], r["p50_ms"],
            r["p95_ms"], r["p99_ms"], r["max_ms"], r["client_cpu_s"]] for k, r in results.items()])
    write_result("load", info | {"clients": args.clients, "seconds": args.seconds, "meetings": args.meetings,
                                 "chunks": n_chunks, "results": results})


if __name__ == "__main__":
    main()
