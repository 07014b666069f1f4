"""`/minutes` end to end: find the recording, download it with the bot token, transcribe, draft, post.

The real engine transcribes the sample stand-up (twice in this file: a fresh
recording, and one indexed earlier whose stored transcript is reused); the other
flows use the sample WebVTT transcript, which needs no speech recognition. What
is checked is what people in the channel see: the status message and its
progress, the minutes that replace it, the Markdown file in its thread, owners as
mentions, and a reason whenever IMP cannot do it. Restarts are real: a new engine
and app on the same data folder finish what the previous run accepted.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from app import build_engine
from bot.chat.state import ChatState
from core.models import JobStatus
from core.store.jobs import JobStore
from tests.conftest import SAMPLES
from tests.fakes.slack_server import Call, FakeSlack
from tests.integration.slack.conftest import SlackRig, blocks_text, make_rig, wait_until

STANDUP = SAMPLES / "rotterdam-pilot-standup.m4a"
DESIGN = SAMPLES / "design-review.vtt"
KINDS = {".m4a": ("audio/mp4", "m4a"), ".vtt": ("text/vtt", "vtt"), ".pdf": ("application/pdf", "pdf")}


def share(fake: FakeSlack, file_id: str, path: Path, *, channel: str = "C0GENERAL", user: str = "U0ALICE",
          content: bytes | None = None, name: str | None = None) -> dict:
    """``user`` shared a file in ``channel`` (the file and its message in the history); returns the file."""
    mimetype, filetype = KINDS[path.suffix]
    f = fake.add_file(file_id, name or path.name, path.read_bytes() if content is None else content,
                      mimetype=mimetype, filetype=filetype, channels=[channel], user=user)
    fake.add_message(channel, "", user=user, files=[f], subtype="file_share")
    return f


def _blocks(args: dict) -> list[dict]:
    blocks = args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def _is_minutes(call: Call) -> bool:
    return any(b.get("type") == "header" for b in _blocks(call.args))


def shown_at(fake: FakeSlack, channel: str, ts: str) -> dict:
    """The message at ``ts`` as people in ``channel`` see it now."""
    return next(m for m in fake.messages(channel) if m["ts"] == ts)


def minutes_posted(fake: FakeSlack, channel: str = "C0GENERAL", timeout: float = 180.0) -> dict:
    """The chat.update that turned the status message into the minutes, once Slack accepted it."""
    update = fake.wait_for("chat.update", timeout=timeout,
                           where=lambda c: c.args.get("channel") == channel and _is_minutes(c))[-1].args

    def landed() -> bool:  # a refused (429) update is recorded too, but changes nothing on screen
        return any(b.get("type") == "header" for b in shown_at(fake, channel, update["ts"]).get("blocks") or [])

    wait_until(landed, timeout=timeout, what="the minutes to replace the status message")
    return update


def status_message(rig: SlackRig, channel: str = "C0GENERAL") -> dict:
    [status] = rig.posted(channel)
    assert status.get("thread_ts") is None

    def posted() -> list[str]:  # the call is recorded before Slack stores (and answers) it
        return [m["ts"] for m in rig.slack.messages(channel)
                if m.get("user") == "UIMPBOT" and m.get("thread_ts", m["ts"]) == m["ts"]]

    [ts] = wait_until(posted, timeout=10, what="the status message")
    return {**status, "ts": ts}


def uploaded_markdown(fake: FakeSlack, channel: str, thread_ts: str) -> str:
    """The bytes of the Markdown file IMP attached in the minutes' thread."""
    done = fake.wait_for("files.completeUploadExternal", timeout=60,
                         where=lambda c: c.args.get("channel_id") == channel)[-1].args
    assert done.get("thread_ts") == thread_ts
    [item] = json.loads(done["files"]) if isinstance(done["files"], str) else done["files"]
    assert fake.calls_to(f"upload:{item['id']}")
    name = fake.calls_to("files.getUploadURLExternal")[-1].args["filename"]
    assert name.endswith(".md")
    return fake.uploads[item["id"]].decode()


def reason_for(rig: SlackRig, text: str, **kw) -> str:
    """What IMP tells the person who typed ``/minutes text`` when it will not write minutes."""
    resp = rig.command("/minutes", text, **kw)
    assert resp.status_code == 200
    return rig.slack.wait_for("response_url:cmd", timeout=30)[-1].args["text"]


