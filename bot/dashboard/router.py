"""The dashboard's routes: the page, and the login and logout of a browser session.

The edge (bot/auth.py) checks the Host and caps the body of these paths as of any other,
and leaves the token to this router: a request here carries a bearer token or the session
cookie (session.py), or, with no token configured, needs neither, as /v1 does. Without
either, the page answers 401 with the login form. A token limited to some scopes sees only
their documents and answers (the engine filters); the routes are not part of the OpenAPI
document, being HTML for people.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.auth import ALL, Grant
from bot.dashboard import page
from bot.dashboard.registry import RegistryReading, RegistryView
from bot.dashboard.session import COOKIE, COOKIE_PATH, Sessions, same_origin
from bot.routers.deps import EngineDep

DEFAULT_DAYS = 7
MAX_DAYS = 365
FORM_LIMIT = 4096  # bytes of a login form: a token field and little else
_HEADERS = {
    # No scripts at all, styles only inline, forms only to this site, never framed.
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Not "no-referrer": with it a browser sends "Origin: null" on a form post, which the CSRF check refuses.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def _html(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**_HEADERS, **(headers or {})})


def _redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers=_HEADERS)


def days_of(value: str | None) -> int:
    """The range in days asked for, within 1..365 (the default, 7, for anything that is not a number)."""
    try:
        days = int(value) if value is not None and len(value) <= 6 else DEFAULT_DAYS
    except ValueError:
        days = DEFAULT_DAYS
    return max(1, min(days, MAX_DAYS))


def _bearer(request: Request) -> bytes | None:
    kind, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return token.strip().encode() if kind.lower() == "bearer" and token.strip() else None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def dashboard_router(grants: Mapping[str, Collection[str] | None], *, registry: RegistryView | None = None,
                     now: Callable[[], datetime] = _now) -> APIRouter:
    """The dashboard for these tokens (each mapped to its scopes, None: all); no tokens: open, as /v1 is.
    ``registry``: the model registry's versions, read in the background; only all-scope viewers see them."""
    sessions = Sessions(grants)
    router = APIRouter(include_in_schema=False)

    def viewer(request: Request) -> tuple[Grant | None, bool]:
        """The grant of the request, and whether it came from the session cookie."""
        if not sessions:
            return ALL, False
        by_token = sessions.bearer(_bearer(request))
        if by_token is not None:
            return by_token, False
        by_cookie = sessions.grant(request.cookies.get(COOKIE))
        return by_cookie, by_cookie is not None

    @router.get("/dashboard", response_class=HTMLResponse)
    def show(request: Request, engine: EngineDep) -> Response:
        grant, by_cookie = viewer(request)
        if grant is None:
            return _html(page.login(), 401, {"www-authenticate": "Bearer"})
        days = days_of(request.query_params.get("days"))
        until = now()
        data = engine.dashboard(until - timedelta(days=days), until, scopes=grant.visible)
        reading = None
        if registry is not None:
            reading = registry.reading() if grant.visible is None else RegistryReading.withheld()
        return _html(page.dashboard(data, days=days, logout=by_cookie, registry=reading))

    @router.get("/dashboard/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        if viewer(request)[0] is not None:
            return _redirect("/dashboard")
        return _html(page.login())

    @router.post("/dashboard/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if not same_origin(request.headers):
            return _html(page.message("Refused", "This form may only be sent from this site's own page."), 403)
        if not sessions:
            return _redirect("/dashboard")
        form = await _form(request)
        if form is None:
            return _html(page.message("Refused", "The sign-in form was not understood."), 400)
        cookie = sessions.issue(form.get("token", [""])[0].strip())
        if cookie is None:
            return _html(page.login(error="That token is not valid."), 401, {"www-authenticate": "Bearer"})
        response = _redirect("/dashboard")
        response.set_cookie(COOKIE, cookie, max_age=sessions.max_age_s, path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @router.post("/dashboard/logout")
    def logout(request: Request) -> Response:
        if not same_origin(request.headers):
            return _html(page.message("Refused", "This form may only be sent from this site's own page."), 403)
        response = _redirect("/dashboard/login")
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    return router


async def _form(request: Request) -> dict[str, list[str]] | None:
    """The URL-encoded form of a login post, read up to FORM_LIMIT bytes; None when it is anything else."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    try:
        return parse_qs(body.decode("ascii"), max_num_fields=8, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
