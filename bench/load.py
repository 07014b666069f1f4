"""Load: many concurrent clients on /v1/search and /v1/ask, before and after (and without admission control).

What runs: a real `imp serve` subprocess (uvicorn, embedded defaults: MiniLM, extractive
answers) on a fresh data folder holding the sample documents plus ``--meetings`` QMSum val
meeting transcripts (one text file each, "Speaker: text" lines; data nobody here tuned the
gates on). A bearer token is set, so every request pays for authentication as in production.

For each route (search, ask) and each configuration, ``--clients`` asyncio clients (httpx, in
this process, one connection each) send requests back to back for ``--seconds``: a client
that gets a 503 waits the Retry-After it was given (capped at 2 s), as a polite client does.
The configurations (``--configs``), in one run, side by side:
  admission-off  IMP_ADMISSION__ENABLED=false: every request is taken at once
  before         the embedder as IMP ran it before issue 13: float32, torch's default threads
                 for a query, no query cache (IMP_EMBEDDER__QUANTIZE=none, QUERY_THREADS=0,
                 QUERY_CACHE=0); admission on
  after          the current defaults (core.config)
Figures: requests served (200), shed (503), other errors (any other status, timeouts,
connection errors), served per second, and latency percentiles of the served requests.
Queries: the QMSum val specific queries of those meetings, cycled; each request gets a
distinct text (" #n" appended) so the query cache never answers one, unless --repeat.

The client shares the 2 cores with the server; its CPU use is reported ("client cpu s"),
and so are the cores used by processes other than the client and the server ("other procs").

Run:  .venv/bin/python bench/load.py [--clients 20] [--seconds 60] [--meetings 8] [--routes search]
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
from common import DATA, ROOT, Contention, header, percentile, quiet, table, write_result  # noqa: E402

from core.config import EmbedderSettings  # noqa: E402
from tests.fakes.net import free_port, wait_until_up  # noqa: E402

QMSUM_VAL = DATA / "qmsum" / "val.jsonl"
IMP = str(ROOT / ".venv" / "bin" / "imp")
CONFIGS = {
    "admission-off": {"IMP_ADMISSION__ENABLED": "false"},
    "before": {"IMP_EMBEDDER__QUANTIZE": "none", "IMP_EMBEDDER__QUERY_THREADS": "0", "IMP_EMBEDDER__QUERY_CACHE": "0"},
    "after": {},
}


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


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


# The stages of a search, always shown in the profile whatever their rank.
STAGES = {"search", "SentenceTransformerEmbedder.embed", "ChromaVectorStore.query", "KeywordIndex.query",
          "DocumentRegistry.visible_chunks", "HitOut.of", "grant_of", "AdmissionMiddleware.__call__"}


def profile_summary(raw: Path, top: int = 12) -> list[tuple[str, float]]:
    """Share of samples in which each function was on the stack (py-spy's raw, collapsed format)."""
    total = 0
    inclusive: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            # "function (path/to/module.py:line)" -> "function (module.py)"
            name, _, where = frame.partition(" (")
            key = f"{name} ({Path(where.split(':')[0]).name})" if where else name
            if key not in seen:
                seen.add(key)
                inclusive[key] = inclusive.get(key, 0) + n
    stages = [k for k in inclusive if k.split(" (")[0] in STAGES]
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    ranked += sorted(((k, inclusive[k]) for k in stages if k not in dict(ranked)), key=lambda kv: -kv[1])
    return [(k, round(100 * v / max(total, 1), 1)) for k, v in ranked]


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(spy).exists():
        print("py-spy not installed: no profile (pip install py-spy==0.4.3)")
        return None
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw",
                             "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serve(data: Path, port: int, token: str, config: dict[str, str]) -> subprocess.Popen:
    env = os.environ | {"IMP_DATA_DIR": str(data), "IMP_API__TOKEN": token} | config
    proc = subprocess.Popen([IMP, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, timeout=600)  # a loaded 2-core host starts slowly
    return proc


async def hammer(url: str, token: str, route: str, questions: list[str], clients: int, seconds: float,
                 repeat: bool) -> dict:
    served: list[float] = []
    shed = errors = 0
    statuses: dict[str, int] = {}
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal shed, errors
        n = i
        while time.monotonic() < stop:
            q = questions[n % len(questions)] + ("" if repeat else f" #{n}")
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
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--meetings", type=int, default=8)
    ap.add_argument("--routes", default="search")
    ap.add_argument("--configs", default="before,after", help=f"any of {', '.join(CONFIGS)}")
    ap.add_argument("--repeat", action="store_true", help="send the questions verbatim (the query cache answers)")
    ap.add_argument("--profile", action="store_true", help="sample the server of the last row with py-spy")
    args = ap.parse_args()
    configs = args.configs.split(",")
    if not set(configs) <= set(CONFIGS):
        ap.error(f"--configs: any of {', '.join(CONFIGS)}")
    quiet()
    info = header("Load: concurrent clients on search and ask, before and after")
    token = secrets.token_urlsafe(24)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="imp-load-") as tmp:
        tmp_path = Path(tmp)
        docs = tmp_path / "docs"
        questions = corpus(docs, args.meetings)
        folders: dict[str, Path] = {}
        for name in configs:  # an index per quantization: it changes the vectors (the rest does not)
            quantize = CONFIGS[name].get("IMP_EMBEDDER__QUANTIZE",
                                         os.environ.get("IMP_EMBEDDER__QUANTIZE", EmbedderSettings().quantize))
            data = tmp_path / f"data-{quantize}"
            folders[name] = data
            if data.exists():
                continue
            env = os.environ | {"IMP_DATA_DIR": str(data)} | CONFIGS[name]
            t0 = time.perf_counter()
            subprocess.run([IMP, "ingest", str(docs)], env=env, check=True, stdout=subprocess.DEVNULL)
            listed = json.loads(subprocess.run([IMP, "docs", "--json"], env=env, check=True,
                                               capture_output=True).stdout)
            n_chunks = sum(d.get("chunks", 0) for d in listed.get("documents", []))
            print(f"corpus ({name}): {len(list(docs.iterdir()))} files, {n_chunks} chunks, indexed in "
                  f"{time.perf_counter() - t0:.0f} s; {len(questions)} questions", flush=True)
        for route in args.routes.split(","):
            for name in configs:
                port = free_port()
                proc = serve(folders[name], port, token, CONFIGS[name])
                try:
                    url = f"http://127.0.0.1:{port}"
                    # Warm: the first request builds the keyword index and loads the models' caches.
                    httpx.post(f"{url}/v1/search", json={"query": "warm up"}, timeout=120,
                               headers={"authorization": f"Bearer {token}"})
                    last = route == args.routes.split(",")[-1] and name == configs[-1]
                    spy = start_profiler(proc.pid, args.seconds * 0.8, tmp_path / "profile.txt") \
                        if args.profile and last else None
                    server0, t0 = process_cpu_s(proc.pid), time.monotonic()
                    with Contention() as c:
                        r = asyncio.run(hammer(url, token, route, questions, args.clients, args.seconds, args.repeat))
                    server_s = process_cpu_s(proc.pid) - server0
                    wall = time.monotonic() - t0
                    if spy is not None and spy.wait(timeout=120) == 0:
                        r["profile"] = profile_summary(tmp_path / "profile.txt")
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                r["server_cpu_s"] = round(server_s, 1)
                r["other_cores"] = round(max(0.0, (c.cores or 0.0) - server_s / wall), 2) if c.cores is not None else None
                results[f"{route}/{name}"] = r
                print(f"{route:6s} {name:13s}: {r}", flush=True)
    print()
    table(f"{args.clients} clients x {args.seconds:.0f} s per row; other procs = cores used by processes other "
          "than this client and the server",
          ["route", "config", "served", "shed (503)", "errors", "served/s", "p50 ms", "p95 ms", "p99 ms",
           "max ms", "server cpu s", "client cpu s", "other procs (cores)"],
          [[k.split("/")[0], k.split("/")[1], r["served"], r["shed"], r["errors"], r["served_per_s"], r["p50_ms"],
            r["p95_ms"], r["p99_ms"], r["max_ms"], r["server_cpu_s"], r["client_cpu_s"], r["other_cores"]]
           for k, r in results.items()])
    for key, r in results.items():
        if r.get("profile"):
            table(f"profile of the server during {key} (py-spy, 100 samples/s, all threads; share of samples with "
                  "the function on the stack; idle threads not sampled)", ["function (module)", "% of samples"],
                  r["profile"])
    write_result("load", info | {"clients": args.clients, "seconds": args.seconds, "meetings": args.meetings,
                                 "repeat": args.repeat, "chunks": n_chunks, "results": results})


if __name__ == "__main__":
    main()
