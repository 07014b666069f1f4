"""Files posted in Teams channels end to end: a ``reference`` attachment reaches IMP's app, the follow-up worker
asks the fake Microsoft Graph for the file right before downloading it from the fake SharePoint, indexes it in
the channel's scope, and answers from it there (and only for the channel's members). A file kept anywhere but
where Teams keeps that conversation's files (the channel's drive; in a group chat the sender's OneDrive) is
refused before a byte of it is downloaded.

Who is where (tests/integration/teams/conftest.py): Megan, Adele and Gus are in the Planning channel; only
Megan is in the private channel. Each has a 1:1 chat with IMP.
"""

from __future__ import annotations

from pathlib import Path

from bot.chat.state import DONE, FAILED
from tests.fakes.bot_connector import GRAPH_SCOPE
from tests.integration.teams.rig import (
    ADELE, GUEST, MEGAN, PLANNING, PRIVATE, TEAM_GROUP, TeamsRig, aad, answer_cards, member, personal, shown,
    wait_until,
)

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
HOTEL = "how much is the hotel allowance in Europe?"
PASSWORDS = "what is the password policy for service accounts?"
HR_GROUP = "7d1c9e4a-2b3f-4c5d-8e6f-9a0b1c2d3e4f"  # another team's group: the HR site
CHAT = "19:b2c3d4e5f60718293a4b5c6d7e8f9a0b@thread.v2"  # a group chat of Megan, Adele and Gus
ELSEWHERE = "I index only files stored in this conversation's own files"


_wait = wait_until


def _answer(rig: TeamsRig, conversation: str) -> dict:
    return answer_cards(rig, conversation)[0]


def _post_file(rig: TeamsRig, attachment: dict, channel: str = PLANNING, **kwargs) -> None:
    assert rig.post(rig.message("", channel=channel, mention=False, attachments=[attachment], **kwargs)) == 200


def test_a_file_posted_in_a_channel_is_indexed_there_through_graph_and_answers_questions_there(teams):
    attachment = teams.shared("handbook.md", (SAMPLES / "handbook.md").read_bytes())
    _post_file(teams, attachment)
    done = teams.wait_messages(PLANNING, where=lambda a: "Indexed handbook.md" in shown(a), timeout=120)
    assert done[0].get("edited") is True  # the progress card, updated in place
    (doc,) = teams.engine.documents_from("teams:")
    assert doc.scope == PLANNING and doc.source == f"teams:{attachment['id']}/handbook.md"
    (call,) = teams.graph.calls_for(attachment["contentUrl"])
    assert call.status == 200 and teams.connector.token_ok(call.headers["authorization"], GRAPH_SCOPE)
    (task,) = teams.bot.state.recent_tasks(PLANNING, "ingest")
    assert task.state == DONE and "download_url" not in task.data
    teams.post(teams.message(HOTEL))
    assert "handbook.md" in shown(_answer(teams, PLANNING))
    # the same file posted again updates what was indexed, never a second copy
    _post_file(teams, attachment)
    teams.wait_messages(PLANNING, where=lambda a: "was indexed before" in shown(a), timeout=120)
    assert [d.doc_id for d in teams.engine.documents_from("teams:")] == [doc.doc_id]


def test_a_file_posted_in_a_private_channel_never_reaches_someone_outside_it(teams):
    teams.post(teams.bot_added(PLANNING))
    teams.post(teams.bot_added(PRIVATE))
    _wait(lambda: len(teams.bot.state.places("teams")) == 2, what="both channels to be remembered")
    policy = teams.shared("security-policy.html", (SAMPLES / "security-policy.html").read_bytes(), folder="General",
                          site="sites/Launch-Private", drive=teams.graph.channel_drive(TEAM_GROUP, PRIVATE))
    _post_file(teams, policy, channel=PRIVATE, channel_type="private")
    teams.wait_messages(PRIVATE, where=lambda a: "Indexed security-policy.html" in shown(a), timeout=120)
    assert [d.scope for d in teams.engine.documents_from("teams:")] == [PRIVATE]
    teams.post(teams.message(PASSWORDS, kind="personal", channel=None, user=MEGAN, mention=False))
    teams.post(teams.message(PASSWORDS, kind="personal", channel=None, user=ADELE, mention=False))
    assert "security-policy" in shown(_answer(teams, personal(MEGAN)))
    assert "security-policy" not in shown(_answer(teams, personal(ADELE)))


