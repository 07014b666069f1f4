"""Slash commands: `/ask QUESTION` (a private answer with a button to share it) and `/minutes`.

Each command is acknowledged at once; the work happens in lazy listeners. `/minutes`
only finds the recording and hands the rest (download, transcription, drafting,
posting) to the follow-up worker, which survives a restart of the service. Whether
an answer may be shared, and whether a recording was transcribed before, are the
chat layer's (bot.chat.questions, bot.chat.files).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.chat import questions
from bot.chat.files import transcribed_before
from bot.slack.blocks import SHARE_ACTION, answer_blocks, answer_text, escape, progress_text
from bot.slack.deps import BUSY, SlackDeps, post_answer, reason
from bot.slack.downloads import FileRefusal
from bot.slack.files import find_recording, shared_file
from bot.slack.scopes import is_dm

log = logging.getLogger(__name__)

ASK_WORKING = ":mag: Looking that up…"
ASK_USAGE = "Usage: `/ask QUESTION`, for example `/ask what is the hotel allowance in Europe?`"
# Why an answer stays private is the chat layer's words (bot.chat.questions.NotShareable), after Slack's ⛔.
REMOVED_SINCE = f":no_entry: {questions.REMOVED_SINCE}"
MINUTES_USAGE = ("Usage: `/minutes` (the latest recording shared in this channel), `/minutes last`, or "
                 "`/minutes FILE-LINK` (a recording or transcript shared in this channel).")


def _received_key(command: dict) -> str | None:
    trigger = command.get("trigger_id")
    return f"ask:{trigger}" if trigger else None


def register(app: App, deps: SlackDeps) -> None:
    def ack_ask(ack: Ack, command: dict) -> None:
        # Only the asker sees either; an answer can take a while with a large model, so never a blank ack.
        deps.received.first_delivery(_received_key(command))  # when it came, for the wait bound below
        ack(text=ASK_USAGE if not (command.get("text") or "").strip() else ASK_WORKING)

    def run_ask(command: dict, respond: Respond) -> None:
        question = (command.get("text") or "").strip()
        if not question:
            return
        if deps.waited_too_long(_received_key(command)):
            respond(response_type="ephemeral", text=BUSY)
            return
        try:
            # Only the asker sees the answer, so what they may see decides (a shared channel does not matter).
            scopes = deps.scopes.for_asker(command["channel_id"], command["user_id"], team_hint=command.get("team_id"))
            answer = deps.engine.ask(question, scopes)
        except Exception as e:
            respond(response_type="ephemeral", text=f":warning: I could not answer that: {escape(reason(e))}")
            return
        respond(response_type="ephemeral", text=answer_text(answer), blocks=answer_blocks(answer, share=True))

    def run_share(body: dict, action: dict, respond: Respond) -> None:
        """Post a privately given answer in the channel, if the chat layer finds it shareable there (every
        scope it was answered from visible in the channel, none of its sources removed since)."""
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id")

        def visible() -> list[str]:
            if not channel:
                raise questions.NotShareable(questions.NOT_VISIBLE)
            return deps.scopes.for_message(channel, user, team_hint=(body.get("user") or {}).get("team_id"))

        try:
            answer = questions.shareable(deps.engine, action["value"], visible)
            post_answer(deps, channel, None, answer, shared_by=user)
        except questions.NotShareable as e:
            respond(response_type="ephemeral", replace_original=False, text=f":no_entry: {escape(e.detail)}")
            return
        except Exception as e:
            respond(response_type="ephemeral", replace_original=False,
                    text=f":warning: I could not share it: {escape(reason(e))}")
            return
        respond(delete_original=True)

    def ack_minutes(ack: Ack, command: dict) -> None:
        arg = (command.get("text") or "").strip()
        if arg.lower() in ("help", "-h", "--help"):
            ack(text=MINUTES_USAGE)
        else:
            ack(text=":hourglass_flowing_sand: Looking for the recording…")

    def run_minutes(command: dict, respond: Respond) -> None:
        arg = (command.get("text") or "").strip()
        if arg.lower() in ("help", "-h", "--help"):
            return
        channel, user = command["channel_id"], command["user_id"]
        if is_dm(channel):
            respond(response_type="ephemeral", text="Use `/minutes` in the channel where the recording was shared.")
            return
        try:
            file = shared_file(deps, arg, channel) if arg and arg.lower() != "last" else find_recording(deps, channel)
            existing = transcribed_before(deps.engine, "slack", file["id"], channel)
            status = deps.client.chat_postMessage(
                channel=channel, text=progress_text("Writing minutes of", file["name"], "queued", 0, None)
                + f" (asked by <@{user}>)")
        except FileRefusal as e:
            respond(response_type="ephemeral", text=f":information_source: {escape(e.detail)}\n{MINUTES_USAGE}")
            return
        except Exception as e:
            respond(response_type="ephemeral", text=f":warning: I could not start the minutes: {escape(reason(e))}")
            return
        data: dict[str, Any] = {"requested_by": user}
        if existing:  # already transcribed when it was shared: reuse the stored transcript
            data["doc_id"] = existing
        try:
            deps.state.add_task("minutes", channel, user, status=status["ts"], file_id=file["id"],
                                file_name=file["name"], data=data, platform="slack")
        except Exception as e:  # the status message is up: it must not wait forever for a task never stored
            text = f":warning: I could not start the minutes of *{escape(file['name'])}*: {escape(reason(e))}"
            deps.client.chat_update(channel=channel, ts=status["ts"], text=text)
            respond(response_type="ephemeral", text=text)
            return
        deps.followups.wake()
        respond(response_type="ephemeral", delete_original=False,
                text=f"Writing minutes of *{escape(file['name'])}*; I will post them in this channel.")

    app.command("/ask")(ack=ack_ask, lazy=[run_ask])
    app.action(SHARE_ACTION)(ack=lambda ack: ack(), lazy=[run_share])
    app.command("/minutes")(ack=ack_minutes, lazy=[run_minutes])
