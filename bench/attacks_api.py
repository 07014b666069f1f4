"""The REST edge under attack, measured on a real `imp serve` process on 127.0.0.1.

Each attack is what an attacker review did to the API (issue 11, items 3, 6 and 9):

(1) a 400 MB JSON body to /v1/search without a token, streamed: seconds to the 401 and the
    server's peak RSS above its idle RSS while the body was sent;
(2) a 400 MB multipart upload to /v1/documents without a token, streamed: how much the
    server's temp folder (TMPDIR, spooled multipart parts) grew at its peak, and what stayed;
(3) four 26 MiB text files uploaded with a valid token while IMP_INGEST__MAX_FILE_MB=25: every
    one is refused, and what the refused uploads left in the data folder;
(4) minutes of an uploaded transcript (/v1/minutes): bytes of the upload left once the job ended;
(5) a token of scope "team-a" reading what was made in scope "team-b" by id (an answer, an
    ingest job, a recording's transcript), listing documents, searching, and deleting.

The server is started from a code folder (``--code``, default this checkout) with the same
Python, so the figures before a fix come from `git archive HEAD | tar -x -C /tmp/imp-head`
and ``--code /tmp/imp-head``. A server that does not know IMP_API__TOKENS (before item 9)
has one all-scopes token, so (5) then reads with that token.

Run:  .venv/bin/python bench/attacks_api.py [--code DIR] [--name attacks_api]
Results go to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, header, table, write_result  # noqa: E402

from tests.fakes.net import free_port, wait_until_up  # noqa: E402

ADMIN = "bench-admin-token-0123456789"
TEAM_A = "bench-team-a-token-0123456789"
BIG = 400 * 10**6
CHUNK = 1 << 20


class Sampler:
    """Samples the server's RSS and the bytes it holds in its temp folder, every 20 ms."""

    def __init__(self, pid: int, tmpdir: Path):
        self.pid, self.tmpdir = pid, str(tmpdir)
        self.peak_rss = self.peak_tmp = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def tmp_bytes(self) -> int:
        """Files under TMPDIR, named or deleted but still open (Python's TemporaryFile is unnamed)."""
        seen, total = set(), 0
        fds = Path(f"/proc/{self.pid}/fd")
        for fd in list(fds.iterdir()) if fds.exists() else []:
            try:
                if os.readlink(fd).startswith(self.tmpdir):
                    st = os.stat(fd)
                    seen.add(st.st_ino)
                    total += st.st_size
            except OSError:
                continue
        for root, _, files in os.walk(self.tmpdir):
            for f in files:
                try:
                    st = os.stat(os.path.join(root, f))
                except OSError:
                    continue
                if st.st_ino not in seen:
                    total += st.st_size
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.rss())
                self.peak_tmp = max(self.peak_tmp, self.tmp_bytes())
            except OSError:
                return
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def stream(port: int, head: bytes, body_parts, timeout: float = 300.0) -> dict:
    """Send ``head`` then the body parts while watching for the response; stop sending once it comes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head)
    s.setblocking(False)
    started, sent, got, closed = time.perf_counter(), 0, b"", False
    answered_at = None

    def read() -> None:
        nonlocal got, closed, answered_at
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            closed = True
        got += data
        if answered_at is None and b"\r\n\r\n" in got:
            answered_at = time.perf_counter()

    for part in body_parts:
        view = memoryview(part)
        while view and answered_at is None and not closed:
            readable, writable, _ = select.select([s], [s], [], timeout)
            if readable:
                read()
            if writable and answered_at is None:
                try:
                    n = s.send(view)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sent += n
                view = view[n:]
        if answered_at is not None or closed:
            break
    deadline = time.perf_counter() + timeout
    while answered_at is None and not closed and time.perf_counter() < deadline:
        if select.select([s], [], [], 1)[0]:
            read()
    s.close()
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/") else None
    body = got.split(b"\r\n\r\n", 1)[1][:200].decode(errors="replace") if b"\r\n\r\n" in got else ""
    return {"status": status, "seconds": round((answered_at or time.perf_counter()) - started, 3),
            "body_sent_mb": round(sent / 1e6, 1), "answer": body}


def _filler(total: int):
    block = b"a" * CHUNK
    left = total
    while left > 0:
        yield block[: min(left, CHUNK)]
        left -= CHUNK


def json_attack(port: int) -> dict:
    start, end = b'{"query": "', b'"}'
    head = (f"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(start) + BIG + len(end)}\r\n\r\n").encode()
    return stream(port, head, [start, *_filler(BIG), end])


def multipart_attack(port: int) -> dict:
    start = (b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n"
             b"Content-Type: application/octet-stream\r\n\r\n")
    end = b"\r\n--xyz--\r\n"
    head = (f"POST /v1/documents HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {len(start) + BIG + len(end)}"
            "\r\n\r\n").encode()
    return stream(port, head, [start, *_filler(BIG), end])


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def wait_job(http: httpx.Client, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} did not end")


def scoped_reads(base: str, admin: httpx.Client) -> tuple[dict, bool]:
    """What team-a's token sees of team-b's answer, job and transcript."""
    standup = (ROOT / "samples" / "rotterdam-pilot-standup.m4a").read_bytes()
    r = admin.post("/v1/documents", params={"background": "true"}, data={"scope": "team-b"},
                   files=[("files", ("standup.m4a", standup, "audio/mp4"))])
    job = wait_job(admin, r.json()["jobs"][0]["job_id"])
    doc_id = job["doc_id"]
    answer = admin.post("/v1/ask", json={"question": "What will the facilities team do about the charging "
                                         "stations?", "scopes": ["team-b"]}).json()
    team_a = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TEAM_A}"}, timeout=120)
    scoped = team_a.get("/v1/documents").status_code != 401  # the old server does not know IMP_API__TOKENS
    reader = team_a if scoped else admin
    reads = {
        "GET /v1/answers/{team-b answer}": reader.get(f"/v1/answers/{answer['answer_id']}"),
        "GET /v1/jobs/{team-b job}": reader.get(f"/v1/jobs/{job['job_id']}"),
        "GET /v1/documents/{team-b doc}/transcript": reader.get(f"/v1/documents/{doc_id}/transcript"),
        "GET /v1/documents (team-b listed?)": reader.get("/v1/documents"),
        "POST /v1/search scopes=[team-b]": reader.post("/v1/search", json={"query": "charging stations",
                                                                            "scopes": ["team-b"]}),
        "DELETE /v1/documents/{team-b doc}": reader.delete(f"/v1/documents/{doc_id}"),
    }
    out = {}
    for what, resp in reads.items():
        text = resp.text
        leaked = ("ventilation" in text or "charging" in text.lower() or doc_id in text) and resp.status_code < 300
        out[what] = {"status": resp.status_code, "leaked": leaked}
    return out, scoped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, default=ROOT, help="folder of the IMP code to serve")
    ap.add_argument("--name", default="attacks_api", help="result file name under bench/results/")
    args = ap.parse_args()
    info = header(f"REST edge attacks ({args.code})")
    work = Path(tempfile.mkdtemp(prefix="imp-attacks-"))
    data, spool = work / "data", work / "tmp"
    spool.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMP_") and "proxy" not in k.lower()}
    env |= {"IMP_DATA_DIR": str(data), "IMP_API__TOKEN": ADMIN, "IMP_API__TOKENS": json.dumps({TEAM_A: ["team-a"]}),
            "IMP_INGEST__MAX_FILE_MB": "25", "IMP_LOG_LEVEL": "WARNING", "TMPDIR": str(spool)}
    launcher = f"import sys; sys.argv = ['imp', 'serve', '--port', '{port}']; from cli import cli; cli()"
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", launcher], cwd=args.code, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    results: dict = {}
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, timeout=300)
        sampler = Sampler(proc.pid, spool)
        idle = sampler.rss()
        with sampler:
            r = json_attack(port)
        results["json_400mb_no_token"] = r | {"idle_rss_mb": round(idle / 1e6), "peak_rss_mb":
                                              round(sampler.peak_rss / 1e6), "rss_growth_mb":
                                              round((sampler.peak_rss - idle) / 1e6)}
        time.sleep(1)
        sampler = Sampler(proc.pid, spool)
        with sampler:
            r = multipart_attack(port)
            time.sleep(0.5)
        results["multipart_400mb_no_token"] = r | {"tmp_peak_mb": round(sampler.peak_tmp / 1e6, 1),
                                                   "tmp_left_mb": round(sampler.tmp_bytes() / 1e6, 1)}

        base = f"http://127.0.0.1:{port}"
        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=600)
        files = data / "files"
        before = folder_bytes(files)
        refused, why = [], set()
        for i in range(4):
            body = (f"Line {i} of a long refused text file.\n" * 800_000).encode()[: 26 << 20]
            r = admin.post("/v1/documents", data={"scope": "default"}, files=[("files", (f"big{i}.txt", body))])
            refused.append(r.status_code if r.status_code != 200 else r.json()["documents"][0]["status"])
            why.add(r.json()["documents"][0]["error"] if r.status_code == 200 else r.text[:200])
        results["four_refused_26mb_uploads"] = {"answers": refused, "errors": sorted(why),
                                                "bytes_left": folder_bytes(files) - before}

        vtt = (ROOT / "samples" / "design-review.vtt").read_bytes()
        before = folder_bytes(files)
        r = admin.post("/v1/minutes", data={"scope": "default"}, files={"file": ("review.vtt", vtt)})
        job = wait_job(admin, r.json()["job_id"])
        results["minutes_upload"] = {"job": job["status"], "error": job["error"], "upload_bytes": len(vtt),
                                     "bytes_left": folder_bytes(files) - before}

        reads, scoped = scoped_reads(base, admin)
        results["team_a_reads_team_b"] = {"scoped_token_known": scoped, "reads": reads}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    j, m = results["json_400mb_no_token"], results["multipart_400mb_no_token"]
    table("(1) 400 MB JSON body, no token", ["status", "s to answer", "MB sent", "idle RSS MB", "peak RSS MB"],
          [[j["status"], j["seconds"], j["body_sent_mb"], j["idle_rss_mb"], j["peak_rss_mb"]]])
    table("(2) 400 MB multipart upload, no token", ["status", "s to answer", "MB sent", "TMPDIR peak MB",
                                                    "TMPDIR left MB"],
          [[m["status"], m["seconds"], m["body_sent_mb"], m["tmp_peak_mb"], m["tmp_left_mb"]]])
    f = results["four_refused_26mb_uploads"]
    table("(3) four 26 MiB uploads over IMP_INGEST__MAX_FILE_MB=25", ["answers", "bytes left in data/files"],
          [[f["answers"], f["bytes_left"]]])
    print("  why:", "; ".join(f["errors"]), "\n")
    mi = results["minutes_upload"]
    table("(4) minutes of an upload", ["job", "upload bytes", "bytes left"],
          [[mi["job"], mi["upload_bytes"], mi["bytes_left"]]])
    t = results["team_a_reads_team_b"]
    who = "team-a token" if t["scoped_token_known"] else "the one all-scopes token (no per-token scopes)"
    table(f"(5) reading team-b's objects with {who}", ["request", "status", "team-b content shown"],
          [[k, v["status"], v["leaked"]] for k, v in t["reads"].items()])
    write_result(args.name, info | {"code": str(args.code), "results": results})


if __name__ == "__main__":
    main()
