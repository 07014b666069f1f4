"""Teams end to end: activities signed as Bot Framework signs them reach IMP's app at POST /api/messages, and
IMP answers through the fake Bot Connector, fetches dropped files from the fake SharePoint, and writes minutes,
all through the same chat layer as Slack (bot/chat).

Who is where (tests/integration/teams/conftest.py): Megan, Adele and Gus (a guest) are in the team and its
Planning channel; only Megan is in the private channel. Each has a 1:1 chat with IMP.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.teams.rig import (
    ADELE, APP_ID, GUEST, MEGAN, PLANNING, PRIVATE, TENANT, TeamsRig, answer_cards, member, personal, shown,
    wait_until,
)

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
HOTEL = "how much is the hotel allowance in Europe?"


_answers = answer_cards


def _answer_of(rig: TeamsRig, conversation: str, card: dict):
    """The answer a posted card carries (linked just after it is posted)."""
    answer_id = _wait(lambda: rig.bot.state.answer_at(conversation, card["id"]), what="the answer's link")
    return rig.engine.answer(answer_id)


_wait = wait_until


@pytest.fixture
def handbook_in_planning(engine):
    engine.ingest([SAMPLES / "handbook.md"], scope=PLANNING)


@pytest.fixture
def secret_in_private(engine):
    engine.ingest([SAMPLES / "security-policy.html"], scope=PRIVATE)


def test_a_channel_mention_is_answered_in_its_thread_with_cited_sources(teams, handbook_in_planning):
    question = teams.message(HOTEL)
    assert teams.post(question) == 200
    card = _answers(teams, PLANNING)[0]
    assert card["replyToId"] == question["id"]  # in the thread of the question
    body = shown(card)
    assert "handbook.md" in body and "[1]" in body
    assert card["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert _answer_of(teams, PLANNING, card).scopes == [PLANNING, "default"]


@pytest.mark.parametrize("authorization", ["none", "garbage", "forged", "expired", "wrong_audience", "other_url"])
def test_a_request_without_a_valid_bot_framework_token_gets_401_and_nothing_runs(teams, handbook_in_planning,
                                                                               authorization):
    tokens = {
        "none": None,
        "garbage": "Bearer not.a.jwt",
        "forged": f"Bearer {teams.identity.forged_token(APP_ID, teams.connector.service_url)}",
        "expired": f"Bearer {teams.identity.token(APP_ID, teams.connector.service_url, issued_at=time.time() - 7200)}",
        "wrong_audience": f"Bearer {teams.identity.token('another-bots-app-id', teams.connector.service_url)}",
        "other_url": f"Bearer {teams.identity.token(APP_ID, 'https://smba.trafficmanager.net/emea/')}",
    }
    assert teams.post(teams.message(HOTEL), authorization=tokens[authorization]) == 401
    time.sleep(0.5)
    assert teams.connector.calls == [] and teams.messages(PLANNING) == []


def test_a_repeated_delivery_is_answered_once(teams, handbook_in_planning):
    question = teams.message(HOTEL)
    assert teams.post(question) == 200 and teams.post(question) == 200
    _answers(teams, PLANNING)
    time.sleep(1.0)
    assert len(_answers(teams, PLANNING)) == 1


def test_a_one_to_one_question_draws_on_the_askers_channels_and_never_on_a_private_channel_they_are_not_in(
        teams, handbook_in_planning, secret_in_private):
    # IMP has been seen in both channels (installed there): the 1:1 chat's scopes come from those.
    teams.post(teams.bot_added(PLANNING))
    teams.post(teams.bot_added(PRIVATE))
    _wait(lambda: len(teams.bot.state.places("teams")) == 2, what="both channels to be remembered")
    question = "what is the password policy for service accounts?"
    teams.post(teams.message(question, kind="personal", channel=None, user=MEGAN, mention=False))
    teams.post(teams.message(question, kind="personal", channel=None, user=ADELE, mention=False))
    megan = _answers(teams, personal(MEGAN))[0]
    adele = _answers(teams, personal(ADELE))[0]
    megans, adeles = _answer_of(teams, personal(MEGAN), megan), _answer_of(teams, personal(ADELE), adele)
    assert PRIVATE in megans.scopes and PLANNING in megans.scopes and "default" in megans.scopes
    assert PRIVATE not in adeles.scopes and PLANNING in adeles.scopes
    assert "security-policy" in shown(megan)
    assert "security-policy" not in shown(adele)
    assert all(c.chunk.doc_id and teams.engine.document(c.chunk.doc_id).scope != PRIVATE for c in adeles.citations)


def test_a_guest_gets_no_company_wide_scopes(teams, handbook_in_planning):
    teams.post(teams.message(HOTEL, user=GUEST))
    card = _answers(teams, PLANNING)[0]
    assert _answer_of(teams, PLANNING, card).scopes == [PLANNING]


def test_reactions_on_an_answer_become_feedback_and_taking_one_back_retracts_it(teams, handbook_in_planning):
    teams.post(teams.message(HOTEL))
    card = _answers(teams, PLANNING)[0]
    answer_id = _answer_of(teams, PLANNING, card).answer_id
    assert teams.post(teams.reaction(card["id"], "like", user=ADELE)) == 200
    rated = _wait(lambda: teams.engine.feedback(answer_id), what="the rating")
    assert [(f.user, f.rating, f.source) for f in rated] == [(ADELE, 1, "teams")]
    teams.post(teams.reaction(card["id"], "like", user=ADELE, added=False))
    _wait(lambda: not [f for f in teams.engine.feedback(answer_id)], what="the rating to be taken back")
    teams.post(teams.reaction(card["id"], "heart", user=MEGAN))  # no rating
    time.sleep(0.5)
    assert teams.engine.feedback(answer_id) == []


def test_a_file_dropped_in_a_one_to_one_chat_is_indexed_there_with_progress_and_answers_from_it(teams):
    attachment = teams.file("handbook.md", (SAMPLES / "handbook.md").read_bytes(), "md")
    teams.post(teams.message("", kind="personal", channel=None, user=MEGAN, mention=False, attachments=[attachment]))
    done = teams.wait_messages(personal(MEGAN), where=lambda a: "Indexed handbook.md" in shown(a), timeout=120)
    assert done[0].get("edited") is True  # the progress card was updated in place, not a second message
    docs = teams.engine.documents_from("teams:")
    assert [d.scope for d in docs] and docs[0].scope.startswith("teams-h:")  # the 1:1 chat's own scope
    tasks = teams.bot.state.recent_tasks(docs[0].scope, "ingest")
    assert "download_url" not in tasks[0].data  # the link (a credential) is not kept
    teams.post(teams.message(HOTEL, kind="personal", channel=None, user=MEGAN, mention=False))
    card = _answers(teams, personal(MEGAN))[0]
    assert "handbook.md" in shown(card)
    # Adele does not see Megan's 1:1 chat
    teams.post(teams.message(HOTEL, kind="personal", channel=None, user=ADELE, mention=False))
    assert "handbook.md" not in shown(_answers(teams, personal(ADELE))[0])


def test_the_minutes_command_posts_minutes_of_the_latest_recording_in_the_channel(teams):
    """With the owner named in the transcript (Priya) a member of the channel, her action item mentions her."""
    priya = {"id": "29:1PriyaNatarajan", "name": "Priya Natarajan", "userRole": "user", "tenantId": TENANT}
    teams.connector.add_conversation(PLANNING, [member(MEGAN), member(ADELE), priya])
    transcript = teams.file("design-review.vtt", (SAMPLES / "design-review.vtt").read_bytes(), "vtt")
    teams.post(teams.message("", attachments=[transcript], mention=False))
    teams.wait_messages(PLANNING, where=lambda a: "Indexed design-review.vtt" in shown(a), timeout=120)
    teams.post(teams.message("minutes"))
    minutes = teams.wait_messages(PLANNING, where=lambda a: "Minutes:" in shown(a) and "Action items" in shown(a),
                                  timeout=180)[0]
    assert minutes.get("edited") is True and "design-review.vtt" in shown(minutes)
    card = minutes["attachments"][0]["content"]
    mentioned = {e["mentioned"]["id"]: e["text"] for e in card["msteams"].get("entities", [])}
    assert mentioned.get(priya["id"]) == "<at>Priya Natarajan</at>" and mentioned.get(MEGAN)  # owner, requester
    assert "<at>Priya Natarajan</at>: Send the thermal test report" in shown(minutes)


def test_minutes_with_no_recording_say_how_to_ask(teams):
    teams.post(teams.message("minutes"))
    note = teams.wait_messages(PLANNING, where=lambda a: "no recording" in shown(a))[0]
    assert "attach a recording" in shown(note)


def test_connector_throttling_is_waited_out_and_the_answer_still_arrives(teams, handbook_in_planning):
    teams.connector.fail_next(2, 429, retry_after="1")
    teams.post(teams.message(HOTEL))
    card = _answers(teams, PLANNING)[0]
    assert "handbook.md" in shown(card)
    assert [c.status for c in teams.connector.calls if c.kind in ("reply", "send")][:2] == [429, 429]


def test_imp_added_to_a_channel_greets_it(teams):
    teams.post(teams.bot_added(PLANNING))
    greeting = teams.wait_messages(PLANNING)[0]
    assert "Hi!" in shown(greeting)
    assert [p.channel for p in teams.bot.state.places("teams")] == [PLANNING]


def test_sharing_an_answer_posts_it_only_where_everyone_may_see_its_sources(teams, handbook_in_planning,
                                                                          secret_in_private):
    teams.post(teams.bot_added(PLANNING))
    teams.post(teams.bot_added(PRIVATE))
    _wait(lambda: len(teams.bot.state.places("teams")) == 2, what="both channels to be remembered")
    hotel = teams.engine.ask(HOTEL, scopes=[PLANNING])
    secret = teams.engine.ask("what is the password policy for service accounts?", scopes=[PRIVATE, PLANNING])

    def press(answer_id: str) -> None:
        share = teams.message("", mention=False)
        share["value"] = {"action": "imp_share_answer", "answer_id": answer_id}
        assert teams.post(share) == 200

    press(secret.answer_id)
    refusal = teams.wait_messages(PLANNING, where=lambda a: "stays private" in shown(a))[0]
    assert "security-policy" not in shown(refusal)
    press(hotel.answer_id)
    shared = teams.wait_messages(PLANNING, where=lambda a: "handbook.md" in shown(a))[0]
    assert _answer_of(teams, PLANNING, shared).answer_id == hotel.answer_id


def test_deleting_the_message_that_carried_a_file_takes_the_file_out_of_that_conversation(teams):
    attachment = teams.file("handbook.md", (SAMPLES / "handbook.md").read_bytes(), "md")
    drop = teams.message("", kind="personal", channel=None, user=MEGAN, mention=False, attachments=[attachment])
    teams.post(drop)
    teams.wait_messages(personal(MEGAN), where=lambda a: "Indexed handbook.md" in shown(a), timeout=120)
    assert len(teams.engine.documents_from("teams:")) == 1
    conversation, data = teams.conversation("personal", None, MEGAN)
    deleted = {"type": "messageDelete", "id": drop["id"], "serviceUrl": teams.connector.service_url,
               "channelId": "msteams", "from": {"id": MEGAN, "name": "Megan Bowen"}, "conversation": conversation,
               "recipient": {"id": f"28:{APP_ID}", "name": "IMP"}, "channelData": data}
    assert teams.post(deleted) == 200
    _wait(lambda: teams.engine.documents_from("teams:") == [], what="the document to leave the index")


def test_a_task_left_open_by_a_previous_run_is_finished_after_a_restart(engine, settings, teams_fakes):
    from bot.chat.state import ChatState
    from tests.integration.teams.conftest import make_teams_rig
    from tests.integration.teams.rig import PLANNING as CHANNEL

    doc = engine.ingest_upload("design-review.vtt", (SAMPLES / "design-review.vtt").open("rb"), scope=CHANNEL).doc_id
    connector = teams_fakes[1]
    where = {"service_url": connector.service_url, "conversation": CHANNEL, "reply_to": None}
    state = ChatState(engine.database)  # what the stopped service had stored: a minutes job under way
    task = state.add_task("minutes", CHANNEL, MEGAN, file_id="design-review", file_name="design-review.vtt",
                          data={"where": where, "doc_id": doc}, platform="teams")
    job = engine.submit_minutes(doc_id=doc, scope=CHANNEL)
    state.update_task(task.task_id, state="submitted", job_id=job.job_id)
    rig, http = make_teams_rig(engine, settings, teams_fakes)
    with http:  # the new service starts its worker, which picks the task up
        minutes = rig.wait_messages(CHANNEL, where=lambda a: "Minutes:" in shown(a), timeout=180)[0]
        assert "design-review.vtt" in shown(minutes)
        _wait(lambda: rig.bot.state.task(task.task_id).state == "done", what="the task to close")
