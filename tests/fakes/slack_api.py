"""The Slack Web API methods FakeSlack answers, over its in-memory workspace.

Each method takes the fake and the request's args and returns the rest of the
JSON body; raising ``SlackError(name)`` answers ``{"ok": false, "error": name}``
with the error names Slack uses. ``call`` checks the bearer token and holds the
fake's lock for the whole method. Cursors are real: ``limit`` sets the page
size and ``response_metadata.next_cursor`` is empty on the last page.
"""

from __future__ import annotations

import base64
import copy
import json
import mimetypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.slack_server import FakeSlack


class SlackError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


Method = Callable[["FakeSlack", dict[str, Any]], dict[str, Any]]
METHODS: dict[str, Method] = {}


def _method(name: str) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        METHODS[name] = fn
        return fn
    return register


def call(fake: FakeSlack, name: str, args: dict[str, Any], token: str) -> dict[str, Any]:
    """Answer one Web API call: the JSON body Slack would send with HTTP 200."""
    with fake._lock:
        try:
            handler = METHODS.get(name)
            if handler is None:
                raise SlackError("unknown_method")
            if name == "apps.connections.open":
                if token not in fake.app_tokens:
                    raise SlackError("not_allowed_token_type" if token == fake.token else "invalid_auth")
            elif token != fake.token:
                raise SlackError("invalid_auth")
            return {"ok": True, **handler(fake, args)}
        except SlackError as e:
            return {"ok": False, "error": e.error}


# ----- helpers ---------------------------------------------------------------------------
def _arg(args: dict[str, Any], key: str, error: str = "invalid_arguments") -> str:
    value = args.get(key)
    if value is None or value == "":
        raise SlackError(error)
    return str(value)


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _channel(fake: FakeSlack, channel_id: Any) -> dict:
    """A channel by id, #name, or a user id (their DM, opened if needed)."""
    cid = str(channel_id or "")
    if cid in fake._channels:
        return fake._channels[cid]
    if cid.startswith("#"):
        for channel in fake._channels.values():
            if channel["name"] == cid[1:]:
                return channel
    if cid in fake._users:
        return _open_dm(fake, cid)
    raise SlackError("channel_not_found")


def _open_dm(fake: FakeSlack, user_id: str) -> dict:
    for channel in fake._channels.values():
        if channel["is_im"] and channel["user"] == user_id:
            return channel
    cid = "D" + user_id[1:]
    if cid in fake._channels:
        cid = fake.new_id("D")
    fake.add_channel(cid, is_im=True, user=user_id)
    return fake._channels[cid]


def _in_channel(fake: FakeSlack, channel: dict) -> dict:
    if not channel["is_im"] and fake.bot_user_id not in channel["members"]:
        raise SlackError("not_in_channel")
    return channel


def _view(fake: FakeSlack, channel: dict) -> dict:
    public = not channel["is_im"] and not channel["is_private"]
    view = {"id": channel["id"], "name": channel["name"], "is_channel": public,
            "is_group": channel["is_private"] and not channel["is_im"], "is_im": channel["is_im"], "is_mpim": False,
            "is_private": channel["is_private"], "is_archived": False,
            "is_ext_shared": channel.get("is_ext_shared", False), "is_shared": channel.get("is_ext_shared", False),
            "is_member": fake.bot_user_id in channel["members"]}
    if channel["is_im"]:
        view["user"] = channel["user"]
    return view


def _find(fake: FakeSlack, channel: dict, ts: Any) -> dict:
    for msg in fake._history.get(channel["id"], []):
        if msg["ts"] == str(ts):
            return msg
    raise SlackError("message_not_found")


def _blocks(args: dict[str, Any]) -> list | None:
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            raise SlackError("invalid_blocks") from None
    return blocks


def _page(items: list, args: dict[str, Any], default_limit: int) -> tuple[list, dict[str, Any]]:
    """One page of ``items`` plus has_more and response_metadata.next_cursor."""
    limit = int(args.get("limit") or default_limit)
    limit = default_limit if limit <= 0 else min(limit, 1000)
    start = 0
    if args.get("cursor"):
        try:
            start = int(base64.b64decode(str(args["cursor"])).decode().removeprefix("next:"))
        except ValueError:
            raise SlackError("invalid_cursor") from None
    end = start + limit
    more = end < len(items)
    cursor = base64.b64encode(f"next:{end}".encode()).decode() if more else ""
    return copy.deepcopy(items[start:end]), {"has_more": more, "response_metadata": {"next_cursor": cursor}}