def test_graph_refusing_imp_tells_the_user_why_and_the_task_closes_failed(teams):
    attachment = teams.shared("handbook.md", (SAMPLES / "handbook.md").read_bytes())
    teams.graph.fail_next(1, 403)
    _post_file(teams, attachment)
    told = teams.wait_messages(PLANNING, where=lambda a: "could not index handbook.md" in shown(a))[0]
    assert "Files.Read.All" in shown(told) and "admin" in shown(told)
    task = _wait(lambda: [t for t in teams.bot.state.recent_tasks(PLANNING, "ingest") if t.state == FAILED],
                 what="the task to close")[0]
    assert "Files.Read.All" in (task.error or "")
    assert teams.engine.documents_from("teams:") == [] and teams.files.requests == []


def test_graph_throttling_is_waited_out_and_the_file_still_arrives(teams):
    attachment = teams.shared("handbook.md", (SAMPLES / "handbook.md").read_bytes())
    teams.graph.fail_next(2, 429, retry_after="1")
    _post_file(teams, attachment)
    teams.wait_messages(PLANNING, where=lambda a: "Indexed handbook.md" in shown(a), timeout=120)
    assert [c.status for c in teams.graph.calls_for(attachment["contentUrl"])] == [429, 429, 200]


def test_minutes_of_a_transcript_posted_with_the_command(teams):
    transcript = teams.shared("design-review.vtt", (SAMPLES / "design-review.vtt").read_bytes())
    teams.post(teams.message("minutes", attachments=[transcript]))
    minutes = teams.wait_messages(PLANNING, where=lambda a: "Minutes:" in shown(a) and "Action items" in shown(a),
                                  timeout=180)[0]
    assert minutes.get("edited") is True and "design-review.vtt" in shown(minutes)
    assert teams.graph.calls_for(transcript["contentUrl"])[0].status == 200


def _refused(rig: TeamsRig, conversation: str, name: str) -> str:
    """What IMP told the conversation about a refused file, once its task closed failed."""
    told = shown(rig.wait_messages(conversation, where=lambda a: f"could not index {name}" in shown(a))[0])
    task = _wait(lambda: [t for t in rig.bot.state.recent_tasks(conversation, "ingest") if t.state == FAILED],
                 what="the task to close")[0]
    assert ELSEWHERE in (task.error or "")
    return told


def test_a_file_of_another_teams_site_posted_in_a_channel_is_refused_and_never_downloaded(teams):
    salaries = teams.shared("salaries.md", b"# Salaries\n\nThe CFO earns 412,000 a year.\n", site="sites/HR",
                            folder="Payroll", drive=teams.graph.group_drive(HR_GROUP))
    _post_file(teams, salaries)
    told = _refused(teams, PLANNING, "salaries.md")
    assert ELSEWHERE in told and "salaries.md is elsewhere: upload it here instead" in told
    assert teams.files.requests == [] and teams.engine.documents_from("teams:") == []
    assert [c.path.rsplit("/", 1)[-1] for c in teams.graph.calls] == ["driveItem", "filesFolder"]


def test_a_channel_message_that_does_not_name_its_team_is_refused(teams):
    attachment = teams.shared("handbook.md", (SAMPLES / "handbook.md").read_bytes())
    activity = teams.message("", mention=False, attachments=[attachment])
    del activity["channelData"]["team"]["aadGroupId"]
    assert teams.post(activity) == 200
    assert "did not tell me which team" in _refused(teams, PLANNING, "handbook.md")
    assert teams.files.requests == [] and teams.engine.documents_from("teams:") == []


def _chat_file(rig: TeamsRig, owner: str, name: str = "handbook.md") -> dict:
    rig.connector.add_conversation(CHAT, [member(u) for u in (MEGAN, ADELE, GUEST)])
    return rig.shared(name, (SAMPLES / "handbook.md").read_bytes(), site=f"personal/{aad(owner)}_contoso_com",
                      folder="Microsoft Teams Chat Files", drive=rig.graph.user_drive(aad(owner)))


def test_a_file_posted_in_a_group_chat_from_the_senders_onedrive_is_indexed_there(teams):
    _post_file(teams, _chat_file(teams, MEGAN), channel=CHAT, kind="groupChat")
    teams.wait_messages(CHAT, where=lambda a: "Indexed handbook.md" in shown(a), timeout=120)
    assert [d.scope for d in teams.engine.documents_from("teams:")] == [CHAT]
    assert f"/v1.0/users/{aad(MEGAN)}/drive" in [c.path for c in teams.graph.calls]


def test_a_file_from_someone_elses_onedrive_posted_in_a_group_chat_is_refused(teams):
    _post_file(teams, _chat_file(teams, ADELE), channel=CHAT, kind="groupChat")  # Megan posts Adele's file
    assert "handbook.md is elsewhere" in _refused(teams, CHAT, "handbook.md")
    assert teams.files.requests == [] and teams.engine.documents_from("teams:") == []
