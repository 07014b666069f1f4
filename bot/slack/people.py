"""Who is asking: a full member of IMP's own workspace, a guest, or someone from another organisation.

Company-wide scopes are for the company's own members. Slack also lets in guests
(``is_restricted``: multi-channel, ``is_ultra_restricted``: single-channel) and, through
Slack Connect, people of other organisations (``is_stranger``, or a ``team_id`` that is
neither IMP's workspace nor its Enterprise Grid organisation). Slack says which in
``users.info``; events in shared channels also name the asker's team (``user_team``),
which is checked too, so either source marking someone as outside is enough.

``users.info`` answers are kept a few minutes (a guest promoted to member, or a member
made a guest, is seen within that time) and bounded in number. When Slack cannot say
(an error, a timeout, a missing scope), the asker is treated as not a member: they lose
the company-wide scopes for that question, never gain them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.chat.recent import MISSING, Remembered
from bot.chat.scopes import EXTERNAL, GUEST, MEMBER, UNKNOWN

log = logging.getLogger(__name__)



class People:
    """``users.info`` with a short memory, and the workspace (and organisation) IMP is installed in."""

    def __init__(self, client: WebClient, *, ttl_s: float = 300.0, max_users: int = 20_000,
                 clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._users = Remembered(ttl_s, max_users, clock)
        self._home: tuple[str, str | None] | None = None

    def info(self, user: str) -> dict[str, Any] | None:
        """The user as Slack describes them, or None when Slack would not say (not remembered)."""
        found = self._users.get(user)
        if found is not MISSING:
            return found
        try:
            found = self._client.users_info(user=user)["user"]
        except (SlackApiError, OSError) as e:
            error = e.response.get("error") if isinstance(e, SlackApiError) else type(e).__name__
            log.warning("users.info for %s failed (%s); treating them as not a member", user, error)
            return None
        self._users.put(user, found)
        return found

    def home(self) -> tuple[str, str | None] | None:
        """IMP's workspace id and Enterprise Grid organisation id (auth.test), kept once known."""
        if self._home is None:
            try:
                auth = self._client.auth_test()
            except (SlackApiError, OSError):
                log.warning("auth.test failed; nobody gets the company-wide scopes until it answers")
                return None
            self._home = (str(auth.get("team_id") or ""), auth.get("enterprise_id") or None)
        return self._home

    def standing(self, user: str, team_hint: str | None = None) -> str:
        """MEMBER, GUEST, EXTERNAL or UNKNOWN (Slack could not say); only MEMBER gets company-wide scopes."""
        home = self.home()
        info = self.info(user)
        if home is None or info is None:
            return UNKNOWN
        ours = set(home) - {None, ""}
        # In an Enterprise Grid organisation a member's own workspace may be another of the organisation's.
        theirs = {info.get("team_id"), (info.get("enterprise_user") or {}).get("enterprise_id")} - {None, ""}
        if info.get("is_stranger") or not theirs & ours:
            return EXTERNAL
        if team_hint and team_hint not in ours | theirs:  # the event says they came from elsewhere
            return EXTERNAL
        if info.get("is_restricted") or info.get("is_ultra_restricted"):
            return GUEST
        if info.get("deleted"):
            return UNKNOWN
        return MEMBER

    def name(self, user: str) -> str:
        """How a person is called in a question ("what did Bob say"); empty when Slack would not say."""
        info = self.info(user) or {}
        profile = info.get("profile") or {}
        return (profile.get("display_name") or profile.get("real_name") or info.get("real_name")
                or info.get("name") or "")