# ----- a recording, transcribed -----------------------------------------------------------------

def test_minutes_of_the_latest_recording_are_posted_with_progress_and_the_full_file(rig):
    fake = rig.slack
    share(fake, "F0STANDUP", STANDUP)
    fake.rate_limit("chat.update", times=1, retry_after=1)  # Slack slows IMP down on its first progress update

    resp = rig.command("/minutes", "")
    assert resp.status_code == 200
    assert "Looking for the recording" in resp.text

    status = status_message(rig)
    assert "Writing minutes of *rotterdam-pilot-standup.m4a*" in status["text"]
    assert "<@U0ALICE>" in status["text"]
    accepted = fake.wait_for("response_url:cmd")[-1].args
    assert accepted["response_type"] == "ephemeral"
    assert "I will post them in this channel" in accepted["text"]

    final = minutes_posted(fake)
    assert final["ts"] == status["ts"]  # the status message became the minutes
    shown = blocks_text(final)
    assert "Minutes: rotterdam-pilot-standup" in shown
    for heading in ("*Summary*", "*Decisions*", "*Action items*"):
        assert heading in shown
    # Recognised words, not their punctuation or case (which differ between CPUs).
    assert "pilot running until the end of june" in _words(shown)
    assert "weekly pilot report" in _words(shown)
    assert "requested by <@U0ALICE>" in shown

    # Progress showed on the same message while it worked: the update Slack refused with a 429 was sent
    # again after its Retry-After, and the task went on to the minutes.
    updates = [c.args for c in fake.calls_to("chat.update")]
    assert {u["ts"] for u in updates} == {status["ts"]}
    assert updates[0] == updates[1] and not _blocks(updates[1])
    assert updates[1]["text"].startswith(":hourglass_flowing_sand: Writing minutes of *rotterdam-pilot-standup.m4a*")
    assert updates[-1] == final

    markdown = uploaded_markdown(fake, "C0GENERAL", status["ts"])
    assert markdown.startswith("# rotterdam-pilot-standup")
    assert "## Action items" in markdown and "weekly pilot report" in _words(markdown)
    assert fake.calls_to("download:F0STANDUP")
    assert fake.calls_to("download:F0STANDUP")[0].headers.get("Authorization") == f"Bearer {fake.token}"
    # The task is closed once the upload returns (the fake records the upload before it answers).
    wait_until(lambda: rig.bot.deps.state.open_tasks() == [], timeout=30, what="the task to be closed")


def test_minutes_of_a_recording_indexed_earlier_reuse_its_transcript(rig):
    fake = rig.slack
    f = share(fake, "F0STANDUP", STANDUP)
    with open(STANDUP, "rb") as stream:  # shared earlier: indexed in #general under its Slack file id
        result = rig.engine.ingest_upload(STANDUP.name, stream, "C0GENERAL", source=f"slack:F0STANDUP/{STANDUP.name}")
    assert result.status.value == "indexed"

    assert rig.command("/minutes", f"<{f['permalink']}>").status_code == 200
    status = status_message(rig)
    final = minutes_posted(fake)
    assert final["ts"] == status["ts"]
    assert "pilot running until the end of June" in blocks_text(final)
    assert "weekly pilot report" in uploaded_markdown(fake, "C0GENERAL", status["ts"])
    assert fake.calls_to("download:F0STANDUP") == []  # nothing fetched or transcribed again


# ----- a transcript: owners, refusals, failures ---------------------------------------------------

