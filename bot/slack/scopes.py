"""Who may see what: the scopes a question in Slack is answered from.

The scope of a channel is its channel id. A question in a channel is answered
from that channel's scope plus the company-wide scopes. A question in a DM is
answered from the scopes of every channel the asking user belongs to (as Slack
reports it now, on every question: membership changes apply at once), the DM
itself (files dropped there), and the company-wide scopes. A user never gets
content from a channel they are not in.
"""

from __future__ import annotations

from itertools import islice

from slack_sdk import WebClient

_MEMBER_TYPES = "public_channel,private_channel,mpim"


def is_dm(channel: str, channel_type: str | None = None) -> bool:
    return channel_type == "im" or (channel_type is None and channel.startswith("D"))


class ScopeResolver:
    def __init__(self, client: WebClient, company_scopes: list[str], *, max_pages: int = 50):
        self._client = client
        self._company = list(dict.fromkeys(company_scopes))
        self._max_pages = max_pages

    def for_channel(self, channel: str) -> list[str]:
        return list(dict.fromkeys([channel, *self._company]))

    def for_user(self, user: str, dm_channel: str | None = None) -> list[str]:
        channels = self.channels_of(user)
        mine = [dm_channel] if dm_channel else []
        return list(dict.fromkeys([*mine, *channels, *self._company]))

    def for_message(self, channel: str, user: str, channel_type: str | None = None) -> list[str]:
        return self.for_user(user, channel) if is_dm(channel, channel_type) else self.for_channel(channel)

    def channels_of(self, user: str) -> list[str]:
        """Every channel (public, private, group DM) ``user`` is a member of, across all pages."""
        pages = self._client.users_conversations(user=user, types=_MEMBER_TYPES, exclude_archived=True, limit=200)
        return [c["id"] for page in islice(pages, self._max_pages) for c in page.get("channels") or []]

    def members_of(self, channel: str, limit: int = 2000) -> list[str]:
        pages = self._client.conversations_members(channel=channel, limit=200)
        members = (m for page in pages for m in page.get("members") or [])
        return list(islice(members, limit))
