"""The REST edge in pure ASGI: Host, bearer token and body size are checked before any route runs.

FastAPI reads and parses a request's body before a route's dependencies run, so a
bearer-token dependency answers 401 only after the whole body was read (or spooled to
disk, for multipart). ``Edge`` sits in front of the app and decides from the headers:

- Host: a Host header outside ``allowed_hosts`` gets 400 (DNS rebinding: a web page
  whose name resolves to 127.0.0.1 must not reach a loopback API through the browser).
- Token: every path but the open ones (health, metrics, API docs), Slack's (signed
  by Slack, capped by their own router) and Teams' (a Bot Framework token, checked by its
  route) needs one of the bearer tokens, else 401. The
  token's scopes travel in the ASGI scope to the routes, which read them with
  ``grant_of``.
- Size: a Content-Length above the route's cap gets 413 at once; a body without one
  (chunked) is counted as it streams and refused at the cap, before more is read.

Refusals close the connection, so the rest of an unwanted body is never read.
Middleware built on BaseHTTPMiddleware is avoided on purpose: it wraps the body stream.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import ImpError
from core.models import ALL_SCOPES

JSON_LIMIT = 1 << 20  # the largest JSON request (a question with its history) is far below this
MULTIPART_OVERHEAD = 1 << 20  # part headers and form fields around the files of an upload
UPLOAD_ROUTES = frozenset({("POST", "/v1/documents"), ("POST", "/v1/minutes")})
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
SIGNED_PREFIX = "/slack/"  # Slack signs these; bot/slack/http.py checks the signature and caps the body
# Bot Framework sends its own bearer token (a signed JWT) here, checked by bot/teams/route.py; the body cap applies.
BOT_FRAMEWORK_PATH = "/api/messages"
# The dashboard checks a bearer token or its session cookie itself (bot/dashboard): a browser has no token
# to send, and must get the login form rather than a JSON 401. Host check and body caps still apply here.
SESSION_PATHS = ("/dashboard", "/dashboard/")
GRANT_KEY = "imp.grant"


class Forbidden(ImpError):
    """The request's token does not open a scope it asked for."""

    code = "forbidden"


@dataclass(frozen=True, slots=True)
class Grant:
    """The scopes a request's token opens; ``scopes`` None: every scope."""

    scopes: frozenset[str] | None = None

    @property
    def visible(self) -> list[str] | None:
        """The scopes to hand the Engine's by-id and listing methods (None: unrestricted)."""
        return None if self.scopes is None else sorted(self.scopes)

    def require(self, scopes: Iterable[str]) -> list[str]:
        """``scopes``, or Forbidden naming the first one this token does not open."""
        wanted = list(scopes)
        if self.scopes is not None:
            for s in wanted:
                if s not in self.scopes:
                    raise Forbidden(f"this token may not use scope {s!r}")
        return wanted


ALL = Grant(None)
NOTHING = Grant(frozenset())


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class Tokens:
    """The bearer tokens and the scopes each opens. Keeps digests only; never shows a token."""

    def __init__(self, grants: Mapping[str, Collection[str] | None] | None = None):
        self._table = [(_digest(token.encode()), ALL if scopes is None or ALL_SCOPES in scopes
                        else Grant(frozenset(scopes))) for token, scopes in (grants or {}).items()]

    def __bool__(self) -> bool:
        return bool(self._table)

    def __repr__(self) -> str:
        return f"Tokens({len(self._table)} configured)"

    def grant(self, presented: bytes | None) -> Grant | None:
        """The grant of the presented token, or None. Compares with every token in constant time."""
        if not presented:
            return None
        digest, found = _digest(presented), None
        for known, grant in self._table:
            if hmac.compare_digest(known, digest):
                found = grant
        return found


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes its cap; FastAPI lets HTTP errors through."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {_size(limit)}", headers={"connection": "close"})


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n // 1024} KiB"


def host_name(header: str) -> str:
    """The name in a Host header: lower case, without port, brackets or a trailing dot."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.strip().partition(b" ")
            return token.strip() if kind.lower() == b"bearer" else None
    return None


async def _refuse(send: Send, status: int, code: str, detail: str, *extra: tuple[bytes, bytes]) -> None:
    """Answer ``{code, detail}`` and close the connection, so an unread body is never read."""
    body = json.dumps({"code": code, "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Edge:
    """ASGI middleware: Host check, bearer token and body caps, before the app sees the request."""

    def __init__(self, app: ASGIApp, *, tokens: Tokens, allowed_hosts: Collection[str] | None,
                 upload_limit: int, json_limit: int = JSON_LIMIT):
        self.app = app
        self._tokens = tokens
        self._hosts = None if allowed_hosts is None else frozenset(host_name(h) for h in allowed_hosts)
        self._upload_limit = upload_limit
        self._json_limit = json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._hosts is not None and host_name(headers.get("host", "")) not in self._hosts:
            await _refuse(send, 400, "invalid_host", "this server does not answer requests for that Host")
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix: routes are matched below it
            path = path[len(root):]
        if path.startswith(SIGNED_PREFIX):
            await self.app(scope, receive, send)
            return
        if path not in OPEN_PATHS and path != BOT_FRAMEWORK_PATH and not (
                path == SESSION_PATHS[0] or path.startswith(SESSION_PATHS[1])):
            grant = self._tokens.grant(_bearer(scope)) if self._tokens else ALL
            if grant is None:
                await _refuse(send, 401, "unauthorized", "missing or wrong bearer token",
                              (b"www-authenticate", b"Bearer"))
                return
            scope[GRANT_KEY] = grant
        limit = self._upload_limit if (scope["method"], path) in UPLOAD_ROUTES else self._json_limit
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _refuse(send, 413, "too_large", f"the request body is larger than {_size(limit)}")
            return
        await self._capped(scope, receive, send, limit)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        seen, started = 0, False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge as e:  # raised where no handler turned it into a response
            if started:
                raise
            await _refuse(send, 413, "too_large", e.detail)


_bearer_scheme = HTTPBearer(auto_error=False, description="One of IMP_API__TOKEN or IMP_API__TOKENS")


def grant_of(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer_scheme)) -> Grant:
    """The scopes the request's token opens, as ``Edge`` found them (nothing, if it did not run).

    ``_`` only documents the bearer scheme in OpenAPI; ``Edge`` has already checked the token.
    """
    return request.scope.get(GRANT_KEY, NOTHING)
