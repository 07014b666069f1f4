"""Reading one incoming Teams activity, safely: the Teams adapter's inbound side, after the token check.

The Teams route (POST /api/messages) validates the bearer token (bot/teams/auth.py), then hands the
activity's JSON object to ``parse_activity``, which returns one event of bot/teams/events.py or raises
``InvalidActivity`` (an ``InvalidRequest``: HTTP ``status`` 400, or 403 for an activity not addressed to
this bot or from another tenant) with a short ``reason``. ``scope_of`` then says which scope a
conversation is: a channel's is its channel id, a group chat's its conversation id, and a 1:1 chat has
none of its own (the chat layer answers there from the scopes of the asker's teams and chats plus the
company scopes).

Why not the Agents SDK's ``Activity`` model: it accepts any extra field and coerces types, and checks
none of what matters here. Every field read is checked instead: the JSON's nesting and size are
bounded, ids are short printable ASCII, a channel message's conversation must be that channel, the
activity must name this bot (``28:<app id>``) as recipient and, for a single-tenant bot, its tenant;
download and image links must be https (plain http only to a loopback host when the caller allows it,
for tests). What is wrong in an attachment refuses that attachment (``Message.refused``), not the
message. The service URL is carried verbatim: the connector's allow-list decides whether it is called.

Files come two ways: sent to IMP in a 1:1 chat, as ``application/vnd.microsoft.teams.file.download.info``
with a pre-authenticated download link (``Message.files``); posted in a channel or group chat, as a
``reference`` to the file's place in SharePoint/OneDrive (``Message.shared_files``), whose bytes only
Microsoft Graph gives (bot/teams/graph.py). A reference's path may hold spaces and any letters: it is
percent-encoded, then checked as every link is.

Reactions: Teams' built-in ``like`` and its 👍 ``yes`` are +1, its 👎 ``no`` is -1, whatever the skin
tone (``-tone1``…``-tone5``); so are the 👍/👎 code points (``1f44d…``, ``1f44e…``) should Teams send
those. ``heart``, ``laugh``, ``surprised``, ``sad``, ``angry`` and every other emoji rate nothing: a sad
or angry face is sympathy with the content as often as a verdict on the answer.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from bot.teams.events import (
    COMMANDS,
    CardAction,
    Conversation,
    Event,
    FileAttachment,
    Ignored,
    InlineImage,
    MembersChanged,
    Message,
    MessageDeleted,
    Person,
    RatingChange,
    Reaction,
    RefusedAttachment,
    SharedFile,
)
from bot.teams.fields import (
    ID,
    MAX_URL_CHARS,
    WORD,
    InvalidActivity,
    check_shape,
    conversation,
    https_url,
    ident,
    items,
    obj,
    person,
    timestamp,
    word,
)
from bot.teams.mentions import MAX_TEXT_CHARS, clean_name, read_text

TEAMS_CHANNEL = "msteams"
SHARE_ACTION = "imp_share_answer"  # the share button's data.action (bot/teams/cards.py)
FILE_CONTENT_TYPE = "application/vnd.microsoft.teams.file.download.info"
REFERENCE_CONTENT_TYPE = "reference"  # a file posted in a channel or group chat, kept in SharePoint/OneDrive
MAX_SHARED_FILES = 20  # each costs a Microsoft Graph call and an ingest job
MAX_ATTACHMENTS = 50
MAX_ENTITIES = 200
MAX_MEMBERS = 5_000
MAX_REACTIONS = 50
HASHED_SCOPE_PREFIX = "teams-h:"
# Activity types of the Bot Framework protocol that IMP reads but does not act on (any other is malformed).
QUIET_TYPES = frozenset({"typing", "endOfConversation", "event", "messageUpdate", "contactRelationUpdate",
                         "deleteUserData", "trace", "handoff", "suggestion", "command", "commandResult"})
_SCOPE_VERBATIM = re.compile(r"^19:[A-Za-z0-9_.:@-]{1,197}$")  # a Teams channel or chat id, within SCOPE_PATTERN
_ANSWER_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_FILE_TYPE = re.compile(r"^[a-z0-9]{1,16}$")
_ITEM_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # part of a document's source: "teams:<id>/<name>"
_IMAGE_TYPE = re.compile(r"^image/[a-z0-9.+-]{1,50}$")
_COMMAND = re.compile(r"^/?(" + "|".join(COMMANDS) + r")(?:\s+|$)", re.IGNORECASE)
_TONE = re.compile(r"-tone[1-5]$")
_SKIN = re.compile(r"[\U0001F3FB-\U0001F3FF\uFE0F]")
UP_REACTIONS = frozenset({"like", "yes", "\U0001F44D"})
DOWN_REACTIONS = frozenset({"no", "\U0001F44E"})


# ----- scopes, ratings, commands -----------------------------------------------------------
def scope_key(raw_id: str) -> str:
    """The scope string for a Teams channel or chat id, satisfying core.models.SCOPE_PATTERN.

    A Teams id ``19:…`` made only of the characters a scope allows is its own scope. Any other id
    becomes ``teams-h:`` and 40 hex digits of its SHA-256: deterministic, and never equal to a verbatim
    one (those start with ``19:``) nor, short of a SHA-256 collision, to another hashed one.
    """
    if _SCOPE_VERBATIM.match(raw_id):
        return raw_id
    return HASHED_SCOPE_PREFIX + hashlib.sha256(raw_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def scope_of(conversation: Conversation) -> str | None:
    """The scope of what is shared in ``conversation``: a channel's channel id, a group chat's id; None in 1:1.

    For a 1:1 chat the caller asks for the scopes of the teams and chats the person belongs to, plus the
    company scopes. A channel conversation without a channel id has no scope IMP can name: InvalidActivity.
    """
    if conversation.kind == "personal":
        return None
    if conversation.kind == "channel":
        if not conversation.channel_id:
            raise InvalidActivity("no_channel", "a channel activity without its channel id has no scope")
        return scope_key(conversation.channel_id)
    return scope_key(conversation.base_id)


def rating_of(reaction: str) -> int | None:
    """+1 for Teams' ``like`` and 👍 ``yes``, -1 for 👎 ``no`` (any skin tone); None for every other reaction."""
    if not isinstance(reaction, str) or len(reaction) > 100:
        return None
    name = _SKIN.sub("", _TONE.sub("", reaction.strip().lower()))
    if name in UP_REACTIONS or name == "1f44d" or name.startswith("1f44d_"):
        return 1
    if name in DOWN_REACTIONS or name == "1f44e" or name.startswith("1f44e_"):
        return -1
    return None


