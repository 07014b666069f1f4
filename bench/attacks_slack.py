"""Attacks on stored answers and on the Slack front door (issue 11: items 7, 8, 10, and item 2 for bot/slack).

Each attack runs in this process against the real engine (MiniLM embeddings, extractive
answers; the follow-up attack uses the fake OpenAI-compatible server as its model) and
the real Slack front door, which talks to the fake Slack Web API of the tests over HTTP
on 127.0.0.1; requests reach the app signed as Slack signs them. What is recorded is
what a person (or an attacker) would get:

A  deleted text: a document is cited, then deleted; is its text still served by
   GET /v1/answers/{id}, by the "Share in channel" button, and replayed into the model's
   prompt by a follow-up question in the answer's thread?
B  markup: a document holding <!channel>, <!here>, <!everyone>, a disguised link, a user
   and a channel mention and a bare "&" is asked about (mention, /ask, Share), dropped in
   a channel under a name with markup, and a transcript with the same text gets /minutes:
   how many live markup tokens from the document reach Slack, over every recorded call
   (text, blocks, ephemeral response_url bodies, chat.update, file uploads)?
C  replay: one signed /ask, and one signed Share click, each sent twice: how often run?
D  guests and externals: a company-wide document (scope "default"); does a guest, a Slack
   Connect user, a guest's DM, or a member asking in a channel shared with another
   organisation get its text?
E  regexes: 40,000-character hostile messages (Slack's limit) through the markup decoding
   of questions, mention stripping, file links and the answer formatting: seconds.

Run from the repository root:  .venv/bin/python bench/attacks_slack.py
(a copy of an older tree runs it the same way, which is how the "before" figures were taken).
Results go to bench/results/attacks_slack.json.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, header, quiet, table, write_result  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from app import build_engine  # noqa: E402
from bot.api import create_app  # noqa: E402
from core.config import LLMSettings, Settings  # noqa: E402
from core.index.embedders import make_embedder  # noqa: E402
from tests.fakes import slack_payloads as sp  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402
from tests.fakes.slack_server import FakeSlack  # noqa: E402
from tests.integration.slack.conftest import make_rig  # noqa: E402

HANDBOOK = ROOT / "samples" / "handbook.md"
HOTEL = "What is the hotel limit per night in Europe?"
FALCON = ("# Project Falcon\n\nProject Falcon is the planned acquisition of Contoso Instruments for "
          "12.5 million EUR. The board will sign the deal on 3 March.\n")
LUNCH = "# Cafeteria\n\nThe staff cafeteria serves lunch from 11:30 to 14:00 on every working day.\n"
# Live markup from the document: angle-bracket markup anywhere, a bare "&" where Slack reads markup.
LIVE = re.compile(r"<(?:!(?:channel|here|everyone)|https?://evil|@U0EVIL|#C0EVIL)[^<>]*>")
BARE_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")
PORTAL = ("# Portal\n\nThe R&D expense portal is at <https://evil.example|HR portal>, and <!channel>, <!here> and "
          "<!everyone> send questions about the R&D expense portal to <@U0EVIL> in <#C0EVIL>.\n")
TRANSCRIPT = ("Dana: Welcome <!channel>, today we review the <https://evil.example|HR portal> rollout for R&D.\n"
              "Priya: Decision: we adopt the new R&D portal <!here> for the October batch.\n"
              "Marco: I will send the portal report to <@U0EVIL> in <#C0EVIL> by Friday <!everyone>.\n")


def engine_in(tmp: Path, embedder, **settings):
    return build_engine(Settings(data_dir=tmp / "data", **settings), embedder=embedder)


def workspace(fake: FakeSlack) -> FakeSlack:
    fake.add_user("U0ALICE", "alice", real_name="Alice Jones")
    fake.add_user("U0BOB", "bob", real_name="Bob Smith")
    fake.add_channel("C0GENERAL", "general", members=["U0ALICE", "U0BOB", "U0GUEST", "U0EXT", "UIMPBOT"])
    fake.add_channel("D0ALICE", is_im=True, user="U0ALICE")
    return fake


def signed_event(inner: dict, *, ext_shared: bool = False) -> tuple[bytes, dict]:
    envelope = sp.event(inner)
    envelope["is_ext_shared_channel"] = ext_shared
    body = json.dumps(envelope).encode()
    return body, {"Content-Type": "application/json", **sp.sign(body)}


def mention(http, fake, text: str, *, user="U0ALICE", channel="C0GENERAL", thread_ts=None, user_team=None,
            ext_shared=False) -> dict:
    # The message gets its ts from Slack (the fake): later than IMP's replies before it, as in Slack.
    ts = fake.add_message(channel, f"<@UIMPBOT> {text}", user=user, thread_ts=thread_ts)
    inner = sp.app_mention(f"<@UIMPBOT> {text}", user=user, channel=channel, ts=ts, thread_ts=thread_ts)
    if user_team:
        inner["user_team"] = user_team
    body, headers = signed_event(inner, ext_shared=ext_shared)
    assert http.post("/slack/events", content=body, headers=headers).status_code == 200
    return inner


def reply_in(fake, channel: str, thread_ts: str | None, count: int = 1) -> dict:
    calls = fake.wait_for("chat.postMessage", count, timeout=120,
                          where=lambda c: c.args.get("channel") == channel and c.args.get("thread_ts") == thread_ts)
    return calls[count - 1].args


def ask_privately(http, fake, question: str, name: str = "cmd") -> dict:
    body, headers = sp.command_request("/ask", question, response_url=fake.response_url(name))
    assert http.post("/slack/commands", content=body, headers=headers).status_code == 200
    return fake.wait_for(f"response_url:{name}", timeout=120, where=lambda c: c.args.get("blocks"))[-1].args


def share_button(private: dict) -> str:
    return next(e["value"] for b in private["blocks"] if b["type"] == "actions" for e in b["elements"])


def click_share(http, fake, answer_id: str, name: str = "click", times: int = 1) -> None:
    body, headers = sp.interaction_request(sp.block_action("imp_share_answer", answer_id,
                                                           response_url=fake.response_url(name)))
    for _ in range(times):
        assert http.post("/slack/interactions", content=body, headers=headers).status_code == 200


def doc_id(engine, name: str) -> str:
    return next(d.doc_id for d in engine.documents() if d.source.endswith(name))


# ----- A: deleted text -----------------------------------------------------------------------------

def deleted_text(tmp: Path, embedder) -> dict:
    engine = engine_in(tmp / "rest", embedder)
    engine.ingest([HANDBOOK])
    with TestClient(create_app(engine)) as api:
        answer_id = api.post("/v1/ask", json={"question": HOTEL}).json()["answer_id"]
        engine.delete(doc_id(engine, "handbook.md"))
        got = api.get(f"/v1/answers/{answer_id}")
        rest, rest_status = "180 EUR" in got.text, got.status_code

    engine = engine_in(tmp / "share", embedder)
    engine.ingest([HANDBOOK], scope="C0GENERAL")
    with workspace(FakeSlack()) as fake:
        bot, http = make_rig(engine, fake)
        with http:
            answer_id = share_button(ask_privately(http, fake, HOTEL))
            engine.delete(doc_id(engine, "handbook.md"))
            click_share(http, fake, answer_id)
            told = fake.wait_for("response_url:click", timeout=60)[-1].args.get("text") or "(deleted the private copy)"
        share = any("180 EUR" in json.dumps(c.args) for c in fake.calls_to("chat.postMessage"))

    llm = FakeOpenAI().start()
    try:
        engine = engine_in(tmp / "llm", embedder, llm=LLMSettings(backend="openai", base_url=llm.base_url,
                                                                  model="fake-7b", api_key="sk-bench-000000"))
        folder = tmp / "falcon"
        folder.mkdir(parents=True)
        (folder / "falcon.md").write_text(FALCON)
        engine.ingest([folder], scope="C0GENERAL")
        with workspace(FakeSlack()) as fake:
            bot, http = make_rig(engine, fake)
            with http:
                first = mention(http, fake, "What is Project Falcon and who is the acquisition target?")
                cited = "Contoso" in reply_in(fake, "C0GENERAL", first["ts"])["text"]
                engine.delete(doc_id(engine, "falcon.md"))
                seen = len(llm.requests)
                mention(http, fake, "and when will the board sign it?", thread_ts=first["ts"])
                reply_in(fake, "C0GENERAL", first["ts"], count=2)
            replayed = any("Contoso" in json.dumps(r) for r in llm.requests[seen:])
    finally:
        llm.stop()
    return {"rest_serves_deleted_text": rest, "rest_status": rest_status, "share_posts_deleted_text": share,
            "share_tells_the_clicker": told[:60],
            "first_answer_cited_it": cited, "follow_up_prompt_replays_deleted_text": replayed}


# ----- B: markup -----------------------------------------------------------------------------------

def markup_fields(value, key: str = "") -> list[str]:
    """The strings of a call Slack reads as markup: ``text``, ``initial_comment``, mrkdwn text objects
    (plain_text objects, file names and titles are shown as they are)."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return []
        return [s for k, v in value.items() for s in markup_fields(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in markup_fields(v, key)]
    return [value] if isinstance(value, str) and key in ("text", "initial_comment") else []


# ----- B: markup, the attack ----------------------------------------------------------------------

def markup(tmp: Path, embedder) -> dict:
    engine = engine_in(tmp / "markup", embedder)
    folder = tmp / "portal"
    folder.mkdir(parents=True)
    (folder / "portal.md").write_text(PORTAL)
    engine.ingest([folder], scope="C0GENERAL")
    question = "Where is the R&D expense portal and who answers questions about it?"
    with workspace(FakeSlack()) as fake:
        bot, http = make_rig(engine, fake)
        with http:
            asked = mention(http, fake, question)
            reply_in(fake, "C0GENERAL", asked["ts"])
            click_share(http, fake, share_button(ask_privately(http, fake, question)))
            fake.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("thread_ts") is None)
            f = fake.add_file("F0PORTAL", "<!channel> R&D portal.md", PORTAL.encode(), mimetype="text/markdown",
                              filetype="markdown", channels=["C0GENERAL"])
            ts = fake.add_message("C0GENERAL", "", user="U0ALICE", files=[f], subtype="file_share")
            body, headers = signed_event(sp.file_share_message(f, ts=ts))
            assert http.post("/slack/events", content=body, headers=headers).status_code == 200
            fake.wait_for("chat.update", timeout=120, where=lambda c: "ndexed" in c.args.get("text", ""))
            t = fake.add_file("F0SYNC01", "<!here> R&D sync.txt", TRANSCRIPT.encode(), mimetype="text/plain",
                              filetype="text", channels=["C0GENERAL"])
            fake.add_message("C0GENERAL", "", user="U0ALICE", files=[t], subtype="file_share")
            body, headers = sp.command_request("/minutes", f"{fake.url}files/U0ALICE/F0SYNC01/sync.txt",
                                               response_url=fake.response_url("minutes"))
            assert http.post("/slack/commands", content=body, headers=headers).status_code == 200
            fake.wait_for("files.completeUploadExternal", timeout=180)
        per_method: dict[str, int] = {}
        for c in fake.calls:
            n = len(LIVE.findall(json.dumps(c.args, ensure_ascii=False)))
            n += sum(len(BARE_AMPERSAND.findall(text)) for text in markup_fields(c.args))
            if n:
                per_method[c.method] = per_method.get(c.method, 0) + n
    return {"live_markup_tokens": sum(per_method.values()), "by_method": per_method}


