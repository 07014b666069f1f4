"""Teams' people and conversations, as the chat layer's scope policy asks for them (bot/chat/scopes.py).

- A person's conversations: the channels and group chats IMP has been seen in (bot/chat/state.py keeps
  them, with the service URL and the conversation to ask) whose members, as the Bot Connector lists them
  now, include that person. Members are asked of the channel itself (a standard channel lists its team, a
  private or shared channel its own members), so a private channel's content never reaches someone outside it.
- Standing: a member of IMP's organisation is a Teams user (``userRole`` "user", not "guest" or
  "anonymous") of IMP's tenant. When the connector cannot say, the person is not a member (they lose the
  company-wide scopes for that question, never gain them).
- Shared outside: a shared channel (Teams Connect) is read by people of other organisations.

Member lists are kept ``ttl_s`` (5 minutes), so a question does not list every team anew; someone removed
from a team loses its content within that time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.chat.recent import MISSING, Remembered
from bot.chat.scopes import EXTERNAL, GUEST, MEMBER, UNKNOWN
from bot.chat.state import ChatState, Place
from bot.teams.connector import ConnectorClient, ConnectorError
from bot.teams.events import Conversation

log = logging.getLogger(__name__)

PLATFORM = "teams"
MAX_PLACES = 2000  # conversations asked per 1:1 question at most, most recently seen first


class MemberLists:
    """Who is in which conversation, per the Bot Connector, kept ``ttl_s``; at most ``size`` lists."""

    def __init__(self, connector: ConnectorClient, *, ttl_s: float = 300.0, size: int = 5000,
                 clock: Callable[[], float] = time.monotonic):
        self._connector = connector
        self._lists = Remembered(ttl_s, size, clock)

    def forget(self, conversation_id: str) -> None:
        """Someone joined or left: list that conversation's members anew on the next question."""
        self._lists.forget(conversation_id)

    def of(self, service_url: str, conversation_id: str) -> dict[str, dict]:
        """Members by Teams id (``29:…``), each with ``role`` and ``tenant``; ConnectorError when it cannot say."""
        kept = self._lists.get(conversation_id)
        if kept is not MISSING:
            return kept
        members = {}
        for m in self._connector.members(service_url, conversation_id):
            if m.id:
                extra = m.model_dump(by_alias=True, exclude_none=True)
                members[m.id] = {"role": extra.get("userRole") or extra.get("user_role"),
                                 "tenant": extra.get("tenantId") or extra.get("tenant_id")}
        self._lists.put(conversation_id, members)
        return members


def members_conversation(conversation: Conversation) -> str:
    """Which conversation to ask for the members of ``conversation``'s scope: the channel itself, never its
    team (the connector lists a standard channel's team, and a private or shared channel's own members), so
    a private channel's membership holds whatever type Teams says it is."""
    if conversation.kind == "channel" and conversation.channel_id:
        return conversation.channel_id
    return conversation.base_id


class TeamsDirectory:
    """The chat layer's ``Directory`` for one Teams conversation (the one a question was asked in)."""

    def __init__(self, state: ChatState, members: MemberLists, conversation: Conversation, *,
                 tenant_id: str | None):
        self._state = state
        self._members = members
        self._conversation = conversation
        self._tenant = tenant_id or conversation.tenant_id

    def conversations_of(self, user: str) -> list[str]:
        found = []
        for place in self._state.places(PLATFORM, limit=MAX_PLACES):
            if user in self._listed(place):
                found.append(place.channel)
        return found

    def _listed(self, place: Place) -> dict[str, dict]:
        service_url, members_of = place.address.get("service_url"), place.address.get("members_of")
        if not service_url or not members_of:
            return {}
        try:
            return self._members.of(service_url, members_of)
        except ConnectorError as e:
            log.warning("cannot list the members of a Teams conversation (%s); leaving it out", e.detail)
            return {}

    def standing(self, user: str, hint: str | None = None) -> str:
        try:
            me = self._members.of(self._conversation.service_url, members_conversation(self._conversation)).get(user)
        except ConnectorError as e:
            log.warning("cannot tell whether %s is a member (%s)", user, e.detail)
            return UNKNOWN
        if me is None:
            return UNKNOWN
        if self._tenant and me.get("tenant") and me["tenant"] != self._tenant:
            return EXTERNAL
        if hint and self._tenant and hint != self._tenant:
            return EXTERNAL
        role = (me.get("role") or "").lower()
        if role in ("guest", "anonymous"):
            return GUEST
        return MEMBER if role == "user" else UNKNOWN

    def shared_outside(self, channel: str) -> bool:
        return self._conversation.kind == "channel" and self._conversation.channel_type == "shared"