def parse_command(text: str) -> tuple[str | None, str]:
    """("ask" or "minutes", the rest) when ``text`` starts with that word (a leading "/" allowed), else (None, "")."""
    match = _COMMAND.match(text)
    if match is None:
        return None, ""
    return match.group(1).lower(), text[match.end():].strip()


# ----- attachments -------------------------------------------------------------------------------
def _size(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 53 else None


def _etag(value: object) -> str | None:
    ok = isinstance(value, str) and 0 < len(value) <= 200 and value.isascii() and value.isprintable()
    return value if ok else None


def _location(url: object, loopback_http: bool) -> str | None:
    """Where a file lives in OneDrive/SharePoint (Teams writes its path with spaces), if it is an https link."""
    return https_url(url.replace(" ", "%20"), loopback_http=loopback_http) if isinstance(url, str) else None


def _file(item: Mapping[str, Any], loopback_http: bool) -> FileAttachment | RefusedAttachment:
    name = clean_name(item.get("name")) or "file"
    content = item.get("content")
    if not isinstance(content, Mapping):
        return RefusedAttachment(name, "Teams gave no download details for it")
    url = https_url(content.get("downloadUrl"), loopback_http=loopback_http)
    if url is None:
        return RefusedAttachment(name, "its download link is missing or not https")
    unique = content.get("uniqueId")
    if not isinstance(unique, str) or not unique or len(unique) > 200 or not ID.match(unique):
        return RefusedAttachment(name, "Teams gave no usable file id for it")
    file_type = content.get("fileType")
    file_type = file_type.lower() if isinstance(file_type, str) and _FILE_TYPE.match(file_type.lower()) else ""
    return FileAttachment(name=name, download_url=url, unique_id=unique, file_type=file_type,
                          size=_size(content.get("size")), etag=_etag(content.get("etag")),
                          content_url=_location(item.get("contentUrl"), loopback_http))


def _extension(name: str) -> str:
    suffix = name.rsplit(".", 1)[1].lower() if "." in name else ""
    return suffix if _FILE_TYPE.match(suffix) else ""


def _shared(item: Mapping[str, Any], loopback_http: bool) -> SharedFile | RefusedAttachment:
    raw = item.get("contentUrl")
    url = None
    if isinstance(raw, str) and 0 < len(raw) <= MAX_URL_CHARS and raw.isprintable():
        url = https_url(quote(raw, safe=string.punctuation), loopback_http=loopback_http)
    named = clean_name(item.get("name"))
    name = named or (clean_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1])) if url else "") or "file"
    if url is None:
        return RefusedAttachment(name, "its link to SharePoint or OneDrive is missing or not https")
    given = item.get("id")
    if given is None or given == "":  # no id: the file's place names it as steadily
        item_id = hashlib.sha256(url.encode()).hexdigest()[:32]
    else:
        item_id = given.strip().strip("{}") if isinstance(given, str) else ""
        if not _ITEM_ID.match(item_id):
            return RefusedAttachment(name, "Teams gave no usable file id for it")
    return SharedFile(name=name, url=url, item_id=item_id, file_type=_extension(name))