# ----- C: replay -----------------------------------------------------------------------------------

def replay(tmp: Path, embedder) -> dict:
    engine = engine_in(tmp / "replay", embedder)
    engine.ingest([HANDBOOK], scope="C0GENERAL")
    with workspace(FakeSlack()) as fake:
        bot, http = make_rig(engine, fake)
        with http:
            body, headers = sp.command_request("/ask", HOTEL, response_url=fake.response_url("cmd"))
            for _ in range(2):  # the attacker re-sends the captured request within the 5 minutes
                assert http.post("/slack/commands", content=body, headers=headers).status_code == 200
            private = fake.wait_for("response_url:cmd", timeout=120, where=lambda c: c.args.get("blocks"))[-1].args
            click_share(http, fake, share_button(private), times=2)
            fake.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("channel") == "C0GENERAL")
        # leaving the app waited for every listener: what ran, ran
        asks = len([c for c in fake.calls_to("response_url:cmd") if c.args.get("blocks")])
        shares = len([c for c in fake.calls_to("chat.postMessage") if c.args.get("channel") == "C0GENERAL"])
    return {"ask_sent_twice_runs": asks, "share_sent_twice_posts": shares}


# ----- D: guests and externals ---------------------------------------------------------------------

def outsiders(tmp: Path, embedder) -> dict:
    engine = engine_in(tmp / "guests", embedder)
    folder = tmp / "lunch"
    folder.mkdir(parents=True)
    (folder / "cafeteria.md").write_text(LUNCH)
    engine.ingest([folder], scope="default")
    question = "When does the cafeteria serve lunch?"
    out = {}
    with workspace(FakeSlack()) as fake:
        fake.add_user("U0GUEST", "gus", real_name="Gus Guest")
        fake._users["U0GUEST"].update(is_restricted=True)  # a multi-channel guest, as users.info says
        fake.add_user("U0EXT", "erin", real_name="Erin External")
        fake._users["U0EXT"].update(team_id="T0OTHER", is_stranger=True)  # Slack Connect
        fake.add_channel("D0GUEST", is_im=True, user="U0GUEST")
        fake.add_channel("C0SHARED", "partners", members=["U0ALICE", "U0EXT", "UIMPBOT"])
        fake._channels["C0SHARED"]["is_ext_shared"] = True
        bot, http = make_rig(engine, fake)
        with http:
            cases = {
                "member_in_channel (control)": dict(user="U0ALICE"),
                "guest_in_channel": dict(user="U0GUEST"),
                "external_in_channel": dict(user="U0EXT", user_team="T0OTHER"),
                "member_in_slack_connect_channel": dict(user="U0ALICE", channel="C0SHARED", ext_shared=True),
            }
            for name, kw in cases.items():
                asked = mention(http, fake, question, **kw)
                out[name] = "11:30" in reply_in(fake, kw.get("channel", "C0GENERAL"), asked["ts"])["text"]
            inner = sp.message(question, user="U0GUEST", channel="D0GUEST")
            fake.add_message("D0GUEST", question, user="U0GUEST", ts=inner["ts"])
            body, headers = signed_event(inner)
            assert http.post("/slack/events", content=body, headers=headers).status_code == 200
            out["guest_dm"] = "11:30" in reply_in(fake, "D0GUEST", None)["text"]
    return out


