"""File drops and deleted files in Slack, end to end over real HTTP.

A file shared in a channel is downloaded from the fake Slack with the bot token,
indexed into that channel's scope by the real engine, and the thread under the
file says what was indexed or why not. Who can then get answers from it follows
channel membership; a file deleted in Slack leaves the index everywhere.
"""

from __future__ import annotations

from pathlib import Path

from bot.slack.blocks import FEEDBACK_HINT
from tests.conftest import SAMPLES
from tests.fakes import slack_payloads as sp
from tests.fakes.slack_server import FakeSlack
from tests.integration.slack.conftest import SlackRig, blocks_text, make_rig, wait_until

PDF = SAMPLES / "annual-report-2025.pdf"
HANDBOOK = SAMPLES / "handbook.md"
REVENUE_Q = "What revenue does the board expect for 2026?"
HOTEL_Q = "How much are hotel costs reimbursed per night in Europe?"
KINDS = {".pdf": ("application/pdf", "pdf"), ".md": ("text/markdown", "markdown"),
         ".m4a": ("audio/mp4", "m4a"), ".png": ("image/png", "png")}


def drop(rig: SlackRig, file_id: str, name: str, content: bytes, *, channel: str = "C0GENERAL",
         user: str = "U0ALICE", event_id: str | None = None) -> str:
    """Alice (by default) shares a file in ``channel`` as Slack does; returns the file message's ts."""
    mimetype, filetype = KINDS[Path(name).suffix]
    f = rig.slack.add_file(file_id, name, content, mimetype=mimetype, filetype=filetype,
                           channels=[channel], user=user)
    ts = rig.slack.add_message(channel, "", user=user, files=[f], subtype="file_share")
    channel_type = {"G": "group", "D": "im"}.get(channel[0], "channel")
    inner = sp.file_share_message(f, channel=channel, ts=ts, user=user, channel_type=channel_type)
    assert rig.event(inner, event_id=event_id) == 200
    if event_id is not None:  # Slack did not see the ack in time and delivers the event again
        assert rig.event(inner, event_id=event_id, retry_num=1) == 200
    return ts


def outcome(rig: SlackRig, channel: str, file_ts: str, timeout: float = 60.0) -> str:
    """The last word in the file's thread: IMP's reply there, once it no longer shows progress."""
    def final() -> str | None:
        replies = _replies(rig.slack, channel, file_ts)
        text = (replies[0].get("text") or "") if replies else ""
        return None if text.startswith(":hourglass") else text or None

    return wait_until(final, timeout=timeout, what="the file's thread to show the outcome")


def _replies(fake: FakeSlack, channel: str, file_ts: str) -> list[dict]:
    replies = [m for m in fake.messages(channel)
               if m.get("thread_ts") == file_ts and m["ts"] != file_ts and m.get("user") == "UIMPBOT"]
    assert len(replies) <= 1, f"expected one reply in the file's thread, got {replies}"
    return replies


def _ts_in_thread(fake: FakeSlack, channel: str, file_ts: str) -> str:
    [reply] = _replies(fake, channel, file_ts)
    return reply["ts"]


