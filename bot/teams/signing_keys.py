"""The keys Bot Framework signs its tokens with, for the Teams adapter's inbound authentication (bot/teams/auth.py).

``SigningKeys`` reads the OpenID configuration at the configured metadata URL
(``IMP_TEAMS__OPENID_METADATA_URL``), follows its ``jwks_uri`` and keeps the RSA keys
it publishes, with their ``endorsements`` (the channel ids a key may vouch for).

Every input is hostile: both documents are read with a size cap, a timeout per
operation and a deadline for the whole read, without following redirects; the
``jwks_uri`` must have the metadata URL's origin (Bot Framework and Entra publish both
on the same host), so a tampered document cannot send the bot anywhere else. Keys
shorter than 2048 bits, of another type or algorithm, or with malformed endorsements
are left out.

Caching: a key set is kept ``ttl_s`` (24 h). A token naming a key the set lacks (a key
rollover) refreshes it, at most once per ``refresh_interval_s`` whatever the number of
unknown ``kid``s, so a flood of forged tokens cannot hammer the endpoint. When a
refresh fails the last good set is kept for up to ``max_stale_s`` and the next attempt
waits ``failure_backoff_s``; with no usable set every lookup fails (closed) with
``SigningKeysUnavailable``. Thread-safe: one refresh at a time, readers see a frozen set.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from core.errors import ImpError

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 64 * 1024  # Bot Framework's is under 1 KiB, Entra's about 2 KiB
MAX_JWKS_BYTES = 256 * 1024  # a handful of keys, each a few KiB with its certificate chain
MAX_KEYS = 64
MAX_KID_CHARS = 256
MAX_ENDORSEMENTS = 256
MIN_RSA_BITS = 2048


class SigningKeysUnavailable(ImpError):
    """No usable set of signing keys: the metadata or key endpoint failed or answered nonsense."""

    code = "auth_unavailable"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One published RSA key. ``endorsements`` None: the key set publishes none for it."""

    kid: str
    public_key: RSAPublicKey
    endorsements: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: Mapping[str, SigningKey]
    fetched_at: float  # on the cache's clock


