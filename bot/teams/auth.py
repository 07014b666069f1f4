"""Inbound authentication of the Teams adapter: is this POST to /api/messages really from Bot Framework?

The Teams route hands ``BotFrameworkAuthenticator.validate`` the request's Authorization
header and the activity's ``serviceUrl`` and ``channelId``, before the activity is acted
on; it returns the token's claims or raises ``TeamsAuthError`` (HTTP ``status``: 401, or
403 for a channel the key does not endorse), and nothing runs.

The checks are those the Bot Connector authentication protocol asks of a bot:
- ``Authorization: Bearer <JWT>``, RS256 only (``none`` and HMAC refused before any
  key is looked at, so a public key can never be used as an HMAC secret);
- signed by the key its ``kid`` names in the key set behind the configured OpenID
  metadata URL (bot/teams/signing_keys.py);
- issuer ``https://api.botframework.com``; for a single-tenant bot (``tenant_id`` a tenant
  GUID) also that tenant's Entra issuers ``https://sts.windows.net/{tenant}/`` and
  ``https://login.microsoftonline.com/{tenant}/v2.0``, as the Agents SDK accepts, whose
  ``tid`` claim, when present, must be that tenant;
- audience exactly the bot's app id; ``exp`` required, ``exp``/``nbf``/``iat`` with at most
  five minutes of clock skew;
- the ``serviceurl`` claim equal to the activity's ``serviceUrl`` (required in Bot
  Framework's tokens, checked when present in Entra's), so a token taken from one
  conversation cannot send the bot's replies, and its token, to another host;
- when the key publishes endorsements, the activity's ``channelId`` among them.

Why not the Microsoft 365 Agents SDK's ``JwtTokenValidator`` (microsoft-agents-hosting-core
1.9): it fetches keys from hard-coded login.botframework.com / login.microsoftonline.com
URLs (the OpenID metadata URL cannot be pointed at a local fake or a sovereign cloud),
checks neither the issuer nor the ``serviceurl`` claim nor endorsements, and keeps its
key clients in a class-level cache. This module does the same job with PyJWT, which
that SDK uses too.

Neither tokens nor secrets are logged; refusals log their reason only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from bot.teams.signing_keys import SigningKey, SigningKeys, SigningKeysUnavailable
from core.errors import ImpError

log = logging.getLogger(__name__)

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
ENTRA_ISSUER_TEMPLATES = ("https://sts.windows.net/{}/", "https://login.microsoftonline.com/{}/v2.0")
MAX_CLOCK_SKEW_S = 300
MAX_AUTHORIZATION_CHARS = 16 * 1024  # Bot Framework's tokens are about 1.5 KiB
ALGORITHMS = ("RS256",)
_TENANT_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*)$", re.IGNORECASE)


class TeamsAuthError(ImpError):
    """A request to the Teams endpoint that is not provably from Bot Framework.

    ``reason`` is a short stable word for logs and tests (``expired``, ``wrong_audience``
    ...); ``status`` the HTTP answer: 401, or 403 when the channel is not endorsed.
    """

    code = "unauthorized"

    def __init__(self, reason: str, detail: str, *, status: int = 401) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class BotClaims:
    """What a validated token says. ``claims`` is every claim, read-only."""

    issuer: str
    audience: str
    service_url: str | None  # the serviceurl claim; None only in an Entra-issued token without one
    tenant_id: str | None  # the tid claim
    key_id: str
    expires_at: int  # epoch seconds
    claims: Mapping[str, Any]


def accepted_issuers(tenant_id: str | None) -> tuple[str, ...]:
    """The issuers a token may name: Bot Framework's, plus the tenant's Entra issuers for a tenant GUID."""
    if tenant_id and _TENANT_GUID.match(tenant_id):
        return (BOT_FRAMEWORK_ISSUER, *(t.format(tenant_id.lower()) for t in ENTRA_ISSUER_TEMPLATES))
    return (BOT_FRAMEWORK_ISSUER,)  # multi-tenant ("botframework.com") or a domain name: no Entra issuer to pin


class BotFrameworkAuthenticator:
    """Validates the bearer token of each incoming activity; thread-safe, shares one ``SigningKeys``."""

    def __init__(self, app_id: str, keys: SigningKeys, *, tenant_id: str | None = None,
                 clock_skew_s: float = MAX_CLOCK_SKEW_S) -> None:
        if not app_id:
            raise ValueError("the bot's app id is required to check a token's audience")
        if not 0 <= clock_skew_s <= MAX_CLOCK_SKEW_S:
            raise ValueError(f"clock skew must be between 0 and {MAX_CLOCK_SKEW_S} s")
        self.app_id = app_id
        self.keys = keys
        self.issuers = accepted_issuers(tenant_id)
        self._tenant = tenant_id.lower() if len(self.issuers) > 1 and tenant_id else None
        self._skew = clock_skew_s

    def validate(self, authorization: str | None, *, service_url: str | None, channel_id: str | None) -> BotClaims:
        """The claims of the request's token, or ``TeamsAuthError``. May fetch keys: call off the event loop."""
        try:
            return self._validate(authorization, service_url, channel_id)
        except TeamsAuthError as e:
            log.info("Teams request refused (%s): %s", e.reason, e.detail)
            raise

    async def validate_async(self, authorization: str | None, *, service_url: str | None,
                             channel_id: str | None) -> BotClaims:
        """``validate`` in a worker thread, so a key fetch never blocks the event loop."""
        return await asyncio.to_thread(self.validate, authorization, service_url=service_url, channel_id=channel_id)

    def _validate(self, authorization: str | None, service_url: str | None, channel_id: str | None) -> BotClaims:
        token = _bearer_token(authorization)
        key = self._key_for(token)
        claims = self._decode(token, key)
        issuer = claims["iss"]
        tenant = claims.get("tid")
        if issuer != BOT_FRAMEWORK_ISSUER and tenant is not None and (
                not isinstance(tenant, str) or tenant.lower() != self._tenant):
            raise TeamsAuthError("wrong_tenant", "the token's tenant is not the bot's")
        token_service_url = _claim_ci(claims, "serviceurl")
        if token_service_url is not None or issuer == BOT_FRAMEWORK_ISSUER:
            _check_service_url(token_service_url, service_url)
        _check_endorsement(key, channel_id)
        return BotClaims(issuer=issuer, audience=claims["aud"], service_url=token_service_url,
                         tenant_id=tenant if isinstance(tenant, str) else None, key_id=key.kid,
                         expires_at=int(claims["exp"]), claims=MappingProxyType(claims))

    def _key_for(self, token: str) -> SigningKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TeamsAuthError("malformed", "the bearer token is not a JWT") from e
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TeamsAuthError("alg_not_allowed", f"the token's algorithm {str(alg)[:20]!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TeamsAuthError("no_kid", "the token names no signing key")
        try:
            key = self.keys.get(kid)
        except SigningKeysUnavailable as e:
            raise TeamsAuthError("keys_unavailable", e.detail) from e
        if key is None:
            raise TeamsAuthError("unknown_key", "the token is signed with a key Bot Framework does not publish")
        return key

    def _decode(self, token: str, key: SigningKey) -> dict[str, Any]:
        try:
            return jwt.decode(token, key.public_key, algorithms=list(ALGORITHMS), audience=self.app_id,
                              issuer=self.issuers, leeway=self._skew,
                              options={"require": ["exp", "iss", "aud"], "strict_aud": True})
        except jwt.InvalidSignatureError as e:
            raise TeamsAuthError("bad_signature", "the token's signature does not verify") from e
        except jwt.ExpiredSignatureError as e:
            raise TeamsAuthError("expired", "the token has expired") from e
        except jwt.ImmatureSignatureError as e:
            raise TeamsAuthError("not_yet_valid", "the token is not valid yet") from e
        except jwt.InvalidAudienceError as e:
            raise TeamsAuthError("wrong_audience", "the token is not for this bot") from e
        except jwt.InvalidIssuerError as e:
            raise TeamsAuthError("wrong_issuer", "the token's issuer is not Bot Framework") from e
        except jwt.MissingRequiredClaimError as e:
            raise TeamsAuthError("missing_claim", f"the token lacks the {e.claim!r} claim") from e
        except jwt.PyJWTError as e:
            raise TeamsAuthError("malformed", f"the token is malformed ({type(e).__name__})") from e


def _bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise TeamsAuthError("missing_token", "no Authorization header")
    if len(authorization) > MAX_AUTHORIZATION_CHARS:
        raise TeamsAuthError("token_too_large", "the Authorization header is too large")
    value = authorization.strip()
    if not value.lower().startswith("bearer "):
        raise TeamsAuthError("not_bearer", "the Authorization header is not a bearer token")
    match = _BEARER.match(value)
    if match is None:
        raise TeamsAuthError("malformed", "the bearer token is not a JWT")
    return match.group(1)


def _claim_ci(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by case-insensitive name (Bot Framework writes ``serviceurl``, its docs ``serviceUrl``)."""
    for key, value in claims.items():
        if key.lower() == name:
            return value
    return None


def _same_url(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def _check_service_url(claimed: Any, service_url: str | None) -> None:
    if not isinstance(claimed, str) or not claimed:
        raise TeamsAuthError("missing_service_url", "the token names no service URL")
    if not service_url or not _same_url(claimed, service_url):
        raise TeamsAuthError("wrong_service_url", "the token is for another service URL than the activity's")


def _check_endorsement(key: SigningKey, channel_id: str | None) -> None:
    if key.endorsements is not None and (not channel_id or channel_id not in key.endorsements):
        raise TeamsAuthError("channel_not_endorsed", "the signing key does not endorse the activity's channel",
                             status=403)
