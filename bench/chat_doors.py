"""IMP's two chat front doors side by side on one engine: Slack and Teams, mention to answer and /minutes.

What runs: one real `imp serve` subprocess (FastAPI, uvicorn, the embedded defaults: MiniLM embeddings,
extractive answers, Whisper tiny.en) with BOTH front doors configured, on a fresh data folder. The fakes
live in this process, real HTTP on 127.0.0.1: the fake Slack Web API of the tests
(``tests.fakes.slack_server``), and for Teams the fake Bot Framework identity (signing keys), the fake Bot
Connector with its token endpoint, and the fake SharePoint serving dropped files (``tests.fakes``). Slack
events are signed with the signing secret, Teams activities carry an RS256 token of the fake identity,
each POSTed as the platform sends it (the requests and their helpers are those of bench/slack.py and of
tests/integration/teams/rig.py). The sample documents (not the recording) are ingested with
`imp ingest --scope` into #general's scope (C0GENERAL) and into the Teams channel's (its channel id), so
both doors answer from the same content; both also read the company scope "default", which is empty.

(a) Mention to answer: ``--answers`` questions after one warm-up question per door, each asked at both
    doors in turn (Slack first for even questions, Teams first for odd ones, so neither always goes
    first), timed from the POST to the answer arriving at the fake: Slack's chat.postMessage in the
    thread; Teams' reply activity carrying the answer card. Ratio = Teams / Slack for the same question.
    Each answer's own engine.ask time (its logged timings) splits the rest into the adapter's part before
    its first platform call (Slack's hourglass reaction, Teams' typing) and after it.
(b) Minutes on a dropped recording: the sample stand-up (49 s) looped with ffmpeg (stream copy) to
    ``--minutes-length`` minutes is dropped at each door (Slack: a file_share message; Teams: a message
    with a file.download.info attachment on the fake SharePoint) and indexed in that channel's scope (timed
    to the "indexed" update of the status message), then the minutes command is timed to the minutes:
    Slack `/minutes last` to the chat.update carrying the minutes blocks; Teams "@IMP minutes" to the
    update of its progress card into the minutes card (the connector marks it edited; "Minutes:" in it).
    Each door indexes (so transcribes) its own drop into its own scope; each door's minutes then reuse
    the transcript its drop stored. The doors run one after the other (``--minutes-first``). The engine's
    transcription and drafting times come from the server's /metrics (imp_stage_duration_seconds).

"other procs (cores)": CPU that processes other than this one and the server's process tree used during
a section, per second of wall time (0.0 = clean, 1.0 = a whole core taken). The silence share of the
recording is measured with ffmpeg silencedetect (-30 dB, at least 0.5 s).

Run:  .venv/bin/python bench/chat_doors.py [--answers 10] [--minutes-length 30] [--minutes-first slack|teams]
Results go to bench/results/chat_doors.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, _version, header, quiet, summarize_ms, table, write_result  # noqa: E402
from slack import (  # noqa: E402
    CHANNEL, QUESTIONS, SAMPLES, STANDUP, OtherLoad, Rig, build_recording, minutes_run,
)

from tests.fakes.bot_connector import Call, FakeBotConnector  # noqa: E402
from tests.fakes.bot_identity import FakeBotIdentity  # noqa: E402
from tests.fakes.sharepoint import FakeFileHost  # noqa: E402
from tests.integration.teams.rig import (  # noqa: E402
    ADELE, APP_ID, MEGAN, PLANNING, SECRET, TEAM, TENANT, TeamsRig, member, shown,
)

SILENCE = "silencedetect=noise=-30dB:d=0.5"


class Doors(Rig):
    """bench/slack.py's rig (fake Slack, `imp serve`) with Teams' fakes beside it, and both doors configured."""

    def __init__(self, data: Path, poll_s: float, imp: list[str]):
        super().__init__(data, poll_s, imp)
        self._identity = FakeBotIdentity().start()
        self._connector = FakeBotConnector(APP_ID, SECRET, tenant_id=TENANT).start()
        self._files = FakeFileHost().start()
        everyone = [member(u) for u in (MEGAN, ADELE)]
        self._connector.add_conversation(TEAM, everyone)
        self._connector.add_conversation(PLANNING, everyone)
        self.env |= {
            # `imp serve` refuses a chat door with an open REST API; the bench never calls the API itself
            "IMP_API__TOKEN": secrets.token_urlsafe(24),
            "IMP_TEAMS__APP_ID": APP_ID, "IMP_TEAMS__APP_PASSWORD": SECRET, "IMP_TEAMS__TENANT_ID": TENANT,
            "IMP_TEAMS__OPENID_METADATA_URL": self._identity.metadata_url,
            "IMP_TEAMS__TOKEN_URL": self._connector.token_url,
            "IMP_TEAMS__EXTRA_HOSTS": json.dumps([f"127.0.0.1:{self._connector.port}", self._files.host_entry]),
            "IMP_TEAMS__POLL_S": str(poll_s),
        }
        self.teams: TeamsRig | None = None

    def ingest_both(self) -> float:
        docs = [str(p) for p in sorted(SAMPLES.iterdir()) if p.is_file() and p != STANDUP]
        t0 = time.perf_counter()
        for scope in (CHANNEL, PLANNING):
            subprocess.run([*self.imp, "ingest", *docs, "--scope", scope, "--json"],
                           env=self.env, check=True, capture_output=True)
        return time.perf_counter() - t0

    def serve(self) -> float:
        took = super().serve()
        # TeamsRig builds and signs activities as Bot Framework does; it posts through any httpx client
        # (the tests give it a TestClient), here one bound to the real server. It never touches bot or engine.
        self.teams = TeamsRig(httpx.Client(base_url=self.base, timeout=60), None, None,  # type: ignore[arg-type]
                              self._identity, self._connector, self._files)
        return took

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.teams is not None:
                self.teams.http.close()
            for fake in (self._files, self._connector, self._identity):
                fake.stop()

    # -- Teams: what IMP did ---------------------------------------------------------------------
    def teams_call(self, match: Callable[[Call], bool], timeout: float, what: str) -> Call:
        deadline = time.monotonic() + timeout
        while True:
            with self._connector._lock:
                found = [c for c in self._connector.calls if match(c)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Teams {what} in {timeout:.0f} s; server log: {self.data / 'serve.log'}")
            time.sleep(0.01)

    def teams_post(self, activity: dict) -> tuple[float, float, int]:
        """POST one activity (its token signed beforehand); (sent at, monotonic; ack s; HTTP status)."""
        assert self.teams is not None
        auth = f"Bearer {self.teams.token()}"
        t0, p0 = time.monotonic(), time.perf_counter()
        status = self.teams.post(activity, authorization=auth)
        return t0, time.perf_counter() - p0, status


def _message(c: Call) -> bool:
    return isinstance(c.body, dict) and c.body.get("type") == "message" and 200 <= c.status < 300


# -- (a) mention to answer --------------------------------------------------------------------------


def slack_ask(rig: Doors, question: str) -> dict:
    t0 = time.monotonic()
    ts, ack, status = rig.mention(question)
    call = rig.answer_to(ts)
    with rig.slack._lock:
        made = [c for c in rig.slack.calls if t0 <= c.at <= call.at]
    return {"s": call.at - t0, "ack_s": ack, "status": status, "sources": "[1]" in str(call.args.get("blocks")),
            "calls": [c.method for c in made], "first_call_s": made[0].at - t0}


def teams_ask(rig: Doors, question: str) -> dict:
    assert rig.teams is not None
    activity = rig.teams.message(question)
    t0, ack, status = rig.teams_post(activity)
    if status != 200:
        raise RuntimeError(f"Teams refused the mention: HTTP {status}; activity: {json.dumps(activity)[:600]}")
    call = rig.teams_call(lambda c: c.kind == "reply" and c.activity_id == activity["id"] and _message(c)
                          and c.body.get("attachments"), 300, "answer card")
    with rig._connector._lock:
        made = [c for c in rig._connector.calls if t0 <= c.at <= call.at]
    return {"s": call.at - t0, "ack_s": ack, "status": status, "sources": "Sources" in shown(call.body)
            and "[1]" in shown(call.body), "first_call_s": made[0].at - t0,
            "calls": [c.kind + (f":{c.body['type']}" if isinstance(c.body, dict) and c.body.get("type") else "")
                      for c in made]}


ASK = {"slack": slack_ask, "teams": teams_ask}


def mention_to_answer(rig: Doors, count: int, server: psutil.Process) -> dict:
    runs: dict[str, list[dict]] = {"slack": [], "teams": []}
    with OtherLoad(server) as load:
        for i in range(count):
            order = ("slack", "teams") if i % 2 == 0 else ("teams", "slack")
            for door in order:
                runs[door].append(ASK[door](rig, QUESTIONS[i % len(QUESTIONS)]))
    out: dict = {"other_cores": load.cores}
    for door, rs in runs.items():
        out[door] = {"answer": summarize_ms([r["s"] for r in rs]), "ack": summarize_ms([r["ack_s"] for r in rs]),
                     "non_200": sum(r["status"] != 200 for r in rs), "with_sources": sum(r["sources"] for r in rs),
                     "answers_s": [round(r["s"], 3) for r in rs],
                     # the platform calls IMP made from the POST to the answer, most common sequence first
                     "calls_per_answer": Counter(" ".join(r["calls"]) for r in rs).most_common()}
    engine = engine_answers(rig, count)
    for door, rs in runs.items():
        inside = [e for e, _ in engine[door]]
        # outside engine.ask = before IMP's first platform call (reading the request, the hourglass or typing)
        # + the rest (scopes, history, rendering, posting the answer)
        out[door] |= {"engine": summarize_ms(inside),
                      "outside_engine": summarize_ms([r["s"] - e for r, e in zip(rs, inside, strict=True)]),
                      "to_first_call": summarize_ms([r["first_call_s"] for r in rs]),
                      "rest_outside_engine": summarize_ms([r["s"] - r["first_call_s"] - e
                                                           for r, e in zip(rs, inside, strict=True)]),
                      "engine_s": [round(e, 3) for e in inside], "acks_ms": [round(r["ack_s"] * 1000, 1) for r in rs]}
    out["same_answer_text"] = sum(s == t for (_, s), (_, t) in zip(engine["slack"], engine["teams"], strict=True))
    ratios = [t["s"] / s["s"] for s, t in zip(runs["slack"], runs["teams"], strict=True)]
    out["ratio"] = {"per_question": [round(r, 2) for r in ratios], "median": round(statistics.median(ratios), 2),
                    "min": round(min(ratios), 2), "max": round(max(ratios), 2),
                    "teams_minus_slack_median_ms": round(1000 * statistics.median(
                        t["s"] - s["s"] for s, t in zip(runs["slack"], runs["teams"], strict=True)), 1)}
    return out


def engine_answers(rig: Doors, count: int) -> dict[str, list[tuple[float, str]]]:
    """(engine.ask's own total in seconds, answer text) of each timed answer per door, warm-up left out.

    Read from the server's answers table (every answer is logged with its timings), in the order given."""
    db = sqlite3.connect(f"file:{rig.data / 'imp.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT scopes, timings_ms, answer FROM answers ORDER BY created_at").fetchall()
    finally:
        db.close()
    out: dict[str, list[tuple[float, str]]] = {"slack": [], "teams": []}
    for scopes, timings, text in rows:
        door = {CHANNEL: "slack", PLANNING: "teams"}.get(json.loads(scopes)[0])
        if door:
            out[door].append((json.loads(timings)["total"] / 1000, text))
    return {door: rs[1:1 + count] for door, rs in out.items()}


def stage_seconds(rig: Doors) -> dict[str, float]:
    """The engine's time per stage so far (transcribe, ingest, minutes ...), from the server's /metrics."""
    text = rig.http.get(rig.base + "/metrics").text
    return {k: float(v) for k, v in re.findall(r'^imp_stage_duration_seconds_sum\{stage="(\w+)"\} (\S+)$', text, re.M)}


def stages_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 2) for k in after if after[k] - before.get(k, 0.0) > 0.0005}