def ask(rig: SlackRig, question: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL") -> str:
    """What a person reads back after asking IMP (a mention in a channel, a message in a DM)."""
    if channel.startswith("D"):
        inner = sp.message(question, user=user, channel=channel)
        thread = None
    else:
        inner = sp.app_mention(f"<@UIMPBOT> {question}", user=user, channel=channel)
        thread = inner["ts"]
    def here(c) -> bool:
        return c.args.get("channel") == channel and c.args.get("thread_ts") == thread

    before = len([c for c in rig.slack.calls_to("chat.postMessage") if here(c)])
    assert rig.event(inner) == 200
    reply = rig.slack.wait_for("chat.postMessage", before + 1, timeout=60, where=here)[-1]
    return blocks_text(reply.args)


def barrier(rig: SlackRig) -> None:
    """An empty mention, answered with the usage hint: the events sent before it have been handled."""
    assert rig.event(sp.app_mention("<@UIMPBOT>", channel="C0GENERAL")) == 200
    rig.slack.wait_for("chat.postMessage", timeout=30, where=lambda c: "Ask me a question" in c.args.get("text", ""))


# ----- what a drop indexes and who may read it -------------------------------------------------


def test_a_pdf_dropped_in_a_channel_is_indexed_there_and_only_its_members_get_it(rig, fake_slack):
    fake_slack.add_user("U0CAROL", "carol", real_name="Carol White")
    fake_slack.add_channel("C0RANDOM", "random", members=["U0CAROL", "UIMPBOT"])
    fake_slack.add_channel("D0CAROL", is_im=True, user="U0CAROL")

    file_ts = drop(rig, "F0REPORT", PDF.name, PDF.read_bytes())

    status = rig.slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == file_ts)[0]
    assert status.args["channel"] == "C0GENERAL" and "annual-report-2025.pdf" in status.args["text"]
    done = outcome(rig, "C0GENERAL", file_ts)
    status_ts = _ts_in_thread(fake_slack, "C0GENERAL", file_ts)
    assert [c.args["ts"] for c in fake_slack.calls_to("chat.update")][-1] == status_ts  # edited in place
    [doc] = rig.engine.documents(["C0GENERAL"])
    assert doc.source == "slack:F0REPORT/annual-report-2025.pdf" and doc.pages == 3 and doc.chunks > 0
    assert done.startswith(f":white_check_mark: Indexed *annual-report-2025.pdf* (3 pages, {doc.chunks} passage")
    download = rig.slack.calls_to("download:F0REPORT")
    assert len(download) == 1 and download[0].headers.get("Authorization") == f"Bearer {fake_slack.token}"

    in_channel = ask(rig, REVENUE_Q, user="U0BOB")
    assert "annual-report-2025.pdf, p." in in_channel and "60 and 64 million" in in_channel
    assert FEEDBACK_HINT in in_channel
    bobs_dm = ask(rig, REVENUE_Q, user="U0BOB", channel="D0BOB")
    assert "annual-report-2025.pdf" in bobs_dm and "60 and 64 million" in bobs_dm

    for channel in ("C0RANDOM", "D0CAROL"):  # Carol is not in #general
        elsewhere = ask(rig, REVENUE_Q, user="U0CAROL", channel=channel)
        assert "annual-report" not in elsewhere and "million" not in elsewhere, channel
    assert rig.engine.search(REVENUE_Q, scopes=["C0RANDOM", "D0CAROL", "default"]) == []


