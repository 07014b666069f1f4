"""Where Teams keeps a conversation's files, and the check that a file shared there is kept there.

IMP reads shared files with a tenant-wide application permission (Files.Read.All, bot/teams/graph.py), so
Graph hands it any file of the organisation: a member could post, in a channel, a link to a file of another
team's site or of someone else's OneDrive (the HR site) and IMP would index it for everyone in the channel.
So a file posted in a conversation is indexed only when it lives where Teams itself stores that
conversation's files:
- in a channel: the drive of the channel's files folder (Graph's ``filesFolder``), which is the team's own
  document library for a standard channel and the channel's own site for a private or shared one (a file of
  the team's library posted in a shared channel would otherwise reach people outside the team);
- in a group chat (and a 1:1 chat): the sender's own OneDrive, where Teams puts the files people post in
  chats ("Microsoft Teams Chat Files").

``place_of`` notes that place when the message arrives (stored in the task's data under ``PLACE``);
``FilePlaces.check`` compares it with the drive Graph says holds the file, after the file is resolved and
before anything is downloaded. Anything else (no team or sender id known, another drive, Graph unable to
say) is refused with a reason the user can act on. A drive's id never changes, so each lookup is kept
``ttl_s`` (a bounded number of them); failures are not kept. Threads may share a ``FilePlaces``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.chat.recent import MISSING, Remembered
from bot.teams.events import Conversation, Person
from bot.teams.file_links import TeamsFileError
from bot.teams.graph import DriveFile, GraphFiles
from core.errors import InvalidRequest

log = logging.getLogger(__name__)

PLACE = "place"  # the key of the expected place in a task's data
RULE = ("I index only files stored in this conversation's own files (a channel's Files, or in a chat the "
        "sender's own OneDrive)")


class FileElsewhere(TeamsFileError, InvalidRequest):
    """A file shared in a conversation is not kept where Teams keeps that conversation's files (or IMP cannot
    tell where that is); nothing was downloaded."""

    code = "file_elsewhere"


def place_of(conversation: Conversation, sender: Person) -> dict[str, Any]:
    """Where Teams keeps the files posted in ``conversation`` by ``sender``, as a task's data holds it."""
    if conversation.kind == "channel":
        return {"kind": "channel", "group": conversation.team_group_id, "channel": conversation.channel_id}
    return {"kind": "chat", "user": sender.aad_object_id}


class FilePlaces:
    """Checks shared files against their conversation's place, asking Graph for drive ids (kept ``ttl_s``)."""

    def __init__(self, graph: GraphFiles, *, ttl_s: float = 3600.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._graph = graph
        self._drives = Remembered(ttl_s, max(1, max_entries), clock)

    def check(self, found: DriveFile, place: object, name: str) -> None:
        """Return when ``found`` is kept where ``place`` says; else FileElsewhere (or Graph's error) says why."""
        expected = self._expected(place, name)
        if found.drive_id is None or found.drive_id != expected:
            log.warning("refused %s: it is not kept where this conversation keeps its files", name)
            raise FileElsewhere(f"{RULE}; {name} is elsewhere: upload it here instead")

    def _expected(self, place: object, name: str) -> str:
        kind = place.get("kind") if isinstance(place, Mapping) else None
        if not isinstance(place, Mapping) or kind not in ("channel", "chat"):  # a task from before the check
            raise FileElsewhere(f"{RULE}, and I no longer know where {name} was shared: share it again")
        if kind == "channel":
            group, channel = place.get("group"), place.get("channel")
            if not isinstance(group, str) or not group or not isinstance(channel, str) or not channel:
                raise FileElsewhere(f"{RULE}, and Teams did not tell me which team this channel belongs to, so I "
                                    f"cannot check {name}: upload it here instead")
            return self._drive(f"channel/{group}/{channel}", lambda: self._graph.channel_drive(group, channel, name))
        user = place.get("user")
        if not isinstance(user, str) or not user:
            raise FileElsewhere(f"{RULE}, and Teams did not tell me who sent {name}, so I cannot check it: "
                                "upload it here instead")
        return self._drive(f"user/{user}", lambda: self._graph.user_drive(user, name))

    def _drive(self, key: str, look_up: Callable[[], str]) -> str:
        kept = self._drives.get(key)
        if kept is not MISSING:
            return kept
        drive = look_up()  # outside any lock: a slow Graph must not hold up other conversations
        self._drives.put(key, drive)
        return drive
