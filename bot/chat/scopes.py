"""Who may see what: the scopes a question asked in chat is answered from, on every platform.

The scope of a channel (or group chat) is its id. A question in a private chat with IMP (a Slack DM, a
Teams 1:1 chat) is answered from that chat's own scope (files dropped there) and the scopes of every
conversation the asker belongs to, as the platform reports it now: membership changes apply at once. A
question in a channel is answered from that channel's scope. Nobody gets content from a conversation they
are not in.

The company-wide scopes are added only for a full member of IMP's own organisation (``MEMBER``): never for
a guest or someone from another organisation, and not when the platform cannot say who is asking. An
answer posted in a conversation shared with another organisation is read by its people too, so it never
draws on company-wide scopes, whoever asked; a private answer depends on the asker alone.

What differs per platform (how to list someone's conversations, who counts as a member, whether a
conversation is shared outside) is a ``Directory`` the adapter supplies.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)

MEMBER, GUEST, EXTERNAL, UNKNOWN = "member", "guest", "external", "unknown"


class Directory(Protocol):
    """What a chat platform says about its people and conversations."""

    def conversations_of(self, user: str) -> list[str]:
        """Every conversation (channel, private channel, group chat) ``user`` is a member of."""
        ...

    def standing(self, user: str, hint: str | None = None) -> str:
        """``MEMBER``, ``GUEST``, ``EXTERNAL`` or ``UNKNOWN`` (``hint``: the organisation the event named)."""
        ...

    def shared_outside(self, channel: str) -> bool:
        """Whether people of another organisation read ``channel`` (True when the platform cannot say)."""
        ...


class ScopePolicy:
    def __init__(self, directory: Directory, company_scopes: list[str]):
        self.directory = directory
        self._company = list(dict.fromkeys(company_scopes))

    def for_asker(self, channel: str, user: str, *, private: bool, hint: str | None = None) -> list[str]:
        """What a private answer to ``user`` asked in ``channel`` (an ephemeral /ask, a 1:1 chat) may draw on."""
        own = self.for_user(user, channel) if private else [channel]
        return list(dict.fromkeys([*own, *self.company_for(user, hint)]))

    def for_message(self, channel: str, user: str, *, private: bool, hint: str | None = None,
                    shared_outside: bool = False) -> list[str]:
        """What an answer posted in ``channel`` for ``user`` may draw on: everyone there reads it."""
        if private:
            return self.for_asker(channel, user, private=True, hint=hint)
        if shared_outside or self.directory.shared_outside(channel):
            return [channel]
        return self.for_asker(channel, user, private=False, hint=hint)

    def for_user(self, user: str, private_chat: str | None = None) -> list[str]:
        """The private chat (when given) and every conversation ``user`` is in; company-wide scopes are not included."""
        mine = [private_chat] if private_chat else []
        return list(dict.fromkeys([*mine, *self.directory.conversations_of(user)]))

    def company_for(self, user: str, hint: str | None = None) -> list[str]:
        if not self._company:
            return []
        standing = self.directory.standing(user, hint)
        if standing != MEMBER:
            log.info("%s is %s here: no company-wide scopes", user, standing)
            return []
        return list(self._company)
