"""Browser sessions for the dashboard: a signed cookie after a login form, and the form's CSRF check.

A browser cannot send a bearer token by itself, so the dashboard's login form takes the
token once and answers with a session cookie. The cookie never holds the token: it is
``v1.<key id>.<expiry>.<nonce>.<signature>``, signed with HMAC-SHA256 under a key derived
from the token, so a cookie opens exactly what its token opens, changing the token ends
its sessions, and every replica of the service checks it without shared state. Logging
out removes the cookie from the browser (a copied cookie stays valid until it expires).

The form is guarded against cross-site posts twice: the cookie is SameSite=Strict, and
a POST whose Origin (or Referer, or Sec-Fetch-Site) names another site is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from bot.auth import ALL, Grant, Tokens, host_name
from core.models import ALL_SCOPES

COOKIE = "imp_dashboard"
COOKIE_PATH = "/dashboard"
MAX_AGE_S = 12 * 3600
_VERSION = "v1"
_MAX_COOKIE = 256  # characters; a longer value is not ours
_CLOCK_SKEW_S = 60


def _derive(token: str, purpose: bytes) -> bytes:
    return hmac.new(hashlib.sha256(token.encode()).digest(), purpose, hashlib.sha256).digest()


class Sessions:
    """Issues and checks session cookies for the configured tokens; keeps derived keys only."""

    def __init__(self, grants: Mapping[str, Collection[str] | None], *, max_age_s: int = MAX_AGE_S,
                 clock: Callable[[], float] = time.time):
        self._tokens = Tokens(grants)
        self._max_age = max_age_s
        self._clock = clock
        # key id -> (signing key, grant); ids are derived too, so a cookie names its token without showing it
        self._keys: dict[str, tuple[bytes, Grant]] = {}
        for token, scopes in grants.items():
            grant = ALL if scopes is None or ALL_SCOPES in scopes else Grant(frozenset(scopes))
            kid = _derive(token, b"imp.dashboard.key-id").hex()[:16]
            self._keys[kid] = (_derive(token, b"imp.dashboard.session.v1"), grant)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def __repr__(self) -> str:
        return f"Sessions({len(self._keys)} keys)"

    @property
    def max_age_s(self) -> int:
        return self._max_age

    def bearer(self, presented: bytes | None) -> Grant | None:
        """The grant of a bearer token (constant-time against every token), or None."""
        return self._tokens.grant(presented)

    def issue(self, token: str) -> str | None:
        """A session cookie value for ``token``, or None when it is not one of the tokens."""
        if self._tokens.grant(token.encode()) is None:
            return None
        kid = _derive(token, b"imp.dashboard.key-id").hex()[:16]
        key, _ = self._keys[kid]
        payload = f"{_VERSION}.{kid}.{int(self._clock()) + self._max_age}.{secrets.token_hex(8)}"
        return f"{payload}.{_sign(key, payload)}"

    def grant(self, cookie: str | None) -> Grant | None:
        """The grant a session cookie carries, or None: missing, malformed, forged or expired."""
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        parts = cookie.split(".")
        if len(parts) != 5 or parts[0] != _VERSION or not parts[2].isdigit():
            return None
        found = self._keys.get(parts[1])
        if found is None:
            return None
        key, grant = found
        if not hmac.compare_digest(_sign(key, ".".join(parts[:4])), parts[4]):
            return None
        now = int(self._clock())
        expires = int(parts[2])
        if expires <= now or expires > now + self._max_age + _CLOCK_SKEW_S:
            return None
        return grant


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def _netloc(url: str) -> str | None:
    """``host[:port]`` of a URL, lower case; None when it has none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.netloc.lower() or None


def same_origin(headers: Headers) -> bool:
    """Whether a state-changing request comes from a page of this site.

    Browsers send Origin with every POST; it must name the Host the request was sent to
    ("null", from a sandboxed or privacy-stripped context, is refused). Without Origin, a
    Referer must name it too, and Sec-Fetch-Site must not say cross-site. A request with
    none of these headers is not from a browser page, where cross-site forgery happens.
    """
    host = headers.get("host", "").strip().lower()
    if not host:
        return False
    origin = headers.get("origin")
    if origin is not None:
        return origin.strip().lower() != "null" and _same_host(_netloc(origin.strip()), host)
    site = headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return False
    referer = headers.get("referer")
    return referer is None or _same_host(_netloc(referer.strip()), host)


def _same_host(netloc: str | None, host: str) -> bool:
    """Same host name and port (browsers leave a default port out of both Origin and Host)."""
    return netloc is not None and host_name(netloc) == host_name(host) and _port(netloc) == _port(host)


def _port(netloc: str) -> str | None:
    tail = netloc.rsplit("]", 1)[-1]
    return tail.rsplit(":", 1)[1] if ":" in tail else None
