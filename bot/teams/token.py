"""The bot's own access tokens (client-credentials grant), cached and refreshed: one provider per scope.

Used by the Teams adapter's outbound side: ``bot.teams.connector.ConnectorClient`` puts the Bot Connector
token (the default scope) on every reply, progress update and members lookup it sends to Teams, and
bot/teams/graph.py a Microsoft Graph token (scope ``https://graph.microsoft.com/.default``, a second
provider) on its file lookups. The app id and client secret come from ``Settings.teams`` (read in
app.py); ``token_url`` is ``IMP_TEAMS__TOKEN_URL`` so the flow runs against a local fake offline.

Why a small httpx client and not microsoft-agents-authentication-msal (MSAL): MSAL does not take a
token URL. It takes an *authority* and discovers the token endpoint from it (instance discovery
against login.microsoftonline.com, then the tenant's openid-configuration), so pointing it at an
arbitrary ``IMP_TEAMS__TOKEN_URL`` means faking two more Microsoft documents, and it would reach
Microsoft's discovery endpoint on an air-gapped site. It also pulls in hosting-core, azure-core and
OpenTelemetry for one form POST. The grant itself is one documented request
(https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication):
POST form ``grant_type=client_credentials, client_id, client_secret,
scope=https://api.botframework.com/.default`` (or Graph's scope) answered with ``{access_token,
expires_in, token_type}``.

The token is cached until ``refresh_margin_s`` before it expires; one thread fetches at a time while
the others wait for its result. After the service it is for answers 401, ``invalidate(token)`` drops
that token (only if it is still the current one, so a burst of 401s causes one refresh). Neither the
secret nor a token is ever logged or put in an exception message; responses are read up to a bounded size.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from core.errors import BackendError, InvalidRequest

log = logging.getLogger(__name__)

BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
MULTI_TENANT = "botframework.com"  # the "tenant" of multi-tenant bots' tokens
_MAX_RESPONSE_BYTES = 64 * 1024
_MAX_TOKEN_CHARS = 16 * 1024
_MAX_LIFETIME_S = 24 * 3600
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TENANT = re.compile(r"^[A-Za-z0-9.\-]{1,128}$")


class TeamsTokenError(BackendError):
    """The bot could not get an access token (wrong app id or secret, token endpoint down or malformed)."""

    code = "teams_token_failed"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses, the only hosts plain http is allowed to (tests)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_token_url(tenant_id: str | None) -> str:
    """The Microsoft identity platform token endpoint of ``tenant_id`` (None: multi-tenant bots)."""
    tenant = tenant_id or MULTI_TENANT
    if not _TENANT.match(tenant):
        raise InvalidRequest("the Teams tenant id is not a tenant id or domain name")
    return f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"


def _check_token_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.username or parts.password or not host:
        raise InvalidRequest("the Teams token URL must be a plain https URL without credentials")
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(host)):
        raise InvalidRequest("the Teams token URL must use https (plain http only to a loopback host)")
    return url


@dataclass(frozen=True)
class _Cached:
    value: str
    refresh_at: float  # on ``clock``'s scale


class BotTokenProvider:
    """Hands out the bot's access token for ``scope`` (the Bot Connector's by default); thread-safe, fetches
    only when needed.

    ``clock`` is monotonic seconds (tests pass a clock they move); ``client`` lets the caller share an
    ``httpx.Client`` (it is not closed by ``close()`` then).
    """

    def __init__(self, app_id: str, app_password: str, *, tenant_id: str | None = None,
                 token_url: str | None = None, scope: str = BOT_FRAMEWORK_SCOPE, timeout_s: float = 10.0,
                 refresh_margin_s: float = 300.0, attempts: int = 3,
                 clock: Callable[[], float] = time.monotonic, client: httpx.Client | None = None) -> None:
        if not app_id or not app_password:
            raise InvalidRequest("the Teams app id and app password are both needed for the bot's token")
        self._app_id = app_id
        self._secret = app_password
        self._url = _check_token_url(token_url or default_token_url(tenant_id))
        self._scope = scope
        self._margin = refresh_margin_s
        self._attempts = max(1, attempts)
        self._clock = clock
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._cached: _Cached | None = None
        self._fetch_lock = threading.Lock()
        self.fetches = 0  # how many tokens were fetched (metrics, tests)

    def __repr__(self) -> str:  # never the secret
        return f"BotTokenProvider(app_id={self._app_id!r}, scope={self._scope!r}, token_url={self._url!r})"

    @property
    def token_url(self) -> str:
        return self._url

    def token(self) -> str:
        """A valid access token, from the cache or freshly fetched (one fetch at a time)."""
        cached = self._cached
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        with self._fetch_lock:
            cached = self._cached  # another thread may have refreshed it while this one waited
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            self._cached = self._fetch()
            return self._cached.value

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after the service it is for refused it; a newer token already cached is kept."""
        with self._fetch_lock:
            if self._cached is not None and self._cached.value == token:
                self._cached = None

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def _fetch(self) -> _Cached:
        form = {"grant_type": "client_credentials", "client_id": self._app_id,
                "client_secret": self._secret, "scope": self._scope}
        host = urlsplit(self._url).netloc
        for attempt in range(1, self._attempts + 1):
            started = self._clock()
            try:
                status, body = self._post(form)
            except httpx.TransportError as e:
                if attempt == self._attempts:
                    raise TeamsTokenError(f"the token endpoint at {host} is unreachable "
                                          f"({type(e).__name__}) after {attempt} attempts") from None
                time.sleep(0.2 * 2 ** (attempt - 1))
                continue
            if (status >= 500 or status == 429) and attempt < self._attempts:
                time.sleep(0.2 * 2 ** (attempt - 1))
                continue
            token = _parse(status, body, host, self._margin, started)
            self.fetches += 1
            log.info("fetched the bot's %s token from %s (refresh in %.0f s)",
                     _audience(self._scope), host, token.refresh_at - started)
            return token
        raise AssertionError("unreachable")  # the loop returns or raises

    def _post(self, form: dict[str, str]) -> tuple[int, bytes]:
        with self._client.stream("POST", self._url, data=form, headers={"Accept": "application/json"}) as resp:
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > _MAX_RESPONSE_BYTES:
                    raise TeamsTokenError(f"the token endpoint's answer is over {_MAX_RESPONSE_BYTES} bytes")
            return resp.status_code, bytes(body)


