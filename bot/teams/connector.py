"""The Bot Connector v3 REST calls the Teams adapter makes: replies, proactive messages, members.

Used by the Teams adapter's outbound side (bot/teams): answering in a conversation or channel thread
(``reply``), posting and then editing a progress message for long jobs such as minutes (``send`` then
``update``), withdrawing a message (``delete``), deciding scopes from who is in a team or chat
(``members``, ``member``), and opening a 1:1 chat for proactive messages (``create_personal_conversation``).

Every call goes to the ``serviceUrl`` of the activity that started the exchange. That URL arrives in
the request, so it is checked before anything is sent: https only (plain http only to a loopback host
listed explicitly, for tests), no credentials, query or fragment, and a host on the allow-list
(``.botframework.com``, ``.teams.microsoft.com``, ``smba.trafficmanager.net`` by default). A forged
serviceUrl therefore cannot make IMP send its bearer token to another host; redirects are not followed.

Failures: 429 and 412 (Teams' throttling) wait for Retry-After (capped), 5xx back off exponentially with
jitter, both within ``attempts`` and ``max_total_wait_s``; a 401 drops the token and retries once with a
fresh one; any other 4xx raises ``ConnectorRejected`` at once. A POST whose answer was lost after it was
sent is not retried (Teams may already show the message). Activities are the pydantic models of
microsoft-agents-activity; one over Teams' ~28 KB message limit is refused (``ActivityTooLarge``), and
``split_text`` cuts a long text into messages that fit. The client is synchronous and thread-safe, like
the Slack WebClient the chat layer's worker threads already use.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from microsoft_agents.activity import (
    Activity,
    AgentsModel,
    ChannelAccount,
    ConversationParameters,
    ConversationResourceResponse,
    PagedMembersResult,
    ResourceResponse,
)
from pydantic import ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

from bot.teams.token import is_loopback_host
from core.errors import BackendError, InvalidRequest

log = logging.getLogger(__name__)

DEFAULT_SERVICE_HOSTS = (".botframework.com", ".teams.microsoft.com", "smba.trafficmanager.net")
MAX_ACTIVITY_BYTES = 28_000  # Teams refuses messages over about 28 KB, cards and envelope included
MAX_TEXT_BYTES = 24_000  # what split_text leaves for one message's text, the rest is for the envelope
_MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a page of 500 members is about 250 KB
_MAX_ID_CHARS = 1024
_IDEMPOTENT = {"GET", "PUT", "DELETE"}
_Model = TypeVar("_Model", bound=AgentsModel)


class ServiceUrlRefused(InvalidRequest):
    """An activity's serviceUrl is not a Bot Connector IMP may send its token to; nothing was sent."""

    code = "service_url_refused"


class ActivityTooLarge(InvalidRequest):
    """An outgoing activity is over Teams' message size limit; nothing was sent."""

    code = "activity_too_large"


class ConnectorError(BackendError):
    """The Bot Connector kept failing (throttled, 5xx, unreachable) or answered something unusable."""

    code = "teams_connector_error"

    def __init__(self, detail: str, status: int | None = None, attempts: int = 1):
        super().__init__(detail)
        self.status = status
        self.attempts = attempts


class ConnectorRejected(ConnectorError):
    """The Bot Connector refused the request (4xx other than throttling): retrying will not help."""

    code = "teams_request_rejected"


class TokenSource(Protocol):
    """Where the bearer token comes from (bot.teams.token.BotTokenProvider)."""

    def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class _Transient(Exception):
    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """``host`` matches an entry: ".example.com" any subdomain of it, "example.com" exactly that host."""
    host = host.lower()
    for entry in allowed_hosts:
        entry = entry.lower()
        if (entry.startswith(".") and host.endswith(entry) and len(host) > len(entry)) or host == entry:
            return True
    return False