# -- (b) minutes on a dropped recording ------------------------------------------------------------


def teams_minutes(rig: Doors, path: Path, server: psutil.Process) -> dict:
    """Drop the recording in the Teams channel, wait for it to be indexed, then time "@IMP minutes"."""
    assert rig.teams is not None
    drop = rig.teams.message("", attachments=[rig.teams.file(path.name, path.read_bytes(), "m4a")], mention=False)
    with OtherLoad(server) as load:
        t0, _, status = rig.teams_post(drop)
        if status != 200:
            raise RuntimeError(f"Teams refused the drop: HTTP {status}")
        done = rig.teams_call(lambda c: c.at >= t0 and c.kind == "update" and _message(c)
                              and ("Indexed" in shown(c.body) or "⚠️" in shown(c.body)), 7200, "indexed update")
    if "Indexed" not in shown(done.body):
        raise RuntimeError(f"Teams did not index the recording: {shown(done.body)[:500]}")
    result = {"path": "dropped", "indexed_s": round(done.at - t0, 1), "indexed_text": done.body.get("text"),
              "indexed_other_cores": load.cores}
    command = rig.teams.message("minutes")
    with OtherLoad(server) as load:
        t0, ack, code = rig.teams_post(command)
        status = rig.teams_call(lambda c: c.kind == "reply" and c.activity_id == command["id"] and _message(c),
                                120, "reply to the minutes command")
        if "Writing minutes of" not in shown(status.body):
            raise RuntimeError(f"Teams answered the minutes command with: {shown(status.body)[:500]}")
        card = rig.teams_call(lambda c: c.at >= t0 and c.kind == "update" and _message(c)
                              and ("Minutes:" in shown(c.body) or "⚠️" in shown(c.body)), 7200, "minutes card")
    if "Minutes:" not in shown(card.body):
        raise RuntimeError(f"Teams did not write the minutes: {shown(card.body)[:500]}")
    kept = next(a for a in rig.teams.messages(PLANNING) if a["id"] == card.activity_id)
    progress = [c for c in rig._connector.calls_to("update") if c.activity_id == card.activity_id and c is not card]
    result |= {"ack_ms": round(ack * 1000, 1), "ack_status": code, "status_posted_s": round(status.at - t0, 2),
               "minutes_s": round(card.at - t0, 1), "edited_in_place": kept.get("edited") is True
               and kept.get("replyToId") == command["id"], "progress_updates": len(progress),
               "other_cores": load.cores} | teams_action_items(card.body)
    return result


