"""The events the Teams adapter acts on: a closed set of small frozen types, read from Bot Framework activities.

bot/teams/activity.py makes them (``parse_activity``); the Teams adapter matches on them and hands the
chat layer what it needs: who asked, where (and so from which scopes: ``scope_of``), the question or
command, the files to index (sent to IMP, or shared in a channel or group chat), the rating a reaction
gives, the answer a card button shares, and who joined or left. Nothing here holds a raw activity: every
field is checked, bounded and typed.

Identifiers, as Teams writes them: a person ``29:…`` (and their Entra ``aad_object_id``), a bot
``28:<app id>``, a channel or group chat ``19:…@thread.…``, a 1:1 chat ``a:…``; a message id is a
millisecond timestamp such as ``1712345678901``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ConversationKind = Literal["personal", "channel", "groupChat"]
COMMANDS = ("ask", "minutes")  # as the app manifest lists them (bot/teams/manifest.py)


@dataclass(frozen=True, slots=True)
class Person:
    """Who did something: their Teams id (``29:…``), Entra object id when Teams gives it, display name ("" if none)."""

    id: str
    aad_object_id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """Where an activity happened, and where a reply goes.

    ``id`` is the conversation id as Teams sent it, to reply into (a channel thread's carries
    ``;messageid=<root>``); ``base_id`` is it without that suffix, and ``thread_id`` the root message id
    it names. ``channel_id`` (``channelData.channel.id``) is the channel's own id, never a thread's;
    ``channel_type`` is Teams' word for it when given ("standard", "private", "shared").
    ``service_url`` is carried verbatim: the connector's allow-list decides whether IMP may call it.
    """

    kind: ConversationKind
    id: str
    base_id: str
    thread_id: str | None
    channel_id: str | None
    channel_type: str | None
    team_id: str | None  # the team's id (its General channel's conversation id)
    team_group_id: str | None  # the team's Microsoft 365 group id (a GUID), for Graph
    tenant_id: str | None
    service_url: str


@dataclass(frozen=True, slots=True)
class FileAttachment:
    """A file attached to a message (``application/vnd.microsoft.teams.file.download.info``).

    ``download_url`` is a short-lived, pre-authorized https link: fetched with a plain GET, no token.
    ``unique_id`` is the OneDrive/SharePoint item id (the same file shared twice keeps it);
    ``content_url`` the file's place in OneDrive/SharePoint, for people, not for downloading.
    """

    name: str
    download_url: str
    unique_id: str
    file_type: str  # the extension Teams reports, lower case ("pdf", "mp4"), "" if none
    size: int | None
    etag: str | None
    content_url: str | None


@dataclass(frozen=True, slots=True)
class SharedFile:
    """A file posted in a channel or group chat (a ``reference`` attachment): it stays in SharePoint/OneDrive.

    ``url`` is the file's place there (Teams' ``contentUrl``, spaces and other characters a URL may not hold
    percent-encoded), not a download link: bot/teams/graph.py asks Microsoft Graph for the file behind it.
    ``item_id`` is stable per file, so dropping it again updates what was indexed: the id Teams gives the
    attachment, or 32 hex digits of the URL's SHA-256 when it gives none.
    """

    name: str
    url: str
    item_id: str
    file_type: str  # the file name's extension, lower case ("docx", "mp4"), "" if none


@dataclass(frozen=True, slots=True)
class InlineImage:
    """An image pasted into a message: its bytes are at ``url``, which needs the bot's token to read."""

    content_type: str
    url: str


@dataclass(frozen=True, slots=True)
class RefusedAttachment:
    """A file or image IMP will not fetch, and why (to tell the person, never silently dropped)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    """A message to IMP, or one IMP sees in a channel or chat it is in.

    ``text`` is what the person wrote, IMP's mention removed and other mentions as names;
    ``mentioned`` whether they @mentioned IMP; ``command`` "ask" or "minutes" when the text starts
    with one (after the mention), ``arguments`` the rest ("" without a command). ``reply_to_id`` is
    Teams' ``replyToId``.
    """

    activity_id: str
    user: Person
    conversation: Conversation
    text: str
    mentioned: bool
    command: str | None
    arguments: str
    mentions: tuple[Person, ...]  # other people the message mentions (aad_object_id None)
    reply_to_id: str | None
    files: tuple[FileAttachment, ...]
    shared_files: tuple[SharedFile, ...]
    images: tuple[InlineImage, ...]
    refused: tuple[RefusedAttachment, ...]
    timestamp: datetime | None  # UTC, naive, as IMP stores times

    @property
    def addressed(self) -> bool:
        """Whether the message is for IMP: any message in a 1:1 chat, an @mention elsewhere."""
        return self.mentioned or self.conversation.kind == "personal"

    @property
    def thread_root(self) -> str | None:
        """The root message of the channel thread it is in (itself when it starts one); None outside channels."""
        if self.conversation.kind != "channel":
            return None
        return self.conversation.thread_id or self.activity_id


@dataclass(frozen=True, slots=True)
class RatingChange:
    """One reaction added or taken back, and the rating it stands for: +1 (👍) or -1 (👎)."""

    added: bool
    reaction: str  # Teams' reaction id as sent, e.g. "like", "yes-tone3", "no"
    rating: int


@dataclass(frozen=True, slots=True)
class Reaction:
    """👍/👎 put on or taken off the message ``message_id`` (an answer of IMP's, if the chat layer knows it).

    The message is found by (``conversation.base_id``, ``message_id``). Reactions that are no rating
    (❤️, 😆 …) never make a Reaction: the activity reads as ``Ignored``.
    """

    activity_id: str | None
    user: Person
    conversation: Conversation
    message_id: str
    changes: tuple[RatingChange, ...]
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class CardAction:
    """A button pressed on one of IMP's cards; today only "share this answer" (``answer_id``).

    ``invoke`` is True for a Universal Action (an ``adaptiveCard/action`` invoke), which Teams waits on:
    the adapter must answer the HTTP request with an invoke response. ``card_message_id`` is the
    message holding the card, when Teams says.
    """

    activity_id: str | None
    user: Person
    conversation: Conversation
    action: Literal["share_answer"]
    answer_id: str
    card_message_id: str | None
    invoke: bool


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """IMP installed in or removed from a conversation, or people joining or leaving it.

    ``bot_added``/``bot_removed`` say what happened to IMP; ``added``/``removed`` are the other
    members. ``event`` is Teams' word (``teamMemberAdded``, ``channelMemberRemoved``, for an
    installation ``add``/``remove`` …), "" when Teams gives none.
    """

    activity_id: str | None
    conversation: Conversation
    bot_added: bool
    bot_removed: bool
    added: tuple[Person, ...]
    removed: tuple[Person, ...]
    event: str
    by: Person | None  # who did it, when Teams says


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """A message deleted in Teams (``messageDelete``): files it carried may leave the index."""

    activity_id: str
    user: Person | None
    conversation: Conversation


@dataclass(frozen=True, slots=True)
class Ignored:
    """An activity IMP does not act on, with why. ``invoke``: Teams waits for an invoke response."""

    activity_type: str
    reason: str
    invoke: bool = False


Event = Message | Reaction | CardAction | MembersChanged | MessageDeleted | Ignored
