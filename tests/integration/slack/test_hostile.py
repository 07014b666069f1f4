"""Hostile input at the Slack front door: document markup, replayed requests, outsiders, regex bombs.

- A document (and a file name, and a transcript) holding Slack markup is cited,
  shared, indexed and turned into minutes: no call IMP makes to Slack, of any method,
  in ``text``, in blocks or in ephemeral replies, carries that markup live.
- A captured signed /ask or Share click sent again inside Slack's 5-minute window
  does nothing the second time.
- Guests and people of other organisations (Slack Connect) never get the company-wide
  scopes; neither does a channel shared with another organisation, nor anyone when
  Slack cannot say who is asking.
- Slack's markup in a 40,000-character message is decoded in linear time.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from bot.slack import blocks, deps, files, questions
from bot.slack.app import web_client
from bot.slack.commands import ASK_WORKING
from bot.slack.people import EXTERNAL, GUEST, MEMBER, People
from tests.fakes import slack_payloads as sp
from tests.integration.slack.conftest import SlackRig

PORTAL_DOC = ("# Portal\n\nThe R&D expense portal is at <https://evil.example|HR portal>, and <!channel>, <!here> and "
              "<!everyone> send questions about the R&D expense portal to <@U0EVIL> in <#C0EVIL>.\n")
PORTAL_Q = "Where is the R&D expense portal and who answers questions about it?"
TRANSCRIPT = ("Dana: Welcome <!channel>, today we review the <https://evil.example|HR portal> rollout for R&D.\n"
              "Priya: Decision: we adopt the new R&D portal <!here> for the October batch.\n"
              "Marco: I will send the portal report to <@U0EVIL> in <#C0EVIL> by Friday <!everyone>.\n")
# Markup as Slack reads it: a special mention, a link, a user or channel mention.
LIVE = re.compile(r"<(?:!(?:channel|here|everyone)|https?://evil|@U0EVIL|#C0EVIL)[^<>]*>")
BARE_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")
LUNCH_DOC = "# Cafeteria\n\nThe staff cafeteria serves lunch from 11:30 to 14:00 on every working day.\n"
LUNCH_Q = "When does the cafeteria serve lunch?"


def _markup_fields(value, key: str = "") -> list[str]:
    """The strings of a call that Slack reads as markup: ``text`` and ``initial_comment``, mrkdwn objects."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)  # a form-encoded call carries its blocks as a JSON string
        except ValueError:
            pass
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return []  # shown as it is: Slack escapes it itself
        return [s for k, v in value.items() for s in _markup_fields(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _markup_fields(v, key)]
    return [value] if isinstance(value, str) and key in ("text", "initial_comment") else []


def _live_markup(fake) -> dict[str, list[str]]:
    """Live markup from the document, by method: angle-bracket markup anywhere in any argument of any call
    IMP made to Slack, and a bare "&" in the fields Slack reads as markup."""
    found: dict[str, list[str]] = {}
    for call in fake.calls:
        hits = LIVE.findall(json.dumps(call.args, ensure_ascii=False))
        hits += [m for text in _markup_fields(call.args) for m in BARE_AMPERSAND.findall(text)]
        if hits:
            found.setdefault(call.method, []).extend(hits)
    return found


def _sent(fake) -> str:
    return "\n".join(json.dumps(c.args, ensure_ascii=False) for c in fake.calls)


def _ingest(engine, tmp_path, name: str, text: str, scope: str) -> None:
    folder = tmp_path / f"docs-{name}"
    folder.mkdir()
    (folder / name).write_text(text)
    engine.ingest([folder], scope=scope)


def _mention(rig: SlackRig, text: str, *, user="U0ALICE", channel="C0GENERAL", **kw) -> dict:
    inner = sp.app_mention(f"<@UIMPBOT> {text}", user=user, channel=channel, user_team=kw.pop("user_team", None))
    rig.slack.add_message(channel, inner["text"], user=user, ts=inner["ts"])
    assert rig.event(inner, **kw) == 200
    return rig.slack.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("thread_ts") == inner["ts"]
                              )[-1].args


def _share_button(rig: SlackRig, question: str, **kw) -> str:
    assert rig.command("/ask", question, **kw).status_code == 200
    body = rig.slack.wait_for("response_url:cmd", timeout=60, where=lambda c: c.args.get("blocks"))[-1].args
    return next(e["value"] for b in body["blocks"] if b["type"] == "actions" for e in b["elements"])


# ----- document markup never goes live ---------------------------------------------------------


def test_markup_in_a_cited_document_reaches_slack_only_escaped(rig, tmp_path):
    _ingest(rig.engine, tmp_path, "portal.md", PORTAL_DOC, "C0GENERAL")
    answer = _mention(rig, PORTAL_Q)
    answer_id = _share_button(rig, PORTAL_Q)
    assert rig.click(sp.block_action("imp_share_answer", answer_id, response_url=rig.slack.response_url("click"))
                     ).status_code == 200
    rig.slack.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("thread_ts") is None)
    rig.bot.close()
    assert "R&amp;D expense portal" in answer["text"]  # the document was cited, and shown escaped
    sent = _sent(rig.slack)
    assert "&lt;!channel&gt;" in sent and "&lt;https://evil.example|HR portal&gt;" in sent
    assert _live_markup(rig.slack) == {}