class SigningKeys:
    """The cached key set published behind ``openid_metadata_url``; ``get(kid)`` is the one lookup."""

    def __init__(self, openid_metadata_url: str, *, ttl_s: float = 24 * 3600, refresh_interval_s: float = 300,
                 failure_backoff_s: float = 10, max_stale_s: float = 5 * 24 * 3600, timeout_s: float = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(openid_metadata_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("the OpenID metadata URL must be an http(s) URL")
        if not 0 < refresh_interval_s <= ttl_s <= max_stale_s:
            raise ValueError("need 0 < refresh_interval_s <= ttl_s <= max_stale_s")
        self.metadata_url = openid_metadata_url
        self._ttl_s = ttl_s
        self._refresh_interval_s = refresh_interval_s
        self._failure_backoff_s = failure_backoff_s
        self._max_stale_s = max_stale_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._set: KeySet | None = None
        self._last_attempt = float("-inf")
        self._retry_at = float("-inf")

    def get(self, kid: str) -> SigningKey | None:
        """The key named ``kid``, None when the (refreshed) set lacks it; raises ``SigningKeysUnavailable``."""
        current = self._set
        if current is None or self._clock() - current.fetched_at >= self._ttl_s:
            current = self._refresh(unknown_kid=False)
        key = current.keys.get(kid)
        if key is None:
            key = self._refresh(unknown_kid=True).keys.get(kid)
        return key

    def _refresh(self, *, unknown_kid: bool) -> KeySet:
        with self._lock:  # one fetch at a time; whoever waited here sees what it fetched
            now = self._clock()
            current = self._set
            if current is not None:
                age = now - current.fetched_at
                if not unknown_kid and age < self._ttl_s:
                    return current  # another thread refreshed it while this one waited
                if unknown_kid and now - self._last_attempt < self._refresh_interval_s:
                    return current  # rate limit: forged kids must not drive fetches
            if now < self._retry_at:
                return self._fallback(now, "the last attempt failed; retrying later")
            self._last_attempt = now
            try:
                fetched = self._fetch()
            except SigningKeysUnavailable as e:
                self._retry_at = now + self._failure_backoff_s
                log.warning("Bot Framework signing keys could not be refreshed from %s: %s", self.metadata_url, e)
                return self._fallback(now, e.detail)
            self._set = KeySet(MappingProxyType(fetched), fetched_at=now)
            self._retry_at = float("-inf")
            log.info("Bot Framework signing keys refreshed: %d keys", len(fetched))
            return self._set

    def _fallback(self, now: float, why: str) -> KeySet:
        """The last good set while it is young enough, else fail closed."""
        current = self._set
        if current is not None and now - current.fetched_at < self._max_stale_s:
            return current
        self._set = None
        raise SigningKeysUnavailable(f"no Bot Framework signing keys: {why}")

    def _fetch(self) -> dict[str, SigningKey]:
        with httpx.Client(timeout=self._timeout_s, follow_redirects=False) as client:
            metadata = self._get_json(client, self.metadata_url, MAX_METADATA_BYTES, "OpenID metadata")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or _origin(jwks_uri) != _origin(self.metadata_url):
                raise SigningKeysUnavailable("the OpenID metadata names no jwks_uri on its own host")
            keys = _parse_jwks(self._get_json(client, jwks_uri, MAX_JWKS_BYTES, "key set"))
        if not keys:
            raise SigningKeysUnavailable("the key set holds no usable RSA signing key")
        return keys

    def _get_json(self, client: httpx.Client, url: str, limit: int, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + 2 * self._timeout_s  # per-operation timeouts alone allow a slow drip
        try:
            with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise SigningKeysUnavailable(f"the {what} endpoint answered HTTP {response.status_code}")
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > limit:
                    raise SigningKeysUnavailable(f"the {what} is larger than {limit} bytes")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise SigningKeysUnavailable(f"the {what} is larger than {limit} bytes")
                    if time.monotonic() > deadline:
                        raise SigningKeysUnavailable(f"the {what} took too long to arrive")
        except httpx.HTTPError as e:
            raise SigningKeysUnavailable(f"the {what} could not be fetched ({type(e).__name__})") from e
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise SigningKeysUnavailable(f"the {what} is not JSON") from e
        if not isinstance(document, dict):
            raise SigningKeysUnavailable(f"the {what} is not a JSON object")
        return document


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _parse_jwks(document: dict[str, Any]) -> dict[str, SigningKey]:
    """The usable keys of a JWKS; anything odd about one key leaves that key out, not the set."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise SigningKeysUnavailable("the key set has no 'keys' list")
    keys: dict[str, SigningKey] = {}
    for entry in entries[:MAX_KEYS]:
        key = _parse_key(entry)
        if key is not None and key.kid not in keys:
            keys[key.kid] = key
    return keys


def _parse_key(entry: Any) -> SigningKey | None:
    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS:
        return None
    if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
        return None
    endorsements = entry.get("endorsements")
    if endorsements is not None:
        if (not isinstance(endorsements, list) or len(endorsements) > MAX_ENDORSEMENTS
                or not all(isinstance(e, str) for e in endorsements)):
            log.debug("signing key %r left out: malformed endorsements", kid)
            return None
        endorsements = frozenset(endorsements)
    try:
        public_key = jwt.PyJWK(entry, algorithm="RS256").key
    except (jwt.PyJWTError, ValueError, TypeError) as e:
        log.debug("signing key %r left out: %s", kid, type(e).__name__)
        return None
    if not isinstance(public_key, RSAPublicKey) or public_key.key_size < MIN_RSA_BITS:
        return None
    return SigningKey(kid=kid, public_key=public_key, endorsements=endorsements)
