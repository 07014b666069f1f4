"""Reading incoming Teams activities: what the Teams adapter gets from each, and what it never gets.

bot.teams.activity over the sample activities in tests/data/teams (written after the Bot Framework and
Teams documentation: channel threads, 1:1 and group chats, the minutes command, files and inline images,
reactions, Adaptive Card actions, membership and installation events) and hostile variants of them:
spoofed recipients, other tenants, conversations that contradict themselves, mentions that are not in
the text, insecure links, control characters, wrong JSON types, deep or huge documents. Every hostile
input either reads as a safe event or is refused with InvalidActivity; nothing else escapes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.teams import cards
from bot.teams.activity import (
    HASHED_SCOPE_PREFIX,
    MAX_SHARED_FILES,
    SHARE_ACTION,
    parse_activity,
    parse_command,
    rating_of,
    scope_key,
    scope_of,
)
from bot.teams.connector import DEFAULT_SERVICE_HOSTS, ServiceUrlRefused, check_service_url
from bot.teams.events import (
    CardAction,
    Ignored,
    MembersChanged,
    Message,
    MessageDeleted,
    Reaction,
    SharedFile,
)
from bot.teams.fields import InvalidActivity
from core.errors import InvalidRequest
from core.models import SCOPE_PATTERN, Answer

DATA = Path(__file__).resolve().parents[1] / "data" / "teams"
APP_ID = "9c2a3b4d-1e5f-4a6b-8c7d-0e1f2a3b4c5d"
TENANT = "5b1f3c0e-2d4a-4e6b-9f8c-1a2b3c4d5e6f"
CHANNEL = "19:4a1b2c3d5e6f40718293a4b5c6d7e8f9@thread.tacv2"
GENERAL = "19:Xq2bR7tN8vL1kP0sJ3mW5yZ6aC4dE9fG@thread.tacv2"
PRIVATE = "19:7e8f9a0b1c2d43e5f6a7b8c9d0e1f2a3@thread.tacv2"
GROUP = "19:b3e2a7c1d4f54e8b9a6c0d1e2f3a4b5c@thread.v2"
MEGAN = "29:1GcS4EJYs0dZ5nWq2u7y3kLmN8pQrT6vX9zA1bC2dE3fG4hJ5kL6mN7pQ8rS9tU0vW1xY2zA3bC4dE5fG6hJ7k"
ADELE = "29:1Tb8fE2gH3jK4lM5nP6qR7sT8uV9wX0yZ1aB2cD3eF4gH5jK6lM7nP8qR9sT0uV1wX2yZ3aB4cD5eF6gH7jK8l"
ANSWER_ID = "3f2a9c1e7b5d4f60a8e2c4b6d8f0a1c3"


def sample(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def read(activity: object, **kwargs: Any) -> Any:
    kwargs.setdefault("app_id", APP_ID)
    kwargs.setdefault("tenant_id", TENANT)
    return parse_activity(activity, **kwargs)


def refused(activity: object, reason: str, status: int = 400, **kwargs: Any) -> InvalidActivity:
    with pytest.raises(InvalidActivity) as caught:
        read(activity, **kwargs)
    assert caught.value.reason == reason, caught.value.detail
    assert caught.value.status == status
    assert isinstance(caught.value, InvalidRequest) and caught.value.code == "invalid_activity"
    return caught.value


# ----- messages ------------------------------------------------------------------------------
def test_a_channel_mention_in_a_thread_reads_as_the_question_with_its_thread_and_scope():
    message = read(sample("channel_mention.json"))
    assert isinstance(message, Message)
    assert message.text == "what did Adele Vance decide about the launch date?"
    assert message.mentioned and message.addressed and message.command is None and message.arguments == ""
    assert [(p.id, p.name) for p in message.mentions] == [(ADELE, "Adele Vance")]  # one person, split name
    assert (message.user.id, message.user.name) == (MEGAN, "Megan Bowen")
    assert message.user.aad_object_id == "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
    where = message.conversation
    assert (where.kind, where.id) == ("channel", f"{CHANNEL};messageid=1712340000000")
    assert (where.base_id, where.thread_id, where.channel_id) == (CHANNEL, "1712340000000", CHANNEL)
    assert (where.team_id, where.team_group_id, where.tenant_id) == (
        GENERAL, "02bd9fd6-8f93-4758-87c3-1fb73740a315", TENANT)
    assert where.service_url == "https://smba.trafficmanager.net/emea/"
    assert message.reply_to_id == "1712340000000" and message.thread_root == "1712340000000"
    assert message.timestamp == datetime(2024, 4, 5, 10, 14, 38, 901234)
    assert scope_of(where) == CHANNEL  # the channel, never the thread
    assert (message.files, message.images, message.refused) == ((), (), ())  # the HTML rendering is skipped


def test_a_one_to_one_message_is_addressed_without_a_mention_and_has_no_scope_of_its_own():
    message = read(sample("personal_message.json"))
    assert isinstance(message, Message)
    assert message.text == "What is the hotel allowance in Europe?"
    assert not message.mentioned and message.addressed
    assert message.conversation.kind == "personal" and message.conversation.channel_id is None
    assert message.thread_root is None
    assert scope_of(message.conversation) is None  # the caller asks for the person's memberships


def test_a_group_chat_message_names_people_reads_entities_and_is_scoped_to_the_chat():
    message = read(sample("group_chat_message.json"))
    assert message.text == "summarise what Megan Bowen shared yesterday & today"
    assert message.mentioned and message.user.id == ADELE
    assert message.conversation.kind == "groupChat" and message.conversation.team_id is None
    assert scope_of(message.conversation) == GROUP


def test_a_channel_message_without_a_mention_is_seen_but_not_addressed():
    activity = sample("channel_mention.json")
    activity["text"] = "the launch moved to May"
    activity["entities"] = []
    message = read(activity)
    assert not message.mentioned and not message.addressed and message.text == "the launch moved to May"


def test_the_minutes_command_after_the_mention_and_its_argument():
    message = read(sample("minutes_command.json"))
    assert (message.command, message.arguments) == ("minutes", "weekly-sync.mp4")
    assert message.thread_root == message.activity_id == "1712346000789"  # a new post starts its thread


@pytest.mark.parametrize(("text", "expected"), [
    ("ask what is the hotel allowance?", ("ask", "what is the hotel allowance?")),
    ("ASK   where is the deck", ("ask", "where is the deck")),
    ("minutes", ("minutes", "")),
    ("/minutes last", ("minutes", "last")),
    ("Minutes\nweekly-sync.mp4", ("minutes", "weekly-sync.mp4")),
    ("minutesplease", (None, "")),
    ("asking for a friend", (None, "")),
    ("what were the minutes?", (None, "")),
    ("", (None, "")),
])
def test_commands_are_the_first_word_only(text, expected):
    assert parse_command(text) == expected


def test_a_command_in_a_one_to_one_chat_needs_no_mention():
    activity = sample("personal_message.json")
    activity["text"] = "ask what did we decide?"
    message = read(activity)
    assert (message.command, message.arguments, message.mentioned) == ("ask", "what did we decide?", False)


# ----- attachments ---------------------------------------------------------------------------
def test_a_file_in_a_one_to_one_chat_carries_what_the_downloader_needs():
    message = read(sample("personal_file.json"))
    (f,) = message.files
    assert f.name == "Travel policy 2024.pdf" and f.file_type == "pdf"
    assert f.download_url.startswith("https://contoso-my.sharepoint.com/personal/meganb_contoso_com/_layouts/15/")
    assert f.unique_id == "1150D938-8870-4044-9F2C-5BBDEBA70C9D"
    assert f.etag == '"{1150D938-8870-4044-9F2C-5BBDEBA70C9D},2"' and f.size is None
    assert f.content_url is not None and " " not in f.content_url
    assert f.content_url.endswith("Travel%20policy%202024.pdf")
    assert message.images == () and message.refused == () and message.text == ""


def test_a_file_size_is_kept_when_teams_gives_one_and_only_if_it_is_a_count():
    activity = sample("personal_file.json")
    activity["attachments"][0]["content"]["size"] = 73_000_000
    assert read(activity).files[0].size == 73_000_000
    for bad in (-1, True, "12", 2.5, 2 ** 60):
        activity["attachments"][0]["content"]["size"] = bad
        assert read(activity).files[0].size is None


def test_an_inline_image_is_kept_apart_from_files():
    message = read(sample("inline_image.json"))
    (image,) = message.images
    assert image.content_type == "image/png"
    assert image.url.startswith("https://smba.trafficmanager.net/emea/v3/attachments/")
    assert message.files == () and message.text == "what does this chart show?"


def test_links_that_are_not_https_are_refused_with_a_reason_and_the_message_still_reads():
    message = read(sample("hostile_insecure_links.json"))
    assert message.files == () and message.images == ()
    assert [r.name for r in message.refused] == ["Travel policy 2024.pdf", "image"]
    assert all("https" in r.reason for r in message.refused)


@pytest.mark.parametrize("url", [
    "http://contoso-my.sharepoint.com/x.pdf", "https://user:secret@contoso-my.sharepoint.com/x.pdf",
    "javascript:alert(1)",
    "file:///etc/passwd", "https:///nohost", "https://host:99999/x", "https://host/a b", "https://host/\u00e9",
    "https://host/x\u0000", "//host/x", 42, None, "https://" + "a" * 5000,
])
def test_download_links_that_imp_must_not_fetch(url):
    activity = sample("personal_file.json")
    activity["attachments"][0]["content"]["downloadUrl"] = url
    message = read(activity)
    assert message.files == () and len(message.refused) == 1


def test_plain_http_to_a_loopback_host_only_when_the_caller_allows_it():
    activity = sample("personal_file.json")
    activity["attachments"][0]["content"]["downloadUrl"] = "http://127.0.0.1:8123/files/policy.pdf"
    assert read(activity).files == ()
    assert read(activity, loopback_http=True).files[0].download_url == "http://127.0.0.1:8123/files/policy.pdf"
    activity["attachments"][0]["content"]["downloadUrl"] = "http://attacker.example/policy.pdf"
    assert read(activity, loopback_http=True).files == ()


def test_a_file_without_download_details_or_id_is_refused_not_guessed():
    activity = sample("personal_file.json")
    del activity["attachments"][0]["content"]
    assert read(activity).refused[0].reason == "Teams gave no download details for it"
    activity = sample("personal_file.json")
    activity["attachments"][0]["content"]["uniqueId"] = "<script>"
    assert read(activity).refused[0].reason == "Teams gave no usable file id for it"


SITE = "https://contoso.sharepoint.com/sites/Launch/Shared Documents/Planning"


def posted(*attachments: dict[str, Any], name: str = "channel_mention.json") -> dict[str, Any]:
    """A channel message (or another sample) carrying ``attachments`` after its HTML rendering."""
    activity = sample(name)
    activity["attachments"] = [*activity.get("attachments", []), *attachments]
    return activity


def reference(name: str | None = "design review.docx", *, url: object = ..., item_id: object = ...) -> dict:
    """A file posted in a channel or group chat, as Teams refers to it."""
    ref: dict[str, Any] = {"contentType": "reference",
                           "contentUrl": f"{SITE}/{name or 'design review.docx'}" if url is ... else url}
    if name is not None:
        ref["name"] = name
    if item_id is not ...:
        ref["id"] = item_id
    else:
        ref["id"] = "{5E8A3C21-7B4D-4F1A-9C2E-0D6B8A4F3E19}"
    return ref


def test_a_file_posted_in_a_channel_is_a_shared_file_with_its_place_in_sharepoint():
    message = read(posted(reference()))
    assert message.files == () and message.refused == () and message.images == ()
    assert message.shared_files == (SharedFile(
        name="design review.docx", url=f"{SITE.replace(' ', '%20')}/design%20review.docx",
        item_id="5E8A3C21-7B4D-4F1A-9C2E-0D6B8A4F3E19", file_type="docx"),)
    assert message.mentioned  # the question still reads as before
    group = read(posted(reference("notes.vtt"), name="group_chat_message.json"))
    assert [(s.name, s.file_type) for s in group.shared_files] == [("notes.vtt", "vtt")]


def test_a_shared_file_without_an_id_gets_a_stable_one_from_its_place():
    first = read(posted(reference(item_id=None))).shared_files[0]
    again = read(posted(reference(item_id=None))).shared_files[0]
    other = read(posted(reference("budget.xlsx", item_id=None))).shared_files[0]
    assert first.item_id == again.item_id and re.fullmatch(r"[0-9a-f]{32}", first.item_id)
    assert other.item_id != first.item_id


def test_a_shared_files_path_is_percent_encoded_letters_and_spaces_alike():
    (shared,) = read(posted(reference("Präsentation Q3.pptx"))).shared_files
    assert shared.url.isascii() and " " not in shared.url
    assert shared.url.endswith("/Pr%C3%A4sentation%20Q3.pptx") and shared.name == "Präsentation Q3.pptx"
    (named,) = read(posted(reference(None, url=f"{SITE}/Roadmap 2025.pdf"))).shared_files
    assert (named.name, named.file_type) == ("Roadmap 2025.pdf", "pdf")  # no name given: the path's last part


@pytest.mark.parametrize("url", [
    None, 42, "", "http://contoso.sharepoint.com/x.docx", "https://user:secret@contoso.sharepoint.com/x.docx",
    "javascript:alert(1)", "file:///etc/passwd", "https:///nohost", "https://host/x\u0000", "https://host/\u202ex",
    "//host/x", "https://" + "a" * 5000,
])
def test_a_shared_file_whose_place_is_no_https_link_is_refused_with_a_reason(url):
    message = read(posted(reference("plan.docx", url=url)))
    assert message.shared_files == ()
    assert [r.name for r in message.refused] == ["plan.docx"]
    assert "https" in message.refused[0].reason


@pytest.mark.parametrize("item_id", ["<script>", "a/b", 42, ["x"], "x" * 200])
def test_a_shared_file_with_a_malformed_id_is_refused_not_guessed(item_id):
    message = read(posted(reference(item_id=item_id)))
    assert message.shared_files == ()
    assert message.refused[0].reason == "Teams gave no usable file id for it"


def test_plain_http_places_only_to_a_loopback_host_when_the_caller_allows_it():
    activity = posted(reference("plan.docx", url="http://127.0.0.1:8123/sites/Launch/plan.docx"))
    assert read(activity).shared_files == ()
    assert read(activity, loopback_http=True).shared_files[0].url == "http://127.0.0.1:8123/sites/Launch/plan.docx"


def test_shared_files_are_bounded_and_each_is_taken_once():
    many = [reference(f"file{i}.md", item_id=f"id-{i}") for i in range(MAX_SHARED_FILES + 3)]
    message = read(posted(*many, reference("file0.md", item_id="id-0")))
    assert len(message.shared_files) == MAX_SHARED_FILES
    assert [r.name for r in message.refused] == [f"file{i}.md" for i in range(MAX_SHARED_FILES, MAX_SHARED_FILES + 3)]
    assert all(str(MAX_SHARED_FILES) in r.reason for r in message.refused)


def test_a_reference_to_a_file_the_message_carries_for_download_is_not_taken_twice():
    activity = sample("personal_file.json")
    download = activity["attachments"][0]
    activity["attachments"].append({"contentType": "reference", "contentUrl": download["contentUrl"],
                                    "name": download["name"], "id": "1150D938-8870-4044-9F2C-5BBDEBA70C9D"})
    message = read(activity)
    assert len(message.files) == 1 and message.shared_files == () and message.refused == ()


# ----- reactions -----------------------------------------------------------------------------
def test_a_like_added_and_removed_rates_the_answer_and_takes_it_back():
    added, removed = read(sample("reaction_like_added.json")), read(sample("reaction_like_removed.json"))
    assert isinstance(added, Reaction) and isinstance(removed, Reaction)
    assert [(c.added, c.reaction, c.rating) for c in added.changes] == [(True, "like", 1)]
    assert [(c.added, c.reaction, c.rating) for c in removed.changes] == [(False, "like", 1)]
    assert added.message_id == "1712345699999" and added.user.id == MEGAN and added.user.name == ""
    assert (added.conversation.base_id, scope_of(added.conversation)) == (CHANNEL, CHANNEL)


def test_a_thumbs_down_with_a_skin_tone_rates_minus_one():
    reaction = read(sample("reaction_no_added.json"))
    assert [(c.reaction, c.rating) for c in reaction.changes] == [("no-tone3", -1)]


@pytest.mark.parametrize("name", ["reaction_heart_added.json", "reaction_angry_added.json"])
def test_reactions_that_are_no_rating_are_ignored(name):
    event = read(sample(name))
    assert isinstance(event, Ignored) and event.activity_type == "messageReaction" and not event.invoke


@pytest.mark.parametrize(("reaction", "rating"), [
    ("like", 1), ("Like", 1), ("yes", 1), ("yes-tone5", 1), ("\U0001F44D", 1), ("\U0001F44D\U0001F3FD", 1),
    ("1f44d_thumbsup", 1), ("no", -1), ("no-tone1", -1), ("\U0001F44E", -1), ("1f44e_thumbsdown-tone2", -1),
    ("heart", None), ("laugh", None), ("surprised", None), ("sad", None), ("angry", None), ("angryface", None),
    ("1f44b_wavinghand", None), ("likes", None), ("no-tone9", None), ("nope", None), ("", None), ("like" * 50, None),
])
def test_only_thumbs_count_as_ratings(reaction, rating):
    assert rating_of(reaction) == rating


def test_one_activity_with_several_reactions_keeps_only_the_ratings():
    activity = sample("reaction_like_added.json")
    activity["reactionsAdded"] = [{"type": "heart"}, {"type": "like"}]
    activity["reactionsRemoved"] = [{"type": "no"}]
    changes = read(activity).changes
    assert [(c.added, c.rating) for c in changes] == [(True, 1), (False, -1)]


def test_a_reaction_must_say_which_message_it_is_on():
    activity = sample("reaction_like_added.json")
    del activity["replyToId"]
    refused(activity, "bad_reply-to_id")


def test_imps_own_and_other_bots_activities_are_ignored():
    for name in ("reaction_like_added.json", "channel_mention.json"):
        own = sample(name)
        own["from"] = {"id": f"28:{APP_ID}", "name": "IMP"}
        assert read(own).reason == "IMP's own activity"
        other = sample(name)
        other["from"] = {"id": "28:11111111-2222-3333-4444-555555555555", "name": "Polly"}
        assert read(other).reason == "another bot's activity"


# ----- card actions --------------------------------------------------------------------------
def _answer() -> Answer:
    return Answer(answer_id=ANSWER_ID, question="hotel allowance?", text="It is 150 EUR a night.", abstained=False,
                  citations=[], scopes=[CHANNEL], model="extractive", timings_ms={}, created_at=datetime.now(UTC))


def test_the_share_button_of_a_real_answer_card_reads_back_as_its_answer():
    assert SHARE_ACTION == cards.SHARE_ACTION
    card = cards.answer_card(_answer(), share=True)
    (button,) = [a for a in card["actions"] if a["type"] == "Action.Submit"]
    activity = sample("card_submit_share.json")
    activity["value"] = button["data"]
    action = read(activity)
    assert isinstance(action, CardAction)
    assert (action.action, action.answer_id, action.invoke) == ("share_answer", ANSWER_ID, False)
    assert action.card_message_id == "1712346300003" and action.user.id == MEGAN
    assert action.conversation.kind == "personal"


def test_a_universal_action_invoke_is_a_card_action_teams_waits_on():
    action = read(sample("card_invoke_share.json"))
    assert isinstance(action, CardAction) and action.invoke and action.answer_id == ANSWER_ID
    assert action.conversation.channel_id == CHANNEL and action.card_message_id == "1712346300004"


@pytest.mark.parametrize("answer_id", ["../../etc/passwd", "", 123, None, "a" * 129, "3f2a 9c1e", ["x"]])
def test_a_share_naming_no_valid_answer_is_refused(answer_id):
    activity = sample("card_submit_share.json")
    activity["value"]["answer_id"] = answer_id
    refused(activity, "bad_answer_id")


def test_unknown_card_actions_and_other_invokes_are_ignored_but_answered():
    activity = sample("card_submit_share.json")
    activity["value"] = {"action": "delete_everything", "answer_id": ANSWER_ID}
    assert isinstance(read(activity), Ignored) and not read(activity).invoke
    invoke = sample("card_invoke_share.json")
    invoke["name"] = "composeExtension/query"
    event = read(invoke)
    assert isinstance(event, Ignored) and event.invoke
    invoke = sample("card_invoke_share.json")
    invoke["value"] = "not an object"
    refused(invoke, "bad_field")


# ----- membership, installation, deletion ------------------------------------------------------
def test_imp_added_to_and_removed_from_a_team():
    added, removed = read(sample("bot_added_to_team.json")), read(sample("bot_removed_from_team.json"))
    assert isinstance(added, MembersChanged) and isinstance(removed, MembersChanged)
    assert (added.bot_added, added.bot_removed, added.added, added.event) == (True, False, (), "teamMemberAdded")
    assert (removed.bot_added, removed.bot_removed, removed.removed) == (False, True, ())
    assert added.conversation.team_id == GENERAL and scope_of(added.conversation) == GENERAL


def test_people_joining_a_team_and_leaving_a_private_channel():
    joined = read(sample("members_added.json"))
    assert not joined.bot_added and [p.id for p in joined.added] == [ADELE]
    assert joined.added[0].aad_object_id == "598efcd4-e549-402a-9602-0b50201faebe"
    left = read(sample("private_channel_member_removed.json"))
    assert [p.id for p in left.removed] == [MEGAN] and left.event == "channelMemberRemoved"
    assert left.conversation.channel_type == "private" and scope_of(left.conversation) == PRIVATE


def test_imp_added_to_a_group_chat_and_installed_or_removed():
    chat = read(sample("bot_added_to_group_chat.json"))
    assert chat.bot_added and scope_of(chat.conversation) == GROUP
    add, remove = read(sample("installation_add.json")), read(sample("installation_remove.json"))
    assert (add.bot_added, add.event, add.conversation.kind) == (True, "add", "personal")
    assert (remove.bot_removed, remove.event, remove.conversation.kind) == (True, "remove", "channel")
    upgrade = sample("installation_add.json")
    upgrade["action"] = "add-upgrade"
    assert read(upgrade).bot_added
    upgrade["action"] = "explode"
    refused(upgrade, "bad_action")


def test_channel_events_without_member_changes_and_quiet_types_are_ignored():
    assert read(sample("channel_created.json")).reason == "channelCreated changes no members"
    for kind in ("typing", "endOfConversation", "messageUpdate", "event"):
        activity = sample("personal_message.json")
        activity["type"] = kind
        event = read(activity)
        assert isinstance(event, Ignored) and event.activity_type == kind


def test_a_deleted_channel_message():
    deleted = read(sample("message_deleted.json"))
    assert isinstance(deleted, MessageDeleted)
    assert deleted.activity_id == "1712346000790" and deleted.conversation.channel_id == CHANNEL


# ----- hostile activities --------------------------------------------------------------------
def test_an_activity_for_another_bot_is_refused_and_the_bots_id_is_compared_without_case():
    refused(sample("hostile_spoofed_recipient.json"), "wrong_recipient", 403)
    activity = sample("channel_mention.json")
    del activity["recipient"]
    refused(activity, "bad_recipient")
    activity = sample("channel_mention.json")
    activity["recipient"]["id"] = f"28:{APP_ID.upper()}"
    assert isinstance(read(activity), Message)
    with pytest.raises(ValueError):
        parse_activity(sample("channel_mention.json"), app_id="")


def test_other_tenants_are_refused_for_a_single_tenant_bot_only():
    activity = sample("channel_mention.json")
    other = "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a"
    activity["channelData"]["tenant"]["id"] = activity["conversation"]["tenantId"] = other
    refused(activity, "wrong_tenant", 403)
    assert read(activity, tenant_id=None).conversation.tenant_id == other
    assert read(activity, tenant_id="botframework.com").conversation.tenant_id == other
    activity["conversation"]["tenantId"] = TENANT
    refused(activity, "tenant_mismatch", 403, tenant_id=None)


def test_mention_entities_whose_text_is_not_in_the_message_change_nothing():
    message = read(sample("hostile_mention_not_in_text.json"))
    assert message.text == "please delete the budget file"  # the "delete" entity cut no word out
    assert not message.mentioned and message.mentions == ()


def test_an_at_tag_no_entity_backs_or_that_names_someone_else_is_no_mention_of_imp():
    activity = sample("channel_mention.json")
    activity["entities"] = []
    message = read(activity)
    assert not message.mentioned and message.text.startswith("IMP what did Adele Vance")
    activity = sample("channel_mention.json")
    activity["entities"][0]["mentioned"]["id"] = ADELE
    assert not read(activity).mentioned
    activity = sample("channel_mention.json")
    activity["text"] = "&lt;at&gt;IMP&lt;/at&gt; hi"  # an escaped tag is text the person typed
    assert (read(activity).mentioned, read(activity).text) == (False, "<at>IMP</at> hi")


def test_control_and_direction_override_characters_never_reach_the_chat_layer():
    message = read(sample("hostile_control_chars.json"))
    forbidden = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
    assert not forbidden.search(message.text) and not forbidden.search(message.user.name)
    assert message.text == "what is[31m the ecnawolla hotel allowance?"
    assert message.user.name == "Megan Bowen"


def test_a_conversation_that_contradicts_itself_is_refused():
    refused(sample("hostile_channel_mismatch.json"), "conversation_mismatch")
    refused(sample("hostile_channel_posing_as_personal.json"), "conversation_mismatch")
    activity = sample("personal_message.json")
    activity["conversation"]["isGroup"] = True
    refused(activity, "conversation_mismatch")
    activity = sample("group_chat_message.json")
    activity["conversation"]["id"] += ";messageid=1712345800456"
    refused(activity, "conversation_mismatch")
    activity = sample("channel_mention.json")
    activity["channelData"]["teamsChannelId"] = PRIVATE
    refused(activity, "conversation_mismatch")
    activity = sample("channel_mention.json")
    del activity["channelData"]["channel"], activity["channelData"]["teamsChannelId"]
    refused(activity, "no_channel")
    activity = sample("channel_mention.json")
    activity["conversation"]["conversationType"] = "meeting"
    refused(activity, "bad_conversation_type")


def test_wrong_json_types_are_refused_with_a_reason():
    refused(sample("hostile_wrong_types.json"), "bad_sender")
    cases = [("text", 42, "bad_text"), ("entities", {"type": "mention"}, "bad_field"),
             ("attachments", "file.pdf", "bad_field"), ("attachments", ["file.pdf"], "bad_attachment"),
             ("conversation", ["19:x"], "bad_field"), ("channelData", "x", "bad_field"),
             ("serviceUrl", None, "bad_service_url"), ("serviceUrl", 7, "bad_service_url"),
             ("id", None, "bad_activity_id"), ("id", "a b", "bad_activity_id"), ("replyToId", 5, "bad_reply-to_id"),
             ("type", None, "bad_type"), ("type", 3, "bad_type"), ("channelId", None, "bad_channel"),
             ("recipient", {"id": 28}, "bad_recipient_id")]
    for key, value, reason in cases:
        activity = sample("channel_mention.json")
        activity[key] = value
        refused(activity, reason)
    refused(["not", "an", "object"], "not_an_object")


def test_unknown_types_are_refused_and_other_channels_ignored():
    refused(sample("hostile_unknown_type.json"), "unknown_type")
    activity = sample("personal_message.json")
    activity["channelId"] = "webchat"
    event = read(activity)
    assert isinstance(event, Ignored) and "webchat" in event.reason


def test_huge_or_deeply_nested_activities_are_refused_before_anything_is_read():
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200):
        node["x"] = {}
        node = node["x"]
    activity = sample("channel_mention.json")
    activity["channelData"]["extra"] = deep
    refused(activity, "too_deep")
    activity = sample("channel_mention.json")
    activity["channelData"]["extra"] = list(range(60_000))
    refused(activity, "too_large")
    activity = sample("channel_mention.json")
    activity["text"] = "a" * 40_000
    refused(activity, "text_too_long")
    activity = sample("personal_file.json")
    activity["attachments"] = activity["attachments"] * 51
    refused(activity, "too_large")
    activity = sample("channel_mention.json")
    activity["conversation"]["id"] = "19:" + "a" * 2000
    refused(activity, "bad_conversation_id")


def test_the_service_url_is_carried_verbatim_and_the_connector_allow_list_decides():
    activity = sample("channel_mention.json")
    activity["serviceUrl"] = "http://attacker.example/teams/"
    message = read(activity)
    assert message.conversation.service_url == "http://attacker.example/teams/"
    with pytest.raises(ServiceUrlRefused):
        check_service_url(message.conversation.service_url, DEFAULT_SERVICE_HOSTS)
    assert check_service_url(read(sample("channel_mention.json")).conversation.service_url,
                             DEFAULT_SERVICE_HOSTS) == "https://smba.trafficmanager.net/emea/"


def test_events_are_frozen():
    message = read(sample("channel_mention.json"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.text = "something else"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.conversation.channel_id = PRIVATE  # type: ignore[misc]


def _mutations(value: Any, rng: random.Random) -> Any:
    junk = [None, 0, -1, True, "", "x" * 3000, [], {}, [{}], {"id": None}, "<at>IMP</at>", "\u0000", 1e308]
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        if rng.random() < 0.3:
            del value[key]
        elif rng.random() < 0.5:
            value[key] = rng.choice(junk)
        else:
            value[key] = _mutations(value[key], rng)
    elif isinstance(value, list) and value:
        i = rng.randrange(len(value))
        value[i] = _mutations(value[i], rng) if rng.random() < 0.5 else rng.choice(junk)
    else:
        return rng.choice(junk)
    return value


def test_any_mutation_of_any_sample_reads_as_an_event_or_is_refused_never_crashes():
    rng = random.Random(15)
    names = sorted(p.name for p in DATA.glob("*.json"))
    for i in range(1500):
        activity = _mutations(copy.deepcopy(sample(names[i % len(names)])), rng)
        try:
            event = read(activity)
        except InvalidActivity:
            continue
        assert isinstance(event, (Message, Reaction, CardAction, MembersChanged, MessageDeleted, Ignored))
        if not isinstance(event, Ignored):
            where = event.conversation
            assert where.kind in ("personal", "channel", "groupChat")
            if where.kind != "channel" or where.channel_id:
                key = scope_of(where)
                assert key is None or re.match(SCOPE_PATTERN, key)


def test_any_mutation_of_a_shared_file_reads_as_a_shared_file_or_a_refusal_never_crashes():
    rng = random.Random(16)
    for _ in range(500):
        activity = posted(reference())
        activity["attachments"][-1] = _mutations(activity["attachments"][-1], rng)
        try:
            message = read(activity)
        except InvalidActivity:
            continue
        for shared in message.shared_files:
            assert shared.url.startswith("https://") and shared.url.isascii() and " " not in shared.url
            assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", shared.item_id) and shared.name


# ----- scopes --------------------------------------------------------------------------------
def test_teams_channel_and_chat_ids_are_their_own_scopes():
    for raw in (CHANNEL, GENERAL, PRIVATE, GROUP, "19:meeting_NzY4ZTRmYjEtNWQ4@thread.v2",
                "19:87d349ed-44d7-43e1-9a83-5f2406dee5bd_598efcd4-e549-402a-9602-0b50201faebe@unq.gbl.spaces"):
        assert scope_key(raw) == raw and re.match(SCOPE_PATTERN, raw)


def test_other_ids_map_to_a_hashed_scope_deterministically_and_without_collisions():
    personal = sample("personal_message.json")["conversation"]["id"]
    crafted = HASHED_SCOPE_PREFIX + scope_key("x")[len(HASHED_SCOPE_PREFIX):]
    raws = [personal, f"{CHANNEL};messageid=1712340000000", "19:" + "a" * 250, "19:caf\u00e9@thread.v2",
            "19:a b@thread.v2", "default", "C0123ABCD", "*", "", "x", crafted, HASHED_SCOPE_PREFIX + "abc",
            "19:a*b@thread.v2", "19:a/b@thread.v2"]
    keys = [scope_key(r) for r in raws]
    assert len(set(keys)) == len(raws)  # no two ids share a scope
    for raw, key in zip(raws, keys, strict=True):
        assert key == scope_key(raw)  # deterministic
        assert re.match(SCOPE_PATTERN, key) and key.startswith(HASHED_SCOPE_PREFIX) and key != raw
    assert scope_key("default") != "default" and scope_key("*") != "*"  # never a reserved or company-like name


def test_scope_of_a_channel_thread_and_of_a_group_chat_never_includes_the_thread():
    message = read(sample("minutes_command.json"))
    assert ";messageid=" in message.conversation.id and scope_of(message.conversation) == CHANNEL
    bare = dataclasses.replace(message.conversation, channel_id=None)
    with pytest.raises(InvalidActivity):
        scope_of(bare)