def test_owners_become_mentions_when_their_name_matches_one_channel_member(rig):
    fake = rig.slack
    fake.add_user("U0PRIYA", "priya", real_name="Priya Natarajan")
    fake.add_user("U0DANA", "dana.w", real_name="Dana Whitfield")
    fake.add_user("U0PRIYA2", "priya.k", real_name="Priya Kumar")
    fake.add_channel("C0DESIGN", "design", members=["U0ALICE", "U0PRIYA", "U0DANA", "UIMPBOT"])
    fake.add_channel("C0TWO", "two-priyas", members=["U0ALICE", "U0PRIYA", "U0PRIYA2", "UIMPBOT"])

    f = share(fake, "F0DESIGN", DESIGN, channel="C0DESIGN")
    assert rig.command("/minutes", f["permalink"], channel="C0DESIGN").status_code == 200
    status = status_message(rig, "C0DESIGN")
    shown = blocks_text(minutes_posted(fake, "C0DESIGN"))
    assert "Minutes: design-review" in shown
    assert "<@U0PRIYA>: Send the thermal test report to the supplier" in shown
    assert "adopt the new cells" in shown
    markdown = uploaded_markdown(fake, "C0DESIGN", status["ts"])
    assert "**Priya**: Send the thermal test report" in markdown

    # Two members called Priya: IMP names nobody rather than the wrong one.
    g = share(fake, "F0DESIGN2", DESIGN, channel="C0TWO")
    rig.command("/minutes", g["permalink"], channel="C0TWO", response_url=fake.response_url("two"))
    shown = blocks_text(minutes_posted(fake, "C0TWO"))
    assert "Priya: Send the thermal test report" in shown
    assert "<@U0PRIYA" not in shown


def test_a_recording_that_cannot_be_read_gets_a_reason_on_the_status_message(rig):
    fake = rig.slack
    share(fake, "F0BROKEN", STANDUP, name="broken.m4a", content=STANDUP.read_bytes()[:4096])  # cut off

    assert rig.command("/minutes", "last").status_code == 200
    status = status_message(rig)

    def failed(c: Call) -> bool:
        return c.args.get("ts") == status["ts"] and c.args.get("text", "").startswith(":warning:")

    text = fake.wait_for("chat.update", timeout=120, where=failed)[-1].args["text"]
    assert text.startswith(":warning: I could not write minutes of *broken.m4a*: ")
    assert "not a readable audio or video file" in text
    rig.bot.close()
    assert fake.calls_to("files.completeUploadExternal") == []
    assert not any(_is_minutes(c) for c in fake.calls_to("chat.update"))
    # The task is closed once the upload returns (the fake records the upload before it answers).
    wait_until(lambda: rig.bot.deps.state.open_tasks() == [], timeout=30, what="the task to be closed")


@pytest.mark.parametrize(("text", "channel", "expected"), [
    ("", "C0GENERAL", "I found no audio or video file in this channel"),
    ("", "D0ALICE", "Use `/minutes` in the channel where the recording was shared"),
    ("", "C0NOBOT", "I am not a member of this channel"),
    ("the meeting", "C0GENERAL", "is not a link to a Slack file"),
    ("SECRET-LINK", "C0GENERAL", "is not shared in this channel"),
    ("PDF-LINK", "C0GENERAL", "neither a recording nor a transcript"),
])
def test_minutes_it_will_not_write_get_a_private_reason(rig, text, channel, expected):
    fake = rig.slack
    fake.add_channel("C0NOBOT", "no-bot", members=["U0ALICE"])
    secret = share(fake, "F0SECRETREC", STANDUP, channel="G0SECRET")
    pdf = share(fake, "F0REPORT", SAMPLES / "annual-report-2025.pdf")
    text = text.replace("SECRET-LINK", secret["permalink"]).replace("PDF-LINK", pdf["permalink"])

    said = reason_for(rig, text, channel=channel)
    assert expected in said
    rig.bot.close()
    assert [c.method for c in fake.calls if c.method.startswith("download:")] == []
    assert fake.calls_to("chat.postMessage") == [] and fake.calls_to("chat.update") == []
    # The task is closed once the upload returns (the fake records the upload before it answers).
    wait_until(lambda: rig.bot.deps.state.open_tasks() == [], timeout=30, what="the task to be closed")


def test_minutes_help_is_the_usage(rig):
    resp = rig.command("/minutes", "help")
    assert resp.status_code == 200 and "Usage: `/minutes`" in resp.text
    rig.bot.close()
    assert rig.slack.calls_to("response_url:cmd") == [] and rig.slack.calls_to("chat.postMessage") == []


# ----- restarts ------------------------------------------------------------------------------------