def _attachments(items: list[Any], loopback_http: bool) -> tuple[
        tuple[FileAttachment, ...], tuple[SharedFile, ...], tuple[InlineImage, ...], tuple[RefusedAttachment, ...]]:
    """Files, shared files and inline images apart; what IMP will not fetch, with why. HTML renderings and cards
    are skipped, and so is a reference to a file the message also carries for download (or twice)."""
    files: list[FileAttachment] = []
    shared: list[SharedFile] = []
    images: list[InlineImage] = []
    refused: list[RefusedAttachment] = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("contentType"), str):
            raise InvalidActivity("bad_attachment", "an attachment is not an object with a contentType")
        content_type = item["contentType"].strip().lower()
        if content_type == FILE_CONTENT_TYPE:
            found = _file(item, loopback_http)
            (files if isinstance(found, FileAttachment) else refused).append(found)  # type: ignore[arg-type]
        elif content_type == REFERENCE_CONTENT_TYPE:
            reference = _shared(item, loopback_http)
            (shared if isinstance(reference, SharedFile) else refused).append(reference)  # type: ignore[arg-type]
        elif content_type.startswith("image/"):
            url = https_url(item.get("contentUrl"), loopback_http=loopback_http)
            if url is None or not _IMAGE_TYPE.match(content_type):
                refused.append(RefusedAttachment(clean_name(item.get("name")) or "image",
                                                 "its link is missing or not https"))
            else:
                images.append(InlineImage(content_type, url))
    downloadable = {f.content_url for f in files if f.content_url}
    seen: set[str] = set()
    kept: list[SharedFile] = []
    for reference in shared:
        if reference.url in downloadable or reference.item_id in seen:
            continue
        seen.add(reference.item_id)
        if len(kept) < MAX_SHARED_FILES:
            kept.append(reference)
        else:
            refused.append(RefusedAttachment(reference.name, f"I index at most {MAX_SHARED_FILES} shared files "
                                                             "of one message"))
    return tuple(files), tuple(kept), tuple(images), tuple(refused)


# ----- one reader per activity type ------------------------------------------------------------
def _sender(body: Mapping[str, Any], bot: str) -> Person | Ignored:
    user = person(body.get("from"), "sender")
    if user.id.lower() == bot.lower():
        return Ignored(str(body["type"]), "IMP's own activity")
    if user.id.startswith("28:"):
        return Ignored(str(body["type"]), "another bot's activity")
    return user


