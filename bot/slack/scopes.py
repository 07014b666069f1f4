"""Who may see what: the scopes a question in Slack is answered from.

The scope of a channel is its channel id. A question in a DM is answered from the
scopes of every channel the asking user belongs to (as Slack reports it now, on every
question: membership changes apply at once) and the DM itself (files dropped there).
A question in a channel is answered from that channel's scope. A user never gets
content from a channel they are not in.

The company-wide scopes (IMP_SLACK__COMPANY_SCOPES) are added only for a full member of
IMP's own workspace (bot.slack.people): never for a guest or a person from another
organisation (Slack Connect), and not when Slack cannot say who is asking. A guest's
DM therefore sees the DM and the channels the guest is in, nothing company-wide. An
answer posted in a channel shared with another organisation (Slack Connect) is read by
that organisation's people too, so it never draws on company-wide scopes, whoever asked;
a private answer (/ask) depends on the asker alone. Guests in an ordinary channel read
what is posted there: company-wide scopes should hold only what every guest of such a
channel may read, or be configured away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import islice

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.people import MEMBER, MISSING, People, Remembered

log = logging.getLogger(__name__)

_MEMBER_TYPES = "public_channel,private_channel,mpim"


def is_dm(channel: str, channel_type: str | None = None) -> bool:
    return channel_type == "im" or (channel_type is None and channel.startswith("D"))


class ScopeResolver:
    def __init__(self, client: WebClient, company_scopes: list[str], *, max_pages: int = 50,
                 ttl_s: float = 300.0, people: People | None = None, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._company = list(dict.fromkeys(company_scopes))
        self._max_pages = max_pages
        self.people = people or People(client, ttl_s=ttl_s, clock=clock)
        self._shared = Remembered(ttl_s, 20_000, clock)

    def for_asker(self, channel: str, user: str, channel_type: str | None = None, *,
                  team_hint: str | None = None) -> list[str]:
        """What a private answer to ``user`` (an ephemeral /ask) may draw on."""
        own = self.for_user(user, channel) if is_dm(channel, channel_type) else [channel]
        return list(dict.fromkeys([*own, *self._company_for(user, team_hint)]))

    def for_message(self, channel: str, user: str, channel_type: str | None = None, *,
                    team_hint: str | None = None, shared_outside: bool = False) -> list[str]:
        """What an answer posted in ``channel`` for ``user`` may draw on: everyone there reads it."""
        if is_dm(channel, channel_type):
            return self.for_asker(channel, user, channel_type, team_hint=team_hint)
        if shared_outside or self._shared_outside(channel):
            return [channel]
        return self.for_asker(channel, user, channel_type, team_hint=team_hint)

    def for_user(self, user: str, dm_channel: str | None = None) -> list[str]:
        """The DM (when given) and every channel ``user`` is in; company-wide scopes are not included."""
        mine = [dm_channel] if dm_channel else []
        return list(dict.fromkeys([*mine, *self.channels_of(user)]))

    def _company_for(self, user: str, team_hint: str | None) -> list[str]:
        if not self._company:
            return []
        standing = self.people.standing(user, team_hint)
        if standing != MEMBER:
            log.info("%s is %s here: no company-wide scopes", user, standing)
            return []
        return list(self._company)

    def _shared_outside(self, channel: str) -> bool:
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

    def channels_of(self, user: str) -> list[str]:
        """Every channel (public, private, group DM) ``user`` is a member of, across all pages."""
        pages = self._client.users_conversations(user=user, types=_MEMBER_TYPES, exclude_archived=True, limit=200)
        return [c["id"] for page in islice(pages, self._max_pages) for c in page.get("channels") or []]

    def members_of(self, channel: str, limit: int = 2000) -> list[str]:
        pages = self._client.conversations_members(channel=channel, limit=200)
        members = (m for page in pages for m in page.get("members") or [])
        return list(islice(members, limit))
