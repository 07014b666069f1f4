"""The Slack front door, timed as Slack and its users see it: acks, answers and /minutes.

What runs: a real `imp serve` subprocess (FastAPI + the Slack front door, uvicorn,
embedded defaults: MiniLM embeddings, extractive answers, Whisper tiny.en) on a fresh
data folder, talking to the fake Slack Web API of the tests (``tests.fakes.slack_server``,
real HTTP on 127.0.0.1, in this process). Events and commands are signed with the signing
secret and POSTed over HTTP, as Slack sends them. The sample documents (not the recording)
are ingested into #general's scope (C0GENERAL) with `imp ingest` before the server starts.

(a) Ack latency: ``--rounds`` rounds of ``--concurrency`` app_mention events sent at the
    same moment (a barrier releases one thread per request), then as many rounds of /ask
    commands. The figure is the HTTP response time of each POST, i.e. the ack Slack waits
    for (it gives up after 3 s; goal p95 < 300 ms). Each round waits until every answer is
    posted before the next, so answers of one round load the machine while its later acks
    are still being sent, but rounds do not pile up.
(b) Mention to answer: ``--answers`` mentions, one at a time after a warm-up, each timed
    from the POST to the answer's chat.postMessage arriving at the fake Slack.
(c) /minutes: the sample stand-up (49 s) looped with ffmpeg (stream copy) to
    ``--minutes-length`` minutes, shared in #general, then `/minutes last` is timed to the
    minutes blocks (chat.update) and to the uploaded Markdown (files.completeUploadExternal).
    "cold": the recording was never indexed (download, transcription, minutes). "dropped":
    it was dropped in the channel first (indexed, timed too) and /minutes reuses its transcript.

"other procs (cores)": CPU that processes other than this one and the server's process tree
used during a section, per second of wall time (0.0 = clean, 1.0 = a whole core taken).

Run:  .venv/bin/python bench/slack.py [--rounds 5] [--concurrency 20] [--answers 10]
                                      [--minutes-length 30] [--minutes-path cold|dropped|both|none]
Results go to bench/results/slack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, _busy_seconds, header, quiet, summarize_ms, table, write_result  # noqa: E402

from tests.fakes import slack_payloads as sp  # noqa: E402
from tests.fakes.net import free_port, wait_until_up  # noqa: E402
from tests.fakes.slack_server import Call, FakeSlack  # noqa: E402

SAMPLES = ROOT / "samples"
STANDUP = SAMPLES / "rotterdam-pilot-standup.m4a"
CHANNEL = "C0GENERAL"
QUESTIONS = [
    "How much is the hotel allowance per night in Europe?",
    "What are the core working hours?",
    "How many weeks of parental leave do parents get?",
    "When is the rover firmware freeze?",
    "Who owns the obstacle-detection regression fix?",
    "How long is the battery runtime of the new cells?",
    "What is the list price of the warehouse rover?",
    "How long does charging take with the fast charger?",
    "Within how many days must expense reports be submitted?",
    "What laptop does a new engineer receive?",
]
USERS = [("U0ALICE", "alice", "Alice Jones"), ("U0BOB", "bob", "Bob Smith"), ("U0PRIYA", "priya", "Priya Raman"),
         ("U0DANA", "dana", "Dana Whitfield"), ("U0MARCO", "marco", "Marco Rossi"),
         ("U0JONAS", "jonas", "Jonas Berg")]  # the stand-up gives Jonas an action item


class OtherLoad:
    """Cores that processes other than ours (this one, the server and its children) kept busy."""

    def __init__(self, server: psutil.Process):
        self._server = server

    def _ours(self) -> float:
        procs = [psutil.Process(), self._server]
        try:
            procs += self._server.children(recursive=True)
        except psutil.Error:
            pass
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:  # a worker that just ended: its time moves to its parent's children
                pass
        return total

    def __enter__(self) -> OtherLoad:
        self._t0, self._busy0, self._ours0 = time.perf_counter(), _busy_seconds(), self._ours()
        self.cores: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy1 = time.perf_counter() - self._t0, _busy_seconds()
        if self._busy0 is not None and busy1 is not None and wall > 0:
            other = (busy1 - self._busy0) - (self._ours() - self._ours0)
            self.cores = round(max(0.0, other) / wall, 2)


class Rig:
    """The fake Slack, the `imp serve` subprocess, and how to talk to it."""

    def __init__(self, data: Path, poll_s: float, imp: list[str]):
        self.imp = imp
        self.slack = FakeSlack().start()
        for uid, name, real in USERS:
            self.slack.add_user(uid, name, real_name=real)
        self.slack.add_channel(CHANNEL, "general", members=[u[0] for u in USERS] + [self.slack.bot_user_id])
        self.data = data
        self.env = {**os.environ, "IMP_DATA_DIR": str(data), "IMP_SLACK__BOT_TOKEN": self.slack.token,
                    "IMP_SLACK__SIGNING_SECRET": sp.SECRET, "IMP_SLACK__API_URL": self.slack.api_url,
                    "IMP_SLACK__POLL_S": str(poll_s), "IMP_LOG_LEVEL": "WARNING"}
        # `imp serve` refuses Slack beside an open REST API; the benchmark uses only Slack's routes and open ones.
        self.env["IMP_API__TOKEN"] = secrets.token_urlsafe(24)
        self.http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=100))
        self.proc: subprocess.Popen | None = None

    def ingest(self) -> float:
        docs = sorted(p for p in SAMPLES.iterdir() if p.is_file() and p != STANDUP)
        t0 = time.perf_counter()
        subprocess.run([*self.imp, "ingest", *map(str, docs), "--scope", CHANNEL, "--json"],
                       env=self.env, check=True, capture_output=True)
        return time.perf_counter() - t0

    def serve(self) -> float:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(self.data / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([*self.imp, "serve", "--host", "127.0.0.1", "--port",
                                      str(port)], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until_up(f"{self.base}/healthz", self.proc)
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.close()
        self.http.close()
        self.slack.stop()

    # -- requests, timed as the ack -------------------------------------------------------
    def mention(self, question: str, user: str = "U0ALICE") -> tuple[str, float, int]:
        ts = sp.new_ts()
        text = f"<@{self.slack.bot_user_id}> {question}"
        self.slack.add_message(CHANNEL, text, user=user, ts=ts)  # Slack stores it before the event
        body, headers = sp.event_request(sp.app_mention(text, user=user, channel=CHANNEL, ts=ts))
        return ts, *self._post("/slack/events", body, headers)

    def command(self, command: str, text: str, response_name: str, user: str = "U0ALICE") -> tuple[float, int]:
        body, headers = sp.command_request(command, text, user=user, channel=CHANNEL,
                                           response_url=self.slack.response_url(response_name))
        return self._post("/slack/commands", body, headers)

    def event(self, inner: dict) -> tuple[float, int]:
        return self._post("/slack/events", *sp.event_request(inner))

    def _post(self, path: str, body: bytes, headers: dict) -> tuple[float, int]:
        t0 = time.perf_counter()
        status = self.http.post(self.base + path, content=body, headers=headers).status_code
        return time.perf_counter() - t0, status

    def wait_calls(self, match: Callable[[Call], bool], count: int, timeout: float) -> list[Call]:
        deadline = time.monotonic() + timeout
        while True:
            with self.slack._lock:
                found = [c for c in self.slack.calls if match(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(found)} of {count} expected calls in {timeout:.0f} s; "
                                   f"server log: {self.data / 'serve.log'}")
            time.sleep(0.01)

    def answer_to(self, ts: str, timeout: float = 300.0) -> Call:
        return self.wait_calls(lambda c: c.method == "chat.postMessage" and c.args.get("thread_ts") == ts,
                               1, timeout)[0]


def burst(n: int, send: Callable[[int], tuple]) -> list[tuple]:
    """``send(i)`` for i < n from n threads released together; results in order."""
    barrier, results = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = send(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def ack_latency(rig: Rig, rounds: int, n: int, server: psutil.Process) -> dict:
    out: dict = {}
    mention_acks, mention_bad, mention_drain, mention_load = [], 0, [], []
    for r in range(rounds):
        with OtherLoad(server) as load:
            t_send = time.monotonic()
            res = burst(n, lambda i, r=r: rig.mention(QUESTIONS[(r * n + i) % len(QUESTIONS)],
                                                      USERS[i % len(USERS)][0]))
            tss = {ts for ts, _, _ in res}
            calls = rig.wait_calls(lambda c, tss=tss: c.method == "chat.postMessage"
                                   and c.args.get("thread_ts") in tss, n, 600)
        mention_acks += [s for _, s, _ in res]
        mention_bad += sum(status != 200 for _, _, status in res)
        mention_drain.append(max(c.at for c in calls) - t_send)
        mention_load.append(load.cores)
    ask_acks, ask_bad, ask_drain, ask_load = [], 0, [], []
    for r in range(rounds):
        with OtherLoad(server) as load:
            t_send = time.monotonic()
            res = burst(n, lambda i, r=r: rig.command("/ask", QUESTIONS[(r * n + i) % len(QUESTIONS)],
                                                      f"ask{r}x{i}", USERS[i % len(USERS)][0]))
            calls = rig.wait_calls(lambda c, r=r: c.method.startswith(f"response_url:ask{r}x"), n, 600)
        ask_acks += [s for s, _ in res]
        ask_bad += sum(status != 200 for _, status in res)
        ask_drain.append(max(c.at for c in calls) - t_send)
        ask_load.append(load.cores)
    for kind, acks, bad, drain, load_ in (("mention", mention_acks, mention_bad, mention_drain, mention_load),
                                          ("ask", ask_acks, ask_bad, ask_drain, ask_load)):
        out[kind] = summarize_ms(acks) | {
            "non_200": bad, "all_answered_s": drain, "other_cores": load_,
            "p95_ms_per_round": [summarize_ms(acks[i:i + n])["p95_ms"] for i in range(0, len(acks), n)],
            "acks_ms": [round(x * 1000, 1) for x in acks]}
    return out


def mention_to_answer(rig: Rig, count: int, server: psutil.Process) -> dict:
    times, acks, cited = [], [], 0
    with OtherLoad(server) as load:
        for i in range(count):
            t0 = time.monotonic()
            ts, ack, _ = rig.mention(QUESTIONS[i % len(QUESTIONS)])
            call = rig.answer_to(ts)
            times.append(call.at - t0)
            acks.append(ack)
            cited += "[1]" in str(call.args.get("blocks"))
    return {"answer": summarize_ms(times), "ack": summarize_ms(acks), "answers_with_sources": cited,
            "median_s": round(statistics.median(times), 3), "other_cores": load.cores}


def build_recording(out: Path, minutes: float) -> float:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(STANDUP),
                    "-t", str(minutes * 60), "-c", "copy", str(out)], check=True)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(out)], check=True, capture_output=True, text=True)
    return float(probe.stdout.strip())


def minutes_run(rig: Rig, path: Path, file_id: str, dropped: bool, server: psutil.Process) -> dict:
    """Share the recording (and drop it for indexing if ``dropped``), then time `/minutes last`."""
    slack, result = rig.slack, {"path": "dropped" if dropped else "cold"}
    me = slack.bot_user_id
    f = slack.add_file(file_id, path.name, path.read_bytes(), mimetype="audio/mp4", filetype="m4a",
                       channels=[CHANNEL], user="U0ALICE")
    ts = slack.add_message(CHANNEL, "", user="U0ALICE", files=[f], subtype="file_share")
    if dropped:
        with OtherLoad(server) as load:
            t0 = time.monotonic()
            rig.event(sp.file_share_message(f, user="U0ALICE", channel=CHANNEL, ts=ts))
            done = rig.wait_calls(lambda c: c.at >= t0 and c.method == "chat.update"
                                  and not str(c.args.get("text", "")).startswith(":hourglass"), 1, 7200)[0]
        result |= {"indexed_s": round(done.at - t0, 1), "indexed_text": done.args.get("text"),
                   "indexed_other_cores": load.cores}
    before = {m["ts"] for m in slack.messages(CHANNEL)}
    with OtherLoad(server) as load:
        t0 = time.monotonic()
        ack, code = rig.command("/minutes", "last", f"minutes-{file_id}")
        status = rig.wait_calls(lambda c: c.at >= t0 and c.method == "chat.postMessage"
                                and "Writing minutes of" in str(c.args.get("text")), 1, 120)[0]
        status_ts = next(m["ts"] for m in slack.messages(CHANNEL)  # IMP's new top-level message
                         if m["ts"] not in before and m.get("user") == me and m.get("thread_ts") in (None, m["ts"]))
        blocks = rig.wait_calls(lambda c: c.method == "chat.update" and c.args.get("ts") == status_ts
                                and c.args.get("blocks"), 1, 7200)[0]
        upload = rig.wait_calls(lambda c: c.method == "files.completeUploadExternal"
                                and str(c.args.get("thread_ts")) == status_ts, 1, 600)[0]
    progress = [c for c in slack.calls_to("chat.update") if c.args.get("ts") == status_ts and not c.args.get("blocks")]
    result |= {"ack_ms": round(ack * 1000, 1), "ack_status": code, "status_posted_s": round(status.at - t0, 2),
               "progress_updates": len(progress), "last_progress": progress[-1].args.get("text") if progress else None,
               "minutes_blocks_s": round(blocks.at - t0, 1), "markdown_uploaded_s": round(upload.at - t0, 1),
               "other_cores": load.cores} | action_items(blocks.args.get("blocks"))
    return result


def action_items(blocks: list | str | None) -> dict:
    """The posted action items, and which of them name their owner as a Slack mention."""
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks or []
    texts = [b.get("text", {}).get("text", "") for b in blocks if b.get("type") == "section"]
    lines = [line for t in texts if t.startswith("*Action items*") for line in t.splitlines()[1:]]
    mapped = sorted({u for u, *_ in USERS for line in lines if f"<@{u}>" in line})
    return {"action_items": len([x for x in lines if x.startswith("•")]), "owners_mentioned": mapped,
            "action_lines": lines[:6]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of concurrent events and of /ask (default 5; 0 skips (a))")
    ap.add_argument("--concurrency", type=int, default=20, help="requests sent at once per round (default 20)")
    ap.add_argument("--answers", type=int, default=10,
                    help="sequential mentions timed to the answer (default 10; 0 skips (b))")
    ap.add_argument("--minutes-length", type=float, default=30.0, help="minutes of audio for /minutes (default 30)")
    ap.add_argument("--minutes-path", choices=["cold", "dropped", "both", "none"], default="both")
    ap.add_argument("--poll-s", type=float, default=2.0,
                    help="IMP_SLACK__POLL_S of the server (default 2, as shipped)")
    ap.add_argument("--imp", default=str(ROOT / ".venv/bin/imp"),
                    help="the command that runs IMP's CLI, split on spaces (to time a variant of the server)")
    ap.add_argument("--keep", action="store_true", help="keep the data folder (and the server log)")
    a = ap.parse_args()
    quiet()
    info = header("Slack front door: acks, answers, /minutes (bench/slack.py)")
    data = Path(tempfile.mkdtemp(prefix="imp-bench-slack-"))
    rig = Rig(data, a.poll_s, a.imp.split())
    payload: dict = info | {"settings": vars(a) | {"data": str(data)}}
    try:
        payload["ingest_s"] = round(rig.ingest(), 1)
        payload["server_start_s"] = round(rig.serve(), 1)
        assert rig.proc is not None
        server = psutil.Process(rig.proc.pid)
        t0 = time.monotonic()  # warm-up (the server loads its models before it answers /healthz)
        ts, _, _ = rig.mention(QUESTIONS[0])
        payload["first_answer_s"] = round(rig.answer_to(ts).at - t0, 1)
        rig.command("/ask", QUESTIONS[1], "warmup")
        rig.wait_calls(lambda c: c.method == "response_url:warmup", 1, 300)
        print(f"ingest {payload['ingest_s']} s, server up in {payload['server_start_s']} s, "
              f"first answer {payload['first_answer_s']} s\n")

        acks = payload["ack"] = ack_latency(rig, a.rounds, a.concurrency, server) if a.rounds > 0 else {}
        if acks:
            table(f"(a) ack latency, {a.rounds} rounds of {a.concurrency} concurrent requests (goal p95 < 300 ms)",
                  ["kind", "n", "p50 ms", "p95 ms", "max ms", "non-200", "goal", "p95 per round ms",
                   "all answered per round s", "other procs (cores)"],
                  [[k, v["n"], v["p50_ms"], v["p95_ms"], v["max_ms"], v["non_200"],
                    "met" if v["p95_ms"] < 300 else "NOT met", " ".join(f"{x:.0f}" for x in v["p95_ms_per_round"]),
                    " ".join(f"{x:.1f}" for x in v["all_answered_s"]),
                    " ".join(str(x) for x in v["other_cores"])] for k, v in acks.items()])

        ans = payload["answers"] = mention_to_answer(rig, a.answers, server) if a.answers > 0 else None
        if ans:
            table("(b) mention to answer in the thread, sequential, warm",
                  ["n", "p50 s", "p95 s", "max s", "ack p50 ms", "answers with sources", "other procs (cores)"],
                  [[ans["answer"]["n"], ans["answer"]["p50_ms"] / 1000, ans["answer"]["p95_ms"] / 1000,
                    ans["answer"]["max_ms"] / 1000, ans["ack"]["p50_ms"], ans["answers_with_sources"],
                    ans["other_cores"]]])

        if a.minutes_path != "none":
            recording = data / f"standup-{a.minutes_length:g}min.m4a"
            duration = payload["recording_s"] = round(build_recording(recording, a.minutes_length), 1)
            runs = payload["minutes"] = []
            if a.minutes_path in ("cold", "both"):
                runs.append(minutes_run(rig, recording, "F0REC0COLD", False, server))
            if a.minutes_path in ("dropped", "both"):
                runs.append(minutes_run(rig, recording, "F0REC0DROP", True, server))
            size = recording.stat().st_size / 2**20
            table(f"(c) /minutes on a {duration / 60:.1f}-minute recording ({size:.1f} MiB)",
                  ["path", "indexed on drop s", "ack ms", "status msg s", "minutes blocks s", "markdown s",
                   "x real time", "progress updates", "action items", "owners as mentions",
                   "other procs (cores)"],
                  [[r["path"], r.get("indexed_s", "-"), r["ack_ms"], r["status_posted_s"], r["minutes_blocks_s"],
                    r["markdown_uploaded_s"],
                    round(duration / r["markdown_uploaded_s"], 1) if r["path"] == "cold" else "-",
                    r["progress_updates"], r["action_items"], ",".join(r["owners_mentioned"]) or "-",
                    r["other_cores"]] for r in runs])
            for r in runs:
                print(f"  {r['path']}: last progress “{r['last_progress']}”; {r.get('indexed_text', '')}")
                for line in r["action_lines"][:3]:
                    print(f"    {line}")
            print()
    finally:
        rig.stop()
        if not a.keep:
            shutil.rmtree(data, ignore_errors=True)
    write_result("slack", payload)


if __name__ == "__main__":
    main()