def _message(body: Mapping[str, Any], bot: str, tenant_id: str | None, loopback_http: bool) -> Event:
    user = _sender(body, bot)
    if isinstance(user, Ignored):
        return user
    if body.get("value") is not None:
        return _card_action(body, user, tenant_id, invoke=False)
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidActivity("bad_text", "the message's text is not a string")
    if text and len(text) > MAX_TEXT_CHARS:
        raise InvalidActivity("text_too_long", f"the message's text is over {MAX_TEXT_CHARS} characters")
    read = read_text(text or "", items(body, "entities", 200), (bot,))
    command, arguments = parse_command(read.text)
    files, shared, images, refused = _attachments(items(body, "attachments", MAX_ATTACHMENTS), loopback_http)
    return Message(activity_id=ident(body.get("id"), "activity id"), user=user,
                   conversation=conversation(body, strict=True, tenant_id=tenant_id), text=read.text,
                   mentioned=read.bot_mentioned, command=command, arguments=arguments,
                   mentions=tuple(Person(m.id, None, m.name) for m in read.others),
                   reply_to_id=ident(body.get("replyToId"), "reply-to id", required=False),
                   files=files, shared_files=shared, images=images, refused=refused,
                   timestamp=timestamp(body.get("timestamp")))


def _card_action(body: Mapping[str, Any], user: Person, tenant_id: str | None, *, invoke: bool) -> Event:
    """The share button: Action.Submit (a message with ``value``) or Action.Execute (an invoke)."""
    if invoke:
        action = obj(obj(body, "value", required=True), "action", required=True)
        data = obj(action, "data")
        name = data.get("action") or action.get("verb")
    else:
        data = obj(body, "value", required=True)
        name = data.get("action")
    if name != SHARE_ACTION:
        return Ignored(str(body["type"]), "a card action IMP does not know", invoke=invoke)
    answer_id = data.get("answer_id")
    if not isinstance(answer_id, str) or not _ANSWER_ID.match(answer_id):
        raise InvalidActivity("bad_answer_id", "the share action names no valid answer")
    return CardAction(activity_id=ident(body.get("id"), "activity id", required=False), user=user,
                      conversation=conversation(body, strict=True, tenant_id=tenant_id), action="share_answer",
                      answer_id=answer_id, card_message_id=ident(body.get("replyToId"), "reply-to id", required=False),
                      invoke=invoke)


def _invoke(body: Mapping[str, Any], bot: str, tenant_id: str | None) -> Event:
    name = body.get("name")
    if name != "adaptiveCard/action":
        shown = name if isinstance(name, str) and WORD.match(name) else "unnamed"
        return Ignored("invoke", f"the invoke {shown} is not one IMP handles", invoke=True)
    user = _sender(body, bot)
    if isinstance(user, Ignored):
        return Ignored("invoke", user.reason, invoke=True)
    return _card_action(body, user, tenant_id, invoke=True)


def _reaction(body: Mapping[str, Any], bot: str, tenant_id: str | None) -> Event:
    user = _sender(body, bot)
    if isinstance(user, Ignored):
        return user
    changes: list[RatingChange] = []
    for key, added in (("reactionsAdded", True), ("reactionsRemoved", False)):
        for item in items(body, key, MAX_REACTIONS):
            kind = item.get("type") if isinstance(item, Mapping) else None
            if not isinstance(kind, str):
                raise InvalidActivity("bad_reaction", f"a reaction in {key} has no type")
            rating = rating_of(kind)
            if rating is not None:
                changes.append(RatingChange(added, clean_name(kind), rating))
    if not changes:
        return Ignored("messageReaction", "no 👍 or 👎 among the reactions")
    return Reaction(activity_id=ident(body.get("id"), "activity id", required=False), user=user,
                    conversation=conversation(body, strict=True, tenant_id=tenant_id),
                    message_id=ident(body.get("replyToId"), "reply-to id"), changes=tuple(changes),
                    timestamp=timestamp(body.get("timestamp")))