def test_markup_in_file_names_and_transcripts_reaches_slack_only_escaped(rig, fake_slack):
    f = fake_slack.add_file("F0PORTAL", "<!channel> R&D portal.md", PORTAL_DOC.encode(), mimetype="text/markdown",
                            filetype="markdown", channels=["C0GENERAL"])
    ts = fake_slack.add_message("C0GENERAL", "", user="U0ALICE", files=[f], subtype="file_share")
    assert rig.event(sp.file_share_message(f, ts=ts)) == 200
    fake_slack.wait_for("chat.update", timeout=60, where=lambda c: "Indexed" in c.args.get("text", ""))
    t = fake_slack.add_file("F0SYNC01", "<!here> R&D sync.txt", TRANSCRIPT.encode(), mimetype="text/plain",
                            filetype="text", channels=["C0GENERAL"])
    fake_slack.add_message("C0GENERAL", "", user="U0ALICE", files=[t], subtype="file_share")
    assert rig.command("/minutes", f"{fake_slack.url}files/U0ALICE/F0SYNC01/sync.txt").status_code == 200
    fake_slack.wait_for("files.completeUploadExternal", timeout=120)
    broken = fake_slack.add_file("F0BROKEN", "<!everyone> R&D.pdf", b"%PDF-1.7 not really", mimetype="application/pdf",
                                 filetype="pdf", channels=["C0GENERAL"])
    ts = fake_slack.add_message("C0GENERAL", "", user="U0ALICE", files=[broken], subtype="file_share")
    assert rig.event(sp.file_share_message(broken, ts=ts)) == 200
    fake_slack.wait_for("chat.update", timeout=60, where=lambda c: "could not index" in c.args.get("text", ""))
    rig.bot.close()
    minutes = next(c.args for c in fake_slack.calls_to("chat.update") if c.args.get("blocks"))
    shown = json.dumps(minutes)
    assert "&lt;!here&gt; R&amp;D sync.txt" in shown  # the file's name, escaped
    assert "new R&amp;D portal" in shown  # the decision, escaped
    assert _live_markup(fake_slack) == {}


# ----- replays ----------------------------------------------------------------------------------