def _user(fake: FakeSlack, user_id: Any) -> dict:
    user = fake._users.get(str(user_id or ""))
    if user is None:
        raise SlackError("user_not_found")
    return user


# ----- auth, apps, assistant -------------------------------------------------------------
@_method("auth.test")
def auth_test(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    return {"url": fake.url, "team": "Test Team", "team_id": fake.team_id,
            "user": fake._users[fake.bot_user_id]["name"], "user_id": fake.bot_user_id,
            "bot_id": fake.bot_id, "is_enterprise_install": False}


@_method("apps.connections.open")
def apps_connections_open(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    if fake.socket_url is None:
        raise SlackError("invalid_auth")
    return {"url": fake.socket_url}


@_method("assistant.threads.setStatus")
def assistant_set_status(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    _channel(fake, _arg(args, "channel_id", "channel_not_found"))
    _arg(args, "thread_ts")
    if args.get("status") is None:
        raise SlackError("invalid_arguments")
    return {}


# ----- chat --------------------------------------------------------------------------------
@_method("chat.postMessage")
def chat_post_message(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _in_channel(fake, _channel(fake, args.get("channel")))
    blocks = _blocks(args)
    if not args.get("text") and not blocks and not args.get("attachments"):
        raise SlackError("no_text")
    msg = {"type": "message", "text": args.get("text", ""), "user": fake.bot_user_id, "bot_id": fake.bot_id,
           "team": fake.team_id, "blocks": blocks}
    thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
    stored = fake.store_message(channel["id"], msg, thread_ts=thread_ts)
    return {"channel": channel["id"], "ts": stored["ts"], "message": copy.deepcopy(stored)}


@_method("chat.update")
def chat_update(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(fake, args.get("channel"))
    msg = _find(fake, channel, _arg(args, "ts", "message_not_found"))
    if "text" in args:
        msg["text"] = args["text"]
    if "blocks" in args:
        msg["blocks"] = _blocks(args)
    msg["edited"] = {"user": fake.bot_user_id, "ts": fake.new_ts()}
    return {"channel": channel["id"], "ts": msg["ts"], "text": msg.get("text", ""), "message": copy.deepcopy(msg)}


@_method("chat.delete")
def chat_delete(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(fake, args.get("channel"))
    msg = _find(fake, channel, _arg(args, "ts", "message_not_found"))
    fake._history[channel["id"]].remove(msg)
    return {"channel": channel["id"], "ts": msg["ts"]}


@_method("chat.postEphemeral")
def chat_post_ephemeral(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(fake, args.get("channel"))
    user = _user(fake, args.get("user"))
    if user["id"] not in channel["members"]:
        raise SlackError("user_not_in_channel")
    if not args.get("text") and not _blocks(args) and not args.get("attachments"):
        raise SlackError("no_text")
    return {"message_ts": fake.new_ts()}


# ----- reactions ----------------------------------------------------------------------------
def _reaction_target(fake: FakeSlack, args: dict[str, Any]) -> tuple[dict, str]:
    channel = _channel(fake, args.get("channel"))
    msg = _find(fake, channel, _arg(args, "timestamp", "message_not_found"))
    return msg, _arg(args, "name", "invalid_name").strip(":")


@_method("reactions.add")
def reactions_add(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    msg, name = _reaction_target(fake, args)
    reactions = msg.setdefault("reactions", [])
    entry = next((r for r in reactions if r["name"] == name), None)
    if entry is None:
        reactions.append({"name": name, "users": [fake.bot_user_id], "count": 1})
    elif fake.bot_user_id in entry["users"]:
        raise SlackError("already_reacted")
    else:
        entry["users"].append(fake.bot_user_id)
        entry["count"] += 1
    return {}


@_method("reactions.remove")
def reactions_remove(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    msg, name = _reaction_target(fake, args)
    reactions = msg.get("reactions", [])
    entry = next((r for r in reactions if r["name"] == name and fake.bot_user_id in r["users"]), None)
    if entry is None:
        raise SlackError("no_reaction")
    entry["users"].remove(fake.bot_user_id)
    entry["count"] -= 1
    if not entry["users"]:
        reactions.remove(entry)
    if not reactions:
        msg.pop("reactions", None)
    return {}


# ----- files ---------------------------------------------------------------------------------
@_method("files.info")
def files_info(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    file_id = str(args.get("file") or "")
    if file_id not in fake._files or file_id in fake._deleted:
        raise SlackError("file_not_found")
    return {"file": copy.deepcopy(fake._files[file_id]), "comments": [],
            "response_metadata": {"next_cursor": ""}}


@_method("files.getUploadURLExternal")
def files_get_upload_url(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    filename = _arg(args, "filename")
    try:
        length = int(_arg(args, "length"))
    except ValueError:
        raise SlackError("invalid_arguments") from None
    file_id = fake.new_id("F")
    fake._pending_uploads[file_id] = {"filename": filename, "length": length}
    return {"upload_url": f"{fake.url}upload/{file_id}", "file_id": file_id}


@_method("files.completeUploadExternal")
def files_complete_upload(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    items = args.get("files")
    if isinstance(items, str):
        try:
            items = json.loads(items)
        except ValueError:
            raise SlackError("invalid_arguments") from None
    if not isinstance(items, list) or not items:
        raise SlackError("invalid_arguments")
    targets = [str(args["channel_id"])] if args.get("channel_id") else []
    targets += [c for c in str(args.get("channels") or "").split(",") if c]
    channels = [_in_channel(fake, _channel(fake, c)) for c in targets]
    files = []
    for item in items:
        pending = fake._pending_uploads.get(str(item.get("id")))
        if pending is None or item["id"] not in fake.uploads:
            raise SlackError("file_not_found")
        name = pending["filename"]
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        filetype = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        files.append(fake.new_file(item["id"], name, fake.uploads[item["id"]], mimetype=mimetype,
                                   filetype=filetype, channels=[c["id"] for c in channels],
                                   user=fake.bot_user_id, title=item.get("title")))
        del fake._pending_uploads[item["id"]]
    thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
    for channel in channels:
        msg = {"type": "message", "text": args.get("initial_comment", ""), "user": fake.bot_user_id,
               "bot_id": fake.bot_id, "upload": True, "files": copy.deepcopy(files)}
        fake.store_message(channel["id"], msg, thread_ts=thread_ts)
    return {"files": copy.deepcopy(files)}


# ----- conversations and users -------------------------------------------------------------
@_method("conversations.info")
def conversations_info(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    return {"channel": _view(fake, _channel(fake, args.get("channel")))}


@_method("conversations.open")
def conversations_open(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    users = [u for u in str(args.get("users") or "").split(",") if u]
    if len(users) != 1:
        raise SlackError("users_list_not_supplied" if not users else "not_supported")
    return {"channel": _view(fake, _open_dm(fake, _user(fake, users[0])["id"]))}


@_method("conversations.members")
def conversations_members(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    members, meta = _page(_channel(fake, args.get("channel"))["members"], args, 100)
    return {"members": members, "response_metadata": meta["response_metadata"]}


@_method("conversations.history")
def conversations_history(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _in_channel(fake, _channel(fake, args.get("channel")))
    oldest = float(args.get("oldest") or 0)
    latest = float(args["latest"]) if args.get("latest") else float("inf")
    inclusive = _flag(args.get("inclusive"))

    def in_range(ts: float) -> bool:
        return oldest <= ts <= latest if inclusive else oldest < ts < latest

    top = [m for m in fake._history[channel["id"]] if m.get("thread_ts", m["ts"]) == m["ts"]]
    top = sorted((m for m in top if in_range(float(m["ts"]))), key=lambda m: float(m["ts"]), reverse=True)
    messages, meta = _page(top, args, 100)
    return {"messages": messages, **meta}


@_method("conversations.replies")
def conversations_replies(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _in_channel(fake, _channel(fake, args.get("channel")))
    ts = _arg(args, "ts", "thread_not_found")
    thread = [m for m in fake._history[channel["id"]] if m["ts"] == ts or m.get("thread_ts") == ts]
    if not thread:
        raise SlackError("thread_not_found")
    thread.sort(key=lambda m: float(m["ts"]))
    messages, meta = _page(thread, args, 1000)
    return {"messages": messages, **meta}


@_method("users.info")
def users_info(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    return {"user": copy.deepcopy(_user(fake, args.get("user")))}


@_method("users.conversations")
def users_conversations(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    user_id = _user(fake, args.get("user") or fake.bot_user_id)["id"]
    types = {t.strip() for t in str(args.get("types") or "public_channel").split(",") if t.strip()}

    def kind(channel: dict) -> str:
        if channel["is_im"]:
            return "im"
        return "private_channel" if channel["is_private"] else "public_channel"

    found = [_view(fake, c) for c in fake._channels.values() if kind(c) in types and user_id in c["members"]]
    channels, meta = _page(found, args, 100)
    return {"channels": channels, "response_metadata": meta["response_metadata"]}
