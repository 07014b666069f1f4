"""Dashboard load time: /dashboard over HTTP and in headless chromium, with a realistic amount of data.

What runs: a fresh data folder whose database gets, as rows (fixed seed), ``--answers`` answers
over the last ``--span-days`` days (latencies, abstentions, three embedder and two adapter
versions, eight scopes), ``--feedback`` ratings of them, ``--documents`` documents and
recordings of several kinds (some failed), ``--checks`` drift checks of five signals and a few
alerts. A real `imp serve` subprocess (uvicorn) serves it on 127.0.0.1 with two tokens: one for
all scopes and one for a single scope.

Figures, each over ``--repeats`` requests after one warm-up request:
  http        time to first byte (response headers) and full body, with a bearer token,
              for ?days=1, 7, 30 and 365, and for the one-scope token at 30 days
  chromium    Debian's chromium (headless, via Selenium and /usr/bin/chromedriver, logged in
              through the form): Navigation Timing's responseStart (TTFB) and loadEventEnd (full
              load, all charts drawn) of /dashboard?days=30
and a full-page screenshot, saved small (a 64-colour PNG) to docs/img/dashboard.png.

Run:  .venv/bin/python bench/dashboard_load.py [--repeats 20] [--answers 10000] [--screenshot PATH]
Results go to bench/results/dashboard_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, header, quiet, summarize_ms, table, write_result  # noqa: E402

from core.store.database import Database  # noqa: E402
from core.store.schema import AlertRow, AnswerRow, DocumentRow, FeedbackRow, MonitorCheckRow  # noqa: E402
from tests.fakes.net import free_port, wait_until_up  # noqa: E402

IMP = str(ROOT / ".venv" / "bin" / "imp")
ADMIN, TEAM = "bench-admin-token-0123456789", "bench-team-token-0123456789"
SCOPES = [f"C{n:04d}" for n in range(8)]
KINDS = [("pdf", 0.35), ("markdown", 0.2), ("docx", 0.15), ("pptx", 0.1), ("audio", 0.12), ("video", 0.08)]
SIGNALS = [("query_embedding", 0.008), ("best_similarity", 0.05), ("abstain_rate", 0.10), ("down_rate", 0.10),
           ("latency_p95", 500.0), ("ingest_failure_rate", 0.005)]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def fill(url: str, *, answers: int, feedback: int, documents: int, checks: int, span_days: int, seed: int) -> None:
    """Insert the rows; times spread over the last ``span_days`` days, busier in working hours."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(tzinfo=None)
    database = Database(url)

    def when() -> datetime:
        t = now - timedelta(seconds=rng.uniform(60, span_days * 86400))
        return min(t.replace(hour=rng.choice([8, 9, 10, 11, 13, 14, 15, 16, 17, t.hour])), now - timedelta(minutes=1))

    rows, ids = [], []
    for i in range(answers):
        created = when()
        age = (now - created).days
        embedder = "base" if age > 20 else "3" if age > 7 else "4"
        abstained = rng.random() < (0.12 if embedder != "4" else 0.2)
        retrieve, generate = rng.lognormvariate(3.3, 0.4), rng.lognormvariate(5.3, 0.5)
        ids.append((f"a{i:06d}", created))
        rows.append(AnswerRow(
            answer_id=f"a{i:06d}", question=f"question {i} about the quarterly report", search_query="q",
            answer="An answer of a few sentences [1]." * 4, abstained=abstained, citations=[],
            scopes=[rng.choice(SCOPES)], model="extractive:all-MiniLM-L6-v2@a15937a3da4c", model_version=None,
            timings_ms={"retrieve": round(retrieve, 1), "generate": round(generate, 1),
                        "total": round(retrieve + generate, 1)},
            notes=[], created_at=created, embedder=embedder, adapter=None if age > 10 else "2",
            best_similarity=round(rng.uniform(0.3, 0.8), 3)))
    for i, (answer_id, created) in enumerate(rng.sample(ids, min(feedback, len(ids)))):
        rows.append(FeedbackRow(answer_id=answer_id, user=f"U{i % 300:04d}", channel="C0", source="slack",
                                rating=-1 if rng.random() < 0.18 else 1,
                                created_at=min(created + timedelta(minutes=rng.uniform(1, 90)), now)))
    for i in range(documents):
        kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        failed = rng.random() < 0.04
        rows.append(DocumentRow(
            doc_id=f"d{i:06d}", source=f"upload:file-{i}.{kind}", scope=rng.choice(SCOPES),
            status="failed" if failed else "indexed", kind=kind, chunks=0 if failed else rng.randint(3, 400),
            duration=rng.uniform(300, 3600) if kind in ("audio", "video") and not failed else None,
            error_code=rng.choice(["corrupt_document", "too_large", "unsupported_format"]) if failed else None,
            size_bytes=rng.randint(10_000, 5_000_000), updated_at=when()))
    step = span_days * 86400 / max(checks, 1)
    for i in range(checks):
        drifting = i > checks * 0.8
        signals = [{"name": name, "threshold": limit, "p_value": round(rng.uniform(0, 1), 3),
                    "score": round(limit * rng.uniform(0.2, 0.9) * (1.8 if drifting and name == "query_embedding" else 1),
                                   5)} for name, limit in SIGNALS]
        for s in signals:
            s["drifted"] = s["score"] > s["threshold"]
        rows.append(MonitorCheckRow(checked_at=now - timedelta(seconds=(checks - i) * step), window=200,
                                    signals=signals, seconds=round(rng.uniform(0.5, 3), 2)))
    rows.append(AlertRow(signal="query_embedding", opened_at=now - timedelta(days=span_days * 0.2), resolved_at=None,
                         score=0.012, threshold=0.008, message="query_embedding drifted", delivered=["webhook"]))
    with database.session() as s, s.begin():
        s.add_all(rows)
    database.close()


