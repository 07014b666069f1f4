"""What Slack POSTs to an app, built and signed exactly as Slack does; no server.

Requests carry the v0 signature: ``X-Slack-Signature: v0=<hex>`` where hex is
HMAC-SHA256(secret, ``v0:{timestamp}:{body}``), and ``X-Slack-Request-Timestamp``.
``*_request`` helpers return ``(body, headers)`` ready to POST; the inner-event
builders return dicts shaped like the examples in Slack's Events API docs.
Generated ts values are unique and increasing ("1700000100.000200", ...).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

SECRET = "test-signing-secret-0123456789abcdef"
VERIFICATION_TOKEN = "fake-verification-token"  # the legacy `token` field; apps ignore it

_ticks = itertools.count(2)
_event_ids = itertools.count(1)


def new_ts() -> str:
    """A fresh message ts, later than every earlier one from this module."""
    us = 1_700_000_100_000_000 + next(_ticks) * 100
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def sign(body: bytes, secret: str = SECRET, *, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers for ``body`` (no Content-Type)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": ts}


def event(inner: dict, *, event_id: str | None = None, team_id: str = "T0TEST", api_app_id: str = "A0IMP",
          authorizations_user: str = "UIMPBOT", ext_shared: bool = False) -> dict:
    """The ``event_callback`` envelope around an inner event."""
    return {"token": VERIFICATION_TOKEN, "team_id": team_id, "api_app_id": api_app_id, "event": inner,
            "type": "event_callback",
            "event_id": event_id if event_id is not None else f"Ev0FAKE{next(_event_ids):06d}",
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": authorizations_user,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": ext_shared}


def event_request(inner: dict, secret: str = SECRET, *, event_id: str | None = None, timestamp: int | None = None,
                  retry_num: int | None = None, retry_reason: str = "http_timeout",
                  ext_shared: bool = False) -> tuple[bytes, dict[str, str]]:
    """A signed Events API POST; retries carry X-Slack-Retry-Num/Reason like Slack's."""
    body = json.dumps(event(inner, event_id=event_id, ext_shared=ext_shared)).encode()
    headers = {"Content-Type": "application/json", **sign(body, secret, timestamp=timestamp)}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return body, headers


def _form(fields: dict[str, str], secret: str, timestamp: int | None) -> tuple[bytes, dict[str, str]]:
    body = urlencode(fields).encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded", **sign(body, secret, timestamp=timestamp)}


def command_request(command: str, text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL",
                    channel_name: str = "general", response_url: str, trigger_id: str = "T.1",
                    secret: str = SECRET, timestamp: int | None = None,
                    team_id: str = "T0TEST") -> tuple[bytes, dict[str, str]]:
    """A signed slash-command POST, form-encoded with the fields Slack sends."""
    fields = {"token": VERIFICATION_TOKEN, "team_id": team_id, "team_domain": "test", "channel_id": channel,
              "channel_name": channel_name, "user_id": user, "user_name": user.lower(), "command": command,
              "text": text, "api_app_id": "A0IMP", "is_enterprise_install": "false",
              "response_url": response_url, "trigger_id": trigger_id}
    return _form(fields, secret, timestamp)


def interaction_request(payload: dict, secret: str = SECRET, *,
                        timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A signed interactivity POST: form body ``payload=<json>``."""
    return _form({"payload": json.dumps(payload)}, secret, timestamp)


def block_action(action_id: str, value: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL",
                 response_url: str, message_ts: str | None = None, container_ephemeral: bool = True,
                 user_team: str = "T0TEST") -> dict:
    """A ``block_actions`` payload for a button click. Slack's container type is
    "message" for ephemeral messages too; ``is_ephemeral`` tells them apart, and
    only a non-ephemeral click carries the ``message``."""
    ts = message_ts if message_ts is not None else new_ts()
    payload: dict[str, Any] = {
        "type": "block_actions", "token": VERIFICATION_TOKEN, "api_app_id": "A0IMP",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": user_team},
        "team": {"id": "T0TEST", "domain": "test"}, "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel.lower()},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel,
                      "is_ephemeral": container_ephemeral},
        "trigger_id": f"{next(_ticks)}.1.fake", "response_url": response_url, "state": {"values": {}},
        "actions": [{"action_id": action_id, "block_id": f"b-{action_id}", "value": value, "type": "button",
                     "text": {"type": "plain_text", "text": value}, "action_ts": new_ts()}]}
    if not container_ephemeral:
        payload["message"] = {"type": "message", "user": "UIMPBOT", "bot_id": "BIMPBOT", "ts": ts, "text": ""}
    return payload


# ----- inner events ------------------------------------------------------------------------
def app_mention(text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL", ts: str | None = None,
                thread_ts: str | None = None, user_team: str | None = None) -> dict:
    """``app_mention``; put ``<@UIMPBOT>`` in ``text`` as Slack would. ``user_team``: the asker's own
    team, which Slack adds in a channel shared with another organisation (Slack Connect)."""
    ts = ts if ts is not None else new_ts()
    inner = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts,
             "team": "T0TEST", "client_msg_id": f"cm-{ts}"}
    if thread_ts is not None:
        inner["thread_ts"] = thread_ts
    if user_team is not None:
        inner["user_team"] = inner["source_team"] = user_team
    return inner


def message(text: str, *, user: str = "U0ALICE", channel: str = "D0ALICE", channel_type: str = "im",
            ts: str | None = None, thread_ts: str | None = None, bot_id: str | None = None,
            subtype: str | None = None, files: list[dict] | None = None) -> dict:
    """A ``message`` event (a DM by default)."""
    ts = ts if ts is not None else new_ts()
    inner: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
                             "event_ts": ts, "channel_type": channel_type, "team": "T0TEST"}
    optional = {"thread_ts": thread_ts, "bot_id": bot_id, "subtype": subtype, "files": files}
    inner.update({k: v for k, v in optional.items() if v is not None})
    if bot_id is None and subtype is None:
        inner["client_msg_id"] = f"cm-{ts}"
    return inner


def reaction(name: str, *, added: bool = True, user: str = "U0ALICE", channel: str = "C0GENERAL", ts: str,
             item_user: str = "UIMPBOT") -> dict:
    """``reaction_added`` (or ``reaction_removed``) on the message at ``ts``."""
    return {"type": "reaction_added" if added else "reaction_removed", "user": user, "reaction": name,
            "item_user": item_user, "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": new_ts()}


def file_deleted(file_id: str) -> dict:
    return {"type": "file_deleted", "file_id": file_id, "event_ts": new_ts()}


def file_share_message(file: dict, *, user: str = "U0ALICE", channel: str = "C0GENERAL",
                       channel_type: str = "channel", ts: str | None = None, text: str = "") -> dict:
    """A ``message`` event of subtype ``file_share`` carrying ``file``."""
    ts = ts if ts is not None else new_ts()
    return {"type": "message", "subtype": "file_share", "text": text, "files": [file], "upload": False,
            "user": user, "display_as_bot": False, "ts": ts, "channel": channel, "event_ts": ts,
            "channel_type": channel_type, "team": "T0TEST"}