def _audience(scope: str) -> str:
    """The service a scope is for, in words for the log: the scope's host when it is no service IMP knows."""
    host = urlsplit(scope).hostname or ""
    if host == "api.botframework.com":
        return "Bot Connector"
    if host == "graph.microsoft.com":
        return "Microsoft Graph"
    return host or "access"


def _parse(status: int, body: bytes, host: str, margin: float, started: float) -> _Cached:
    """The cached token from the endpoint's answer, or a TeamsTokenError that names no secret."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise TeamsTokenError(f"the token endpoint at {host} answered HTTP {status} without a JSON object")
    if status != 200:
        code = doc.get("error")
        reason = code if isinstance(code, str) and _ERROR_CODE.match(code) else "no error code"
        raise TeamsTokenError(f"the token endpoint at {host} refused the bot's credentials "
                              f"(HTTP {status}, {reason}); check IMP_TEAMS__APP_ID and IMP_TEAMS__APP_PASSWORD")
    value, kind, expires_in = doc.get("access_token"), doc.get("token_type", "Bearer"), doc.get("expires_in")
    if not isinstance(value, str) or not value or len(value) > _MAX_TOKEN_CHARS or not value.isprintable() \
            or " " in value:
        raise TeamsTokenError(f"the token endpoint at {host} answered without a usable access_token")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise TeamsTokenError(f"the token endpoint at {host} answered a token type other than Bearer")
    try:
        lifetime = float(expires_in)  # Entra ID sends a number; older endpoints a numeric string
    except (TypeError, ValueError):
        raise TeamsTokenError(f"the token endpoint at {host} answered without a numeric expires_in") from None
    if not 0 < lifetime <= _MAX_LIFETIME_S:
        raise TeamsTokenError(f"the token endpoint at {host} answered an implausible expires_in")
    # Short-lived tokens (tests, odd endpoints) are kept for half their life rather than not at all.
    return _Cached(value, started + lifetime - min(margin, lifetime / 2))
