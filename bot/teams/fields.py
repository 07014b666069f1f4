"""Checked readers of a Teams activity's JSON fields, and the error they raise: InvalidActivity.

The Teams adapter's inbound side (bot/teams/activity.py) reads every field it uses through these:
the JSON's nesting and size are bounded before anything is read, an id must be short printable ASCII
without spaces, quotes or angle brackets, a kind word is a plain word, a link IMP will fetch must be
https (plain http only to a loopback host when allowed, for tests) and carry no credentials. The
conversation reader decides where an activity happened and refuses one that contradicts itself: a
1:1 chat that says it is a group, a channel message whose conversation is another channel, two
tenants, or a tenant other than a single-tenant bot's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.teams.events import Conversation, ConversationKind, Person
from bot.teams.mentions import clean_name
from bot.teams.token import is_loopback_host
from core.errors import InvalidRequest

MAX_DEPTH = 32
MAX_NODES = 50_000
MAX_ID_CHARS = 1024  # the connector refuses longer ids in its paths
MAX_URL_CHARS = 4096
ID = re.compile(r"^[A-Za-z0-9._:@;=+/!#$%&*,|~-]+$")
WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]{0,63}$")
_MESSAGE_ID = re.compile(r";messageid=([^;]*)$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_KINDS: tuple[ConversationKind, ...] = ("personal", "channel", "groupChat")


class InvalidActivity(InvalidRequest):
    """An activity IMP will not read: malformed, hostile, or not for this bot. Nothing was acted on.

    ``reason`` is a short stable word for logs and tests; ``status`` the HTTP answer (400, or 403).
    """

    code = "invalid_activity"

    def __init__(self, reason: str, detail: str, *, status: int = 400) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


# ----- small readers ---------------------------------------------------------------------
def check_shape(body: object) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH or holding more than MAX_NODES values (iteratively)."""
    stack: list[tuple[object, int]] = [(body, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidActivity("too_large", f"the activity holds more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise InvalidActivity("too_deep", f"the activity is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def obj(parent: Mapping[str, Any], key: str, *, required: bool = False) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        state = "missing" if value is None else "not an object"
        raise InvalidActivity("bad_field", f"the activity's {key!r} is {state}")
    return value


def items(parent: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidActivity("bad_field", f"the activity's {key!r} is not a list")
    if len(value) > limit:
        raise InvalidActivity("too_large", f"the activity's {key!r} holds more than {limit} items")
    return value


def ident(value: object, what: str, *, required: bool = True) -> str | None:
    """A Teams identifier: printable ASCII without spaces, quotes or angle brackets, at most MAX_ID_CHARS."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS or not ID.match(value):
        state = "missing" if value is None or value == "" else "malformed"
        raise InvalidActivity(f"bad_{what.replace(' ', '_')}", f"the activity's {what} is {state}")
    return value


def word(value: object) -> str:
    """A short plain word Teams uses for a kind of thing (an event type, a channel type); "" otherwise."""
    return value if isinstance(value, str) and WORD.match(value) else ""


def timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def person(value: object, what: str) -> Person:
    if not isinstance(value, Mapping):
        raise InvalidActivity(f"bad_{what}", f"the activity's {what} is missing or not an object")
    aad = value.get("aadObjectId")
    return Person(id=ident(value.get("id"), f"{what} id"), name=clean_name(value.get("name")),
                  aad_object_id=aad if isinstance(aad, str) and ID.match(aad) and len(aad) <= 64 else None)


def https_url(url: object, *, loopback_http: bool) -> str | None:
    """The URL if IMP may fetch from it: https (or http to a loopback host if allowed), no credentials."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS or not url.isascii() or not url.isprintable():
        return None
    if " " in url or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.password is not None:
        return None
    if parts.scheme == "https" or (loopback_http and parts.scheme == "http" and is_loopback_host(host)):
        return url
    return None


# ----- the conversation ------------------------------------------------------------------------
def _tenant(conv: Mapping[str, Any], data: Mapping[str, Any], expected: str | None) -> str | None:
    named = [t for t in (obj(data, "tenant").get("id"), conv.get("tenantId")) if t is not None]
    ids = {ident(t, "tenant id").lower() for t in named}
    if len(ids) > 1:
        raise InvalidActivity("tenant_mismatch", "the activity names two different tenants", status=403)
    tenant = named[0] if named else None
    if expected and _GUID.match(expected) and (tenant is None or tenant.lower() != expected.lower()):
        raise InvalidActivity("wrong_tenant", "the activity is not from the bot's tenant", status=403)
    return tenant


def conversation(body: Mapping[str, Any], *, strict: bool, tenant_id: str | None) -> Conversation:
    """Where the activity happened.

    ``strict`` (messages, reactions, card actions, deletions): a channel activity must name its channel,
    and its conversation must be that channel, so an answer drawn from one channel's scope is never
    posted in another. Otherwise (membership and installation events) a channel conversation without a
    named channel is the channel it is: Teams sends a team's events in its General channel.
    """
    conv = obj(body, "conversation", required=True)
    data = obj(body, "channelData")
    kind = conv.get("conversationType")
    if kind not in _KINDS:
        raise InvalidActivity("bad_conversation_type", "the conversation is not personal, channel or groupChat")
    conv_id = ident(conv.get("id"), "conversation id")
    match = _MESSAGE_ID.search(conv_id)
    base = conv_id[:match.start()] if match else conv_id
    thread = ident(match.group(1), "thread id") if match else None
    ident(base, "conversation id")
    is_group = conv.get("isGroup")
    if is_group is not None and not isinstance(is_group, bool):
        raise InvalidActivity("bad_field", "the conversation's isGroup is not a boolean")
    if (kind == "personal" and is_group) or (kind != "personal" and is_group is False) or (
            thread and kind != "channel"):
        raise InvalidActivity("conversation_mismatch", f"a {kind} conversation that says otherwise of itself")
    channel = obj(data, "channel")
    channel_id = ident(channel.get("id"), "channel id", required=False)
    legacy = ident(data.get("teamsChannelId"), "channel id", required=False)
    if channel_id and legacy and channel_id != legacy:
        raise InvalidActivity("conversation_mismatch", "the activity names two different channels")
    channel_id = channel_id or legacy if kind == "channel" else None
    if kind == "channel" and not strict:
        channel_id = channel_id or base  # a team event's conversation is the team's General channel
    if kind == "channel" and strict:
        if not channel_id:
            raise InvalidActivity("no_channel", "a channel activity without its channel id")
        if base != channel_id:
            raise InvalidActivity("conversation_mismatch", "the activity's conversation is not its channel")
    team = obj(data, "team")
    team_id = ident(team.get("id"), "team id", required=False) or ident(data.get("teamsTeamId"), "team id",
                                                                      required=False)
    group = team.get("aadGroupId")
    service_url = body.get("serviceUrl")
    if not isinstance(service_url, str) or not service_url or len(service_url) > 2048 or not service_url.isprintable():
        raise InvalidActivity("bad_service_url", "the activity's serviceUrl is missing or malformed")
    return Conversation(kind=kind, id=conv_id, base_id=base, thread_id=thread, channel_id=channel_id,
                        channel_type=word(channel.get("type")) or None if kind == "channel" else None,
                        team_id=team_id if kind == "channel" else None,
                        team_group_id=group if kind == "channel" and isinstance(group, str) and _GUID.match(group)
                        else None,
                        tenant_id=_tenant(conv, data, tenant_id), service_url=service_url)