def serve(data: Path, port: int) -> subprocess.Popen:
    env = os.environ | {"IMP_DATA_DIR": str(data), "IMP_API__TOKENS": json.dumps({ADMIN: ["*"], TEAM: [SCOPES[0]]}),
                        # this checkout's modules, also those newer than the editable install's list of them
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([IMP, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, timeout=600)
    return proc


def http_times(base: str, token: str, days: int, repeats: int) -> dict:
    ttfb, full, size = [], [], 0
    with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=120) as http:
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            with http.stream("GET", f"{base}/dashboard", params={"days": days}) as r:
                first = time.perf_counter()
                body = r.read()
                done = time.perf_counter()
            assert r.status_code == 200 and b"<svg" in body, r.status_code
            if i:  # the first request warms up
                ttfb.append(first - t0)
                full.append(done - t0)
                size = len(body)
    return {"ttfb": summarize_ms(ttfb), "full": summarize_ms(full), "bytes": size}


def chromium_times(base: str, repeats: int, screenshot: Path | None) -> dict:
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="imp-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--window-size=1300,900",
                "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(f"{base}/dashboard/login")
        WebDriverWait(driver, 60).until(ready.presence_of_element_located((By.ID, "token"))).send_keys(ADMIN)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()
        WebDriverWait(driver, 60).until(ready.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")))
        ttfb, load = [], []
        for i in range(repeats + 1):
            driver.get(f"{base}/dashboard?days=30")
            nav = driver.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                        "return [n.responseStart - n.startTime, n.loadEventEnd - n.startTime];")
            if i:
                ttfb.append(nav[0] / 1000)
                load.append(nav[1] / 1000)
        drawn = driver.execute_script(
            "return [document.querySelectorAll('svg.chart').length, document.querySelectorAll('rect.bar').length,"
            " document.querySelectorAll('path.series').length];")
        if screenshot is not None:
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1300, min(height + 40, 8000))
            raw = Path(profile) / "shot.png"
            driver.save_screenshot(str(raw))
            _small_png(raw, screenshot)
        return {"ttfb": summarize_ms(ttfb), "load": summarize_ms(load),
                "drawn": {"charts": drawn[0], "bars": drawn[1], "lines": drawn[2]}}
    finally:
        driver.quit()


def _small_png(raw: Path, out: Path) -> None:
    """The screenshot in 64 colours: charts are flat colours, so it stays sharp at a fraction of the size."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(raw) as im:
        im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"screenshot written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
          f"({out.stat().st_size // 1024} KiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--answers", type=int, default=10_000)
    ap.add_argument("--feedback", type=int, default=2_000)
    ap.add_argument("--documents", type=int, default=500)
    ap.add_argument("--checks", type=int, default=200)
    ap.add_argument("--span-days", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--browser-repeats", type=int, default=10)
    ap.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "img" / "dashboard.png",
                    help="where the full-page screenshot goes ('' for none)")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    quiet()
    info = header("Dashboard load: /dashboard over HTTP and in headless chromium")
    data = Path(tempfile.mkdtemp(prefix="imp-dashboard-bench-"))
    t0 = time.perf_counter()
    fill(f"sqlite:///{data / 'imp.sqlite3'}", answers=args.answers, feedback=args.feedback,
         documents=args.documents, checks=args.checks, span_days=args.span_days, seed=args.seed)
    print(f"rows inserted in {time.perf_counter() - t0:.1f} s: {args.answers} answers, {args.feedback} ratings, "
          f"{args.documents} documents, {args.checks} drift checks over {args.span_days} days\n")
    port = free_port()
    proc = serve(data, port)
    base = f"http://127.0.0.1:{port}"
    try:
        http = {f"all scopes, {d} d": http_times(base, ADMIN, d, args.repeats) for d in (1, 7, 30, 365)}
        http["one scope, 30 d"] = http_times(base, TEAM, 30, args.repeats)
        table("HTTP (httpx, bearer token), ms", ["request", "TTFB p50", "TTFB p95", "full p50", "full p95", "KiB"],
              [(k, v["ttfb"]["p50_ms"], v["ttfb"]["p95_ms"], v["full"]["p50_ms"], v["full"]["p95_ms"],
                round(v["bytes"] / 1024, 1)) for k, v in http.items()])
        browser = None
        if CHROMIUM.exists() and CHROMEDRIVER.exists():
            browser = chromium_times(base, args.browser_repeats, args.screenshot if str(args.screenshot) else None)
            table("chromium (headless), /dashboard?days=30, ms", ["measure", "p50", "p95", "max"],
                  [(k, browser[k]["p50_ms"], browser[k]["p95_ms"], browser[k]["max_ms"]) for k in ("ttfb", "load")])
            print(f"drawn: {browser['drawn']}\n")
        else:
            print("chromium or chromedriver missing: apt-get install chromium chromium-driver; browser figures skipped")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    write_result("dashboard_load", info | {
        "rows": {"answers": args.answers, "feedback": args.feedback, "documents": args.documents,
                 "drift_checks": args.checks, "span_days": args.span_days, "seed": args.seed},
        "repeats": args.repeats, "browser_repeats": args.browser_repeats, "http": http, "chromium": browser})


if __name__ == "__main__":
    main()