def test_a_replayed_ask_command_runs_once(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    question = "What is the hotel limit per night in Europe?"
    body, headers = sp.command_request("/ask", question, response_url=rig.slack.response_url("cmd"))
    first = rig.http.post("/slack/commands", content=body, headers=headers)
    replay = rig.http.post("/slack/commands", content=body, headers=headers)  # captured, sent again
    assert (first.status_code, first.text) == (200, ASK_WORKING)
    assert (replay.status_code, replay.text) == (200, "")
    rig.slack.wait_for("response_url:cmd", timeout=60, where=lambda c: c.args.get("blocks"))
    # The same words asked again are a new request, signed anew: answered.
    assert rig.command("/ask", question, response_url=rig.slack.response_url("again")).text == ASK_WORKING
    rig.slack.wait_for("response_url:again", timeout=60, where=lambda c: c.args.get("blocks"))
    rig.bot.close()
    answers = [c for c in rig.slack.calls_to("response_url:cmd") if c.args.get("blocks")]
    assert len(answers) == 1 and "180" in json.dumps(answers[0].args)


def test_a_replayed_share_click_posts_once(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    answer_id = _share_button(rig, "What is the hotel limit per night in Europe?")
    body, headers = sp.interaction_request(sp.block_action("imp_share_answer", answer_id,
                                                           response_url=rig.slack.response_url("click")))
    for _ in range(3):
        assert rig.http.post("/slack/interactions", content=body, headers=headers).status_code == 200
    rig.slack.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("channel") == "C0GENERAL")
    rig.bot.close()
    assert len([c for c in rig.slack.calls_to("chat.postMessage") if c.args.get("channel") == "C0GENERAL"]) == 1


# ----- guests and other organisations -------------------------------------------------------------


@pytest.fixture
def outsiders(fake_slack):
    fake_slack.add_user("U0GUEST", "gus", real_name="Gus Guest", guest="multi")
    fake_slack.add_user("U0SOLO", "sol", real_name="Sol Single", guest="single")
    fake_slack.add_user("U0EXT", "erin", real_name="Erin External", team_id="T0OTHER")
    for user in ("U0GUEST", "U0SOLO", "U0EXT"):
        fake_slack._channels["C0GENERAL"]["members"].append(user)
    fake_slack.add_channel("D0GUEST", is_im=True, user="U0GUEST")
    fake_slack.add_channel("C0SHARED", "partners", members=["U0ALICE", "U0EXT", "UIMPBOT"], is_ext_shared=True)
    return fake_slack


def test_guests_and_external_people_never_get_company_wide_scopes(rig, outsiders, tmp_path):
    _ingest(rig.engine, tmp_path, "cafeteria.md", LUNCH_DOC, "default")
    _ingest(rig.engine, tmp_path, "general.md", "# General\n\nThe #general lunch table is by the window.\n",
            "C0GENERAL")
    assert "11:30" in _mention(rig, LUNCH_Q)["text"]  # a member: the company-wide scope
    for user, team in (("U0GUEST", None), ("U0SOLO", None), ("U0EXT", "T0OTHER"), ("U0EXT", None)):
        assert "11:30" not in _mention(rig, LUNCH_Q, user=user, user_team=team)["text"], user
    # A member whose message Slack marks as coming from another team is not trusted as a member either.
    assert "11:30" not in _mention(rig, LUNCH_Q, user="U0ALICE", user_team="T0OTHER")["text"]
    # The guest's DM: their channels and the DM, nothing company-wide.
    inner = sp.message("Where is the #general lunch table, and when is lunch served?", user="U0GUEST",
                       channel="D0GUEST")
    rig.slack.add_message("D0GUEST", inner["text"], user="U0GUEST", ts=inner["ts"])
    assert rig.event(inner) == 200
    reply = rig.slack.wait_for("chat.postMessage", timeout=60, where=lambda c: c.args.get("channel") == "D0GUEST")
    assert "window" in reply[-1].args["text"] and "11:30" not in json.dumps(reply[-1].args)
    # /ask by a guest, privately: still nothing company-wide.
    assert rig.command("/ask", LUNCH_Q, user="U0GUEST").status_code == 200
    private = rig.slack.wait_for("response_url:cmd", timeout=60, where=lambda c: c.args.get("blocks"))[-1].args
    assert "11:30" not in json.dumps(private)


def test_a_channel_shared_with_another_organisation_gets_no_company_wide_scopes(rig, outsiders, tmp_path):
    _ingest(rig.engine, tmp_path, "cafeteria.md", LUNCH_DOC, "default")
    assert "11:30" not in _mention(rig, LUNCH_Q, channel="C0SHARED", ext_shared=True)["text"]
    assert "11:30" not in _mention(rig, LUNCH_Q, channel="C0SHARED")["text"]  # conversations.info says so too
    # Alice may read the company's documents privately there, but not share them into the shared channel.
    answer_id = _share_button(rig, LUNCH_Q, channel="C0SHARED", channel_name="partners")
    assert rig.click(sp.block_action("imp_share_answer", answer_id, channel="C0SHARED",
                                     response_url=rig.slack.response_url("click"))).status_code == 200
    refusal = rig.slack.wait_for("response_url:click", timeout=60)[-1].args["text"]
    assert "stays private" in refusal
    rig.bot.close()
    assert "11:30" not in json.dumps([c.args for c in rig.slack.calls_to("chat.postMessage")])


def test_when_slack_cannot_say_who_asks_there_are_no_company_wide_scopes(rig, tmp_path):
    _ingest(rig.engine, tmp_path, "cafeteria.md", LUNCH_DOC, "default")
    rig.slack.fail("users.info", "fatal_error")
    assert "11:30" not in _mention(rig, LUNCH_Q)["text"]
    assert "11:30" in _mention(rig, LUNCH_Q)["text"]  # a failure is not remembered
    _mention(rig, LUNCH_Q)
    assert len(rig.slack.calls_to("users.info")) == 2  # a success is, for a few minutes


def test_who_someone_is_is_remembered_for_minutes_then_asked_again(fake_slack):
    now = [1000.0]
    people = People(web_client(fake_slack.token, fake_slack.api_url), ttl_s=300, clock=lambda: now[0])
    fake_slack.add_user("U0CARL", "carl", guest="multi")
    assert people.standing("U0CARL") == GUEST
    fake_slack.add_user("U0CARL", "carl")  # promoted to a full member
    now[0] += 299
    assert people.standing("U0CARL") == GUEST
    now[0] += 2
    assert people.standing("U0CARL") == MEMBER
    assert people.standing("U0ALICE", team_hint="E0OTHERORG") == EXTERNAL


# ----- regexes on hostile message text --------------------------------------------------------------

HOSTILE = ["<@U1|" * 8000, "<@U" * 13333, "<" * 40000, "<#C1|" * 8000, "<http://a|" * 4000, "/files/a" * 5000,
           " F" + "A" * 39998, "**a" * 13333, "<@U0" + "A" * 39990, "&lt;" * 10000]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: f"{t[:6]}x{len(t)}")
def test_slack_markup_in_a_40000_character_message_is_decoded_in_linear_time(text):
    class Unnamed:
        def name(self, user: str) -> str:
            return "someone"

    for decode in (questions.plain_text, deps.strip_mentions, files.file_id_in, blocks._markdown_to_mrkdwn,
                   lambda t: questions.name_people(Unnamed(), t, "UIMPBOT"),
                   lambda t: blocks.snippet(t, t, 1), lambda t: blocks.split_text(t)):
        started = time.perf_counter()
        decode(text)
        # Generous: each takes milliseconds; "<@U1|" x 8000 took 6 s before the fix, growing with the square.
        assert time.perf_counter() - started < 1.0, decode