# ----- E: regexes on hostile messages --------------------------------------------------------------

def regexes() -> dict:
    from bot.slack import blocks, deps, files, questions

    class NoNames:  # never asked: every hostile mention carries its own label
        def name(self, user: str) -> str:
            return ""

        def users_info(self, **kw):
            raise AssertionError("not expected")

    people = NoNames()  # stands for the People directory (and for the WebClient of older trees)
    hostile = {
        "<@U1| x40k": "<@U1|" * 8000,
        "<@U x40k": "<@U" * 13333,
        "< x40k": "<" * 40000,
        "<#C| x40k": "<#C1|" * 8000,
        "<http x40k": "<http://a|" * 4000,
        "/files/ x40k": "/files/a" * 5000,
        "F-id x40k": " F" + "A" * 39998,
        "** x40k": "**a" * 13333,
    }
    out = {}
    for name, text in hostile.items():
        worst = 0.0
        for fn in (lambda t: questions.plain_text(t), lambda t: deps.strip_mentions(t),
                   lambda t: questions.name_people(people, t, "UIMPBOT"),
                   lambda t: files.file_id_in(t), lambda t: blocks._markdown_to_mrkdwn(t)):
            started = time.perf_counter()
            fn(text)
            worst = max(worst, time.perf_counter() - started)
        out[name] = round(worst, 3)
    return out


def main() -> None:
    quiet()
    info = header("Slack and stored-answer attacks (issue 11: 7, 8, 10, 2)")
    embedder = make_embedder("sentence-transformers", None)
    embedder.warm_up()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="imp-attacks-") as tmp:
        root = Path(tmp)
        for name, run in (("deleted_text", deleted_text), ("markup", markup), ("replay", replay),
                          ("outsiders", outsiders)):
            started = time.perf_counter()
            try:
                results[name] = run(root / name, embedder)
            except Exception as e:  # an older tree may lack a step: say so, keep going
                results[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            results[name]["seconds"] = round(time.perf_counter() - started, 1)
    results["regex_seconds_worst"] = regexes()
    for name, figures in results.items():
        table(name, ["measure", "value"], [(k, v) for k, v in figures.items()])
    write_result("attacks_slack", {**info, "results": results})


if __name__ == "__main__":
    main()