def test_a_file_dropped_in_a_private_channel_reaches_only_its_members(rig, fake_slack):
    file_ts = drop(rig, "F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), channel="G0SECRET")
    assert outcome(rig, "G0SECRET", file_ts).startswith(":white_check_mark: Indexed *handbook.md*")
    [doc] = rig.engine.documents()
    assert (doc.scope, doc.source) == ("G0SECRET", "slack:F0HANDBK/handbook.md")

    assert "180 EUR" in ask(rig, HOTEL_Q, channel="G0SECRET")
    assert "180 EUR" in ask(rig, HOTEL_Q, channel="D0ALICE")
    for user, channel in (("U0ALICE", "C0GENERAL"), ("U0BOB", "C0GENERAL"), ("U0BOB", "D0BOB")):
        probe = ask(rig, HOTEL_Q, user=user, channel=channel)
        assert "180" not in probe and "handbook" not in probe, (user, channel)


def test_a_recording_drop_reports_its_duration(rig, fake_slack):
    audio = SAMPLES / "rotterdam-pilot-standup.m4a"
    file_ts = drop(rig, "F0STANDUP", audio.name, audio.read_bytes())
    done = outcome(rig, "C0GENERAL", file_ts, timeout=180)
    [doc] = rig.engine.documents(["C0GENERAL"])
    assert doc.kind == "audio" and 45 < (doc.duration or 0) < 55
    assert done.startswith(f":white_check_mark: Indexed *{audio.name}* (00:49 of audio, {doc.chunks} passage")


def test_a_file_dropped_in_a_dm_stays_in_that_dm(rig, fake_slack):
    file_ts = drop(rig, "F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), channel="D0BOB", user="U0BOB")
    assert outcome(rig, "D0BOB", file_ts).startswith(":white_check_mark: Indexed *handbook.md*")
    assert "180 EUR" in ask(rig, HOTEL_Q, user="U0BOB", channel="D0BOB")
    for user, channel in (("U0ALICE", "D0ALICE"), ("U0BOB", "C0GENERAL")):
        assert "180" not in ask(rig, HOTEL_Q, user=user, channel=channel), channel


def test_the_same_file_shared_again_changes_nothing(rig, fake_slack):
    first = drop(rig, "F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), event_id="Ev0DROP1")  # and a retry
    assert outcome(rig, "C0GENERAL", first).startswith(":white_check_mark: Indexed")
    assert len(fake_slack.calls_to("download:F0HANDBK")) == 1
    f = fake_slack.add_file("F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), mimetype="text/markdown",
                            filetype="markdown", channels=["C0GENERAL"])
    again = fake_slack.add_message("C0GENERAL", "sharing this again", user="U0BOB", files=[f], subtype="file_share")
    assert rig.event(sp.file_share_message(f, user="U0BOB", ts=again, text="sharing this again")) == 200
    assert "was indexed before; nothing changed" in outcome(rig, "C0GENERAL", again)
    assert [d.source for d in rig.engine.documents()] == ["slack:F0HANDBK/handbook.md"]


def test_a_file_shared_in_a_thread_is_answered_in_that_thread(rig, fake_slack):
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=1)  # Slack asks IMP to slow down
    parent = fake_slack.add_message("C0GENERAL", "here is the handbook we talked about", user="U0BOB")
    f = fake_slack.add_file("F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), mimetype="text/markdown",
                            filetype="markdown", channels=["C0GENERAL"], user="U0BOB")
    reply = fake_slack.add_message("C0GENERAL", "", user="U0BOB", files=[f], subtype="file_share",
                                   thread_ts=parent)
    assert rig.event({**sp.file_share_message(f, user="U0BOB", ts=reply), "thread_ts": parent}) == 200
    assert outcome(rig, "C0GENERAL", parent).startswith(":white_check_mark: Indexed *handbook.md*")
    assert [c.args["thread_ts"] for c in fake_slack.calls_to("chat.postMessage")] == [parent, parent]
    assert not [m for m in fake_slack.messages("C0GENERAL") if m.get("thread_ts") == reply and m["ts"] != reply]


# ----- files IMP refuses or cannot read ---------------------------------------------------------


def test_a_corrupt_pdf_gets_a_reason_and_leaves_the_index_as_it_was(rig, fake_slack):
    rig.engine.ingest([HANDBOOK], scope="C0GENERAL")
    before = [(d.doc_id, d.chunks) for d in rig.engine.documents()]
    file_ts = drop(rig, "F0BROKEN", "broken.pdf", PDF.read_bytes()[:700])
    done = outcome(rig, "C0GENERAL", file_ts)
    assert "I could not index *broken.pdf*: " in done and "damaged or truncated" in done
    assert [(d.doc_id, d.chunks) for d in rig.engine.documents() if d.status.value == "indexed"] == before
    assert all("broken" not in h.chunk.source for h in rig.engine.search("annual report revenue",
                                                                          scopes=["C0GENERAL"]))


def test_images_own_uploads_and_bots_files_are_ignored_silently(rig, fake_slack):
    shot = drop(rig, "F0SHOT", "screenshot.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    own = drop(rig, "F0MINUTES", "minutes.md", b"# Minutes\n\nIMP's own upload.", user="UIMPBOT")
    f = fake_slack.add_file("F0BOTDOC", "report.md", b"# From another bot", mimetype="text/markdown",
                            filetype="markdown", channels=["C0GENERAL"], user="U0OTHERBOT")
    ts = fake_slack.add_message("C0GENERAL", "", user="U0OTHERBOT", bot_id="B0OTHER", files=[f],
                                subtype="file_share")
    assert rig.event({**sp.file_share_message(f, user="U0OTHERBOT", ts=ts), "bot_id": "B0OTHER"}) == 200
    barrier(rig)

    said = [c.args for c in fake_slack.calls_to("chat.postMessage") if "Ask me a question" not in c.args["text"]]
    assert said == [] and not {shot, own, ts} & {m.get("thread_ts") for m in fake_slack.messages("C0GENERAL")}
    assert [c.method for c in fake_slack.calls if c.method.startswith(("download:", "files.info"))] == []
    assert rig.bot.deps.state.open_tasks() == [] and rig.engine.documents() == []


def test_a_file_over_the_size_limit_is_refused_without_downloading_it(engine, fake_slack):
    bot, http = make_rig(engine, fake_slack, max_file_bytes=1500)
    with http:
        rig = SlackRig(http, fake_slack, bot, engine)
        big = drop(rig, "F0BIG", PDF.name, PDF.read_bytes())  # 2,400 bytes, and Slack says so
        refused = outcome(rig, "C0GENERAL", big)
        assert fake_slack.calls_to("download:F0BIG") == []
        # Slack's size was wrong (or the file grew): the download itself stops at the limit.
        f = fake_slack.add_file("F0LIAR", "report.pdf", PDF.read_bytes(), mimetype="application/pdf",
                                filetype="pdf", channels=["C0GENERAL"], size=1000)
        liar = fake_slack.add_message("C0GENERAL", "", user="U0ALICE", files=[f], subtype="file_share")
        assert rig.event(sp.file_share_message(f, ts=liar)) == 200
        stopped = outcome(rig, "C0GENERAL", liar)
    assert refused == (":warning: I could not index *annual-report-2025.pdf*: it is 2.3 KB, more than the "
                       "1.5 KB I accept")
    assert "I could not index *report.pdf*" in stopped and "larger than the 1.5 KB I accept" in stopped
    assert len(fake_slack.calls_to("download:F0LIAR")) == 1 and engine.documents() == []


def test_a_refused_download_gets_a_reason(rig, fake_slack):
    fake_slack.fail("download:F0REPORT", "internal error")
    file_ts = drop(rig, "F0REPORT", PDF.name, PDF.read_bytes())
    done = outcome(rig, "C0GENERAL", file_ts)
    assert "I could not index *annual-report-2025.pdf*" in done and "500" in done
    assert len(fake_slack.calls_to("download:F0REPORT")) == 1 and rig.engine.documents() == []


# ----- deleted files ----------------------------------------------------------------------------


def test_a_deleted_file_leaves_the_index_in_every_scope(rig, fake_slack):
    rig.engine.ingest([PDF], scope="C0GENERAL")  # the same report uploaded by an admin stays
    general = drop(rig, "F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes())
    assert outcome(rig, "C0GENERAL", general).startswith(":white_check_mark:")
    f = fake_slack.add_file("F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), mimetype="text/markdown",
                            filetype="markdown", channels=["C0GENERAL", "G0SECRET"])
    secret = fake_slack.add_message("G0SECRET", "", user="U0ALICE", files=[f], subtype="file_share")
    assert rig.event(sp.file_share_message(f, channel="G0SECRET", channel_type="group", ts=secret)) == 200
    assert outcome(rig, "G0SECRET", secret).startswith(":white_check_mark:")
    assert {d.scope for d in rig.engine.documents_from("slack:F0HANDBK/")} == {"C0GENERAL", "G0SECRET"}
    assert "180 EUR" in ask(rig, HOTEL_Q, channel="G0SECRET")

    fake_slack.delete_file("F0HANDBK")
    assert rig.event(sp.file_deleted("F0HANDBK")) == 200
    wait_until(lambda: rig.engine.documents_from("slack:F0HANDBK/") == [], timeout=30, what="the file to go")
    assert [Path(d.source).name for d in rig.engine.documents()] == [PDF.name]
    hits = rig.engine.search(HOTEL_Q, scopes=["C0GENERAL", "G0SECRET", "default"])
    assert hits and all(h.chunk.source == str(PDF) or h.chunk.source.endswith(PDF.name) for h in hits)
    for channel in ("G0SECRET", "C0GENERAL"):
        assert "180" not in ask(rig, HOTEL_Q, channel=channel), channel


def test_a_file_taken_out_of_a_channel_leaves_only_that_channels_scope(rig, fake_slack):
    general = drop(rig, "F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes())
    assert outcome(rig, "C0GENERAL", general).startswith(":white_check_mark:")
    f = fake_slack.add_file("F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), mimetype="text/markdown",
                            filetype="markdown", channels=["C0GENERAL", "G0SECRET"])
    secret = fake_slack.add_message("G0SECRET", "", user="U0ALICE", files=[f], subtype="file_share")
    assert rig.event(sp.file_share_message(f, channel="G0SECRET", channel_type="group", ts=secret)) == 200
    assert outcome(rig, "G0SECRET", secret).startswith(":white_check_mark:")

    # Alice removes the file from #secret; it is still shared in #general.
    fake_slack.add_file("F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), mimetype="text/markdown",
                        filetype="markdown", channels=["C0GENERAL"])
    assert rig.event({"type": "file_unshared", "file_id": "F0HANDBK", "channel_id": "G0SECRET",
                      "user_id": "U0ALICE", "event_ts": sp.new_ts()}) == 200
    wait_until(lambda: {d.scope for d in rig.engine.documents_from("slack:F0HANDBK/")} == {"C0GENERAL"},
               timeout=30, what="the file to leave #secret's scope")
    assert "180" not in ask(rig, HOTEL_Q, channel="G0SECRET")
    assert "180 EUR" in ask(rig, HOTEL_Q, channel="C0GENERAL")


def test_a_file_deleted_while_it_is_being_indexed_is_not_kept(rig, fake_slack):
    ts = drop(rig, "F0REPORT", PDF.name, PDF.read_bytes())
    fake_slack.wait_for("download:F0REPORT")
    fake_slack.delete_file("F0REPORT")  # gone in Slack while IMP is still indexing it
    assert outcome(rig, "C0GENERAL", ts).startswith(":wastebasket:")
    assert rig.engine.documents_from("slack:F0REPORT/") == []
    assert "64 million" not in ask(rig, REVENUE_Q)