def check_service_url(url: object, allowed_hosts: Iterable[str]) -> str:
    """The serviceUrl as a base ending in "/", or ServiceUrlRefused when IMP must not call it."""
    if not isinstance(url, str) or not url or len(url) > 2048 or not url.isprintable() or "\\" in url:
        raise ServiceUrlRefused("the activity's serviceUrl is missing or malformed")
    parts = urlsplit(url)
    try:
        host, _port = parts.hostname or "", parts.port
    except ValueError:
        raise ServiceUrlRefused("the activity's serviceUrl has an invalid port") from None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment or not host:
        raise ServiceUrlRefused("the activity's serviceUrl carries credentials, a query or no host")
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(host)):
        raise ServiceUrlRefused(f"the serviceUrl of host {host} is not https")
    if host.endswith(".") or not host_allowed(host, allowed_hosts):
        raise ServiceUrlRefused(f"the serviceUrl host {host} is not an allowed Bot Connector host")
    path = parts.path or "/"
    if "%" in path or ".." in path.split("/"):
        raise ServiceUrlRefused("the activity's serviceUrl has an unusual path")
    base = f"{parts.scheme}://{parts.netloc}{path.rstrip('/')}/"
    if httpx.URL(base).host != host.strip("[]"):  # the HTTP client must agree on where this goes
        raise ServiceUrlRefused("the activity's serviceUrl is ambiguous")
    return base


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID_CHARS or not value.isprintable():
        raise InvalidRequest(f"the {what} is empty, too long or not printable")
    return quote(value, safe="")


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time()) if moment.tzinfo else None