def _members(body: Mapping[str, Any], bot: str, tenant_id: str | None) -> Event:
    def people(key: str) -> tuple[bool, tuple[Person, ...]]:
        found = [person(m, "member") for m in items(body, key, MAX_MEMBERS)]
        return (any(p.id.lower() == bot.lower() for p in found),
                tuple(p for p in found if p.id.lower() != bot.lower()))

    bot_added, added = people("membersAdded")
    bot_removed, removed = people("membersRemoved")
    event = word(obj(body, "channelData").get("eventType"))
    if not (bot_added or bot_removed or added or removed):
        return Ignored("conversationUpdate", f"{event or 'a conversation update'} changes no members")
    return MembersChanged(activity_id=ident(body.get("id"), "activity id", required=False),
                          conversation=conversation(body, strict=False, tenant_id=tenant_id),
                          bot_added=bot_added, bot_removed=bot_removed, added=added, removed=removed, event=event,
                          by=person(body["from"], "sender") if body.get("from") is not None else None)


def _installation(body: Mapping[str, Any], tenant_id: str | None) -> Event:
    action = body.get("action")  # "add", "remove", and "add-upgrade"/"remove-upgrade" on an app update
    if not isinstance(action, str) or not action.startswith(("add", "remove")) or not WORD.match(action):
        raise InvalidActivity("bad_action", "an installation update that is neither add nor remove")
    return MembersChanged(activity_id=ident(body.get("id"), "activity id", required=False),
                          conversation=conversation(body, strict=False, tenant_id=tenant_id),
                          bot_added=action.startswith("add"), bot_removed=action.startswith("remove"),
                          added=(), removed=(), event=action,
                          by=person(body["from"], "sender") if body.get("from") is not None else None)


def _deleted(body: Mapping[str, Any], bot: str, tenant_id: str | None) -> Event:
    user = _sender(body, bot) if body.get("from") is not None else None
    if isinstance(user, Ignored):
        return user
    return MessageDeleted(activity_id=ident(body.get("id"), "activity id"), user=user,
                          conversation=conversation(body, strict=True, tenant_id=tenant_id))


def parse_activity(body: object, *, app_id: str, tenant_id: str | None = None, loopback_http: bool = False) -> Event:
    """One event from an activity's JSON object (already size-capped), or InvalidActivity with a reason.

    ``app_id``: the bot's Microsoft App ID; an activity whose recipient is not ``28:<app_id>`` is refused.
    ``tenant_id``: for a single-tenant bot (a GUID), activities of other tenants are refused.
    ``loopback_http``: accept plain-http download and image links to a loopback host (tests only).
    """
    if not app_id:
        raise ValueError("the bot's app id is required to check an activity's recipient")
    if not isinstance(body, Mapping):
        raise InvalidActivity("not_an_object", "the activity is not a JSON object")
    check_shape(body)
    kind = body.get("type")
    if not isinstance(kind, str) or not WORD.match(kind):
        raise InvalidActivity("bad_type", "the activity has no readable type")
    channel = body.get("channelId")
    if channel != TEAMS_CHANNEL:
        if isinstance(channel, str) and WORD.match(channel):
            return Ignored(kind, f"the channel {channel} is not Microsoft Teams", invoke=kind == "invoke")
        raise InvalidActivity("bad_channel", "the activity names no channel")
    bot = f"28:{app_id}"
    if person(body.get("recipient"), "recipient").id.lower() != bot.lower():
        raise InvalidActivity("wrong_recipient", "the activity is not addressed to this bot", status=403)
    if kind == "message":
        return _message(body, bot, tenant_id, loopback_http)
    if kind == "messageReaction":
        return _reaction(body, bot, tenant_id)
    if kind == "invoke":
        return _invoke(body, bot, tenant_id)
    if kind == "conversationUpdate":
        return _members(body, bot, tenant_id)
    if kind == "installationUpdate":
        return _installation(body, tenant_id)
    if kind == "messageDelete":
        return _deleted(body, bot, tenant_id)
    if kind in QUIET_TYPES:
        return Ignored(kind, f"IMP does not act on {kind} activities")
    raise InvalidActivity("unknown_type", f"{kind} is not a Bot Framework activity type")
