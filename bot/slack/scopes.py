"""Who may see what in Slack: Slack's ``Directory`` for the chat layer's scope policy (bot.chat.scopes).

The policy is the chat layer's: a channel's scope is its channel id; a question in a DM is answered
from the DM and every channel the asker is in (as Slack reports it now, on every question: membership
changes apply at once); company-wide scopes (IMP_SLACK__COMPANY_SCOPES) only for a full member of IMP's
own workspace, never in a channel shared with another organisation (Slack Connect). Guests in an ordinary
channel read what is posted there: company-wide scopes should hold only what every guest of such a channel
may read, or be configured away.

What Slack supplies here: the channels (public, private, group DMs) someone is in (``users.conversations``),
who counts as a member (bot.slack.people), and whether a channel is shared outside (``conversations.info``,
``is_ext_shared``). ``ScopeResolver`` is what the listeners use: Slack's way of telling a DM, over the policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import islice

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.chat.scopes import ScopePolicy
from bot.chat.recent import MISSING, Remembered
from bot.slack.people import People

log = logging.getLogger(__name__)

_MEMBER_TYPES = "public_channel,private_channel,mpim"


def is_dm(channel: str, channel_type: str | None = None) -> bool:
    return channel_type == "im" or (channel_type is None and channel.startswith("D"))


class SlackDirectory:
    """What Slack says about its people and channels (bot.chat.scopes.Directory)."""

    def __init__(self, client: WebClient, people: People, *, max_pages: int = 50, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self._client = client
        self.people = people
        self._max_pages = max_pages
        self._shared = Remembered(ttl_s, 20_000, clock)

    def conversations_of(self, user: str) -> list[str]:
        """Every channel (public, private, group DM) ``user`` is a member of, across all pages."""
        pages = self._client.users_conversations(user=user, types=_MEMBER_TYPES, exclude_archived=True, limit=200)
        return [c["id"] for page in islice(pages, self._max_pages) for c in page.get("channels") or []]

    def standing(self, user: str, hint: str | None = None) -> str:
        return self.people.standing(user, hint)

    def shared_outside(self, channel: str) -> bool:
        """Whether ``channel`` is shared with another organisation (or Slack cannot say: assumed so)."""
        known = self._shared.get(channel)
        if known is not MISSING:
            return known
        try:
            info = self._client.conversations_info(channel=channel)["channel"]
        except (SlackApiError, OSError) as e:
            error = e.response.get("error") if isinstance(e, SlackApiError) else type(e).__name__
            log.warning("conversations.info for %s failed (%s); answering there without company-wide scopes",
                        channel, error)
            return True
        shared = bool(info.get("is_ext_shared") or info.get("is_pending_ext_shared"))
        self._shared.put(channel, shared)
        return shared

    def members_of(self, channel: str, limit: int = 2000) -> list[str]:
        pages = self._client.conversations_members(channel=channel, limit=200)
        members = (m for page in pages for m in page.get("members") or [])
        return list(islice(members, limit))


class ScopeResolver:
    """The chat layer's scope policy over Slack's directory, for Slack's events (a DM told by its channel)."""

    def __init__(self, client: WebClient, company_scopes: list[str], *, max_pages: int = 50,
                 ttl_s: float = 300.0, people: People | None = None, clock: Callable[[], float] = time.monotonic):
        self.people = people or People(client, ttl_s=ttl_s, clock=clock)
        self.directory = SlackDirectory(client, self.people, max_pages=max_pages, ttl_s=ttl_s, clock=clock)
        self._policy = ScopePolicy(self.directory, company_scopes)

    def for_asker(self, channel: str, user: str, channel_type: str | None = None, *,
                  team_hint: str | None = None) -> list[str]:
        """What a private answer to ``user`` (an ephemeral /ask) may draw on."""
        return self._policy.for_asker(channel, user, private=is_dm(channel, channel_type), hint=team_hint)

    def for_message(self, channel: str, user: str, channel_type: str | None = None, *,
                    team_hint: str | None = None, shared_outside: bool = False) -> list[str]:
        """What an answer posted in ``channel`` for ``user`` may draw on: everyone there reads it."""
        return self._policy.for_message(channel, user, private=is_dm(channel, channel_type), hint=team_hint,
                                        shared_outside=shared_outside)

    def for_user(self, user: str, dm_channel: str | None = None) -> list[str]:
        """The DM (when given) and every channel ``user`` is in; company-wide scopes are not included."""
        return self._policy.for_user(user, dm_channel)

    def channels_of(self, user: str) -> list[str]:
        return self.directory.conversations_of(user)

    def members_of(self, channel: str, limit: int = 2000) -> list[str]:
        return self.directory.members_of(channel, limit)
