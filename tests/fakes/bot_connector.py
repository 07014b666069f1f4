"""A fake Bot Connector and a fake Microsoft identity token endpoint: real HTTP on 127.0.0.1.

IMP's outbound Teams side (bot.teams.token, bot.teams.connector) talks to it as to Teams:
``token_url`` answers the client-credentials grant with tokens this fake makes up (for the Bot
Connector, or for Microsoft Graph when the grant asks ``GRAPH_SCOPE``: tests/fakes/graph.py takes
those and only those), and
``service_url`` (with a path, as Teams' ``https://smba.trafficmanager.net/amer/`` has) serves
the Bot Connector v3 calls: send, reply, update and delete activities, create a 1:1
conversation, list members (whole, paged, one). Every connector call must carry a bearer token
this fake issued and that is not expired or revoked, else 401 as the real connector answers.

Tests set up conversations and members, script faults (``fail_next``: 429 with Retry-After,
5xx, 401 for the next N calls, to the connector or the token endpoint), then read back
what the bot did: every request is recorded as a ``Call`` before it is answered, failed
ones included. Bodies over 28,000 bytes get 413, as Teams refuses messages over ~28 KB.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.net import FakeService, QuietHTTPServer

SCOPE = "https://api.botframework.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAX_BODY = 28_000
_PREFIX = "teams/"


@dataclass
class Call:
    kind: str  # "token", "send", "reply", "update", "delete", "create", "members", "pagedmembers", "member"
    method: str
    path: str  # as requested, percent-encoded
    conversation_id: str | None
    activity_id: str | None
    body: Any  # JSON body, the form for "token", None without a body
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    status: int = 0  # what the fake answered
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    status: int
    retry_after: str | None


class FakeBotConnector(FakeService):
    """One fake tenant with its Bot Connector. ``start()`` it or use it as a context manager."""

    def __init__(self, app_id: str = "imp-app-id", app_secret: str = "imp-client-secret-value", *,
                 tenant_id: str = "tenant-0001", token_lifetime_s: int = 3600) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.tenant_id = tenant_id
        self.bot_id = f"28:{app_id}"
        self.token_lifetime_s = token_lifetime_s
        self.calls: list[Call] = []
        self.issued: list[str] = []  # every token handed out, oldest first
        self._valid: dict[str, tuple[float, str]] = {}  # token -> (monotonic expiry, the scope it is for)
        self._conversations: dict[str, dict[str, Any]] = {}
        self._pages: dict[str, tuple[str, int]] = {}  # continuation token -> (conversation, offset)
        self._faults: dict[str, deque[_Fault]] = {"token": deque(), "connector": deque()}
        self._ids = 0
        self._lock = threading.RLock()
        self._server: QuietHTTPServer | None = None

    # ----- lifecycle -----------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def token_url(self) -> str:
        return f"{self.url}{self.tenant_id}/oauth2/v2.0/token"

    @property
    def service_url(self) -> str:
        return self.url + _PREFIX

    # ----- set-up and faults ---------------------------------------------------------
    def add_conversation(self, conversation_id: str, members: list[dict[str, Any]] | None = None) -> None:
        """A team, channel or chat; ``members`` as the connector lists them (id, name, aadObjectId ...)."""
        with self._lock:
            self._conversations[conversation_id] = {"members": list(members or []), "activities": {}}

    def fail_next(self, count: int, status: int, *, retry_after: str | None = None, target: str = "connector") -> None:
        """The next ``count`` calls to ``target`` ("connector" or "token") answer ``status`` instead."""
        with self._lock:
            self._faults[target].extend(_Fault(status, retry_after) for _ in range(count))

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (a rotated secret, a revoked app)."""
        with self._lock:
            self._valid.clear()

    # ----- what the bot did ----------------------------------------------------------
    def calls_to(self, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    def activities(self, conversation_id: str) -> list[dict[str, Any]]:
        """The activities in the conversation as they stand now (updates applied, deletions gone)."""
        with self._lock:
            convo = self._conversations.get(conversation_id, {"activities": {}})
            return copy.deepcopy(list(convo["activities"].values()))

    # ----- the handlers' side --------------------------------------------------------
    def next_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}{1_700_000_000_000 + self._ids}"

    def take_fault(self, target: str) -> _Fault | None:
        with self._lock:
            return self._faults[target].popleft() if self._faults[target] else None

    def issue_token(self, scope: str = SCOPE) -> str:
        with self._lock:
            token = f"fake-bot-token-{len(self.issued) + 1}-{secrets.token_urlsafe(24)}"
            self.issued.append(token)
            self._valid[token] = (time.monotonic() + self.token_lifetime_s, scope)
            return token

    def token_ok(self, authorization: str | None, scope: str = SCOPE) -> bool:
        """Whether ``authorization`` carries a live token this fake issued for ``scope`` (its audience)."""
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            valid = self._valid.get(authorization[len("Bearer "):])
            return valid is not None and time.monotonic() < valid[0] and valid[1] == scope

    def route(self, method: str, segments: list[str], body: Any, query: dict[str, str]) -> tuple[int, Any]:
        """The connector's answer to an authenticated call (segments after ``v3/conversations``)."""
        with self._lock:
            if not segments:
                return self._create(body) if method == "POST" else (405, None)
            convo = self._conversations.get(segments[0])
            if convo is None:
                return 404, {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}}
            rest = segments[1:]
            if rest == ["activities"] and method == "POST":
                return self._store(convo, body, reply_to=None)
            if len(rest) == 2 and rest[0] == "activities":
                return self._activity(convo, method, rest[1], body)
            if rest == ["members"] and method == "GET":
                return 200, copy.deepcopy(convo["members"])
            if rest == ["pagedmembers"] and method == "GET":
                return self._paged(segments[0], convo, query)
            if len(rest) == 2 and rest[0] == "members" and method == "GET":
                found = [m for m in convo["members"] if m.get("id") == rest[1]]
                return (200, copy.deepcopy(found[0])) if found else \
                    (404, {"error": {"code": "MemberNotFoundInConversation", "message": "Member not found"}})
            return 404, {"error": {"code": "NotFound", "message": "No such resource"}}

    def _store(self, convo: dict[str, Any], body: Any, reply_to: str | None) -> tuple[int, Any]:
        if isinstance(body, dict) and body.get("type") == "typing":  # shown for a moment, never kept
            return 201, {"id": self.next_id("")}
        if not isinstance(body, dict) or body.get("type") != "message":
            return 400, {"error": {"code": "BadSyntax", "message": "an activity of type message is needed"}}
        activity = dict(body, id=self.next_id(""))
        if reply_to is not None:
            activity["replyToId"] = reply_to
        convo["activities"][activity["id"]] = activity
        return 201, {"id": activity["id"]}

    def _activity(self, convo: dict[str, Any], method: str, activity_id: str, body: Any) -> tuple[int, Any]:
        if method == "POST":
            if activity_id not in convo["activities"] and not (isinstance(body, dict) and body.get("replyToId")):
                return 404, {"error": {"code": "ActivityNotFound", "message": "reply to an unknown activity"}}
            return self._store(convo, body, reply_to=activity_id)
        if activity_id not in convo["activities"]:
            return 404, {"error": {"code": "ActivityNotFound", "message": "Activity not found"}}
        if method == "PUT":
            if not isinstance(body, dict) or body.get("type") != "message":
                return 400, {"error": {"code": "BadSyntax", "message": "an activity of type message is needed"}}
            kept = convo["activities"][activity_id]
            convo["activities"][activity_id] = dict(body, id=activity_id, replyToId=kept.get("replyToId"),
                                                    edited=True)
            return 200, {"id": activity_id}
        if method == "DELETE":
            del convo["activities"][activity_id]
            return 200, None
        return 405, None

    def _paged(self, conversation_id: str, convo: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        size = int(query.get("pageSize", "200"))
        if not 50 <= size <= 500:
            return 400, {"error": {"code": "BadArgument", "message": "pageSize must be 50 to 500"}}
        offset = 0
        if "continuationToken" in query:
            where = self._pages.pop(query["continuationToken"], None)
            if where is None or where[0] != conversation_id:
                return 400, {"error": {"code": "BadArgument", "message": "unknown continuation token"}}
            offset = where[1]
        page = convo["members"][offset:offset + size]
        answer: dict[str, Any] = {"members": copy.deepcopy(page)}
        if offset + size < len(convo["members"]):
            token = secrets.token_urlsafe(12)
            self._pages[token] = (conversation_id, offset + size)
            answer["continuationToken"] = token
        return 200, answer

    def _create(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or (body.get("bot") or {}).get("id") != self.bot_id:
            return 400, {"error": {"code": "BadArgument", "message": "bot.id must be the bot"}}
        members = body.get("members") or []
        tenant = body.get("tenantId") or ((body.get("channelData") or {}).get("tenant") or {}).get("id")
        if len(members) != 1 or body.get("isGroup") or tenant != self.tenant_id:
            return 400, {"error": {"code": "BadArgument", "message": "one member of this tenant, not a group"}}
        conversation_id = f"a:1{members[0]['id']}"
        if conversation_id not in self._conversations:
            self._conversations[conversation_id] = {"members": [dict(members[0])], "activities": {}}
        answer: dict[str, Any] = {"id": conversation_id}
        if isinstance(body.get("activity"), dict):
            _, stored = self._store(self._conversations[conversation_id], body["activity"], reply_to=None)
            answer["activityId"] = stored.get("id")
        return 201, answer


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBotConnector
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = dict(parse_qsl(parts.query))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if parts.path == urlsplit(fake.token_url).path:
            self._token(method, parts.path, raw, query, headers)
            return
        segments = [unquote(s) for s in parts.path.removeprefix("/" + _PREFIX).split("/")]
        if not parts.path.startswith("/" + _PREFIX + "v3/conversations") or segments[:2] != ["v3", "conversations"]:
            self._answer(None, 404, {"error": {"code": "NotFound", "message": "not a connector path"}})
            return
        segments = segments[2:]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        call = Call(_kind(method, segments), method, parts.path, segments[0] if segments else None,
                    segments[2] if len(segments) > 2 and segments[1] == "activities" else None, body, query, headers)
        with fake._lock:
            fake.calls.append(call)
        fault = fake.take_fault("connector")
        if fault is not None:
            self._answer(call, fault.status, {"error": {"code": "Injected", "message": "scripted fault"}},
                         retry_after=fault.retry_after)
        elif not fake.token_ok(headers.get("authorization")):
            self._answer(call, 401, {"message": "Authorization has been denied for this request."})
        elif len(raw) > MAX_BODY:
            self._answer(call, 413, {"error": {"code": "MessageSizeTooBig", "message": "Message size too big"}})
        else:
            status, answer = fake.route(method, segments, body, query)
            self._answer(call, status, answer)

    def _token(self, method: str, path: str, raw: bytes, query: dict[str, str], headers: dict[str, str]) -> None:
        fake = self.fake
        form = dict(parse_qsl(raw.decode(errors="replace")))
        call = Call("token", method, path, None, None, form, query, headers)
        with fake._lock:
            fake.calls.append(call)
        fault = fake.take_fault("token")
        if fault is not None:
            self._answer(call, fault.status, {"error": "temporarily_unavailable"}, retry_after=fault.retry_after)
        elif method != "POST" or form.get("grant_type") != "client_credentials" or \
                form.get("scope") not in (SCOPE, GRAPH_SCOPE):
            self._answer(call, 400, {"error": "invalid_request", "error_description": "AADSTS900144: bad grant"})
        elif form.get("client_id") != fake.app_id or form.get("client_secret") != fake.app_secret:
            # A careless endpoint echoing what it got: IMP must not pass this on to its logs.
            self._answer(call, 401, {"error": "invalid_client", "error_description":
                                     f"AADSTS7000215: Invalid client secret provided: {form.get('client_secret')}"})
        else:
            self._answer(call, 200, {"token_type": "Bearer", "expires_in": fake.token_lifetime_s,
                                     "ext_expires_in": fake.token_lifetime_s,
                                     "access_token": fake.issue_token(form["scope"])})

    def _answer(self, call: Call | None, status: int, body: Any, retry_after: str | None = None) -> None:
        if call is not None:
            call.status = status
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)


def _kind(method: str, segments: list[str]) -> str:
    if not segments:
        return "create"
    rest = segments[1:]
    if rest == ["activities"]:
        return "send"
    if len(rest) == 2 and rest[0] == "activities":
        return {"POST": "reply", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())
    if rest and rest[0] in ("members", "pagedmembers"):
        return "member" if len(rest) == 2 else rest[0]
    return "other"