def teams_action_items(activity: dict) -> dict:
    """The action items the minutes card lists: the lines under its "Action items" heading, and "…and N more"."""
    items, more, inside = [], 0, False
    for block in activity["attachments"][0]["content"]["body"]:
        text = block.get("text", "") if block.get("type") == "TextBlock" else ""
        if block.get("style") == "heading":
            inside = text == "Action items"
        elif inside and text.startswith("•"):
            items.append(text)
        elif inside and (m := re.match(r"…and (\d+) more action items", text)):
            more = int(m.group(1))
    return {"action_items": len(items) + more, "action_lines": items[:6]}


def silence_share(path: Path) -> dict:
    run = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", str(path), "-af", SILENCE, "-f", "null", "-"],
                         check=True, capture_output=True, text=True)
    spans = [float(x) for x in re.findall(r"silence_duration: ([\d.]+)", run.stderr)]
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(path)], check=True, capture_output=True, text=True)
    duration = float(probe.stdout.strip())
    return {"filter": SILENCE, "duration_s": round(duration, 1), "silent_s": round(sum(spans), 1),
            "spans": len(spans), "share": round(sum(spans) / duration, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=10,
                    help="questions asked at each door, timed to the answer (default 10; 0 skips (a))")
    ap.add_argument("--minutes-length", type=float, default=30.0,
                    help="minutes of audio for the minutes runs (default 30; 0 skips (b))")
    ap.add_argument("--minutes-first", choices=["slack", "teams"], default="slack",
                    help="which door drops and writes minutes first (default slack)")
    ap.add_argument("--poll-s", type=float, default=2.0,
                    help="IMP_SLACK__POLL_S and IMP_TEAMS__POLL_S of the server (default 2, as shipped)")
    ap.add_argument("--imp", default=str(ROOT / ".venv/bin/imp"), help="the command that runs IMP's CLI")
    ap.add_argument("--keep", action="store_true", help="keep the data folder (and the server log)")
    a = ap.parse_args()
    quiet()
    info = header("Slack and Teams front doors on one engine (bench/chat_doors.py)")
    versions = {k: _version(k) for k in ("slack-bolt", "slack-sdk", "microsoft-agents-activity", "uvicorn")}
    print(f"doors    {', '.join(f'{k} {v}' for k, v in versions.items())}\n")
    data = Path(tempfile.mkdtemp(prefix="imp-bench-doors-"))
    rig = Doors(data, a.poll_s, a.imp.split())
    payload: dict = info | {"versions": versions, "settings": vars(a) | {"data": str(data)}}
    try:
        payload["ingest_both_s"] = round(rig.ingest_both(), 1)
        payload["server_start_s"] = round(rig.serve(), 1)
        assert rig.proc is not None
        server = psutil.Process(rig.proc.pid)
        # this process's own garbage collector (torch and the fakes' objects) must not stall the timings:
        # a full pass here delayed one request's ack and its answer by ~300 ms, as `imp serve` froze its own
        gc.collect()
        gc.freeze()
        payload["first_answer_s"] = {door: round(ASK[door](rig, QUESTIONS[0])["s"], 2) for door in ("slack", "teams")}
        print(f"ingest into both scopes {payload['ingest_both_s']} s, server up in {payload['server_start_s']} s, "
              f"first answer (warm-up) Slack {payload['first_answer_s']['slack']} s, "
              f"Teams {payload['first_answer_s']['teams']} s\n")

        ans = payload["answers"] = mention_to_answer(rig, a.answers, server) if a.answers > 0 else None
        if ans:
            r = ans["ratio"]
            table(f"(a) mention to answer in the thread, {a.answers} questions per door, alternating, warm",
                  ["door", "n", "p50 s", "p95 s", "max s", "engine.ask p50 ms", "outside it p50 ms", "p95 ms",
                   "to 1st call p50 ms", "rest p50 ms", "ack p50 ms", "ack p95 ms", "non-200",
                   "answers with sources", "other procs (cores)"],
                  [[door, v["answer"]["n"], v["answer"]["p50_ms"] / 1000, v["answer"]["p95_ms"] / 1000,
                    v["answer"]["max_ms"] / 1000, f"{v['engine']['p50_ms']:.0f}",
                    f"{v['outside_engine']['p50_ms']:.0f}", f"{v['outside_engine']['p95_ms']:.0f}",
                    f"{v['to_first_call']['p50_ms']:.0f}", f"{v['rest_outside_engine']['p50_ms']:.0f}",
                    f"{v['ack']['p50_ms']:.1f}", f"{v['ack']['p95_ms']:.1f}", v["non_200"], v["with_sources"],
                    ans["other_cores"]] for door, v in ans.items() if door in ASK])
            print(f"  same answer text at both doors: {ans['same_answer_text']} of {a.answers}")
            for door in ASK:
                seq, n = ans[door]["calls_per_answer"][0]
                print(f"  {door} calls to the platform from the POST to the answer ({n} of {a.answers}): {seq}")
            print(f"  Teams/Slack, same question: median {r['median']}, min {r['min']}, max {r['max']}; "
                  f"Teams − Slack median {r['teams_minus_slack_median_ms']} ms")
            print(f"  per question: {' '.join(f'{x:.2f}' for x in r['per_question'])}\n")

        if a.minutes_length > 0:
            recording = data / f"standup-{a.minutes_length:g}min.m4a"
            duration = payload["recording_s"] = round(build_recording(recording, a.minutes_length), 1)
            payload["silence"] = {"standup_49s": silence_share(STANDUP), "recording": silence_share(recording)}
            doors = ("slack", "teams") if a.minutes_first == "slack" else ("teams", "slack")
            runs = payload["minutes"] = {}
            for door in doors:
                before = stage_seconds(rig)
                if door == "slack":
                    s = minutes_run(rig, recording, "F0REC0DROP", True, server)
                    runs["slack"] = s | {"minutes_s": s["minutes_blocks_s"]}
                else:
                    runs["teams"] = teams_minutes(rig, recording, server)
                runs[door]["engine_stages_s"] = stages_between(before, stage_seconds(rig))
            size = recording.stat().st_size / 2**20
            sil = payload["silence"]["recording"]
            table(f"(b) minutes of a dropped {duration / 60:.1f}-minute recording ({size:.1f} MiB, "
                  f"{100 * sil['share']:.1f}% silence)",
                  ["door", "indexed on drop s", "x real time", "of it: transcribe s", "minutes ack ms",
                   "status msg s", "minutes s", "of it: drafting s", "action items", "other procs indexing",
                   "other procs minutes"],
                  [[door, r["indexed_s"], f"{duration / r['indexed_s']:.1f}",
                    r["engine_stages_s"].get("transcribe", "-"), f"{r['ack_ms']:.1f}", r["status_posted_s"],
                    r["minutes_s"], r["engine_stages_s"].get("minutes", "-"), r["action_items"],
                    r["indexed_other_cores"], r["other_cores"]] for door, r in runs.items()])
            print(f"  silence (ffmpeg {SILENCE}): {100 * sil['share']:.1f}% of the recording, "
                  f"{100 * payload['silence']['standup_49s']['share']:.1f}% of the 49-s stand-up")
            for door, r in runs.items():
                print(f"  {door}: {r.get('indexed_text', '')}  engine stages s: {r['engine_stages_s']}")
                for line in r["action_lines"][:3]:
                    print(f"    {line}")
            print()
    finally:
        rig.stop()
        if not a.keep:
            shutil.rmtree(data, ignore_errors=True)
    write_result("chat_doors", payload)


if __name__ == "__main__":
    main()