def test_minutes_accepted_before_a_restart_are_posted_after_it(settings, embedder, engine, fake_slack):
    f = share(fake_slack, "F0DESIGN", DESIGN)
    bot, http = make_rig(engine, fake_slack)
    with http:
        rig = SlackRig(http, fake_slack, bot, engine)
        bot.deps.followups.stop()  # the service goes down right after accepting the command
        assert rig.command("/minutes", f["permalink"]).status_code == 200
        status = status_message(rig)
        fake_slack.wait_for("response_url:cmd")
    assert fake_slack.calls_to("download:F0DESIGN") == [] and fake_slack.calls_to("chat.update") == []

    engine2 = build_engine(settings, embedder=embedder)  # the service starts again on the same data
    bot2, http2 = make_rig(engine2, fake_slack)
    with http2:
        final = minutes_posted(fake_slack)
        assert final["ts"] == status["ts"]
        assert "<@U0ALICE>" in blocks_text(final) and "Minutes: design-review" in blocks_text(final)
        assert "Send the thermal test report" in uploaded_markdown(fake_slack, "C0GENERAL", status["ts"])
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # one status message, never a second one


def test_a_minutes_job_cut_off_by_a_restart_is_resumed_and_posted(settings, embedder, engine, fake_slack):
    # The previous run had fetched the transcript, started the job and posted progress when it stopped.
    stored = settings.data_dir / "files" / "minutes" / "interrupted" / DESIGN.name
    stored.parent.mkdir(parents=True)
    shutil.copy(DESIGN, stored)
    status_ts = fake_slack.add_message("C0GENERAL", ":hourglass_flowing_sand: Writing minutes of *design-review.vtt*",
                                       user="UIMPBOT", bot_id="BIMPBOT")
    jobs = JobStore(engine.database)
    job = jobs.create("minutes", "C0GENERAL", f"upload:{DESIGN.name}", params={"path": str(stored)})
    jobs.progress(job.job_id, "writing minutes", 1, 4)
    state = ChatState(engine.database)
    task = state.add_task("minutes", "C0GENERAL", "U0ALICE", status=status_ts, file_id="F0DESIGN",
                          file_name=DESIGN.name, data={"requested_by": "U0ALICE"})
    state.update_task(task.task_id, state="submitted", job_id=job.job_id)

    engine2 = build_engine(settings, embedder=embedder)
    bot2, http2 = make_rig(engine2, fake_slack)
    with http2:
        final = minutes_posted(fake_slack)
        assert final["ts"] == status_ts
        assert "adopt the new cells" in blocks_text(final)
        assert "Send the thermal test report" in uploaded_markdown(fake_slack, "C0GENERAL", status_ts)
    assert engine2.job(job.job_id).status == JobStatus.DONE
    assert bot2.deps.state.task(task.task_id).state == "done"
    assert fake_slack.calls_to("files.info") == []  # nothing fetched again: the job had its file


def test_minutes_that_meet_a_429_storm_are_posted_on_a_later_round(engine, fake_slack):
    # The job finished while the front door was down; when it is back, Slack is rate limiting it.
    with open(DESIGN, "rb") as stream:
        job = engine.submit_minutes(filename=DESIGN.name, stream=stream, scope="C0GENERAL")
    wait_until(lambda: engine.job(job.job_id).status == JobStatus.DONE, timeout=60, what="the minutes job")
    status_ts = fake_slack.add_message("C0GENERAL", ":hourglass_flowing_sand: Writing minutes of *design-review.vtt*",
                                       user="UIMPBOT", bot_id="BIMPBOT")
    state = ChatState(engine.database)
    task = state.add_task("minutes", "C0GENERAL", "U0ALICE", status=status_ts, file_id="F0DESIGN",
                          file_name=DESIGN.name, data={"requested_by": "U0ALICE"})
    state.update_task(task.task_id, state="submitted", job_id=job.job_id)
    fake_slack.rate_limit("chat.update", times=4, retry_after=1)  # more than the client retries on its own

    bot, http = make_rig(engine, fake_slack)
    with http:
        final = minutes_posted(fake_slack, timeout=60)
        assert final["ts"] == status_ts and "adopt the new cells" in blocks_text(final)
        assert "Send the thermal test report" in uploaded_markdown(fake_slack, "C0GENERAL", status_ts)
    updates = fake_slack.calls_to("chat.update")
    assert len(updates) == 5  # four refused, then the minutes on the next round
    said = [c.args.get("text") or "" for c in updates + fake_slack.calls_to("chat.postMessage")]
    assert not any(":warning:" in t for t in said)  # a 429 is no failure to report
    assert shown_at(fake_slack, "C0GENERAL", status_ts)["text"].startswith("Minutes of design-review.vtt")
    assert bot.deps.state.task(task.task_id).state == "done"


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))