def _error_code(body: bytes) -> str:
    """The connector's ``{"error": {"code"}}`` if it is a short plain word (its message is not trusted)."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return ""
    plain = isinstance(code, str) and len(code) <= 64 and code.isascii() and code.replace("_", "").isalnum()
    return code if plain else ""


def split_text(text: str, max_bytes: int = MAX_TEXT_BYTES) -> list[str]:
    """``text`` cut into parts of at most ``max_bytes`` UTF-8 bytes, at paragraph, line or word ends."""
    if max_bytes < 4:  # one character may take four bytes
        raise ValueError("max_bytes must be at least 4")
    parts: list[str] = []
    rest = text
    while len(rest.encode()) > max_bytes:
        head = rest.encode()[:max_bytes].decode(errors="ignore")
        cut = max(head.rfind("\n\n"), 0) or max(head.rfind("\n"), 0) or max(head.rfind(" "), 0) or len(head)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return [p for p in parts if p] or [""]


class ConnectorClient:
    """Bot Connector v3 calls on a validated serviceUrl, authenticated with the bot's token.

    ``allowed_hosts``: serviceUrl hosts IMP may call (``host_allowed``'s rules); tests add "127.0.0.1".
    ``attempts`` bounds tries per call (throttling and 5xx); ``max_retry_after_s`` caps one wait;
    ``max_total_wait_s`` bounds one call's waiting in all. ``client`` lets the caller share an
    ``httpx.Client`` (not closed by ``close()`` then).
    """

    def __init__(self, tokens: TokenSource, *, allowed_hosts: Iterable[str] = DEFAULT_SERVICE_HOSTS,
                 timeout_s: float = 15.0, attempts: int = 4, max_retry_after_s: float = 30.0,
                 max_total_wait_s: float = 60.0, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 max_activity_bytes: int = MAX_ACTIVITY_BYTES, client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._tokens = tokens
        self._allowed = tuple(h.lower() for h in allowed_hosts)
        self._attempts = max(1, attempts)
        self._max_retry_after = max_retry_after_s
        self._max_total_wait = max_total_wait_s
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._max_activity = max_activity_bytes
        self._sleep = sleep
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def check_service_url(self, service_url: object) -> str:
        """The normalised serviceUrl if IMP may call it, else ServiceUrlRefused (adapters check on receipt)."""
        return check_service_url(service_url, self._allowed)

    # ----- messages -------------------------------------------------------------------
    def reply(self, service_url: str, conversation_id: str, activity_id: str, activity: Activity) -> str | None:
        """Post ``activity`` as a reply to ``activity_id`` (in its thread); the new activity's id."""
        path = f"{self._conversation(conversation_id)}/activities/{_segment(activity_id, 'activity id')}"
        body = activity.model_copy(update={"reply_to_id": activity_id})
        return self._call("POST", service_url, path, body=body, answer=ResourceResponse).id

    def send(self, service_url: str, conversation_id: str, activity: Activity) -> str | None:
        """Post ``activity`` to the conversation (a proactive or top-level message); the new activity's id."""
        path = f"{self._conversation(conversation_id)}/activities"
        return self._call("POST", service_url, path, body=activity, answer=ResourceResponse).id

    def update(self, service_url: str, conversation_id: str, activity_id: str, activity: Activity) -> None:
        """Replace the bot's earlier message ``activity_id`` with ``activity`` (progress updates)."""
        path = f"{self._conversation(conversation_id)}/activities/{_segment(activity_id, 'activity id')}"
        self._call("PUT", service_url, path, body=activity.model_copy(update={"id": activity_id}))

    def delete(self, service_url: str, conversation_id: str, activity_id: str) -> None:
        """Withdraw the bot's message ``activity_id``."""
        path = f"{self._conversation(conversation_id)}/activities/{_segment(activity_id, 'activity id')}"
        self._call("DELETE", service_url, path)

    def create_personal_conversation(self, service_url: str, *, bot_id: str, user_id: str, tenant_id: str,
                                     activity: Activity | None = None) -> ConversationResourceResponse:
        """Open (or find) the 1:1 chat between the bot and ``user_id``; optionally post ``activity`` in it."""
        params = ConversationParameters(is_group=False, agent=ChannelAccount(id=bot_id),
                                        members=[ChannelAccount(id=user_id)], tenant_id=tenant_id,
                                        channel_data={"tenant": {"id": tenant_id}}, activity=activity)
        answer = self._call("POST", service_url, "v3/conversations", body=params, answer=ConversationResourceResponse)
        if not answer.id:
            raise ConnectorError("the Bot Connector created a conversation without an id")
        return answer

    # ----- members --------------------------------------------------------------------
    def members_page(self, service_url: str, conversation_id: str, *, page_size: int = 200,
                     continuation_token: str | None = None) -> PagedMembersResult:
        """One page of the team's or chat's members (Teams allows pages of 50 to 500)."""
        params = {"pageSize": str(min(max(page_size, 50), 500))}
        if continuation_token:
            params["continuationToken"] = continuation_token
        path = f"{self._conversation(conversation_id)}/pagedmembers"
        return self._call("GET", service_url, path, params=params, answer=PagedMembersResult)

    def members(self, service_url: str, conversation_id: str, *, page_size: int = 200,
                max_members: int = 50_000) -> list[ChannelAccount]:
        """Every member, page after page; ConnectorError past ``max_members`` or on a looping server."""
        found: list[ChannelAccount] = []
        seen_tokens: set[str] = set()
        token: str | None = None
        while True:
            page = self.members_page(service_url, conversation_id, page_size=page_size, continuation_token=token)
            found.extend(page.members or [])
            if len(found) > max_members:
                raise ConnectorError(f"the conversation has more than {max_members} members; ask per member")
            token = page.continuation_token
            if not token:
                return found
            if token in seen_tokens:
                raise ConnectorError("the Bot Connector repeated a continuation token while listing members")
            seen_tokens.add(token)

    def member(self, service_url: str, conversation_id: str, member_id: str) -> ChannelAccount | None:
        """``member_id`` as a member of the team or chat, or None when they are not in it."""
        path = f"{self._conversation(conversation_id)}/members/{_segment(member_id, 'member id')}"
        try:
            return self._call("GET", service_url, path, answer=ChannelAccount)
        except ConnectorRejected as e:
            if e.status == 404:
                return None
            raise

    # ----- the HTTP exchange ----------------------------------------------------------
    @staticmethod
    def _conversation(conversation_id: str) -> str:
        return f"v3/conversations/{_segment(conversation_id, 'conversation id')}"

    def _call(self, method: str, service_url: str, path: str, *, body: AgentsModel | None = None,
              params: dict[str, str] | None = None, answer: type[_Model] | None = None) -> Any:
        base = check_service_url(service_url, self._allowed)  # before any token is fetched or sent
        content = None
        if body is not None:
            content = json.dumps(body.model_dump(mode="json", by_alias=True, exclude_none=True),
                                 ensure_ascii=False, separators=(",", ":")).encode()
            if len(content) > self._max_activity:
                raise ActivityTooLarge(f"the message is {len(content)} bytes, over Teams' limit of "
                                       f"{self._max_activity}; split it (split_text) or shorten the card")
        url, host = base + path, urlsplit(base).netloc
        retrying = Retrying(stop=stop_after_attempt(self._attempts) | stop_before_delay(self._max_total_wait),
                            wait=self._wait, retry=retry_if_exception_type(_Transient), reraise=True,
                            sleep=self._sleep, before_sleep=lambda s: _log_retry(s, method, host, self._attempts))
        try:
            raw = retrying(self._attempt, method, url, content, params)
        except _Transient as e:
            attempts = retrying.statistics.get("attempt_number", self._attempts)
            raise ConnectorError(f"the Bot Connector at {host} kept failing ({e}) on {method} after "
                                 f"{attempts} attempt(s)", status=e.status, attempts=attempts) from None
        if answer is None:
            return None
        try:
            doc = json.loads(raw) if raw.strip() else {}
            if isinstance(doc, dict) and not doc.get("continuationToken"):
                doc.pop("continuationToken", None)
            return answer.model_validate(doc)
        except (ValueError, ValidationError):
            raise ConnectorError(f"the Bot Connector at {host} answered {method} with malformed JSON") from None

    def _attempt(self, method: str, url: str, content: bytes | None, params: dict[str, str] | None) -> bytes:
        token = self._tokens.token()
        status, headers, body = self._exchange(method, url, content, params, token)
        if status == 401:  # the token was revoked or rotated early: one fresh token, once
            self._tokens.invalidate(token)
            status, headers, body = self._exchange(method, url, content, params, self._tokens.token())
        if status == 429 or status == 412 or status >= 500:
            raise _Transient(f"HTTP {status}", status, retry_after(headers.get("retry-after")))
        if status >= 300:
            code = _error_code(body)
            raise ConnectorRejected(f"the Bot Connector refused {method} with HTTP {status}"
                                    + (f" ({code})" if code else ""), status=status)
        return body

    def _exchange(self, method: str, url: str, content: bytes | None, params: dict[str, str] | None,
                  token: str) -> tuple[int, httpx.Headers, bytes]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            with self._client.stream(method, url, content=content, params=params, headers=headers) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_RESPONSE_BYTES:
                        raise ConnectorError(f"the Bot Connector's answer is over {_MAX_RESPONSE_BYTES} bytes",
                                             status=resp.status_code)
                return resp.status_code, resp.headers, bytes(body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise _Transient(f"unreachable: {type(e).__name__}") from None
        except httpx.TransportError as e:  # sent, answer lost: only repeat what cannot post twice
            if method in _IDEMPOTENT:
                raise _Transient(f"connection lost: {type(e).__name__}") from None
            raise ConnectorError(f"the Bot Connector's answer to {method} was lost ({type(e).__name__}); "
                                 "the message may or may not have been posted") from None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_retry_after)
        ceiling = min(self._max_backoff, self._backoff * 2 ** (state.attempt_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter spreads a burst of retries apart


def _log_retry(state: RetryCallState, method: str, host: str, attempts: int) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("Bot Connector at %s answered %s %s; retrying in %.1f s (attempt %d of %d)",
                host, method, exc, wait, state.attempt_number + 1, attempts)
